"""Maintenance mode through vCenter, with evacuation and a timeout (``gpufleet.vsphere.hosts``).

gpufleet notes on the host (vCenter custom attribute ``gpufleet.maintenance``) that it put it in maintenance,
before asking; it takes a host out of maintenance only with that note. So a host an operator put in
maintenance for other work stays there, and a host a failed run left in maintenance is finished and taken
out by the next run.
"""

from __future__ import annotations

import time

from gpufleet.hosts.model import HostFacts
from gpufleet.hosts.steps.base import StepContext


def enter(ctx: StepContext, facts: HostFacts) -> str:
    """Enter maintenance unless in it; returns what happened. Raises (e.g. EvacuationRefused) untouched."""
    name = ctx.desired.name
    if facts.in_maintenance:
        if facts.marked:
            return "already in maintenance (entered by an earlier gpufleet run)"
        return "already in maintenance (not entered by gpufleet: it stays in maintenance afterwards)"
    ctx.api.set_marker(name, f"entered by gpufleet hosts prepare at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}")
    try:
        moved = ctx.api.enter_maintenance(
            name,
            timeout=float(ctx.policy.maintenance_timeout_seconds),
            allow_vgpu_vmotion=bool(ctx.policy.vgpu_vmotion),
            may_power_off=ctx.desired.may_power_off,
        )
    except BaseException:
        ctx.api.set_marker(name, "")
        raise
    return "entered" + (f", moved {', '.join(moved)}" if moved else "")


def owned(ctx: StepContext) -> bool:
    """Did gpufleet put this host in maintenance (so it may take it out)?"""
    return bool(ctx.api.marker(ctx.desired.name))


def leave(ctx: StepContext) -> str:
    name = ctx.desired.name
    ctx.api.exit_maintenance(name, timeout=float(ctx.policy.maintenance_timeout_seconds))
    ctx.api.set_marker(name, "")
    return "exited"
