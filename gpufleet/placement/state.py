"""What one physical GPU holds while the planner fills it, and whether one more vGPU fits.

Three kinds, by the GPU's mode: MIG (instances on memory slices, exact placement search), time-sliced
(one profile up to its per-GPU maximum, or in mixed-size mode several profiles of one series within the
framebuffer and their mixed-size maxima), and whole-GPU passthrough (one owner).

Every state has a hashable ``key`` (what it holds, not who) so the planner can group GPUs in equal states and
memoise ``fits`` answers, and ``free_after`` (the fraction of the GPU left if the profile were added) for best fit.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

from gpufleet.catalog import GpuModel, MigProfile, VgpuProfile
from gpufleet.catalog.mig_geometry import fits_sorted

Owner = tuple[str, int]  # (vm name, device index in the VM's request list)


@lru_cache(maxsize=65536)
def _mig_fits(current: tuple[MigProfile, ...], extra: MigProfile) -> tuple[MigProfile, ...] | None:
    """The new canonical multiset if ``extra`` fits with ``current`` (exact search), else None."""
    merged = tuple(sorted((*current, extra), key=lambda p: (p.name, p.profile_id)))
    return merged if fits_sorted(merged) is not None else None


def _first_free_start(taken: int, profile: MigProfile) -> int | None:
    for start in profile.starts:
        if not taken & (((1 << profile.size) - 1) << start):
            return start
    return None


@dataclass
class GpuState:
    """A GPU of a host, in plan order (``index``), with what it holds and for whom."""

    index: int
    host: str
    pci: str
    model: GpuModel
    mode: str  # vgpu | mig | passthrough | dynamic-passthrough
    mixed: bool = False
    exact_mig: bool = True  # False: the first-fit baseline (instances stay where first put, like power-on order)
    owners: list[tuple[Owner, VgpuProfile | None, MigProfile | None]] = field(default_factory=list)
    _mig: tuple[MigProfile, ...] = ()
    _taken: int = 0  # first-fit baseline only: memory slices taken
    _starts: list[int] = field(default_factory=list)  # first-fit baseline only

    # -- what the GPU holds --------------------------------------------------------------------------
    @property
    def used(self) -> bool:
        return bool(self.owners)

    @property
    def key(self) -> tuple[object, ...]:
        if self.mode == "mig":
            return ("mig", self._mig, self._taken)
        return (self.mode, tuple(sorted(p.vsphere_name for _, p, _ in self.owners if p)), len(self.owners))

    # -- fitting -------------------------------------------------------------------------------------
    def fits(self, profile: VgpuProfile | None) -> bool:
        """Would one more vGPU of ``profile`` (None: a whole-GPU passthrough) fit here?"""
        if profile is None:
            return self.mode in ("passthrough", "dynamic-passthrough") and not self.owners
        if self.mode == "mig":
            if not profile.mig_backed:
                return False
            inst = self.model.mig_profile(profile.mig_instance or "")
            if inst is None:
                return False
            if not self.exact_mig:
                counts = Counter(p.name for p in self._mig)
                if counts[inst.name] >= inst.max_instances:
                    return False
                if inst.media_extensions and any(p.media_extensions for p in self._mig):
                    return False
                return _first_free_start(self._taken, inst) is not None
            return _mig_fits(self._mig, inst) is not None
        if self.mode != "vgpu" or profile.mig_backed:
            return False
        held = [p for _, p, _ in self.owners if p]
        if not self.mixed:
            if held and held[0].vsphere_name != profile.vsphere_name:
                return False
            return len(held) < profile.max_per_gpu
        if profile.max_per_gpu_mixed is None:
            return False
        if held and held[0].series != profile.series:
            return False
        if sum(1 for p in held if p.vsphere_name == profile.vsphere_name) >= profile.max_per_gpu_mixed:
            return False
        return sum(p.framebuffer_mb for p in held) + profile.framebuffer_mb <= self.model.framebuffer_mb

    def free_after(self, profile: VgpuProfile | None) -> float:
        """Fraction of the GPU left free if ``profile`` were added (call only when it fits)."""
        if profile is None:
            return 0.0
        if self.mode == "mig":
            inst = self.model.mig_profile(profile.mig_instance or "")
            assert inst is not None
            used = sum(p.size for p in self._mig) + inst.size
            compute = sum(p.compute_slices for p in self._mig) + inst.compute_slices
            # memory and compute both matter: 1g instances can never use the 8th memory slice
            return min(1 - used / self.model.memory_slices, 1 - compute / self.model.compute_slices)
        held = [p for _, p, _ in self.owners if p]
        if not self.mixed:
            return 1 - (len(held) + 1) / profile.max_per_gpu
        used_mb = sum(p.framebuffer_mb for p in held) + profile.framebuffer_mb
        return 1 - used_mb / self.model.framebuffer_mb

    def add(self, owner: Owner, profile: VgpuProfile | None) -> None:
        inst = None
        if self.mode == "mig" and profile is not None:
            inst = self.model.mig_profile(profile.mig_instance or "")
            assert inst is not None
            if self.exact_mig:
                merged = _mig_fits(self._mig, inst)
                assert merged is not None
                self._mig = merged
            else:
                start = _first_free_start(self._taken, inst)
                assert start is not None
                self._taken |= ((1 << inst.size) - 1) << start
                self._mig = (*self._mig, inst)
                self._starts.append(start)
        self.owners.append((owner, profile, inst))

    # -- the final layout ----------------------------------------------------------------------------
    def mig_layout(self) -> list[tuple[Owner, MigProfile, int, int]]:
        """(owner, instance, start, size) for every MIG instance: an exact placement of the final set."""
        if self.mode != "mig":
            return []
        entries = [(o, inst) for o, _, inst in self.owners if inst is not None]
        if not self.exact_mig:
            return [(o, inst, start, inst.size) for (o, inst), start in zip(entries, self._starts, strict=True)]
        order = sorted(range(len(entries)), key=lambda i: (entries[i][1].name, entries[i][1].profile_id, i))
        slots = fits_sorted(tuple(entries[i][1] for i in order))
        assert slots is not None
        layout = [(entries[i][0], entries[i][1], slot[0], slot[1]) for i, slot in zip(order, slots, strict=True)]
        return sorted(layout, key=lambda e: (e[2], e[0]))

    def free_text(self) -> str:
        """Free capacity in words: free MIG slices, vGPUs left, or whether the passthrough GPU is free."""
        if self.mode == "mig":
            used = {s for _, _, start, size in self.mig_layout() for s in range(start, start + size)}
            free = [s for s in range(self.model.memory_slices) if s not in used]
            return f"{len(free)}/{self.model.memory_slices} memory slices free" + (
                f" ({','.join(map(str, free))})" if free else ""
            )
        if self.mode in ("passthrough", "dynamic-passthrough"):
            return "in use" if self.owners else "free"
        held = [p for _, p, _ in self.owners if p]
        if not held:
            return "empty"
        if self.mixed:
            free_mb = self.model.framebuffer_mb - sum(p.framebuffer_mb for p in held)
            return f"{free_mb} MB framebuffer free (mixed-size)"
        left = held[0].max_per_gpu - len(held)
        return f"{left} more {held[0].vsphere_name}"

    def density(self) -> float:
        """Share of the GPU in use, 0..1."""
        if not self.owners:
            return 0.0
        if self.mode in ("passthrough", "dynamic-passthrough"):
            return 1.0
        if self.mode == "mig":
            used = sum(p.size for p in self._mig)
            compute = sum(p.compute_slices for p in self._mig)
            return max(used / self.model.memory_slices, compute / self.model.compute_slices)
        held = [p for _, p, _ in self.owners if p]
        if self.mixed:
            return sum(p.framebuffer_mb for p in held) / self.model.framebuffer_mb
        return len(held) / held[0].max_per_gpu
