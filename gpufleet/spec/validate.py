"""``validate_fleet(fleet)``: every rule that needs hardware knowledge, as a list of ``SpecIssue`` (path, why,
valid values). ``validated(stack)`` raises ``SpecError`` with all of them. Shape rules live in the models.

Rules: names unique; GPU boards known and their modes supported (MIG, mixed-size, NVLink peers); hosts with
vGPU/MIG GPUs use Shared Direct and have a driver; each vGPU profile exists for a GPU of the VM's host (or the
fleet) in the matching mode — MIG-backed and time-sliced never share a GPU, passed-through GPUs are never
shared; several vGPUs per VM only as NVIDIA allows (one board and series, Q only full-framebuffer, one GPU
each, P2P only full-framebuffer C-series on NVLink peers); passthrough GPUs and NICs exclusive; Dynamic
DirectPath needs vmx-17; PVRDMA needs vmx-13 and a 64-bit Linux guest; GPU VMs need a 64-bit guest, reserved
memory, EFI when 64-bit MMIO is needed and an MMIO size that is a power of two and large enough; vGPUs pinned
to a GPU respect its per-GPU maximum, equal sizes (unless mixed-size) and the MIG placement geometry (exact
search over start slots); GPU pools (Bitfusion): servers export passthrough GPUs of their host passed through
to them and to no one else, clients have no GPUs of their own, data paths declared and on a routable network.
"""

from __future__ import annotations

from gpufleet.errors import SpecError, SpecIssue
from gpufleet.spec.issues import with_names
from gpufleet.spec.models import Fleet
from gpufleet.spec.rules.capacity import check_pinned_capacity
from gpufleet.spec.rules.context import Context
from gpufleet.spec.rules.guest_driver import check_guest_drivers
from gpufleet.spec.rules.hosts import check_hosts, check_names
from gpufleet.spec.rules.pools import check_pools
from gpufleet.spec.rules.vms import VmRules
from gpufleet.spec.stack import FLEET_KEY, Stack

__all__ = ["stack_issues", "validate_fleet", "validated"]


def validate_fleet(fleet: Fleet) -> list[SpecIssue]:
    """Every hardware-rule violation of the fleet (empty: valid). Never raises on a shape-valid fleet."""
    ctx = Context.build(fleet)
    check_names(ctx)
    check_hosts(ctx)
    pinned = VmRules(ctx).run()
    check_pinned_capacity(ctx, pinned)
    check_guest_drivers(ctx)
    check_pools(ctx)
    return ctx.issues


def stack_issues(stack: Stack, issues: list[SpecIssue] | None = None) -> list[SpecIssue]:
    """The hardware-rule issues of a loaded stack (or ``issues`` found on it) as people read them: named paths
    (``vms[vm-mig-01].vgpu[0]``), the index form beside them."""
    found = validate_fleet(stack.fleet) if issues is None else issues
    return with_names(found, stack.config.get(FLEET_KEY))


def validated(stack: Stack) -> Stack:
    """The stack itself when its fleet is valid; otherwise ``SpecError`` listing every issue."""
    issues = stack_issues(stack)
    if issues:
        raise SpecError(issues, str(stack.path) if stack.path else stack.name)
    return stack
