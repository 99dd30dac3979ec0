"""The GPUs and RDMA devices a guest sees: what vCenter has attached to its VM (so that `gpufleet vms apply`
really changes the guest), or a static list for tests that run without vcsim."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from lab.guest.profiles import licensed_product_for_series, physical_gpu, vgpu_profile
from lab.guest.state import DATACENTER_DRIVER, VGPU_GUEST_DRIVER


@dataclass(frozen=True)
class GuestGpu:
    """One GPU as the guest's nvidia-smi shows it."""

    index: int
    kind: str  # "vgpu" | "passthrough"
    product_name: str  # "NVIDIA L40S-24C", "GRID A100D-3-40C", "NVIDIA H100 PCIe"
    product_brand: str
    architecture: str
    framebuffer_mib: int
    bus_id: str  # 00000000:02:01.0
    device_id: int  # PCI device id of the physical GPU
    uuid: str
    series: str | None = None  # vGPU series C/Q/B/A
    mig_profile: str | None = None  # 3g.40gb on a MIG-backed vGPU
    licensed_product: str | None = None  # product the vGPU licenses (None for passthrough)
    model: str | None = None  # catalog model of a passthrough GPU


@dataclass(frozen=True)
class GuestRdma:
    """An RDMA device of the guest (a PVRDMA adapter or a passthrough ConnectX function)."""

    name: str  # vmw_pvrdma0 / mlx5_0
    netdev: str
    roce: str  # "v1" | "v2"
    node_guid: str
    state: str = "ACTIVE"  # port state ("DOWN": a cable/switch problem, for failing checks)


@dataclass(frozen=True)
class GuestView:
    gpus: list[GuestGpu]
    rdma: list[GuestRdma]
    driver_version: str | None  # None: no NVIDIA driver loaded (no GPU attached)
    vm_found: bool = True


def _uuid(guest: str, index: int) -> str:
    return "GPU-" + str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{guest}.gpu{index}.lab"))


def _gpu(guest: str, index: int, device: dict) -> GuestGpu:
    if device["kind"] == "vgpu":
        prof = vgpu_profile(device["profile"])
        brand = {
            "C": "NVIDIA Virtual Compute Server",
            "Q": "NVIDIA RTX",
            "B": "NVIDIA Virtual PC",
            "A": "NVIDIA Virtual Applications",
        }.get(prof.series, "NVIDIA")
        return GuestGpu(
            index=index,
            kind="vgpu",
            product_name=prof.display_name,
            product_brand=brand,
            architecture=prof.architecture,
            framebuffer_mib=prof.framebuffer_mib,
            bus_id=f"00000000:02:{index + 1:02X}.0",
            device_id=prof.device_id or 0,
            uuid=_uuid(guest, index),
            series=prof.series,
            mig_profile=prof.mig_profile,
            licensed_product=licensed_product_for_series(prof.series),
        )
    name, arch, device_id, fb = physical_gpu(device["model"])
    return GuestGpu(
        index=index,
        kind="passthrough",
        product_name=name,
        product_brand="NVIDIA" if not name.startswith("Tesla") else "Tesla",
        architecture=arch,
        framebuffer_mib=fb,
        bus_id=f"00000000:{0x0B + 8 * index:02X}:00.0",
        device_id=device_id,
        uuid=_uuid(guest, index),
        model=device["model"],
    )


def _rdma(index: int, device: dict) -> GuestRdma:
    state = device.get("state", "ACTIVE")
    if device.get("type") == "passthrough":
        return GuestRdma(
            f"mlx5_{index}", f"ens{224 + index}f0np0", device.get("roce", "v2"), f"b8cef60300{index:02x}2b3c", state
        )
    return GuestRdma(
        f"vmw_pvrdma{index}", f"ens{192 + 32 * index}", device.get("roce", "v2"), f"005056fffe{index:02x}a1b2", state
    )


def _from_vcenter(vm: str) -> tuple[list[dict], list[dict], bool]:
    """Devices vcsim shows on the VM, as the guest persona's device list. Imported lazily: most guest
    commands do not need vCenter, and each SSH command is a fresh process."""
    from lab.guest.vcenter_devices import vm_devices

    return vm_devices(vm)


def guest_view(state: dict) -> GuestView:
    """The GPUs and RDMA devices the guest sees now."""
    if state.get("gpu_source") == "vcenter":
        gpu_devices, rdma_devices, found = _from_vcenter(state["vm"])
    else:
        gpu_devices, rdma_devices, found = state.get("static_gpus", []), state.get("static_rdma", []), True
    gpus = [_gpu(state["name"], i, d) for i, d in enumerate(gpu_devices)]
    rdma = [_rdma(i, d) for i, d in enumerate(rdma_devices)]
    driver: str | None = None
    loaded = state.get("driver", {}).get("installed", True) and state.get("driver", {}).get("loaded", True)
    if gpus and loaded:
        default = DATACENTER_DRIVER if all(g.kind == "passthrough" for g in gpus) else VGPU_GUEST_DRIVER
        driver = state.get("driver", {}).get("version") or default
    return GuestView(gpus=gpus, rdma=rdma, driver_version=driver, vm_found=found)
