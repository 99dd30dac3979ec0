"""``fit(gpu, profiles)``: do these MIG instances fit on one GPU, and where (start slot, size)?

Profiles are MIG GPU-instance names (``4g.40gb``) or MIG-backed vGPU profile names of the board
(``grid_a100d-4-40c`` / ``nvidia_a100d-4-40c``). The answer comes from the exact search of
``gpufleet.catalog.mig_geometry`` (backtracking over the driver's start slots, not first-fit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gpufleet.catalog import CatalogError, GpuModel, MigProfile, get_gpu
from gpufleet.catalog.mig_geometry import explain_conflict, search


@dataclass(frozen=True)
class MigPlacement:
    profile: str  # as given
    instance: str  # MIG instance name, e.g. 4g.40gb
    start: int
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"profile": self.profile, "instance": self.instance, "start": self.start, "size": self.size}


@dataclass(frozen=True)
class MigFit:
    gpu: str  # canonical model name
    fits: bool
    placements: tuple[MigPlacement, ...] = ()
    conflicts: tuple[str, ...] = ()  # the profiles (as given) that cannot be placed together
    reason: str = ""
    memory_slices: int = 8
    free_slices: tuple[int, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"gpu": self.gpu, "fits": self.fits}
        if self.fits:
            doc["placements"] = [p.to_json() for p in self.placements]
            doc["freeSlices"] = list(self.free_slices)
        else:
            doc["conflicts"] = list(self.conflicts)
            doc["reason"] = self.reason
        return doc


def resolve_instance(gpu: GpuModel, name: str) -> MigProfile:
    """A MIG instance name or a MIG-backed vGPU profile name -> the GPU-instance profile; CatalogError if neither."""
    if not gpu.mig_capable:
        raise CatalogError(f"{gpu.name} has no MIG mode", tuple(g for g in _mig_models()))
    instance = gpu.mig_profile(name)
    if instance is not None:
        return instance
    vgpu = gpu.profile(name)
    if vgpu is not None and vgpu.mig_backed and vgpu.mig_instance:
        found = gpu.mig_profile(vgpu.mig_instance)
        if found is not None:
            return found
    if vgpu is not None:
        raise CatalogError(
            f"{name!r} is a time-sliced vGPU profile of {gpu.name}, not MIG-backed",
            tuple(p.name for p in gpu.mig_profiles) + tuple(p.vsphere_name for p in gpu.mig_backed_profiles),
        )
    raise CatalogError(
        f"{name!r} is neither a MIG instance nor a MIG-backed vGPU profile of {gpu.name}",
        tuple(p.name for p in gpu.mig_profiles) + tuple(p.vsphere_name for p in gpu.mig_backed_profiles),
    )


def _mig_models() -> list[str]:
    from gpufleet.catalog import all_gpus

    return [g.name for g in all_gpus() if g.mig_capable]


def fit(gpu: str | GpuModel, profiles: Sequence[str]) -> MigFit:
    """Exact placement of ``profiles`` on one GPU of model ``gpu``. Unknown model/profile: ``CatalogError``."""
    model = gpu if isinstance(gpu, GpuModel) else get_gpu(gpu)
    names = list(profiles)
    instances = [resolve_instance(model, n) for n in names]
    if not names:
        return MigFit(
            model.name, True, (), memory_slices=model.memory_slices, free_slices=tuple(range(model.memory_slices))
        )
    slots = search(instances)
    if slots is None:
        idx, reason = explain_conflict(model, names, instances)
        conflicts = tuple(names[i] for i in idx)
        return MigFit(model.name, False, conflicts=conflicts, reason=reason, memory_slices=model.memory_slices)
    placements = tuple(
        MigPlacement(n, i.name, start, size) for n, i, (start, size) in zip(names, instances, slots, strict=True)
    )
    used = {s for p in placements for s in range(p.start, p.start + p.size)}
    free = tuple(s for s in range(model.memory_slices) if s not in used)
    return MigFit(model.name, True, placements, memory_slices=model.memory_slices, free_slices=free)
