"""What every step is: ``check`` (read-only, from the facts: already as wanted?), ``apply`` (make it so),
then the host runner re-reads the facts and the same ``check`` is the assertion.

A step whose change only takes effect at the next boot says so (``Check.reboot``); one that cannot be applied
yet (MIG needs the NVIDIA driver loaded) says ``Check.deferred`` and is applied after the reboot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from gpufleet.errors import GpufleetError
from gpufleet.hosts.model import Desired, HostFacts
from gpufleet.hosts.vcenter import HostApi
from gpufleet.remote.ssh import Runner
from gpufleet.spec.models import RolloutPolicy


class StepFailed(GpufleetError):
    """A step could not reach its wanted state; the message says what is and what was wanted."""


@dataclass(frozen=True)
class Check:
    needed: bool
    detail: str
    reboot: bool = False  # the change takes effect at the next reboot
    deferred: bool = False  # cannot be applied yet (e.g. MIG before the driver is loaded): after the reboot
    refused: str | None = None  # must not be applied at all (e.g. a downgrade): the host fails, untouched

    @classmethod
    def ok(cls, detail: str) -> Check:
        return cls(False, detail)


@dataclass
class StepContext:
    """Everything a step's apply may use."""

    desired: Desired
    runner: Runner
    api: HostApi
    policy: RolloutPolicy
    local_bundle: Path | None = None  # the local driver bundle to upload when the host lacks it
    install_timeout: float = 900.0
    note: Callable[[str], None] = field(default=lambda message: None)  # progress for people


class Step(Protocol):
    name: str

    def check(self, desired: Desired, facts: HostFacts) -> Check: ...

    def apply(self, ctx: StepContext, facts: HostFacts) -> str:
        """Make the change; return what was done (one line)."""
        ...
