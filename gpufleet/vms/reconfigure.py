"""Apply a ``ChangeSet`` to a VM with one ``ReconfigVM_Task``, powering it off and on around it when needed.

One reconfigure is atomic in vSphere: it applies every device change and extraConfig key or none of them. When
the changes need the VM off (``ChangeSet.power_cycle_required``) and the stack allows it, the VM is shut down
(guest shutdown when VMware Tools runs, else a power-off), reconfigured, and powered on again if it was on; when
the reconfigure fails the VM is powered on again before the error is raised.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from pyVmomi import vim

from gpufleet.errors import TaskError
from gpufleet.vms.changes import Change, ChangeSet
from gpufleet.vsphere.tasks import wait_for_task
from gpufleet.vsphere.vm_devices import POWERED_OFF, POWERED_ON, DynamicDirectPathDevice

_PROTOCOLS = ("rocev1", "rocev2")


@dataclass(frozen=True)
class ApplyOutcome:
    """What applying a change set did: ``reconfigured`` (a ReconfigVM_Task ran), ``power_cycled``."""

    reconfigured: bool
    power_cycled: bool


def _host_pci(host: vim.HostSystem, address: str) -> vim.host.PciDevice:
    for device in host.hardware.pciDevice or []:
        if (device.id or "").lower() == address:
            return device
    raise TaskError(f"host {host.name} has no PCI device {address}", fault="NotFound")


def _system_id(host: vim.HostSystem, vm: vim.VirtualMachine, address: str) -> str:
    """The ``systemId`` vSphere wants in a DirectPath backing: from the host's config target, else its UUID."""
    try:
        target = vm.environmentBrowser.QueryConfigTarget(host=host) if vm.environmentBrowser else None
    except vim.fault.VimFault:
        target = None
    for info in (target.pciPassthrough if target else None) or []:
        if info.pciDevice and (info.pciDevice.id or "").lower() == address and info.systemId:
            return info.systemId
    return host.hardware.systemInfo.uuid


def _network_backing(host: vim.HostSystem, name: str) -> vim.vm.device.VirtualDevice.BackingInfo:
    for net in host.network or []:
        if net.name != name:
            continue
        if isinstance(net, vim.dvs.DistributedVirtualPortgroup):
            port = vim.dvs.PortConnection(portgroupKey=net.key, switchUuid=net.config.distributedVirtualSwitch.uuid)
            return vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo(port=port)
        return vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(deviceName=name, network=net)
    valid = sorted({n.name for n in host.network or []})
    raise TaskError(f"host {host.name} has no network {name!r} (networks: {', '.join(valid)})", fault="NotFound")


def _device(vm: vim.VirtualMachine, key: int | None) -> vim.vm.device.VirtualDevice:
    for device in vm.config.hardware.device:
        if device.key == key:
            return device
    raise TaskError(f"{vm.name}: device {key} disappeared while reconfiguring", fault="NotFound")


def _parse_dynamic(target: str) -> DynamicDirectPathDevice:
    allowed, _, label = target.partition(" label=")
    vendor, device = (int(part, 16) for part in allowed.split(":"))
    return DynamicDirectPathDevice(vendor_id=vendor, device_id=device, label=label or None)


def _signed16(value: int) -> int:
    # xsd:short on the wire: ids >= 0x8000 are sent as negative numbers.
    return value - 0x10000 if value >= 0x8000 else value


def _add_spec(device: vim.vm.device.VirtualDevice) -> vim.vm.device.VirtualDeviceSpec:
    return vim.vm.device.VirtualDeviceSpec(operation=vim.vm.device.VirtualDeviceSpec.Operation.add, device=device)


