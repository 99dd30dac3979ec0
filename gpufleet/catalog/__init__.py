"""The GPU catalog: models, PCI IDs, vGPU profiles, MIG geometry and MMIO sizing, as data (see data/).

Model names are case-insensitive and accept the aliases of data/gpus.csv (``A100-80GB`` is the PCIe board,
``a100-80gb-sxm4`` the SXM one). vGPU profile names accept both ``grid_`` and ``nvidia_`` prefixes (or none).
"""

from __future__ import annotations

import re
from functools import cache

from gpufleet.catalog.loader import load_catalog
from gpufleet.catalog.types import CatalogError, GpuModel, MigProfile, VgpuProfile, profile_key

__all__ = [
    "CatalogError",
    "GpuModel",
    "MigProfile",
    "VgpuProfile",
    "all_gpus",
    "find_profile",
    "get_gpu",
    "gpu_by_pci_device_id",
    "lookup_gpu",
    "lookup_profile",
    "mmio_gb",
    "model_names",
    "profile_key",
]


def _key(name: str) -> str:
    """Spelling-insensitive key: case, spaces, '-' and '_' ignored ("a100 80gb pcie" == "A100-80GB-PCIe")."""
    return re.sub(r"[\s_\-]+", "", name.strip().lower())


@cache
def _index() -> dict[str, str]:
    index: dict[str, str] = {}
    for model in load_catalog().values():
        for name in (model.name, *model.aliases):
            index.setdefault(_key(name), model.name)
    return index


def all_gpus() -> tuple[GpuModel, ...]:
    """Every model of the catalog, in data order."""
    return tuple(load_catalog().values())


def model_names() -> tuple[str, ...]:
    """Canonical model names (what ``gpufleet schema`` and error messages list)."""
    return tuple(load_catalog())


def lookup_gpu(model: str) -> GpuModel | None:
    """The catalog model for a name or alias (case-insensitive), or None."""
    name = _index().get(_key(model or ""))
    return load_catalog()[name] if name else None


def get_gpu(model: str) -> GpuModel:
    """The catalog model for a name or alias (case-insensitive); ``CatalogError`` listing the valid names."""
    found = lookup_gpu(model)
    if found is None:
        raise CatalogError(f"unknown GPU model {model!r}", model_names())
    return found


def find_profile(model: str | GpuModel, name: str) -> VgpuProfile | None:
    """The vGPU profile ``name`` of ``model`` (``grid_``/``nvidia_`` prefix optional), or None."""
    gpu = model if isinstance(model, GpuModel) else get_gpu(model)
    return gpu.profile(name)


@cache
def _profile_index() -> dict[str, tuple[GpuModel, VgpuProfile]]:
    index: dict[str, tuple[GpuModel, VgpuProfile]] = {}
    for model in load_catalog().values():
        for profile in model.profiles:
            index.setdefault(profile.bare_name, (model, profile))
    return index


def lookup_profile(name: str) -> tuple[GpuModel, VgpuProfile] | None:
    """Which board a vGPU profile name belongs to (profile names are board-specific), or None."""
    return _profile_index().get(profile_key(name or ""))


def mmio_gb(model: str | GpuModel) -> int:
    """64-bit MMIO (GB) a VM needs for one GPU of this model (NVAIE Table 18); 0 when none is needed (T4)."""
    gpu = model if isinstance(model, GpuModel) else get_gpu(model)
    return gpu.mmio_gb


def gpu_by_pci_device_id(device_id: int | str) -> GpuModel | None:
    """The catalog model with this NVIDIA PCI device id (``0x20B5``, ``"20b5"`` or ``8373``), or None."""
    if isinstance(device_id, str):
        try:
            device_id = int(device_id.strip().lower().removeprefix("0x"), 16)
        except ValueError:
            return None
    return next((m for m in load_catalog().values() if device_id in m.pci_device_ids), None)
