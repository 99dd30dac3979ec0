"""What every rule needs: the fleet indexed by name, the catalog board of each GPU, and an issue collector."""

from __future__ import annotations

from dataclasses import dataclass, field

from gpufleet.catalog import GpuModel, VgpuProfile, lookup_gpu
from gpufleet.catalog.capacity import GpuCapacity
from gpufleet.errors import SpecIssue
from gpufleet.spec.models import Fleet, GpuMode, GpuSpec, HostSpec, TemplateSpec, VmSpec

# Issues that are also policy rules (gpufleet.policy reports them under these names, from this one check).
MIG_LAYOUT_RULE = "mig-layout-fits"
PASSTHROUGH_EXCLUSIVE_RULE = "gpu-passthrough-exclusive"

MAX_LISTED = 24  # list valid values in a message only when there are this few


def few(values: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The valid values to show: all of them when few, none otherwise (the message says where to look)."""
    unique = tuple(dict.fromkeys(values))
    return unique if 0 < len(unique) <= MAX_LISTED else ()


@dataclass(frozen=True)
class HostGpu:
    """A GPU of a host with its place in the spec (for paths) and its catalog board (None: unknown model)."""

    host_index: int
    gpu_index: int
    host: HostSpec
    spec: GpuSpec
    model: GpuModel | None

    @property
    def path(self) -> str:
        return f"hosts[{self.host_index}].gpus[{self.gpu_index}]"

    @property
    def label(self) -> str:
        return f"GPU {self.spec.pci} of {self.host.name}"

    @property
    def capacity(self) -> GpuCapacity | None:
        """What this GPU can hold (the catalog's per-GPU model); None: a board the catalog does not know."""
        if self.model is None:
            return None
        return GpuCapacity(self.model, self.spec.mode.value, self.spec.mixed_size, self.label, "pinned to")


@dataclass
class Context:
    fleet: Fleet
    issues: list[SpecIssue] = field(default_factory=list)
    hosts: dict[str, tuple[int, HostSpec]] = field(default_factory=dict)
    templates: dict[str, tuple[int, TemplateSpec]] = field(default_factory=dict)
    gpus: dict[tuple[str, str], HostGpu] = field(default_factory=dict)
    by_host: dict[str, list[HostGpu]] = field(default_factory=dict)
    counts: dict[tuple[str | None, str, GpuMode], int] = field(default_factory=dict)
    plain: dict[tuple[str | None, str], int] = field(default_factory=dict)  # vgpu-mode GPUs not in mixed-size

    @classmethod
    def build(cls, fleet: Fleet) -> Context:
        ctx = cls(fleet)
        for hi, host in enumerate(fleet.hosts):
            ctx.hosts.setdefault(host.name, (hi, host))
            for gi, gpu in enumerate(host.gpus):
                if (host.name, gpu.pci) not in ctx.gpus:
                    entry = HostGpu(hi, gi, host, gpu, lookup_gpu(gpu.model))
                    ctx.gpus[(host.name, gpu.pci)] = entry
                    ctx.by_host.setdefault(host.name, []).append(entry)
        for entry in ctx.gpus.values():
            if entry.model is not None:
                for scope in (entry.host.name, None):
                    key = (scope, entry.model.name, entry.spec.mode)
                    ctx.counts[key] = ctx.counts.get(key, 0) + 1
                    if entry.spec.mode == GpuMode.VGPU and not entry.spec.mixed_size:
                        ctx.plain[(scope, entry.model.name)] = ctx.plain.get((scope, entry.model.name), 0) + 1
        for ti, template in enumerate(fleet.templates):
            ctx.templates.setdefault(template.name, (ti, template))
        return ctx

    def add(self, path: str, message: str, valid: tuple[str, ...] | list[str] = (), rule: str | None = None) -> None:
        self.issues.append(SpecIssue(path=path, message=message, valid=tuple(valid), rule=rule))

    def host_gpus(self, host_name: str) -> list[HostGpu]:
        return self.by_host.get(host_name, [])

    def count(self, host_name: str | None, board: str, mode: GpuMode) -> int:
        """GPUs of this board in this mode on the host (None: in the whole fleet)."""
        return self.counts.get((host_name, board, mode), 0)

    def usable(self, host_name: str | None, board: str, profile: VgpuProfile) -> int:
        """GPUs that could take this profile on the host (None: in the fleet), mode and mixed-size considered."""
        if profile.mig_backed:
            return self.count(host_name, board, GpuMode.MIG)
        if profile.max_per_gpu_mixed is None:  # not offered in mixed-size mode
            return self.plain.get((host_name, board), 0)
        return self.count(host_name, board, GpuMode.VGPU)

    def all_gpus(self) -> list[HostGpu]:
        return list(self.gpus.values())

    def template_of(self, vm: VmSpec) -> TemplateSpec | None:
        found = self.templates.get(vm.template)
        return found[1] if found else None

    def template_path(self, vm: VmSpec) -> str | None:
        found = self.templates.get(vm.template)
        return f"templates[{found[0]}]" if found else None


def mode_for_profile(mig_backed: bool) -> GpuMode:
    return GpuMode.MIG if mig_backed else GpuMode.VGPU
