"""Host preparation steps, one module each, applied in this order: driver, graphics, MIG, ATS; then one
reboot for everything pending (``reboot``), then ``verify``. Maintenance mode wraps them (``gpufleet.hosts.prepare``).
"""

from __future__ import annotations

from gpufleet.hosts.steps.ats import AtsStep
from gpufleet.hosts.steps.base import Check, Step, StepContext, StepFailed
from gpufleet.hosts.steps.driver import DriverStep
from gpufleet.hosts.steps.graphics import GraphicsStep
from gpufleet.hosts.steps.mig import MigStep

STEPS: tuple[Step, ...] = (DriverStep(), GraphicsStep(), MigStep(), AtsStep())
"""The configuration steps, in the order they are applied."""

__all__ = ["STEPS", "AtsStep", "Check", "DriverStep", "GraphicsStep", "MigStep", "Step", "StepContext", "StepFailed"]
