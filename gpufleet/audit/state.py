"""Actual state as the audit reads it: plain, typed, JSON-friendly dataclasses.

Two faces: what vCenter shows (``VcenterState``, read in one paged PropertyCollector retrieval) and what each host
shows over SSH (``HostSshState``: driver, MIG mode, ATS, nvidia-smi health, pending reboot). The diff compares them
with the desired state derived from the spec; the reports draw them. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gpufleet.readers.nvidia_smi import GpuInstance  # re-exported: the audit's state of a MIG GPU instance
from gpufleet.vsphere.vm_devices import VmDeviceState

NVIDIA_VENDOR_ID = 0x10DE
MELLANOX_VENDOR_ID = 0x15B3


def normalize_pci(address: str) -> str:
    """vSphere writes PCI ids as ``0000:3b:00.0`` or ``3b:00.0`` (and sometimes upper case); the spec uses the
    long lower-case form."""
    address = address.strip().lower()
    return address if address.count(":") == 2 else f"0000:{address}"


@dataclass(frozen=True)
class PciDevice:
    """One PCI function of a host (``hardware.pciDevice``), kept for NVIDIA GPUs and Mellanox NICs only."""

    pci: str
    vendor_id: int
    device_id: int
    name: str
    graphics_type: str | None = None  # per-GPU graphics type (config.graphicsInfo / graphicsConfig.deviceType)
    passthrough_enabled: bool | None = None  # config.pciPassthruInfo
    vms: tuple[str, ...] = ()  # VMs vSphere shows on this GPU (config.graphicsInfo[].vm)

    @property
    def is_gpu(self) -> bool:
        return self.vendor_id == NVIDIA_VENDOR_ID

    @property
    def is_mellanox(self) -> bool:
        return self.vendor_id == MELLANOX_VENDOR_ID


@dataclass(frozen=True)
class LicenseState:
    """The licence vCenter assigned to a host. The key is a secret and is never kept: only the masked form the
    vSphere Client shows (``*****-*****-*****-*****-ABCDE``) and a digest to compare keys with."""

    name: str  # edition, e.g. "Evaluation Mode", "vSphere 8 Enterprise Plus"
    key_fingerprint: str  # "*****-*****-*****-*****-ABCDE" (gpufleet.vsphere.licenses.key_fingerprint)
    key_digest: str  # "sha256:1a2b3c4d5e6f" of the whole key: equality without the key
    evaluation: bool


@dataclass(frozen=True)
class HostVcState:
    """A HostSystem as vCenter shows it."""

    name: str
    moid: str
    cluster: str | None
    connection_state: str  # connected | disconnected | notResponding
    in_maintenance: bool
    power_state: str | None
    default_graphics_type: str | None  # config.graphicsConfig.hostDefaultGraphicsType
    assignment_policy: str | None  # config.graphicsConfig.sharedPassthruAssignmentPolicy
    devices: tuple[PciDevice, ...] = ()
    profiles_offered: tuple[str, ...] = ()  # config.sharedPassthruGpuTypes
    license: LicenseState | None = None

    def device(self, pci: str) -> PciDevice | None:
        return next((d for d in self.devices if d.pci == pci), None)

    @property
    def gpus(self) -> tuple[PciDevice, ...]:
        return tuple(d for d in self.devices if d.is_gpu)


@dataclass(frozen=True)
class NicDevice:
    """A virtual NIC: its type (``vmxnet3``, ``vmxnet3vrdma``, ``sriov``...) and network."""

    key: int
    type: str
    network: str | None = None


@dataclass(frozen=True)
class VmVcState:
    """A VirtualMachine as vCenter shows it, reduced to what the GPU audit compares. Its GPU/RDMA devices are
    ``gpufleet.vsphere.vm_devices.VmDeviceState`` (the same typed state ``vms apply`` converges); on top of that the
    audit keeps every NIC, the firmware and every ``pciPassthru*`` / ``numa.*`` extraConfig key, declared or not."""

    name: str
    moid: str
    template: bool
    firmware: str | None
    devices: VmDeviceState
    nics: tuple[NicDevice, ...] = ()
    extra_config: dict[str, str] = field(default_factory=dict)  # every pciPassthru* and numa.* key

    @property
    def host(self) -> str | None:
        return self.devices.host

    @property
    def power_state(self) -> str:
        return self.devices.power_state

    @property
    def has_gpu(self) -> bool:
        d = self.devices
        nic_ids = {MELLANOX_VENDOR_ID}
        return (
            bool(d.vgpus)
            or any(p.vendor_id not in nic_ids for p in d.directpath)
            or any(p.vendor_id not in nic_ids for p in d.dynamic)
        )


@dataclass(frozen=True)
class VcenterState:
    """Everything the audit needs from vCenter, and how it was read."""

    hosts: dict[str, HostVcState]
    vms: dict[str, VmVcState]
    round_trips: int = 0
    pages: int = 0


@dataclass(frozen=True)
class GpuSshState:
    """One GPU as the host's nvidia-smi shows it."""

    pci: str
    name: str | None = None
    mig_current: bool | None = None
    mig_pending: bool | None = None
    instances: tuple[GpuInstance, ...] = ()
    healthy: bool = True
    detail: str | None = None  # why it is unhealthy


@dataclass(frozen=True)
class HostSshState:
    """What a host shows over SSH."""

    name: str
    driver_version: str | None  # NVIDIA host driver (component or VIB) version, e.g. "550.90.05"; None = none
    driver_package: str | None  # its name, e.g. "NVD-AIE-800"
    reboot_pending: bool
    ats_enabled: bool | None  # atsSupport running and ATS_ENABLED current on every ATS NIC; None: not needed
    nvidia_smi_ok: bool
    gpus: tuple[GpuSshState, ...] = ()
    reboot_reasons: tuple[str, ...] = ()  # host preparation's reasons (driver not loaded, MIG pending, ATS...)

    def gpu(self, pci: str) -> GpuSshState | None:
        return next((g for g in self.gpus if g.pci == pci), None)


@dataclass(frozen=True)
class Unreachable:
    """A peer the audit could not read: who, and why (the error message, no secrets)."""

    target: str  # "vcenter", a host name or a VM name (its guest)
    reason: str
    kind: Literal["vcenter", "host", "guest"] = "host"
