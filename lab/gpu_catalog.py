"""The few facts the lab needs about its GPU models, taken from the full catalog (``gpufleet.catalog``)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from gpufleet.catalog import get_gpu


@dataclass(frozen=True)
class LabGpuModel:
    device_id: int
    device_name: str
    architecture: str
    mig_capable: bool
    profile_file: str


LAB_MODEL_NAMES = ("A100-80GB-PCIe", "H100-80GB-PCIe", "L40S", "T4")


def _lab_model(name: str) -> LabGpuModel:
    gpu = get_gpu(name)
    return LabGpuModel(gpu.pci_device_ids[0], gpu.pci_device_name, gpu.architecture, gpu.mig_capable, gpu.profiles_file)


LAB_GPU_MODELS: dict[str, LabGpuModel] = {name: _lab_model(name) for name in LAB_MODEL_NAMES}


@cache
def vsphere_profiles_for(model: str) -> list[str]:
    """vSphere vGPU profile names a host with this GPU offers (canonical spelling: the first one listed)."""
    return [p.vsphere_name for p in get_gpu(model).profiles]
