"""Host preparation steps, one module each, applied in this order: driver, graphics, MIG, ATS; then one
reboot for everything pending (``reboot``), then ``verify``. Maintenance mode wraps them (``gpufleet.hosts.prepare``).
"""

from __future__ import annotations

from gpufleet.hosts.steps.ats import AtsStep
from gpufleet.hosts.steps.base import Check, Difference, GpuView, HostView, Step, StepContext, StepFailed
from gpufleet.hosts.steps.driver import DriverStep
from gpufleet.hosts.steps.graphics import GraphicsStep
from gpufleet.hosts.steps.mig import MigStep

STEPS: tuple[Step, ...] = (DriverStep(), GraphicsStep(), MigStep(), AtsStep())
"""The configuration steps, in the order they are applied."""


def compare_all(want: HostView, have: HostView) -> list[Difference]:
    """Every step's desired-vs-actual comparison, in step order: the audit's host diff and verify's ESXi checks
    iterate this, so a new step's setting is audited and verified without naming it there."""
    return [d for step in STEPS for d in step.compare(want, have)]


__all__ = [
    "STEPS",
    "AtsStep",
    "Check",
    "Difference",
    "DriverStep",
    "GpuView",
    "GraphicsStep",
    "HostView",
    "MigStep",
    "Step",
    "StepContext",
    "StepFailed",
    "compare_all",
]
