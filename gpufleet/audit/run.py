"""Run one audit of a stack: resolve connections, read vCenter and the hosts (at the same time), diff.

    result = audit_stack(load_stack("stacks/Pulumi.lab.yaml"))
    result.exit_code      # 0 in sync, 2 drift, 1 could not audit (result.unreachable says what)

Bad input (unknown stack keys, lab not running, a secret variable unset) raises ``SpecError`` before anything
connects. An unreachable vCenter or host does not stop the audit: it is recorded and the rest is compared.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from gpufleet.audit.desired import desired_state
from gpufleet.audit.diff import diff
from gpufleet.audit.findings import Collector, order
from gpufleet.audit.guest_state import guest_findings, guest_targets, read_guests
from gpufleet.audit.host_state import DEFAULT_PARALLEL, HostTarget, read_hosts
from gpufleet.audit.result import AuditResult
from gpufleet.audit.state import HostSshState, Unreachable, VcenterState
from gpufleet.audit.vcenter_state import DEFAULT_PAGE_SIZE, read_vcenter_state
from gpufleet.connections import Connections, resolve_connections, stack_environ
from gpufleet.errors import ConnectError
from gpufleet.hosts.model import Desired
from gpufleet.spec.stack import Stack
from gpufleet.vsphere.connect import connect


def host_targets(stack: Stack, conns: Connections) -> dict[str, HostTarget]:
    fleet = stack.fleet
    return {
        host.name: HostTarget(name=host.name, ssh=conns.host(host.name), desired=Desired.of(fleet, host))
        for host in fleet.hosts
    }


def _read_vcenter(conns: Connections, datacenter: str, page_size: int) -> VcenterState | Unreachable:
    try:
        with connect(conns.vcenter) as si:
            return read_vcenter_state(si.RetrieveContent(), datacenter, page_size=page_size)
    except ConnectError as exc:  # unreachable, TLS refused, login refused, datacenter missing
        return Unreachable(target="vcenter", reason=str(exc), kind="vcenter")


def audit_stack(
    stack: Stack,
    *,
    environ: Mapping[str, str] | None = None,
    ssh_parallel: int = DEFAULT_PARALLEL,
    page_size: int = DEFAULT_PAGE_SIZE,
    read_ssh: bool = True,
) -> AuditResult:
    """Audit ``stack``: desired (from the spec) vs actual (vCenter + hosts over SSH)."""
    env = os.environ if environ is None else environ
    started = datetime.now(UTC)
    conns = resolve_connections(stack, env)
    desired = desired_state(stack.fleet, stack_environ(stack, env))  # a lab stack: the lab's generated licence key
    targets = host_targets(stack, conns) if read_ssh else {}
    timings: dict[str, float] = {}
    unreachable: list[Unreachable] = []

    def timed_ssh() -> tuple[dict[str, HostSshState], list[Unreachable]]:
        t0 = time.perf_counter()
        try:
            return read_hosts(targets, parallel=ssh_parallel)
        finally:
            timings["ssh"] = time.perf_counter() - t0

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-hosts") as pool:
        ssh_future = pool.submit(timed_ssh)
        t0 = time.perf_counter()
        vc = _read_vcenter(conns, stack.fleet.datacenter, page_size)
        timings["vcenter"] = time.perf_counter() - t0
        ssh_states, ssh_unreachable = ssh_future.result()
    vcenter: VcenterState | None = None
    if isinstance(vc, Unreachable):
        unreachable.append(vc)
    else:
        vcenter = vc
    unreachable.extend(sorted(ssh_unreachable, key=lambda u: u.target))
    guests: dict = {}
    if read_ssh and vcenter is not None:
        # Only running VMs have a guest to read (a powered-off VM's guest is not drift).
        wanted = guest_targets(stack.fleet)
        running = {n: d for n, d in wanted.items() if n in vcenter.vms and vcenter.vms[n].power_state == "poweredOn"}
        t0 = time.perf_counter()
        guests, guest_unreachable = read_guests(running, conns, parallel=ssh_parallel)
        timings["guests"] = time.perf_counter() - t0
        unreachable.extend(sorted(guest_unreachable, key=lambda u: u.target))
    t0 = time.perf_counter()
    findings, objects = diff(desired, vcenter, ssh_states)
    extra = Collector()
    guest_findings(extra, guests)
    findings = sorted([*findings, *extra.findings], key=order)
    objects = [*objects, *extra.objects]
    timings["diff"] = time.perf_counter() - t0
    return AuditResult(
        stack=stack.name,
        datacenter=stack.fleet.datacenter,
        started_at=started,
        desired=desired,
        vcenter=vcenter,
        ssh=ssh_states,
        guests={n: g.facts.to_json() for n, g in guests.items()},
        unreachable=unreachable,
        findings=findings,
        objects=objects,
        timings=timings,
    )
