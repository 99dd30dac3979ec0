"""A VM's GPU and RDMA devices and GPU settings as a typed state, read from vCenter.

What gpufleet owns on a VM: every ``VirtualPCIPassthrough`` (vGPU with ``VmiopBackingInfo``, DirectPath I/O with
``DeviceBackingInfo`` — GPUs and passthrough ConnectX NICs —, Dynamic DirectPath with ``DynamicBackingInfo``), the
PVRDMA adapters (``VirtualVmxnet3Vrdma``: their RoCE protocol, and the adapters themselves when gpufleet added them)
and the GPU keys of ``extraConfig`` (``MANAGED_EXTRA_CONFIG``). Nothing else on the VM is read or touched.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pyVmomi import vim

from gpufleet.spec.derive import MANAGED_EXTRA_CONFIG_KEYS

# extraConfig keys gpufleet owns (computed by gpufleet.spec.derive). Per-device keys vSphere writes itself
# (pciPassthru0.id, .allowedDevices, ...) are not ours and never touched.
MANAGED_EXTRA_CONFIG: tuple[str, ...] = MANAGED_EXTRA_CONFIG_KEYS

POWERED_ON = "poweredOn"
POWERED_OFF = "poweredOff"
SUSPENDED = "suspended"


@dataclass(frozen=True)
class VgpuDevice:
    """A vGPU: ``VirtualPCIPassthrough`` with ``VmiopBackingInfo(vgpu=profile)``."""

    profile: str
    key: int | None = None


@dataclass(frozen=True)
class DirectPathDevice:
    """A whole PCI device by host address (DirectPath I/O): a GPU or a passthrough RDMA NIC."""

    id: str  # SBDF as vSphere writes it, normalised to lower case: 0000:3b:00.0
    vendor_id: int = 0
    device_id: int = 0
    key: int | None = None


@dataclass(frozen=True)
class DynamicDirectPathDevice:
    """Dynamic DirectPath I/O: any free device of ``vendor_id:device_id`` (optionally with a hardware label)."""

    vendor_id: int
    device_id: int
    label: str | None = None
    key: int | None = None

    @property
    def allowed(self) -> str:
        """``0x10de:0x20b5``, the VMX notation of ``pciPassthru<N>.allowedDevices``."""
        return f"0x{self.vendor_id:04x}:0x{self.device_id:04x}"


@dataclass(frozen=True)
class PvrdmaNic:
    """A PVRDMA adapter (``VirtualVmxnet3Vrdma``) and its RoCE protocol (``rocev1`` / ``rocev2`` / None)."""

    network: str | None
    protocol: str | None = None
    key: int | None = None
    mac: str | None = None


@dataclass(frozen=True)
class VmDeviceState:
    """What vCenter shows of one VM's GPU/RDMA devices and GPU settings."""

    vm: str
    power_state: str
    host: str | None
    hardware_version: int
    memory_reservation_locked: bool
    vgpus: tuple[VgpuDevice, ...] = ()
    directpath: tuple[DirectPathDevice, ...] = ()
    dynamic: tuple[DynamicDirectPathDevice, ...] = ()
    pvrdma: tuple[PvrdmaNic, ...] = ()
    extra_config: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, in a stable order (used as Pulumi outputs and in ``vms apply --json``)."""
        out = asdict(self)
        out["extra_config"] = dict(sorted(self.extra_config.items()))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VmDeviceState:
        """Inverse of ``to_dict`` (Pulumi hands the outputs back as plain dicts and lists)."""
        return cls(
            vm=data["vm"],
            power_state=data["power_state"],
            host=data.get("host"),
            hardware_version=int(data.get("hardware_version") or 0),
            memory_reservation_locked=bool(data.get("memory_reservation_locked")),
            vgpus=tuple(VgpuDevice(**_ints(d)) for d in data.get("vgpus") or ()),
            directpath=tuple(DirectPathDevice(**_ints(d)) for d in data.get("directpath") or ()),
            dynamic=tuple(DynamicDirectPathDevice(**_ints(d)) for d in data.get("dynamic") or ()),
            pvrdma=tuple(PvrdmaNic(**_ints(d)) for d in data.get("pvrdma") or ()),
            extra_config={str(k): str(v) for k, v in (data.get("extra_config") or {}).items()},
        )


def _ints(d: dict[str, Any]) -> dict[str, Any]:
    # Pulumi's wire format turns every number into a float; the device keys and ids are ints.
    return {k: int(v) if isinstance(v, float) else v for k, v in d.items()}


def hardware_version_of(version: str | None) -> int:
    """``vmx-19`` -> 19 (0 when unknown)."""
    if not version or not version.startswith("vmx-"):
        return 0
    try:
        return int(version.removeprefix("vmx-"))
    except ValueError:
        return 0


def _u16(value: int | None) -> int:
    # vSphere declares vendor/device ids as xsd:short: 0x8000.. arrive negative.
    return (value or 0) & 0xFFFF


def _network_name(vm: vim.VirtualMachine, backing: Any) -> str | None:
    if isinstance(backing, vim.vm.device.VirtualEthernetCard.NetworkBackingInfo):
        return backing.deviceName
    if isinstance(backing, vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo):
        key = backing.port.portgroupKey
        for net in vm.network or []:
            if isinstance(net, vim.dvs.DistributedVirtualPortgroup) and net.key == key:
                return net.name
        return key
    return None


def extra_config_of(vm: vim.VirtualMachine) -> dict[str, str]:
    """The managed GPU keys of ``extraConfig``. A later entry wins and an empty value means "not set"
    (vSphere removes a key set to ""; some simulators append instead of replacing)."""
    values: dict[str, str] = {}
    for option in (vm.config.extraConfig if vm.config else None) or []:
        if option.key in MANAGED_EXTRA_CONFIG:
            values[option.key] = "" if option.value is None else str(option.value)
    return {k: v for k, v in values.items() if v != ""}


def read_vm_devices(vm: vim.VirtualMachine) -> VmDeviceState:
    """Read the GPU/RDMA devices and GPU settings of ``vm`` into a ``VmDeviceState``."""
    vgpus: list[VgpuDevice] = []
    directpath: list[DirectPathDevice] = []
    dynamic: list[DynamicDirectPathDevice] = []
    pvrdma: list[PvrdmaNic] = []
    config = vm.config
    for device in (config.hardware.device if config else None) or []:
        if isinstance(device, vim.vm.device.VirtualPCIPassthrough):
            backing = device.backing
            if isinstance(backing, vim.vm.device.VirtualPCIPassthrough.VmiopBackingInfo):
                vgpus.append(VgpuDevice(profile=backing.vgpu, key=device.key))
            elif isinstance(backing, vim.vm.device.VirtualPCIPassthrough.DynamicBackingInfo):
                allowed = (backing.allowedDevice or [None])[0]
                dynamic.append(
                    DynamicDirectPathDevice(
                        vendor_id=_u16(allowed.vendorId if allowed else 0),
                        device_id=_u16(allowed.deviceId if allowed else 0),
                        label=backing.customLabel or None,
                        key=device.key,
                    )
                )
            elif isinstance(backing, vim.vm.device.VirtualPCIPassthrough.DeviceBackingInfo):
                directpath.append(
                    DirectPathDevice(
                        id=(backing.id or "").lower(),
                        vendor_id=_u16(backing.vendorId),
                        device_id=int(backing.deviceId or "0", 16),
                        key=device.key,
                    )
                )
        elif isinstance(device, vim.vm.device.VirtualVmxnet3Vrdma):
            pvrdma.append(
                PvrdmaNic(
                    network=_network_name(vm, device.backing),
                    protocol=device.deviceProtocol or None,
                    key=device.key,
                    mac=device.macAddress or None,
                )
            )
    runtime = vm.runtime
    return VmDeviceState(
        vm=vm.name,
        power_state=str(runtime.powerState) if runtime else POWERED_OFF,
        host=runtime.host.name if runtime and runtime.host else None,
        hardware_version=hardware_version_of(config.version if config else None),
        memory_reservation_locked=bool(config.memoryReservationLockedToMax) if config else False,
        vgpus=tuple(vgpus),
        directpath=tuple(directpath),
        dynamic=tuple(dynamic),
        pvrdma=tuple(pvrdma),
        extra_config=extra_config_of(vm),
    )
