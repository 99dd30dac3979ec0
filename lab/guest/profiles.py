"""What a guest's NVIDIA driver shows for a vGPU profile or a passthrough GPU, from the GPU catalog.

The guest sees a vGPU by its display name: the vSphere profile name with ``_`` replaced by a space, upper-cased
(``grid_a100d-3-40c`` -> ``GRID A100D-3-40C``, ``nvidia_l40s-24c`` -> ``NVIDIA L40S-24C``; see the note at the
top of each gpufleet/catalog/data/vgpu_profiles_*.csv for the evidence of both prefixes).
"""

from __future__ import annotations

from dataclasses import dataclass

from gpufleet.catalog import get_gpu, lookup_profile
from gpufleet.catalog.licensing import licensed_product

# nvidia-smi product names of whole GPUs (passthrough view). The H100 SXM name is the real capture in
# shared/reference/h100_baremetal; the others are the names NVIDIA's data-center driver prints for these boards.
SMI_PRODUCT_NAMES: dict[str, str] = {
    "A100-80GB-PCIe": "NVIDIA A100 80GB PCIe",
    "H100-80GB-PCIe": "NVIDIA H100 PCIe",
    "H100-80GB-SXM": "NVIDIA H100 80GB HBM3",
    "L40S": "NVIDIA L40S",
    "T4": "Tesla T4",
}
# Framebuffer nvidia-smi reports for a whole GPU (less than the nominal size); H100 80GB from the capture.
SMI_FRAMEBUFFER_MIB: dict[str, int] = {
    "H100-80GB-PCIe": 81559,
    "H100-80GB-SXM": 81559,
    "A100-80GB-PCIe": 81920,
    "L40S": 46068,
    "T4": 15360,
}
ARCHITECTURES = {"turing": "Turing", "ampere": "Ampere", "ada": "Ada Lovelace", "hopper": "Hopper"}


@dataclass(frozen=True)
class VgpuProfile:
    """One vGPU type as the guest driver reports it."""

    vsphere_name: str  # grid_a100d-3-40c
    vgpu_type: str  # A100D-3-40C
    display_name: str  # GRID A100D-3-40C
    series: str  # C, Q, B, A
    framebuffer_mib: int
    mig_profile: str | None  # 3g.40gb for a MIG-backed vGPU
    device_id: int  # PCI device id of the physical GPU
    architecture: str  # Ampere, Hopper...
    board: str  # catalog model of the physical GPU


def vgpu_profile(vsphere_name: str) -> VgpuProfile:
    """The guest view of a vSphere vGPU profile; ValueError names the profile when the catalog lacks it."""
    key = vsphere_name.strip().lower()
    found = lookup_profile(key)
    if found is None:
        raise ValueError(f"vGPU profile {vsphere_name!r} is not in the catalog (gpufleet/catalog/data)")
    model, profile = found
    # Show the spelling vCenter attached (grid_ or nvidia_), as the guest driver does for that board.
    name = key if "_" in key else profile.vsphere_name
    prefix, _, rest = name.partition("_")
    return VgpuProfile(
        vsphere_name=name,
        vgpu_type=profile.vgpu_type,
        display_name=f"{prefix.upper()} {rest.upper()}",
        series=profile.series,
        framebuffer_mib=profile.framebuffer_mb,
        mig_profile=profile.mig_instance if profile.mig_backed else None,
        device_id=model.pci_device_ids[0],
        architecture=ARCHITECTURES.get(model.architecture, model.architecture.title()),
        board=model.name,
    )


def licensed_product_for_series(series: str) -> str:
    """The vGPU software product a profile series licenses (as nvidia-smi names it)."""
    return licensed_product(series)


def physical_gpu(model: str) -> tuple[str, str, int, int]:
    """(product name, architecture, PCI device id, framebuffer MiB) of a whole GPU of this catalog model."""
    gpu = get_gpu(model)
    name = SMI_PRODUCT_NAMES.get(gpu.name, gpu.display_name)
    fb = SMI_FRAMEBUFFER_MIB.get(gpu.name, gpu.framebuffer_mb)
    return name, ARCHITECTURES.get(gpu.architecture, gpu.architecture.title()), gpu.pci_device_ids[0], fb
