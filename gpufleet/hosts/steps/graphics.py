"""Host graphics: the default graphics type (``SharedPassthru`` = "Shared Direct", needed for vGPU) and the
shared passthrough assignment policy. Effective after the host's reboot, or after restarting xorg when this
run does not reboot the host (``restart_xorg``)."""

from __future__ import annotations

from gpufleet.hosts.model import Desired, HostFacts
from gpufleet.hosts.steps.base import Check, Difference, HostView, StepContext
from gpufleet.readers import esxcli


class GraphicsStep:
    name = "graphics"

    def compare(self, want: HostView, have: HostView) -> list[Difference]:
        out = []
        if want.graphics_type and have.graphics_type is not None and have.graphics_type != want.graphics_type:
            out.append(
                Difference(
                    "graphics/defaultType",
                    want.graphics_type,
                    have.graphics_type,
                    f"default graphics type is not {want.graphics_type}",
                    "host.graphics_type",
                )
            )
        policy = want.assignment_policy
        if policy and have.assignment_policy is not None and have.assignment_policy != policy:
            out.append(
                Difference(
                    "graphics/assignmentPolicy",
                    policy,
                    have.assignment_policy,
                    f"places vGPUs by {have.assignment_policy}, not {policy}",
                    "host.assignment_policy",
                    warning=True,
                )
            )
        return out

    def check(self, desired: Desired, facts: HostFacts) -> Check:
        g = facts.graphics
        if not self.compare(HostView.wanted(desired), HostView.of_facts(desired, facts)):
            return Check.ok(f"default type {g.default_type}, policy {g.assignment_policy}")
        return Check(
            True, f"{g.default_type}/{g.assignment_policy} -> {desired.graphics_type}/{desired.assignment_policy}"
        )

    def apply(self, ctx: StepContext, facts: HostFacts) -> str:
        d = ctx.desired
        esxcli.set_graphics_host(ctx.runner, d.graphics_type, d.assignment_policy)
        return f"default type {d.graphics_type}, policy {d.assignment_policy}"


def restart_xorg(ctx: StepContext) -> str:
    """Make a graphics change effective without a reboot (VMware: ``/etc/init.d/xorg restart``)."""
    ctx.runner.run(["/etc/init.d/xorg", "restart"], timeout=120).check(ctx.runner.name)
    return "xorg restarted"
