"""Assign a stack's vSphere licence keys outside ``pulumi up`` (``gpufleet license apply``): each host the key the
spec names for it (``hosts[].license``, else ``licensing.hostLicense``) and vCenter ``licensing.vcenterLicense``.

    targets = license_targets(stack)                        # keys read and checked now: bad input changes nothing
    with connect(resolve_vcenter(stack.vcenter)) as si:
        results = apply_licenses(si, stack.fleet.datacenter, targets)

Idempotent: an entity that already carries its key is left alone (a second run changes nothing). Keys vCenter does
not hold yet are added first, all of them, before any assignment; if vCenter refuses one, the keys this run added
are removed again and ``LicenseRefused`` names the hosts and the secret's variable: nothing changed.
Keys are secrets: only their masked form (``*****-*****-*****-*****-ABCDE``) appears in results and errors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pyVmomi import vim

from gpufleet.connections import Secret, resolve_stack_secret
from gpufleet.errors import GpufleetError, SpecError, SpecIssue, TaskError
from gpufleet.spec.models import SecretRef
from gpufleet.spec.stack import Stack
from gpufleet.vsphere.inventory import find_by_name
from gpufleet.vsphere.licenses import (
    EVALUATION_KEY,
    KEY_FORMAT_TEXT,
    add_license,
    assign_to,
    assigned_licenses,
    is_license_key,
    key_fingerprint,
    license_keys,
    remove_license,
    vcenter_entity,
)

VCENTER = "vcenter"  # the target name of vCenter's own licence


class LicenseRefused(TaskError):
    """vCenter refused a key while it was being added; nothing was assigned (the keys added by this run were
    removed again)."""


@dataclass(frozen=True)
class LicenseTarget:
    """One entity and the key it should carry."""

    target: str  # a host name, or ``VCENTER``
    field: str  # the spec field the key comes from, e.g. ``licensing.hostLicense``
    variable: str  # the secret's source for messages, e.g. ``$GPUFLEET_HOST_LICENSE``
    key: Secret

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.key.reveal())


@dataclass(frozen=True)
class LicenseResult:
    """What ``apply_licenses`` found and did for one target (masked keys only)."""

    target: str
    changed: bool  # assigned now (or, in a dry run, would be)
    desired: str  # masked key
    before: str | None  # masked key vCenter showed before (None: nothing)
    error: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "target": self.target,
            "changed": self.changed,
            "error": self.error,
            "desired": self.desired,
            "before": self.before,
        }


def _source(ref: SecretRef) -> str:
    return f"${ref.env}" if ref.env else f"Pulumi secret {ref.config}"


def license_targets(
    stack: Stack,
    *,
    hosts: Sequence[str] | None = None,
    include_vcenter: bool = True,
    environ: Mapping[str, str] | None = None,
) -> list[LicenseTarget]:
    """The entities of ``stack`` that get a licence and their keys (read now: a lab stack falls back on the lab's
    generated keys). ``hosts``: only these hosts. Every problem (unknown host, secret unset, a value that is not a
    licence key) is collected into one SpecError naming the host and the variable, before anything connects."""
    fleet = stack.fleet
    issues: list[SpecIssue] = []
    if hosts:
        known = [h.name for h in fleet.hosts]
        issues.extend(
            SpecIssue("--host", f"{n!r} is not a host of the stack", tuple(known)) for n in hosts if n not in known
        )
    wanted: list[tuple[str, str, SecretRef]] = []
    if include_vcenter and fleet.licensing.vcenter_license is not None:
        wanted.append((VCENTER, "licensing.vcenterLicense", fleet.licensing.vcenter_license))
    for i, host in enumerate(fleet.hosts):
        if hosts and host.name not in hosts:
            continue
        if host.license is not None:
            wanted.append((host.name, f"hosts[{i}].license", host.license))
        elif fleet.licensing.host_license is not None:
            wanted.append((host.name, "licensing.hostLicense", fleet.licensing.host_license))
    targets: list[LicenseTarget] = []
    for name, field, ref in wanted:
        where = f"{field} ({name})"
        try:
            key = resolve_stack_secret(stack, ref, where, environ)
        except SpecError as exc:
            issues.extend(exc.issues)
            continue
        assert key is not None
        value = key.reveal()
        if not is_license_key(value):
            # Never echo the value: it is a secret. Name where it came from instead.
            issues.append(SpecIssue(where, f"{_source(ref)} does not hold a vSphere licence key ({KEY_FORMAT_TEXT})"))
        elif value == EVALUATION_KEY:
            issues.append(SpecIssue(where, f"{_source(ref)} holds the evaluation key, not a licence"))
        else:
            targets.append(LicenseTarget(name, field, _source(ref), key))
    if issues:
        raise SpecError(issues, stack.name)
    return targets


def _entities(
    si: vim.ServiceInstance, datacenter: str, targets: Sequence[LicenseTarget]
) -> tuple[dict[str, str], dict[str, str]]:
    """target -> entity id, and target -> error for hosts vCenter does not have."""
    entities: dict[str, str] = {}
    missing: dict[str, str] = {}
    host_names = [t.target for t in targets if t.target != VCENTER]
    if any(t.target == VCENTER for t in targets):
        entities[VCENTER] = vcenter_entity(si)
    if host_names:
        root = find_by_name(si, vim.Datacenter, datacenter)
        view = si.RetrieveContent().viewManager.CreateContainerView(root, [vim.HostSystem], True)
        try:
            by_name = {h.name: h._moId for h in view.view}
        finally:
            view.Destroy()
        for name in host_names:
            if name in by_name:
                entities[name] = by_name[name]
            else:
                missing[name] = (
                    f"{name}: no such host in datacenter {datacenter} (hosts there: {', '.join(sorted(by_name)) or 'none'})"
                )
    return entities, missing


def _add_missing_keys(si: vim.ServiceInstance, pending: Sequence[LicenseTarget]) -> None:
    """Add every key vCenter does not hold yet; a refusal removes the ones added here and raises LicenseRefused."""
    held = license_keys(si)
    added: list[str] = []
    for target in pending:
        key = target.key.reveal()
        if key in held or key in added:
            continue
        try:
            add_license(si, key)
        except TaskError as exc:
            for done in added:
                with contextlib.suppress(GpufleetError):  # best effort: an unassigned key changes no entity
                    remove_license(si, done)
            users = ", ".join(t.target for t in pending if t.key.reveal() == key)
            raise LicenseRefused(
                f"{users}: the licence key of {target.field} ({target.variable}, {target.fingerprint}) was refused "
                f"by vCenter: {exc}; nothing was assigned",
                exc.fault,
            ) from exc
        added.append(key)


def apply_licenses(
    si: vim.ServiceInstance, datacenter: str, targets: Sequence[LicenseTarget], *, dry_run: bool = False
) -> list[LicenseResult]:
    """Give every target its key (see the module doc). ``dry_run``: report what would change, change nothing.
    Per-target problems (host not in vCenter, assignment refused) are in the results; a refused key raises
    ``LicenseRefused`` before any assignment."""
    entities, missing = _entities(si, datacenter, targets)
    current = assigned_licenses(si) if entities else {}
    results: dict[str, LicenseResult] = {}
    pending: list[LicenseTarget] = []
    for t in targets:
        if t.target in missing:
            results[t.target] = LicenseResult(t.target, False, t.fingerprint, None, missing[t.target])
            continue
        have = current.get(entities[t.target])
        before = key_fingerprint(have.key) if have else None
        if have is not None and have.key == t.key.reveal():
            results[t.target] = LicenseResult(t.target, False, t.fingerprint, before)
        else:
            results[t.target] = LicenseResult(t.target, True, t.fingerprint, before)
            pending.append(t)
    if pending and not dry_run:
        _add_missing_keys(si, pending)
        for t in pending:
            display = "vCenter Server" if t.target == VCENTER else t.target
            try:
                assign_to(si, entities[t.target], display, t.key.reveal())
            except GpufleetError as exc:
                old = results[t.target]
                results[t.target] = LicenseResult(t.target, False, old.desired, old.before, str(exc))
    return [results[t.target] for t in targets]
