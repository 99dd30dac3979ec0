"""What one physical GPU can hold: the one per-GPU capacity model that the spec rules, the planner, the VM
preconditions and the audit ask (the lab keeps its own, so that it stays an independent oracle).

By the GPU's mode:
- ``vgpu`` (time-sliced): one profile per GPU, at most its per-GPU maximum; in mixed-size mode several profiles of
  one series, each within its mixed-size maximum (a profile without one is not offered there), their framebuffers
  within the GPU's;
- ``mig``: MIG-backed profiles whose GPU instances have an exact placement on the memory slices
  (``gpufleet.catalog.mig_geometry``: start slots, per-instance maxima, one ``+me`` instance);
- ``passthrough`` / ``dynamic-passthrough``: the whole GPU for one VM, never a vGPU.

A device is a ``VgpuProfile`` or ``None`` (a whole GPU: DirectPath I/O). ``refusal`` answers the planner's inner
loop (one more device on a GPU whose devices fit: why not, as a short kind, or None); ``problems`` judges a whole
set with messages a person can act on. Both apply the same rules, in the same order.

It sits in the catalog layer (pure data and geometry) so that ``gpufleet.spec``, below ``gpufleet.placement``,
uses it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from gpufleet.catalog.mig_geometry import explain_conflict, fits_sorted
from gpufleet.catalog.types import GpuModel, MigProfile, VgpuProfile

Device = VgpuProfile | None  # None: the whole GPU (DirectPath I/O)
PASSTHROUGH_MODES = ("passthrough", "dynamic-passthrough")

# Problem kinds. "profile" kinds: this device is the wrong kind for the GPU; "gpu" kinds: the GPU has no room left.
PASSTHROUGH = "passthrough"  # a vGPU on a GPU passed through whole
BOARD = "board"  # a profile of another board
MODE = "mode"  # MIG-backed on a time-sliced GPU or the reverse, or a whole GPU asked of a shared one
MIX = "mix"  # a second profile on a time-sliced GPU without mixed-size mode
SERIES = "series"  # a second series on a mixed-size GPU
NOT_MIXABLE = "not-mixable"  # a profile with no mixed-size maximum on a mixed-size GPU
COUNT = "count"  # more of a profile (or MIG instance) than the GPU holds
FRAMEBUFFER = "framebuffer"  # the framebuffers of a mixed-size GPU's vGPUs over the GPU's
MIG_LAYOUT = "mig-layout"  # no placement of the GPU instances on the memory slices
TAKEN = "taken"  # a passthrough GPU already given to a VM
PROFILE_KINDS = (BOARD, MODE, MIX, SERIES, NOT_MIXABLE)  # the others blame the GPU the device is put on


@dataclass(frozen=True)
class Problem:
    """One device of a set that the GPU cannot hold: which (``index`` into the set), why (``kind``), in words."""

    index: int
    kind: str
    message: str
    valid: tuple[str, ...] = ()  # what would be accepted instead, when the model knows

    @property
    def field(self) -> str:
        """Which field of the request to blame: its ``profile`` (wrong kind) or its ``gpu`` (no room there)."""
        return "profile" if self.kind in PROFILE_KINDS else "gpu"


@lru_cache(maxsize=65536)
def mig_set(current: tuple[MigProfile, ...], extra: MigProfile) -> tuple[MigProfile, ...] | None:
    """The canonical (sorted) multiset ``current`` + ``extra`` when it has an exact placement, else None."""
    merged = tuple(sorted((*current, extra), key=lambda p: (p.name, p.profile_id)))
    return merged if fits_sorted(merged) is not None else None


@dataclass(frozen=True)
class GpuCapacity:
    """One GPU of board ``model`` in ``mode`` (``vgpu`` | ``mig`` | ``passthrough`` | ``dynamic-passthrough``)."""

    model: GpuModel
    mode: str
    mixed: bool = False  # time-sliced mixed-size mode
    label: str = ""  # how messages name the GPU, e.g. "GPU 0000:3b:00.0 of esxi-01"
    on: str = "on"  # how messages relate the devices to the GPU: the spec's are "pinned to" it

    @property
    def name(self) -> str:
        return self.label or f"the {self.model.name} GPU"

    @property
    def passthrough(self) -> bool:
        return self.mode in PASSTHROUGH_MODES

    def instance(self, profile: VgpuProfile) -> MigProfile | None:
        """The GPU instance a MIG-backed profile of this board occupies (None: not one)."""
        return self.model.mig_profile(profile.mig_instance or "") if profile.mig_backed else None

    def max_count(self, profile: VgpuProfile) -> int:
        """How many vGPUs of ``profile`` this GPU holds at most, alone (0: none in its mode)."""
        if self.refusal((), profile) is not None:
            return 0
        if profile.mig_backed:
            inst = self.instance(profile)
            return inst.max_instances if inst else 0
        limit = profile.max_per_gpu_mixed if self.mixed else profile.max_per_gpu
        return limit or 0

    # -- the rules -----------------------------------------------------------------------------------
    def _kind(self, extra: Device) -> str | None:
        """Whether the device is of a kind this GPU takes at all, whatever else it holds."""
        if extra is None:
            return None if self.passthrough else MODE
        if self.passthrough:
            return PASSTHROUGH
        if extra.gpu != self.model.name:
            return BOARD
        if extra.mig_backed != (self.mode == "mig"):
            return MODE
        if extra.mig_backed and self.instance(extra) is None:
            return MODE  # catalog inconsistency; the catalog tests guard against it
        return None

    def refusal(self, held: Sequence[Device], extra: Device) -> str | None:
        """Why ``extra`` cannot join ``held`` (devices that fit this GPU), as a problem kind; None: it fits."""
        kind = self._kind(extra)
        if kind is not None:
            return kind
        if extra is None:
            return TAKEN if held else None
        vgpus = [p for p in held if p is not None]
        if extra.mig_backed:
            current = tuple(sorted((i for p in vgpus if (i := self.instance(p))), key=lambda i: (i.name, i.profile_id)))
            inst = self.instance(extra)
            assert inst is not None
            return None if mig_set(current, inst) is not None else MIG_LAYOUT
        if not self.mixed:
            if vgpus and vgpus[0].vsphere_name != extra.vsphere_name:
                return MIX
            return COUNT if len(vgpus) >= extra.max_per_gpu else None
        if vgpus and vgpus[0].series != extra.series:
            return SERIES
        if extra.max_per_gpu_mixed is None:
            return NOT_MIXABLE
        if sum(1 for p in vgpus if p.vsphere_name == extra.vsphere_name) >= extra.max_per_gpu_mixed:
            return COUNT
        if sum(p.framebuffer_mb for p in vgpus) + extra.framebuffer_mb > self.model.framebuffer_mb:
            return FRAMEBUFFER
        return None

    def problems(self, assigned: Sequence[Device], labels: Sequence[str] | None = None) -> list[Problem]:
        """Every device of ``assigned`` this GPU cannot hold together with the ones before it that it can.

        ``labels`` name the devices in messages (a spec path, a VM name); by default ``#<index>``. MIG is judged
        on the whole set (vSphere creates the GPU instances at power-on: the set, not the order, decides).
        """
        names = list(labels) if labels is not None else [f"#{i}" for i in range(len(assigned))]
        out: list[Problem] = []
        held: list[Device] = []
        kept: list[int] = []
        for i, dev in enumerate(assigned):
            kind = self._kind(dev)
            if kind is not None:
                out.append(self._problem(i, kind, dev, held, kept, names))
            elif dev is not None and dev.mig_backed:
                held.append(dev)
                kept.append(i)
            else:
                kind = self.refusal(held, dev)
                if kind is None:
                    held.append(dev)
                    kept.append(i)
                elif kind != COUNT or self.mixed or not any(p.kind == COUNT for p in out):
                    out.append(self._problem(i, kind, dev, held, kept, names, assigned))
        if self.mode == "mig" and held:
            out += self._mig_problems([p for p in held if p is not None], kept, names)
        return sorted(out, key=lambda p: p.index)

    # -- messages ------------------------------------------------------------------------------------
    def _problem(
        self,
        i: int,
        kind: str,
        dev: Device,
        held: list[Device],
        kept: list[int],
        names: list[str],
        assigned: Sequence[Device] = (),
    ) -> Problem:
        gpu = self.name
        first = held[0] if held else None
        first_name = names[kept[0]] if kept else ""
        if dev is None:
            if kind == TAKEN:
                return Problem(i, kind, f"{gpu} is already passed through to {first_name}")
            return Problem(i, kind, f"{gpu} is in mode {self.mode}; a whole GPU is passed through only in passthrough")
        what = dev.vsphere_name
        if kind == PASSTHROUGH:
            return Problem(i, kind, f"{gpu} is reserved for {self.mode} (a passed-through GPU is not shared)")
        if kind == BOARD:
            return Problem(i, kind, f"{what} is a {dev.gpu} profile; {gpu} is {self.model.name}", self.offered())
        if kind == MODE and dev.mig_backed and self.mode == "mig":
            return Problem(i, kind, f"{what} has no MIG instance profile on {self.model.name}")
        if kind == MODE:
            sort = "MIG-backed" if dev.mig_backed else "time-sliced"
            return Problem(
                i,
                kind,
                f"{what} is {sort}, but {gpu} runs mode {self.mode} (MIG-backed and time-sliced vGPUs never share a GPU)",
                self.offered(),
            )
        if kind == NOT_MIXABLE:
            return Problem(i, kind, f"{what} is not available in mixed-size mode", self.offered())
        assert first is not None
        if kind == MIX:
            return Problem(
                i,
                kind,
                f"{gpu} already carries {first.vsphere_name} ({first_name}); without mixedSize all vGPUs on a GPU "
                "are the same profile",
                (first.vsphere_name,),
            )
        if kind == SERIES:
            return Problem(i, kind, f"{gpu} carries {first.series}-series vGPUs ({first_name}); one series per GPU")
        if kind == COUNT and self.mixed:
            return Problem(i, kind, f"{gpu} holds at most {dev.max_per_gpu_mixed} x {what} in mixed-size mode")
        if kind == COUNT:
            same = [names[j] for j, p in enumerate(assigned) if p is not None and p.vsphere_name == what]
            return Problem(
                i,
                kind,
                f"{gpu} holds at most {dev.max_per_gpu} x {what}; {len(same)} are {self.on} it ({', '.join(same)})",
            )
        used = sum(p.framebuffer_mb for p in held if p is not None) + dev.framebuffer_mb
        return Problem(
            i, kind, f"the vGPUs {self.on} {gpu} need {used} MB of framebuffer; it has {self.model.framebuffer_mb} MB"
        )

    def _mig_problems(self, profiles: list[VgpuProfile], kept: list[int], names: list[str]) -> list[Problem]:
        instances = [self.instance(p) for p in profiles]
        known = [i for i in instances if i is not None]
        if fits_sorted(tuple(sorted(known, key=lambda i: (i.name, i.profile_id)))) is not None:
            return []
        labels = [names[j] for j in kept]
        idx, reason = explain_conflict(self.model, labels, known)
        culprit = kept[idx[-1]] if idx else kept[-1]
        return [Problem(culprit, MIG_LAYOUT, f"the MIG-backed vGPUs {self.on} {self.name} do not fit: {reason}")]

    def offered(self) -> tuple[str, ...]:
        """The vGPU profiles this GPU offers in its mode (none when passed through)."""
        if self.mode == "mig":
            return tuple(p.vsphere_name for p in self.model.mig_backed_profiles)
        if self.mode == "vgpu":
            return tuple(
                p.vsphere_name for p in self.model.time_sliced_profiles if not self.mixed or p.max_per_gpu_mixed
            )
        return ()

    # -- how full ------------------------------------------------------------------------------------
    def load(self, held: Sequence[Device]) -> float:
        """Share of the GPU ``held`` uses, 0..1: instances' memory or compute slices (the larger), vGPUs against
        the profile's maximum, framebuffer in mixed-size mode, 1 for a passed-through GPU in use."""
        if not held:
            return 0.0
        vgpus = [p for p in held if p is not None]
        if self.passthrough or not vgpus:
            return 1.0
        if self.mode == "mig":
            insts = [i for p in vgpus if (i := self.instance(p)) is not None]
            memory = sum(i.size for i in insts) / self.model.memory_slices
            compute = sum(i.compute_slices for i in insts) / self.model.compute_slices
            return max(memory, compute)  # 1g instances can never use the 8th memory slice: both matter
        if self.mixed:
            return sum(p.framebuffer_mb for p in vgpus) / self.model.framebuffer_mb
        return len(vgpus) / vgpus[0].max_per_gpu
