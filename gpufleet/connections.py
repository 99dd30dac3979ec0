"""Resolve a stack's connection settings: where vCenter, the ESXi hosts and the guests are, and how to log in.

One function for every layer that talks to real peers (``gpufleet.vsphere``, ``gpufleet.hosts``, the audit, the
checks)::

    conns = resolve_connections(stack)          # every secret read now: bad input fails before anything runs
    conns.vcenter                               # VcenterSettings (host, port, user, password, ca_file, thumbprint)
    conns.host("esxi-01.lab")                   # SshSettings of an ESXi host
    conns.guest("vm-ts-01")                     # SshSettings of a guest
    conns.local_path("lab-depot://NVD-...zip")  # a local file named in the spec

Where the values come from:

- ``vcenter.lab: true``: the running embedded lab's env file, ``$GPUFLEET_LAB_DIR/env.json`` (default
  ``<repo>/.lab/env.json``), shape ``{"vcenter": {"url", "host", "port", "user", "password", "ca_file",
  "thumbprint"}, "hosts": [{"name", "address", "port", "user", "key_file", "known_hosts"}], "guests": [...]}``.
  It is read as plain JSON: the product never imports the ``lab`` package.
- otherwise: the spec (``gpufleet:vcenter``, ``hosts[].ssh``, ``vms[].ssh``) plus environment variables for every
  ``SecretRef`` (the CLI never sees Pulumi secrets; ``pulumi up`` resolves those in ``components/``).

The stack's other secrets (licence keys, the NVIDIA client token) resolve one way, ``resolve_stack_secret``: the
reference's environment variable; for a lab stack whose variable is unset, the value the running lab generated
under the same name (env.json ``"secrets"``, e.g. ``GPUFLEET_HOST_LICENSE``, ``GPUFLEET_NVIDIA_CLIENT_TOKEN``).
``stack_environ`` is that same lookup as a mapping, for code that reads variables itself (the audit).

Secrets are wrapped in ``Secret``: ``repr``/``str`` print ``***``; call ``reveal()`` only where the value is sent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpufleet.errors import SpecError, SpecIssue
from gpufleet.spec.models import SecretRef, SshSpec, VcenterSpec
from gpufleet.spec.stack import Stack

LAB_DIR_ENV = "GPUFLEET_LAB_DIR"
LAB_DEPOT_SCHEME = "lab-depot://"
_REPO_ROOT = Path(__file__).resolve().parents[1]


class Secret:
    """A secret value that never prints itself (repr/str/format give ``***``)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The plain value: only to hand it to the peer that needs it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


@dataclass(frozen=True)
class VcenterSettings:
    """How to reach vCenter. TLS is always verified: ``ca_file`` (a PEM bundle) or ``thumbprint`` (SHA-256)."""

    host: str
    port: int
    user: str
    password: Secret
    ca_file: Path | None = None
    thumbprint: str | None = None  # "AA:BB:..." (32 bytes, upper case)

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}/sdk"


@dataclass(frozen=True)
class SshSettings:
    """How to reach one ESXi host or guest over SSH; the host key is checked against ``host_key`` (pinned) or
    ``known_hosts``, never accepted blindly."""

    name: str
    address: str
    port: int = 22
    user: str = "root"
    key_file: Path | None = None
    known_hosts: Path | None = None
    host_key: str | None = None  # "ssh-ed25519 AAAA..."
    password: Secret | None = None


@dataclass(frozen=True)
class Connections:
    """Every connection setting of a stack, resolved (secrets read) once."""

    vcenter: VcenterSettings
    hosts: dict[str, SshSettings] = field(default_factory=dict)
    guests: dict[str, SshSettings] = field(default_factory=dict)
    lab_dir: Path | None = None  # set when the settings come from the embedded lab

    def host(self, name: str) -> SshSettings:
        """SSH settings of an ESXi host; an unknown name is a SpecError listing the known ones."""
        return _lookup(self.hosts, name, "host")

    def guest(self, name: str) -> SshSettings:
        """SSH settings of a guest (by VM name); an unknown name is a SpecError listing the known ones."""
        return _lookup(self.guests, name, "guest")

    def local_path(self, path: str) -> Path:
        """A local file named in the spec: ``lab-depot://FILE`` -> ``<lab dir>/depot/FILE``, else a path."""
        return resolve_local_path(path, self.lab_dir)


def _lookup(table: Mapping[str, SshSettings], name: str, kind: str) -> SshSettings:
    try:
        return table[name]
    except KeyError:
        raise SpecError([SpecIssue(name, f"no SSH settings for this {kind}", valid=tuple(sorted(table)))]) from None


