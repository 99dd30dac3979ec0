"""Read the guest side of the stack's GPU VMs over SSH (host keys verified), read-only: the NVIDIA stack of each
running VM with a ``guest:`` block (``gpufleet.guest.facts``, the same reader as ``guests prepare``), compared
by ``gpufleet.guest.facts.guest_drift`` (driver and its branch vs the host, Container Toolkit, Docker runtime).

A powered-off VM has no guest to read: it is not read and not drift of its guest. A running guest that cannot be
reached is ``Unreachable`` (kind ``guest``) with the reason; the others are still read.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass

from gpufleet.audit.findings import AuditedObject, Collector, Severity
from gpufleet.audit.state import Unreachable
from gpufleet.connections import Connections
from gpufleet.errors import GpufleetError
from gpufleet.guest.facts import GuestFacts, guest_drift, read_guest_facts
from gpufleet.remote.ssh import SshRunner
from gpufleet.spec.guest_desired import GuestDesired, guest_desired
from gpufleet.spec.models import Fleet

HINT_GUEST = "gpufleet guests prepare STACK --vm {vm} (Pulumi: GuestPreparation)"


@dataclass(frozen=True)
class GuestAudit:
    desired: GuestDesired
    facts: GuestFacts


def guest_targets(fleet: Fleet) -> dict[str, GuestDesired]:
    return {vm.name: d for vm in fleet.vms if (d := guest_desired(fleet, vm)) is not None}


def read_guests(
    targets: Mapping[str, GuestDesired], conns: Connections, parallel: int = 8
) -> tuple[dict[str, GuestAudit], list[Unreachable]]:
    def one(name: str) -> GuestAudit | Unreachable:
        try:
            with closing(SshRunner(conns.guest(name))) as runner:
                return GuestAudit(targets[name], read_guest_facts(runner))
        except GpufleetError as exc:  # no SSH settings, refused host key, login, timeout
            return Unreachable(target=name, reason=str(exc), kind="guest")

    if not targets:
        return {}, []
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(targets))), thread_name_prefix="audit-guests") as pool:
        results = dict(zip(targets, pool.map(one, targets), strict=True))
    read = {n: r for n, r in results.items() if isinstance(r, GuestAudit)}
    return read, [r for r in results.values() if isinstance(r, Unreachable)]


def guest_findings(c: Collector, guests: Mapping[str, GuestAudit]) -> None:
    for name, g in guests.items():
        obj = f"vms/{name}"
        c.objects.append(AuditedObject("guest", f"{obj}/guest", f"{name} guest"))
        for drift in guest_drift(g.desired, g.facts):
            c.add(
                obj,
                f"guest.{drift.field}",
                f"{obj}/guest/{drift.field}",
                drift.desired,
                drift.actual,
                Severity.ERROR,
                HINT_GUEST.format(vm=name),
                f"{name}: {drift.message} ({g.desired.where} wants {drift.desired})",
            )
