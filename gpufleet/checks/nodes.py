"""The nodes a check run covers: every ESXi host and VM of a stack (with what the spec expects of each), or the
hosts given with testinfra's ``--hosts`` (matched to the stack's nodes by name), each with a testinfra host that
connects on first use."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import testinfra.host

from gpufleet.checks.backend import (
    OPENSSH_SCHEMES,
    Sh,
    TestinfraRunner,
    local_host,
    openssh_host,
    refuse_unverified_openssh,
    run,
    settings_from_hostspec,
    ssh_host,
)
from gpufleet.checks.expect import GuestExpect, guest_expect, host_expect
from gpufleet.connections import SshSettings, resolve_connections, ssh_from_spec
from gpufleet.errors import ConnectError, SpecError, SpecIssue
from gpufleet.hosts.model import Desired
from gpufleet.spec.models import Fleet
from gpufleet.spec.stack import Stack, load_stack

T = TypeVar("T")
ESXI, GUEST = "esxi", "guest"


@dataclass
class Node:
    """One ESXi host or guest to check."""

    name: str
    kind: str  # "esxi" | "guest" | "any" (a --hosts node without a stack: the checks find out)
    settings: SshSettings | None = None  # how to reach it over SSH
    hostspec: str | None = None  # a testinfra hostspec (local://, ssh://...) used instead of settings
    desired: Desired | None = None  # ESXi expectations
    expect: GuestExpect | None = None  # guest expectations
    unreachable: str | None = None  # why this node cannot be reached (checks skip with this reason)
    ssh_config: str | None = None  # testinfra's --ssh-config / --ssh-identity-file, for an ssh:// hostspec
    ssh_identity_file: str | None = None
    _host: testinfra.host.Host | None = field(default=None, repr=False)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)
    _runner: TestinfraRunner | None = field(default=None, repr=False)

    def host(self) -> testinfra.host.Host:
        """The testinfra host (connected on first use; host keys verified)."""
        if self._host is None:
            if self.hostspec is not None and self.hostspec.startswith("local://"):
                self._host = local_host()
            elif self.hostspec is not None and self.hostspec.startswith(OPENSSH_SCHEMES):
                self._host = openssh_host(self.hostspec, self.ssh_config, self.ssh_identity_file)
            elif self.hostspec is not None and not self.hostspec.startswith("paramiko://"):
                self._host = testinfra.get_host(self.hostspec)
            elif self.settings is not None:
                self._host = ssh_host(self.settings)
            else:
                raise RuntimeError(f"{self.name}: no way to reach this node ({self.unreachable})")
        return self._host

    def sh(self, *argv: str) -> Sh:
        """Run a command (arguments quoted) and keep the result for failure messages."""
        return run(self.host(), argv)

    def cached(self, key: str, read: Callable[[], T]) -> T:
        """Read a fact once per run (several checks look at the same nvidia-smi output)."""
        if key not in self._memo:
            self._memo[key] = read()
        return self._memo[key]

    def runner(self) -> TestinfraRunner:
        """gpufleet.remote's Runner over this node's testinfra host (for the esxcli / nvidia-smi readers)."""
        if self._runner is None:
            self._runner = TestinfraRunner(self.name, self.host())
        return self._runner

    def kernel(self) -> str:
        """``uname -s``: Linux on guests, VMkernel on ESXi. ConnectError when the node does not answer: exit 255 is
        ssh's own failure (a refused or dropped connection, e.g. a powered-off VM), not uname's."""

        def read() -> str:
            sh = self.sh("uname", "-s")
            if sh.rc == 255:
                reason = sh.stderr.strip() or sh.stdout.strip() or "exit 255"
                raise ConnectError(f"{self.name} is unreachable over SSH: {reason}")
            return sh.stdout.strip()

        return self.cached("uname-s", read)


def stack_ssh_settings(stack: Stack) -> tuple[dict[str, SshSettings], dict[str, SshSettings]]:
    """SSH settings of the stack's hosts and guests. The checks need no vCenter, so a non-lab stack is read
    from its ssh: blocks only (no vCenter password needed)."""
    if stack.vcenter.lab:
        conns = resolve_connections(stack)
        return dict(conns.hosts), dict(conns.guests)
    issues: list[SpecIssue] = []
    hosts: dict[str, SshSettings] = {}
    guests: dict[str, SshSettings] = {}
    for i, host in enumerate(stack.fleet.hosts):
        if host.ssh is not None:
            try:
                hosts[host.name] = ssh_from_spec(host.name, host.ssh, f"hosts[{i}]")
            except SpecError as exc:
                issues.extend(exc.issues)
    for i, vm in enumerate(stack.fleet.vms):
        if vm.ssh is not None:
            try:
                guests[vm.name] = ssh_from_spec(vm.name, vm.ssh, f"vms[{i}]")
            except SpecError as exc:
                issues.extend(exc.issues)
    if issues:
        raise SpecError(issues, stack.name)
    return hosts, guests


def _hostspec_name(hostspec: str) -> str:
    url = urllib.parse.urlparse(hostspec if "://" in hostspec else f"paramiko://{hostspec}")
    return url.hostname or url.netloc or "local"


def nodes_from_stack(fleet: Fleet, hosts: dict[str, SshSettings], guests: dict[str, SshSettings]) -> list[Node]:
    nodes: list[Node] = []
    for host in fleet.hosts:
        nodes.append(
            Node(
                name=host.name,
                kind=ESXI,
                settings=hosts.get(host.name),
                desired=host_expect(fleet, host.name),
                unreachable=None if host.name in hosts else f"no SSH settings for host {host.name} (hosts[].ssh)",
            )
        )
    for vm in fleet.vms:
        nodes.append(
            Node(
                name=vm.name,
                kind=GUEST,
                settings=guests.get(vm.name),
                expect=guest_expect(fleet, vm),
                unreachable=None
                if vm.name in guests
                else f"no SSH settings for VM {vm.name} (vms[].ssh, or a lab guest)",
            )
        )
    return nodes


def build_nodes(
    stack_path: str | None,
    hostspecs: list[str] | None = None,
    only: list[str] | None = None,
    ssh_config: str | None = None,
    ssh_identity_file: str | None = None,
) -> list[Node]:
    """The nodes of a run: from ``--stack`` (with ``--hosts`` overriding how named nodes are reached), or from
    ``--hosts`` alone (no expectations: only the checks that need none run). ``only`` keeps the named nodes."""
    nodes: list[Node] = []
    if stack_path:
        stack = load_stack(stack_path)
        if hostspecs:
            # testinfra's --hosts says how to reach the nodes; no stack connection settings are needed.
            nodes = nodes_from_stack(stack.fleet, {}, {})
        else:
            hosts, guests = stack_ssh_settings(stack)
            nodes = nodes_from_stack(stack.fleet, hosts, guests)
    by_name = {n.name: n for n in nodes}
    for spec in hostspecs or []:
        name = _hostspec_name(spec)
        node = by_name.get(name)
        if stack_path and node is None:
            raise SpecError(
                [SpecIssue(f"--hosts {spec}", f"{name!r} is not a host or VM of the stack", tuple(by_name))]
            )
        if node is None:
            node = Node(name=name, kind="any")
            nodes.append(node)
            by_name[name] = node
        node.unreachable = None
        if spec.startswith("paramiko://") or "://" not in spec:
            node.settings = settings_from_hostspec(spec, ssh_config, ssh_identity_file)
            node.hostspec = None
        else:
            if spec.startswith(OPENSSH_SCHEMES):
                refuse_unverified_openssh(spec, ssh_config, ssh_identity_file)  # before any test runs
            node.hostspec = spec
            node.ssh_config, node.ssh_identity_file = ssh_config, ssh_identity_file
    if hostspecs and stack_path:
        named = {_hostspec_name(s) for s in hostspecs}
        nodes = [n for n in nodes if n.name in named]
    if only:
        unknown = [o for o in only if o not in by_name]
        if unknown:
            raise SpecError([SpecIssue("--gpufleet-node", f"unknown node(s) {', '.join(unknown)}", tuple(by_name))])
        nodes = [n for n in nodes if n.name in only]
    return nodes
