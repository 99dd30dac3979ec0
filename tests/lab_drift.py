"""Drift made behind gpufleet's back on a lab, as an operator's hand edit would: shared by the lab tests that need
a stack to stop being in sync (promotion refused, the pipeline's drift stage)."""

from __future__ import annotations

from typing import Any

from pyVmomi import vim

from gpufleet.vsphere.inventory import find_by_name
from gpufleet.vsphere.tasks import wait_for_task


def swap_vgpu(si: Any, vm_name: str, profile: str) -> None:
    """The VM's (first) vGPU replaced by ``profile``, by a ReconfigVM_Task of our own."""
    vm = find_by_name(si, vim.VirtualMachine, vm_name)
    device = next(
        d
        for d in vm.config.hardware.device
        if isinstance(d, vim.vm.device.VirtualPCIPassthrough)
        and isinstance(d.backing, vim.vm.device.VirtualPCIPassthrough.VmiopBackingInfo)
    )
    other = vim.vm.device.VirtualPCIPassthrough(
        key=-101, backing=vim.vm.device.VirtualPCIPassthrough.VmiopBackingInfo(vgpu=profile)
    )
    changes = [
        vim.vm.device.VirtualDeviceSpec(operation="remove", device=device),
        vim.vm.device.VirtualDeviceSpec(operation="add", device=other),
    ]
    wait_for_task(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=changes)), what=f"drift {vm_name}", timeout=60)
