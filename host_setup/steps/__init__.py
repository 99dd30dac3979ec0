"""Host preparation steps, one module each, applied in this order: driver, graphics, MIG, ATS; then one
reboot for everything pending (``reboot``), then ``verify``. Maintenance mode wraps them (``host_setup.prepare``).
"""

from __future__ import annotations

from host_setup.steps.ats import AtsStep
from host_setup.steps.base import Check, Step, StepContext, StepFailed
from host_setup.steps.driver import DriverStep
from host_setup.steps.graphics import GraphicsStep
from host_setup.steps.mig import MigStep

STEPS: tuple[Step, ...] = (DriverStep(), GraphicsStep(), MigStep(), AtsStep())
"""The configuration steps, in the order they are applied."""

__all__ = ["STEPS", "AtsStep", "Check", "DriverStep", "GraphicsStep", "MigStep", "Step", "StepContext", "StepFailed"]
