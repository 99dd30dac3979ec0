"""The guardrails: each rule judges one stack (``PolicySubject``) and returns its violations.

One implementation for both faces: the Pulumi policy pack (``policy/``, CrossGuard, run by ``pulumi preview
--policy-pack policy``) and ``gpufleet validate --policy`` call the same ``Rule.check``. A rule's message names the
resource (host, VM, cluster or stack), the field (a path in the stack file) and what would be valid.

Two rules are hardware rules of the spec (a MIG layout that does not fit, a GPU both passed through and shared):
they are the spec's own checks (``validate_fleet``, tagged ``SpecIssue.rule``), not a second copy, so a stack that
``validate`` refuses is refused by the pack with the same words.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from gpufleet.catalog.guest_drivers import branch_of, branches
from gpufleet.spec.dump import stack_form
from gpufleet.spec.issues import with_names
from gpufleet.spec.models import Fleet, SecretRef, VcenterSpec
from gpufleet.spec.rules.context import MIG_LAYOUT_RULE, PASSTHROUGH_EXCLUSIVE_RULE
from gpufleet.spec.validate import validate_fleet

Enforcement = Literal["advisory", "mandatory", "disabled"]
ENFORCEMENT_LEVELS: tuple[Enforcement, ...] = ("advisory", "mandatory", "disabled")
VSPHERE_PROVIDER_TYPE = "pulumi:providers:vsphere"
UNVERIFIED_SSL_KEY = "vsphere:allowUnverifiedSsl"


@dataclass(frozen=True)
class PolicySubject:
    """One stack as a policy sees it: its name, fleet and vCenter connection, the config keys that hold a secret
    in plain text (names only, never values) and whether pulumi-vsphere may skip TLS verification."""

    stack: str
    fleet: Fleet
    vcenter: VcenterSpec
    plain_secret_keys: tuple[str, ...] = ()
    allow_unverified_ssl: bool = False


@dataclass(frozen=True)
class Violation:
    rule: str
    resource: str  # what the stack file names: a host, a VM, the cluster, the stack
    field: str  # a path in the stack file, e.g. gpufleet:fleet.rollout.maxUnavailable
    message: str  # the problem and what would be valid

    def __str__(self) -> str:
        return f"{self.resource}: {self.field}: {self.message}"


Params = Mapping[str, Any]
Check = Callable[[PolicySubject, Params], list[Violation]]


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    enforcement: Enforcement
    check: Check
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # JSON Schema per parameter, with its default

    def defaults(self) -> dict[str, Any]:
        return {k: schema["default"] for k, schema in self.params.items()}


FLEET = "gpufleet:fleet"
VCENTER = "gpufleet:vcenter"


def _tls(subject: PolicySubject, _params: Params) -> list[Violation]:
    found = []
    if subject.allow_unverified_ssl:
        found.append(
            Violation(
                "vcenter-tls-verified",
                f"stack {subject.stack}",
                UNVERIFIED_SSL_KEY,
                "is true: pulumi-vsphere would skip vCenter's TLS verification (valid: false, the default; trust "
                "vCenter with gpufleet:vcenter caFile or thumbprint)",
            )
        )
    vc = subject.vcenter
    if not vc.lab and not vc.ca_file and not vc.thumbprint:
        found.append(
            Violation(
                "vcenter-tls-verified",
                f"vCenter {vc.host}",
                f"{VCENTER}.caFile",
                "no caFile and no thumbprint: vCenter's certificate would not be verified (valid: a PEM CA bundle "
                "in caFile, or a pinned SHA-256 thumbprint)",
            )
        )
    return found


def provider_violations(resource_type: str, name: str, props: Mapping[str, Any]) -> list[Violation]:
    """A pulumi-vsphere provider resource registered with ``allowUnverifiedSsl`` true (any program's)."""
    if resource_type != VSPHERE_PROVIDER_TYPE:
        return []
    value = props.get("allowUnverifiedSsl")
    if value is True or str(value).lower() == "true":
        return [
            Violation(
                "vcenter-tls-verified",
                f"provider {name}",
                "allowUnverifiedSsl",
                "is true: vCenter's TLS certificate would not be verified (valid: false; give the CA instead)",
            )
        ]
    return []


SECRET_NAME_HINTS = ("password", "passwd", "token", "secret", "license", "licence", "apikey", "privatekey")


def secret_refs(fleet: Fleet, vcenter: VcenterSpec) -> list[tuple[str, SecretRef]]:
    """Every secret reference of a stack with its path: where a Pulumi config key must hold a secret."""
    found: list[tuple[str, SecretRef]] = []
    if vcenter.password is not None:
        found.append((f"{VCENTER}.password", vcenter.password))

    def walk(value: Any, path: str) -> None:
        if isinstance(value, SecretRef):
            found.append((path, value))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                name = getattr(item, "name", None)
                walk(item, f"{path}[{name if isinstance(name, str) else i}]")
        elif isinstance(value, BaseModel):
            for attr, info in type(value).model_fields.items():
                walk(getattr(value, attr), f"{path}.{info.alias or attr}")

    walk(fleet, FLEET)
    return found


def plain_secret_keys(fleet: Fleet, vcenter: VcenterSpec, config: Mapping[str, bool]) -> tuple[str, ...]:
    """The config keys that hold a secret in plain text. ``config`` maps each key set in the stack to whether it is
    a Pulumi secret (``{secure: ...}``). A key is a secret when a secret reference names it or its name says so
    (``...Password``, ``...Token``, ``...License``)."""
    named = {ref.config for _, ref in secret_refs(fleet, vcenter) if ref.config}
    suspicious = {
        key for key in config if any(h in key.rsplit(":", 1)[-1].lower().replace("_", "") for h in SECRET_NAME_HINTS)
    }
    return tuple(sorted(k for k in (named | suspicious) if k in config and not config[k]))


def _plain_secrets(subject: PolicySubject, _params: Params) -> list[Violation]:
    refs = {ref.config: path for path, ref in secret_refs(subject.fleet, subject.vcenter) if ref.config}
    return [
        Violation(
            "no-plain-secrets",
            f"stack {subject.stack}",
            f"config.{key}",
            "holds a secret in plain text"
            + (f" (the secret of {refs[key]})" if key in refs else "")
            + f" (valid: a Pulumi secret: `pulumi config set --secret {key} ...`, or only the environment variable)",
        )
        for key in subject.plain_secret_keys
    ]


def _max_unavailable(subject: PolicySubject, params: Params) -> list[Violation]:
    share = float(params["share"])
    hosts = len(subject.fleet.hosts)
    allowed = max(1, math.floor(share * hosts))
    asked = subject.fleet.rollout.max_unavailable
    if hosts == 0 or asked <= allowed:
        return []
    return [
        Violation(
            "max-unavailable-share",
            f"cluster {subject.fleet.cluster}",
            f"{FLEET}.rollout.maxUnavailable",
            f"is {asked}: more than {share:.0%} of the cluster's {hosts} hosts in maintenance at once "
            f"(valid: 1..{allowed}; the share is the policy's `share`)",
        )
    ]


def _spec_rule(rule: str, valid_hint: str) -> Check:
    """The spec's own check tagged ``rule`` (``validate_fleet``), its issues as violations; ``valid_hint`` says
    what would be valid where the issue names no valid values."""

    def check(subject: PolicySubject, _params: Params) -> list[Violation]:
        issues = [i for i in validate_fleet(subject.fleet) if i.rule == rule]
        named = with_names(issues, stack_form(subject.fleet))
        return [
            Violation(
                rule,
                _resource_of(i.path),
                f"{FLEET}.{i.path}",
                f"{i.message} (valid: {', '.join(i.valid) if i.valid else valid_hint})",
            )
            for i in named
        ]

    return check


def _resource_of(path: str) -> str:
    """``vms[vm-mig-01].vgpu[0].gpu`` -> ``VM vm-mig-01``."""
    head, _, rest = path.partition("[")
    name = rest.split("]", 1)[0]
    kind = {"vms": "VM", "hosts": "host", "templates": "template"}.get(head)
    return f"{kind} {name}" if kind and name else "fleet"


def is_prod(stack: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(stack, p) for p in patterns)


def _prod_rollout(subject: PolicySubject, params: Params) -> list[Violation]:
    if not is_prod(subject.stack, list(params["prodStacks"])):
        return []
    rollout, found = subject.fleet.rollout, []
    if rollout.vgpu_vmotion is not True:
        found.append(
            Violation(
                "prod-rollout-safety",
                f"stack {subject.stack}",
                f"{FLEET}.rollout.vgpuVmotion",
                f"is {rollout.vgpu_vmotion if rollout.vgpu_vmotion is not None else 'unset'}: a prod host going into "
                "maintenance must be able to move its vGPU VMs live (valid: true)",
            )
        )
    if rollout.failure_threshold != 1:
        found.append(
            Violation(
                "prod-rollout-safety",
                f"stack {subject.stack}",
                f"{FLEET}.rollout.failureThreshold",
                f"is {rollout.failure_threshold}: a prod rollout stops at its first failed host (valid: 1)",
            )
        )
    return found


def _driver_branches(subject: PolicySubject, params: Params) -> list[Violation]:
    allowed = [str(b) for b in params["allowedBranches"]] or branches()
    fleet, found = subject.fleet, []

    def judge(resource: str, path: str, version: str | None) -> None:
        if version and branch_of(version) not in allowed:
            found.append(
                Violation(
                    "driver-branch-allowed",
                    resource,
                    path,
                    f"{version} is of branch {branch_of(version)}, not allowed (valid branches: {', '.join(allowed)};"
                    " the policy's `allowedBranches`)",
                )
            )

    if fleet.driver is not None:
        judge(f"cluster {fleet.cluster}", f"{FLEET}.driver.version", fleet.driver.version)
    for host in fleet.hosts:
        if host.driver is not None:
            judge(f"host {host.name}", f"{FLEET}.hosts[{host.name}].driver.version", host.driver.version)
    for kind, items in (("template", fleet.templates), ("vms", fleet.vms)):
        for item in items:
            guest = item.guest
            if guest is not None and guest.driver is not None:
                plural = "templates" if kind == "template" else "vms"
                label = "template" if kind == "template" else "VM"
                judge(
                    f"{label} {item.name}", f"{FLEET}.{plural}[{item.name}].guest.driver.version", guest.driver.version
                )
    return found


RULES: tuple[Rule, ...] = (
    Rule("vcenter-tls-verified", "vCenter's TLS certificate is always verified", "mandatory", _tls),
    Rule("no-plain-secrets", "No secret in plain-text stack config", "mandatory", _plain_secrets),
    Rule(
        "max-unavailable-share",
        "At most a share of a cluster's hosts in maintenance at once",
        "mandatory",
        _max_unavailable,
        {"share": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.25}},
    ),
    Rule(
        "mig-layout-fits",
        "MIG-backed vGPUs pinned to a GPU have a placement",
        "mandatory",
        _spec_rule(MIG_LAYOUT_RULE, "a set of MIG profiles `gpufleet mig fit --gpu MODEL ...` places"),
    ),
    Rule(
        "gpu-passthrough-exclusive",
        "A GPU is either passed through (to one VM) or shared by vGPUs, never both",
        "mandatory",
        _spec_rule(PASSTHROUGH_EXCLUSIVE_RULE, "a GPU in mode passthrough that no other VM uses"),
    ),
    Rule(
        "prod-rollout-safety",
        "Prod stacks move vGPU VMs live (vgpuVmotion) and stop at the first failed host",
        "mandatory",
        _prod_rollout,
        {"prodStacks": {"type": "array", "items": {"type": "string"}, "default": ["prod", "prod-*", "*-prod"]}},
    ),
    Rule(
        "driver-branch-allowed",
        "Host and guest NVIDIA drivers come from an allowed branch",
        "mandatory",
        _driver_branches,
        {"allowedBranches": {"type": "array", "items": {"type": "string"}, "default": []}},
    ),
)


def rule(name: str) -> Rule:
    return next(r for r in RULES if r.name == name)