def _device_spec(
    change: Change, vm: vim.VirtualMachine, host: vim.HostSystem, new_key: int
) -> vim.vm.device.VirtualDeviceSpec:
    ops = vim.vm.device.VirtualDeviceSpec.Operation
    passthrough = vim.vm.device.VirtualPCIPassthrough
    if change.action == "remove":
        return vim.vm.device.VirtualDeviceSpec(operation=ops.remove, device=_device(vm, change.key))
    if change.kind == "vgpu":
        backing = passthrough.VmiopBackingInfo(vgpu=change.target)
        return _add_spec(passthrough(key=new_key, backing=backing))
    if change.kind == "directpath":
        pci = _host_pci(host, change.target)
        backing = passthrough.DeviceBackingInfo(
            id=pci.id,
            deviceId=f"{pci.deviceId & 0xFFFF:x}",
            systemId=_system_id(host, vm, change.target),
            vendorId=pci.vendorId,
            deviceName=pci.deviceName or "",
        )
        return _add_spec(passthrough(key=new_key, backing=backing))
    if change.kind == "dynamic-directpath":
        slot = _parse_dynamic(change.target)
        allowed = passthrough.AllowedDevice(vendorId=_signed16(slot.vendor_id), deviceId=_signed16(slot.device_id))
        backing = passthrough.DynamicBackingInfo(deviceName="", allowedDevice=[allowed], customLabel=slot.label or "")
        return _add_spec(passthrough(key=new_key, backing=backing))
    if change.kind == "pvrdma" and change.action == "add":
        nic = vim.vm.device.VirtualVmxnet3Vrdma(
            key=new_key,
            backing=_network_backing(host, change.target),
            deviceProtocol=change.after or "rocev2",
            addressType="generated",
            connectable=vim.vm.device.VirtualDevice.ConnectInfo(startConnected=True, allowGuestControl=True),
        )
        return _add_spec(nic)
    if change.kind == "pvrdma" and change.action == "edit":
        if change.after not in _PROTOCOLS:
            raise TaskError(f"{vm.name}: RoCE protocol must be one of {_PROTOCOLS}, not {change.after!r}")
        nic = _device(vm, change.key)
        nic.deviceProtocol = change.after
        return vim.vm.device.VirtualDeviceSpec(operation=ops.edit, device=nic)
    raise ValueError(f"not a device change: {change}")


def build_config_spec(change_set: ChangeSet, vm: vim.VirtualMachine, host: vim.HostSystem) -> vim.vm.ConfigSpec:
    """The single ``VirtualMachineConfigSpec`` that carries every change of ``change_set``."""
    spec = vim.vm.ConfigSpec()
    device_changes = []
    extra = []
    new_key = -200
    for change in change_set.changes:
        if change.kind == "extra-config":
            extra.append(
                vim.option.OptionValue(key=change.target, value=change.after if change.action == "set" else "")
            )
        elif change.kind == "memory-reservation":
            spec.memoryReservationLockedToMax = True
        else:
            new_key -= 1
            device_changes.append(_device_spec(change, vm, host, new_key))
    spec.deviceChange = device_changes
    spec.extraConfig = extra
    return spec


def _wait_power_state(vm: vim.VirtualMachine, state: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while str(vm.runtime.powerState) != state:
        if time.monotonic() > deadline:
            raise TaskError(f"{vm.name} did not reach {state} within {timeout:.0f} s", fault="Timeout")
        time.sleep(1.0)


def power_off(vm: vim.VirtualMachine, timeout: float = 300.0) -> None:
    """Shut the guest down when VMware Tools runs (waiting up to ``timeout``), else power the VM off."""
    if str(vm.runtime.powerState) == POWERED_OFF:
        return
    tools_running = vm.guest is not None and vm.guest.toolsRunningStatus == "guestToolsRunning"
    if tools_running and str(vm.runtime.powerState) == POWERED_ON:
        vm.ShutdownGuest()
        try:
            _wait_power_state(vm, POWERED_OFF, timeout)
            return
        except TaskError:
            pass  # the guest ignored the shutdown request: fall through to a power-off
    wait_for_task(vm.PowerOffVM_Task(), what=f"power off {vm.name}", timeout=timeout)


def apply_change_set(
    change_set: ChangeSet,
    vm: vim.VirtualMachine,
    host: vim.HostSystem,
    *,
    allow_power_cycle: bool,
    shutdown_timeout: float = 300.0,
    task_timeout: float = 600.0,
) -> ApplyOutcome:
    """Apply ``change_set`` with one ReconfigVM_Task; power-cycle the VM around it if needed and allowed
    (``PowerCycleRequiredError`` otherwise, before anything changed)."""
    if not change_set.changed:
        return ApplyOutcome(reconfigured=False, power_cycled=False)
    change_set.require_power(allow_power_cycle)
    spec = build_config_spec(change_set, vm, host)
    was = str(vm.runtime.powerState)
    cycled = change_set.power_cycle_required
    if cycled:
        power_off(vm, shutdown_timeout)
    try:
        wait_for_task(vm.ReconfigVM_Task(spec=spec), what=f"reconfigure {vm.name}", timeout=task_timeout)
    except TaskError:
        if cycled and was == POWERED_ON:
            # Leave the VM as we found it; the reconfigure error is the one to report.
            with contextlib.suppress(TaskError):
                wait_for_task(vm.PowerOnVM_Task(), what=f"power on {vm.name}", timeout=task_timeout)
        raise
    if cycled and was == POWERED_ON:
        wait_for_task(vm.PowerOnVM_Task(), what=f"power on {vm.name}", timeout=task_timeout)
    return ApplyOutcome(reconfigured=True, power_cycled=cycled)
