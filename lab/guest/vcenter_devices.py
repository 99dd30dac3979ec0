"""What vcsim has attached to a guest's VM (its admin endpoint, through ``lab.vcenter.LabAdmin``), turned into the
persona's device lists: vGPU profiles, passthrough GPUs (by PCI device id), PVRDMA adapters and passthrough
ConnectX functions. So ``gpufleet vms apply`` changes what the guest's nvidia-smi shows.

The guest shell also asks here whether the VM runs (``vm_power_state``): a persona answers SSH only while vCenter
shows its VM poweredOn, like a real guest.
"""

from __future__ import annotations

import functools
from typing import Any

from gpufleet.catalog import gpu_by_pci_device_id

NVIDIA_VENDOR_ID = 0x10DE
MELLANOX_VENDOR_ID = 0x15B3


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def devices_from_vm_view(view: Any) -> tuple[list[dict], list[dict]]:
    """(gpu devices, rdma devices) of a vcsim VM view (``GET /lab/vms/NAME``)."""
    gpus: list[dict] = [{"kind": "vgpu", "profile": str(p)} for p in (_get(view, "vgpus") or [])]
    rdma: list[dict] = []
    for p in _get(view, "passthrough") or []:
        vendor, device = int(_get(p, "vendorId") or 0), int(_get(p, "deviceId") or 0)
        model = gpu_by_pci_device_id(device) if vendor == NVIDIA_VENDOR_ID else None
        if model is not None:
            gpus.append({"kind": "passthrough", "model": model.name, "host_pci": _get(p, "id")})
        elif vendor == MELLANOX_VENDOR_ID:
            rdma.append({"type": "passthrough", "roce": "v2", "host_pci": _get(p, "id")})
    for nic in _get(view, "nics") or []:
        if _get(nic, "type") == "vmxnet3vrdma":
            protocol = str(_get(nic, "deviceProtocol") or "rocev2").lower()
            rdma.append({"type": "pvrdma", "roce": "v1" if protocol.endswith("v1") else "v2"})
    return gpus, rdma


@functools.cache
def _vm_view(vm: str) -> dict | None:
    """vcsim's view of ``vm`` (None: no such VM). Each SSH command is a fresh process, so this cache lives for one
    command: its power check and its device lists read the same view, and the next command reads afresh."""
    from lab.vcenter import LabAdmin  # the lab's vcsim client (engineer A)

    try:
        return LabAdmin().vm(vm)
    except LookupError:
        return None


def vm_power_state(vm: str) -> str | None:
    """``runtime.powerState`` of ``vm`` as vCenter shows it now; None when vCenter has no such VM."""
    view = _vm_view(vm)
    return None if view is None else str(_get(view, "powerState") or "")


def vm_devices(vm: str) -> tuple[list[dict], list[dict], bool]:
    """Devices of ``vm`` as vCenter shows them now; (.., .., False) when vCenter has no such VM."""
    view = _vm_view(vm)
    if view is None:
        return [], [], False
    gpus, rdma = devices_from_vm_view(view)
    return gpus, rdma, True
