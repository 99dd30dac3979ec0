"""What every step is: ``compare`` (the one desired-vs-actual rule of its settings, as ``Difference`` rows),
``check`` (derived from ``compare``, on the facts: already as wanted?), ``apply`` (make it so); then the host runner
re-reads the facts and the same ``check`` is the assertion. The audit's host diff (``gpufleet.audit.diff_hosts``)
and verify's ESXi checks (``gpufleet.checks.test_esxi_hosts``) call the same ``compare`` through ``STEPS``, on a
``HostView`` of what they read, so the three never disagree about what "as wanted" means.

A step whose change only takes effect at the next boot says so (``Check.reboot``); one that cannot be applied
yet (MIG needs the NVIDIA driver loaded) says ``Check.deferred`` and is applied after the reboot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from gpufleet.errors import GpufleetError
from gpufleet.hosts.model import Desired, HostFacts, SshHostFacts
from gpufleet.hosts.vcenter import HostApi
from gpufleet.readers.esxcli import GraphicsHost, KernelSetting
from gpufleet.readers.mlxconfig import NicAts
from gpufleet.readers.nvidia_smi import SmiReport
from gpufleet.remote.ssh import Runner
from gpufleet.spec.graphics import ESXCLI_ASSIGNMENT_POLICIES, ESXCLI_GRAPHICS_TYPES
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


@dataclass(frozen=True)
class GpuView:
    """One GPU's MIG mode. Wanted side: ``mig`` is the mode wanted (None: the board has no MIG, nothing to compare).
    Read side: ``mig`` in effect now, ``mig_next`` after the next boot (None: not read / no MIG)."""

    mig: bool | None = None
    mig_next: bool | None = None


@dataclass(frozen=True)
class HostView:
    """The settings host steps own, in the spec's vocabulary, one shape for what is wanted and what is read (from
    the host's facts, the audit's vCenter + SSH state, or verify's readers). None: not wanted (wanted side) or not
    read (read side): nothing to compare. ``driver`` "" on the read side: no NVIDIA driver installed."""

    graphics_type: str | None = None  # shared | sharedDirect
    assignment_policy: str | None = None  # performance | consolidation
    driver: str | None = None  # host driver version (boot bank)
    ats: bool | None = None  # ATS in effect (kernel atsSupport and every ATS NIC's ATS_ENABLED)
    ats_next: bool | None = None  # ATS after the next boot
    gpus: Mapping[str, GpuView] = field(default_factory=dict)  # PCI address -> MIG mode

    @classmethod
    def wanted(cls, desired: Desired) -> HostView:
        return cls(
            graphics_type=_SPEC_GRAPHICS_TYPES[desired.graphics_type.lower()],
            assignment_policy=_SPEC_ASSIGNMENT_POLICIES[desired.assignment_policy.lower()],
            driver=desired.driver.version if desired.driver else None,
            ats=True if desired.ats_nics else None,
            gpus={pci: GpuView(mig=on) for pci, on in desired.mig.items()},
        )

    @classmethod
    def of_facts(cls, desired: Desired, facts: SshHostFacts) -> HostView:
        return cls.read(desired, facts.driver_installed, facts.smi, facts.graphics, facts.ats_kernel, facts.nic_ats)

    @classmethod
    def read(
        cls,
        desired: Desired,
        installed: str | None,
        smi: SmiReport | None,
        graphics: GraphicsHost | None,
        ats_kernel: KernelSetting | None,
        nic_ats: Mapping[str, NicAts],
    ) -> HostView:
        """From the host's own readers (esxcli, nvidia-smi, mlxconfig): host preparation's facts and verify's
        checks. ``graphics`` None: not read; ATS is compared only where the spec wants it and every such NIC was read."""
        ats = ats_next = None
        if desired.ats_nics and all(pci in nic_ats for pci in desired.ats_nics):
            nics = [nic_ats[pci] for pci in desired.ats_nics]
            ats = bool(ats_kernel and ats_kernel.runtime_on) and all(n.current for n in nics)
            ats_next = bool(ats_kernel and ats_kernel.configured_on) and all(n.next_boot for n in nics)
        gpus = (
            {g.pci: GpuView(mig=_enabled(g.mig_current), mig_next=_enabled(g.mig_pending)) for g in smi.gpus}
            if smi
            else {}
        )
        graphics_type = policy = None
        if graphics is not None:  # esxcli spells them its own way (and in any case): back to the spec's words
            graphics_type = _SPEC_GRAPHICS_TYPES.get(graphics.default_type.lower(), graphics.default_type)
            policy = _SPEC_ASSIGNMENT_POLICIES.get(graphics.assignment_policy.lower(), graphics.assignment_policy)
        return cls(
            graphics_type=graphics_type,
            assignment_policy=policy,
            driver=installed or "",
            ats=ats,
            ats_next=ats_next,
            gpus=gpus,
        )


_SPEC_GRAPHICS_TYPES = {v.lower(): k for k, v in ESXCLI_GRAPHICS_TYPES.items()}
_SPEC_ASSIGNMENT_POLICIES = {v.lower(): k for k, v in ESXCLI_ASSIGNMENT_POLICIES.items()}


def _enabled(mode: str) -> bool | None:
    """nvidia-smi's MIG mode word: Enabled / Disabled; "" or N/A: no MIG on this board (or not pending)."""
    return None if mode in ("", "N/A") else mode == "Enabled"


@dataclass(frozen=True)
class Difference:
    """One setting not as wanted: the audit's finding, verify's failure and the step's reason to act."""

    path: str  # under hosts/<name>/: "graphics/defaultType", "gpus/0000:3b:00.0/migMode"
    desired: str
    actual: str
    detail: str  # one line, without the host name: "<host> <detail>" reads as a sentence
    kind: str  # the audit finding's stable kind, e.g. "host.graphics_type"
    warning: bool = False  # drift that does not break the spec yet
    pending: bool = False  # the next boot brings it as wanted: a reboot fixes it, the step has nothing to do
    hint: str = ""  # appended to the hint of the verb that converges it


class Step(Protocol):
    name: str

    def compare(self, want: HostView, have: HostView) -> list[Difference]:
        """The one desired-vs-actual rule of this step's settings."""
        ...

    def check(self, desired: Desired, facts: HostFacts) -> Check: ...

    def apply(self, ctx: StepContext, facts: HostFacts) -> str:
        """Make the change; return what was done (one line)."""
        ...
