"""The data of host preparation: what a host should be (``Desired``), what it is (``HostFacts``), and what
happened (``StepReport``, ``HostReport``). Pure data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gpufleet.readers.esxcli import GraphicsHost, KernelSetting
from gpufleet.readers.mlxconfig import NicAts
from gpufleet.readers.nvidia_smi import SmiReport
from gpufleet.spec import derive
from gpufleet.spec.graphics import ESXCLI_ASSIGNMENT_POLICIES, ESXCLI_GRAPHICS_TYPES
from gpufleet.spec.models import DriverSpec, Fleet, HostSpec
from gpufleet.vms.desired import allow_power_cycle

ATS_KERNEL_SETTING = "atsSupport"


@dataclass(frozen=True)
class Desired:
    """What one host should look like, from the spec (and ``gpufleet.spec.derive``)."""

    name: str
    cluster: str
    driver: DriverSpec | None  # None: the host needs no vGPU driver (or none is configured): left alone
    graphics_type: str  # esxcli value: SharedPassthru | Shared
    assignment_policy: str  # Performance | Consolidation
    mig: dict[str, bool]  # PCI address -> MIG mode wanted
    gpu_models: dict[str, str]  # PCI address -> board
    ats_nics: tuple[str, ...]  # ConnectX PCI addresses that need ATS_ENABLED (and then atsSupport on the host)
    # The fleet's VMs gpufleet may power off when they cannot move off a host entering maintenance (allowPowerCycle)
    may_power_off: frozenset[str] = frozenset()

    @classmethod
    def of(cls, fleet: Fleet, host: HostSpec) -> Desired:
        driver = fleet.driver_for(host) if derive.host_needs_vgpu_driver(host) else None
        return cls(
            name=host.name,
            cluster=host.cluster or fleet.cluster,
            driver=driver,
            graphics_type=ESXCLI_GRAPHICS_TYPES[host.graphics_type],
            assignment_policy=ESXCLI_ASSIGNMENT_POLICIES[host.assignment_policy],
            mig=derive.host_mig_modes(host),
            gpu_models={gpu.pci: gpu.model for gpu in host.gpus},
            ats_nics=tuple(nic.pci for nic in host.nics if nic.ats),
            may_power_off=frozenset(vm.name for vm in fleet.vms if allow_power_cycle(fleet, vm)),
        )


@dataclass(frozen=True, kw_only=True)
class SshHostFacts:
    """What a host itself shows over SSH, read in one read-only round trip (``gpufleet.hosts.facts.gather_ssh``):
    host preparation, the audit and verify read the same."""

    driver_installed: str | None  # boot-bank NVIDIA driver version (component / VIB list)
    smi: SmiReport | None  # the running driver's view; None: nvidia-smi does not answer (driver not loaded)
    graphics: GraphicsHost
    ats_kernel: KernelSetting | None  # read only when the host needs ATS
    nic_ats: dict[str, NicAts] = field(default_factory=dict)
    bundle_on_host: bool | None = None  # is driver.bundle on the datastore (None: not asked)
    uptime: float | None = None  # seconds since boot (None: the host does not say)


@dataclass(frozen=True, kw_only=True)
class VcenterHostFacts:
    """What vCenter says of a host (``gpufleet.hosts.vcenter``)."""

    in_maintenance: bool
    marked: bool  # gpufleet put it in maintenance (custom attribute gpufleet.maintenance)
    connection_state: str
    cluster: str | None  # as vCenter shows it (None: a standalone host)


@dataclass(frozen=True, kw_only=True)
class HostFacts(SshHostFacts):
    """What host preparation reads of a host: its SSH facts and its vCenter record (no field is a placeholder)."""

    vcenter: VcenterHostFacts

    @property
    def in_maintenance(self) -> bool:
        return self.vcenter.in_maintenance

    @property
    def marked(self) -> bool:
        return self.vcenter.marked

    @property
    def connection_state(self) -> str:
        return self.vcenter.connection_state

    @property
    def cluster(self) -> str | None:
        return self.vcenter.cluster


class StepState(StrEnum):
    OK = "ok"  # already as wanted: nothing done
    NEEDED = "needed"  # dry run / plan: would change
    DONE = "done"  # changed in this run
    PENDING = "pending-reboot"  # changed, takes effect at the reboot of this run
    FAILED = "failed"
    SKIPPED = "skipped"  # not reached (an earlier step failed or the rollout stopped)


@dataclass
class StepReport:
    name: str
    state: StepState
    detail: str = ""
    seconds: float | None = None  # how long applying it took (None: not applied in this run)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "state": str(self.state), "detail": self.detail}
        if self.seconds is not None:
            out["seconds"] = round(self.seconds, 2)
        return out


@dataclass
class HostReport:
    """The outcome for one host: the ``hosts[]`` entry of ``gpufleet hosts prepare --json``."""

    name: str
    cluster: str
    steps: list[StepReport] = field(default_factory=list)
    error: dict[str, str] | None = None  # {"step": ..., "message": ...}
    in_maintenance: bool | None = None
    reboots: int = 0
    seconds: float = 0.0
    facts: HostFacts | None = field(default=None, repr=False, compare=False)  # the last read (not in the JSON)

    @property
    def changed(self) -> bool:
        return any(s.state in (StepState.DONE, StepState.PENDING) for s in self.steps) or self.reboots > 0

    @property
    def pending(self) -> bool:
        """Dry run: changes are needed."""
        return any(s.state == StepState.NEEDED for s in self.steps)

    def step(self, name: str, state: StepState, detail: str = "", seconds: float | None = None) -> StepReport:
        """Record (or update) the report of step ``name`` (durations of repeated applies add up)."""
        for existing in self.steps:
            if existing.name == name:
                existing.state, existing.detail = state, detail
                if seconds is not None:
                    existing.seconds = (existing.seconds or 0.0) + seconds
                return existing
        report = StepReport(name, state, detail, seconds)
        self.steps.append(report)
        return report

    def fail(self, step: str, message: str) -> None:
        self.error = {"step": step, "message": message}
        self.step(step, StepState.FAILED, message)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cluster": self.cluster,
            "changed": self.changed,
            "steps": [s.to_json() for s in self.steps],
            "error": self.error,
            "inMaintenance": self.in_maintenance,
            "reboots": self.reboots,
            "seconds": round(self.seconds, 2),
        }