def lab_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The embedded lab's state directory: ``$GPUFLEET_LAB_DIR`` or ``<repo>/.lab``."""
    env = os.environ if environ is None else environ
    return Path(env.get(LAB_DIR_ENV) or _REPO_ROOT / ".lab")


def read_lab_env(directory: Path | None = None) -> dict[str, Any]:
    """The running lab's env file as a dict; a missing or broken file says how to start the lab."""
    path = (directory or lab_dir()) / "env.json"
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise SpecError(
            [SpecIssue("vcenter.lab", f"the embedded lab is not running ({path} not found): run `gpufleet lab up`")]
        ) from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise SpecError([SpecIssue("vcenter.lab", f"cannot read the lab env file {path}: {exc}")]) from exc
    if not isinstance(document, dict) or not isinstance(document.get("vcenter"), dict):
        raise SpecError([SpecIssue("vcenter.lab", f"{path} has no `vcenter` object: restart the lab")])
    return document


def resolve_local_path(path: str, lab: Path | None = None) -> Path:
    """``lab-depot://FILE`` -> ``<lab dir>/depot/FILE`` (the lab's generated driver bundles); others unchanged."""
    if path.startswith(LAB_DEPOT_SCHEME):
        name = path.removeprefix(LAB_DEPOT_SCHEME)
        if not name or "/" in name or name in (".", ".."):
            raise SpecError([SpecIssue("driver.localPath", f"{path!r}: lab-depot:// takes a plain file name")])
        return (lab or lab_dir()) / "depot" / name
    return Path(path).expanduser()


def resolve_secret(ref: SecretRef | None, where: str, environ: Mapping[str, str] | None = None) -> Secret | None:
    """Read a secret reference from the environment (the CLI's only secret source)."""
    if ref is None:
        return None
    env = os.environ if environ is None else environ
    if ref.env:
        value = env.get(ref.env)
        if value:
            return Secret(value)
        raise SpecError([SpecIssue(where, f"environment variable {ref.env} is not set (it holds this secret)")])
    given = f"the Pulumi secret {ref.config!r}" if ref.config else f"the fleet stack output {ref.stack_output!r}"
    raise SpecError(
        [
            SpecIssue(
                where,
                f"only {given} is given; outside `pulumi up` secrets come from environment "
                "variables: add `env: VARIABLE` to this secret reference",
            )
        ]
    )


