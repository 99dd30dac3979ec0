"""What one physical GPU holds while the planner fills it, and whether one more vGPU fits.

What fits is the catalog's per-GPU capacity model (``gpufleet.catalog.capacity``), the one the spec rules, the VM
preconditions and the audit ask too: MIG (instances on memory slices, exact placement search), time-sliced (one
profile up to its per-GPU maximum, or in mixed-size mode several profiles of one series within the framebuffer and
their mixed-size maxima), and whole-GPU passthrough (one owner). Only the first-fit baseline adds a rule of its
own: MIG instances stay at the first free start slot, as powering VMs on one by one leaves them.

Every state has a hashable ``key`` (what it holds, not who) so the planner can group GPUs in equal states and
memoise ``fits`` answers, and ``free_after`` (the fraction of the GPU left if the profile were added) for best fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from gpufleet.catalog import GpuModel, MigProfile, VgpuProfile
from gpufleet.catalog.capacity import GpuCapacity, mig_set
from gpufleet.catalog.mig_geometry import fits_sorted

Owner = tuple[str, int]  # (vm name, device index in the VM's request list)


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
    @cached_property
    def capacity(self) -> GpuCapacity:
        return GpuCapacity(self.model, self.mode, self.mixed)

    def _held(self) -> list[VgpuProfile | None]:
        return [p for _, p, _ in self.owners]

    def fits(self, profile: VgpuProfile | None) -> bool:
        """Would one more vGPU of ``profile`` (None: a whole-GPU passthrough) fit here?"""
        if self.capacity.refusal(self._held(), profile) is not None:
            return False
        if self.mode == "mig" and not self.exact_mig and profile is not None:
            inst = self.capacity.instance(profile)
            return inst is not None and _first_free_start(self._taken, inst) is not None
        return True

    def free_after(self, profile: VgpuProfile | None) -> float:
        """Fraction of the GPU left free if ``profile`` were added (call only when it fits)."""
        return 1 - self.capacity.load([*self._held(), profile])

    def add(self, owner: Owner, profile: VgpuProfile | None) -> None:
        inst = None
        if self.mode == "mig" and profile is not None:
            inst = self.model.mig_profile(profile.mig_instance or "")
            assert inst is not None
            if self.exact_mig:
                merged = mig_set(self._mig, inst)
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
        left = self.capacity.max_count(held[0]) - len(held)
        return f"{left} more {held[0].vsphere_name}"

    def density(self) -> float:
        """Share of the GPU in use, 0..1."""
        return self.capacity.load(self._held())
