"""Host graphics: the default graphics type (``SharedPassthru`` = "Shared Direct", needed for vGPU) and the
shared passthrough assignment policy. Effective after the host's reboot, or after restarting xorg when this
run does not reboot the host (``restart_xorg``)."""

from __future__ import annotations

from gpufleet.hosts.model import Desired, HostFacts
from gpufleet.hosts.steps.base import Check, StepContext
from gpufleet.readers import esxcli


class GraphicsStep:
    name = "graphics"

    def check(self, desired: Desired, facts: HostFacts) -> Check:
        g = facts.graphics
        want = f"{desired.graphics_type}/{desired.assignment_policy}"
        have = f"{g.default_type}/{g.assignment_policy}"
        if have.lower() == want.lower():
            return Check.ok(f"default type {g.default_type}, policy {g.assignment_policy}")
        return Check(True, f"{have} -> {want}")

    def apply(self, ctx: StepContext, facts: HostFacts) -> str:
        d = ctx.desired
        esxcli.set_graphics_host(ctx.runner, d.graphics_type, d.assignment_policy)
        return f"default type {d.graphics_type}, policy {d.assignment_policy}"


def restart_xorg(ctx: StepContext) -> str:
    """Make a graphics change effective without a reboot (VMware: ``/etc/init.d/xorg restart``)."""
    ctx.runner.run(["/etc/init.d/xorg", "restart"], timeout=120).check(ctx.runner.name)
    return "xorg restarted"