def stack_environ(stack: Stack, environ: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """The variables a stack's secret references are read from: the environment, plus, for a lab stack
    (``vcenter.lab: true``), the running lab's generated secrets (env.json ``"secrets"``) for variables that are
    unset. A set variable always wins. A lab stack needs the lab running (SpecError saying how to start it)."""
    env = os.environ if environ is None else environ
    if not stack.vcenter.lab:
        return env
    generated = read_lab_env(lab_dir(environ)).get("secrets") or {}
    if not isinstance(generated, dict):
        raise SpecError([SpecIssue("vcenter.lab", "the lab env file's `secrets` is not an object: restart the lab")])
    merged = {str(k): str(v) for k, v in generated.items() if v}
    merged.update({k: v for k, v in env.items() if v})
    return merged


def resolve_stack_secret(
    stack: Stack, ref: SecretRef | None, where: str, environ: Mapping[str, str] | None = None
) -> Secret | None:
    """A secret reference of ``stack`` (None when not given): its environment variable, or, for a lab stack whose
    variable is unset, the value the running lab generated under that name. SpecError naming ``where`` and the
    variable when neither has it."""
    if ref is None:
        return None
    env = os.environ if environ is None else environ
    if not stack.vcenter.lab or not ref.env or env.get(ref.env):
        return resolve_secret(ref, where, env)  # no lab fallback needed: do not require a running lab
    return resolve_secret(ref, where, stack_environ(stack, environ))


def _path_or_none(value: Any) -> Path | None:
    return Path(value) if value else None


def _ssh_from_lab(entry: Mapping[str, Any]) -> SshSettings:
    return SshSettings(
        name=str(entry["name"]),
        address=str(entry["address"]),
        port=int(entry.get("port") or 22),
        user=str(entry.get("user") or "root"),
        key_file=_path_or_none(entry.get("key_file")),
        known_hosts=_path_or_none(entry.get("known_hosts")),
        host_key=entry.get("host_key") or None,
    )


def ssh_from_spec(name: str, spec: SshSpec, where: str, environ: Mapping[str, str] | None = None) -> SshSettings:
    """SshSettings from a spec's ``ssh:`` block (secrets from the environment); SpecError naming ``where`` when
    keys or login are missing: host keys are always verified."""
    if not spec.host_key and not spec.known_hosts:
        raise SpecError([SpecIssue(f"{where}.ssh", "give hostKey (pinned) or knownHosts: host keys are verified")])
    if not spec.key_file and spec.password is None:
        raise SpecError([SpecIssue(f"{where}.ssh", "give keyFile or password (a secret reference) to log in")])
    return SshSettings(
        name=name,
        address=spec.address,
        port=spec.port,
        user=spec.user,
        key_file=_path_or_none(spec.key_file),
        known_hosts=_path_or_none(spec.known_hosts),
        host_key=spec.host_key,
        password=resolve_secret(spec.password, f"{where}.ssh.password", environ),
    )


def vcenter_from_lab(document: Mapping[str, Any]) -> VcenterSettings:
    """VcenterSettings from the ``vcenter`` object of the lab env file."""
    vc = document["vcenter"]
    thumbprint = vc.get("thumbprint") or None
    return VcenterSettings(
        host=str(vc["host"]),
        port=int(vc.get("port") or 443),
        user=str(vc["user"]),
        password=Secret(str(vc["password"])),
        ca_file=_path_or_none(vc.get("ca_file")),
        thumbprint=thumbprint.upper() if thumbprint else None,
    )


def resolve_vcenter(spec: VcenterSpec, environ: Mapping[str, str] | None = None) -> VcenterSettings:
    """VcenterSettings from ``gpufleet:vcenter`` (lab or spec + environment)."""
    if spec.lab:
        return vcenter_from_lab(read_lab_env(lab_dir(environ)))
    assert spec.host and spec.user  # guaranteed by VcenterSpec's validator
    password = resolve_secret(spec.password, "vcenter.password", environ)
    assert password is not None
    return VcenterSettings(
        host=spec.host,
        port=spec.port,
        user=spec.user,
        password=password,
        ca_file=_path_or_none(spec.ca_file),
        thumbprint=spec.thumbprint,
    )


def resolve_connections(stack: Stack, environ: Mapping[str, str] | None = None) -> Connections:
    """Every connection setting of ``stack``. Problems (lab not running, variable unset, host missing) are
    collected into one SpecError, raised before anything connects."""
    fleet = stack.fleet
    issues: list[SpecIssue] = []
    hosts: dict[str, SshSettings] = {}
    guests: dict[str, SshSettings] = {}
    if stack.vcenter.lab:
        directory = lab_dir(environ)
        document = read_lab_env(directory)
        vcenter = vcenter_from_lab(document)
        lab_hosts = {str(h["name"]): _ssh_from_lab(h) for h in document.get("hosts") or []}
        lab_guests = {str(g["name"]): _ssh_from_lab(g) for g in document.get("guests") or []}
        for i, host in enumerate(fleet.hosts):
            if host.name in lab_hosts:
                hosts[host.name] = lab_hosts[host.name]
            else:
                issues.append(
                    SpecIssue(f"hosts[{i}].name", f"{host.name!r} is not a host of the running lab", tuple(lab_hosts))
                )
        # Guests are optional for host work: keep those the lab has; checks report missing ones themselves.
        guests = {vm.name: lab_guests[vm.name] for vm in fleet.vms if vm.name in lab_guests}
        return _raise_or(issues, Connections(vcenter=vcenter, hosts=hosts, guests=guests, lab_dir=directory))

    vcenter = None
    try:
        vcenter = resolve_vcenter(stack.vcenter, environ)
    except SpecError as exc:
        issues.extend(exc.issues)
    for i, host in enumerate(fleet.hosts):
        if host.ssh is None:
            issues.append(SpecIssue(f"hosts[{i}].ssh", f"missing: how to reach {host.name} over SSH"))
            continue
        try:
            hosts[host.name] = ssh_from_spec(host.name, host.ssh, f"hosts[{i}]", environ)
        except SpecError as exc:
            issues.extend(exc.issues)
    for i, vm in enumerate(fleet.vms):
        if vm.ssh is not None:
            try:
                guests[vm.name] = ssh_from_spec(vm.name, vm.ssh, f"vms[{i}]", environ)
            except SpecError as exc:
                issues.extend(exc.issues)
    if vcenter is None:
        raise SpecError(issues, stack.name)
    return _raise_or(issues, Connections(vcenter=vcenter, hosts=hosts, guests=guests, lab_dir=None), stack.name)


def _raise_or(issues: list[SpecIssue], conns: Connections, source: str | None = None) -> Connections:
    if issues:
        raise SpecError(issues, source)
    return conns
