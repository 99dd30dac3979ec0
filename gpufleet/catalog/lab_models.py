"""The few facts the lab needs about its GPU models, read from the catalog data files."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class LabGpuModel:
    device_id: int
    device_name: str
    architecture: str
    mig_capable: bool
    profile_file: str


LAB_GPU_MODELS: dict[str, LabGpuModel] = {
    "A100-80GB-PCIe": LabGpuModel(0x20B5, "GA100 [A100 PCIe 80GB]", "ampere", True, "vgpu_profiles_A100_PCIe_80GB.csv"),
    "H100-80GB-PCIe": LabGpuModel(0x2331, "GH100 [H100 PCIe]", "hopper", True, "vgpu_profiles_H100_PCIe_80GB.csv"),
    "L40S": LabGpuModel(0x26B9, "AD102GL [L40S]", "ada", False, "vgpu_profiles_L40S.csv"),
    "T4": LabGpuModel(0x1EB8, "TU104GL [Tesla T4]", "turing", False, "vgpu_profiles_T4.csv"),
}


@cache
def vsphere_profiles_for(model: str) -> list[str]:
    """vSphere vGPU profile names a host with this GPU offers (first spelling where two are listed)."""
    text = resources.files("gpufleet.catalog").joinpath("data", LAB_GPU_MODELS[model].profile_file).read_text()
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return [row["vsphere_profile_name"].split("|")[0] for row in rows]
