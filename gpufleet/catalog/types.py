"""The catalog's value types: a GPU board, its vGPU profiles and its MIG GPU-instance profiles."""

from __future__ import annotations

from dataclasses import dataclass, field

from gpufleet.errors import GpufleetError

VSPHERE_PREFIXES = ("grid_", "nvidia_")


class CatalogError(GpufleetError):
    """An unknown GPU model or profile; ``valid`` lists what would be accepted."""

    def __init__(self, message: str, valid: tuple[str, ...] = ()) -> None:
        self.valid = valid
        hint = f" (valid: {', '.join(valid)})" if valid else ""
        super().__init__(f"{message}{hint}")


@dataclass(frozen=True)
class MigProfile:
    """A MIG GPU-instance profile (``nvidia-smi mig -lgip`` / ``-lgipp``): where it may start and how many slices."""

    name: str  # "3g.40gb", "1g.10gb+me"
    profile_id: int
    compute_slices: int
    memory_slices: int
    max_instances: int
    starts: tuple[int, ...]  # allowed start memory slices (the driver's placements)
    size: int  # memory slices occupied from the start
    memory_gib: float | None

    @property
    def media_extensions(self) -> bool:
        """``+me`` profiles own the GPU's media engines: at most one such instance per GPU."""
        return self.name.endswith("+me")

    def placements_text(self) -> str:
        """``{0,4}:4`` as ``nvidia-smi mig -lgipp`` prints it."""
        return "{" + ",".join(str(s) for s in self.starts) + f"}}:{self.size}"


@dataclass(frozen=True)
class VgpuProfile:
    """A vGPU type of one board as vSphere names it (``grid_a100d-3-40c``)."""

    gpu: str  # catalog model name, e.g. A100-80GB-PCIe
    vgpu_type: str  # NVIDIA type name, e.g. A100D-3-40C
    vsphere_names: tuple[str, ...]  # every spelling the sources give; the first is the canonical one
    series: str  # C (compute) or Q (workstation)
    framebuffer_mb: int
    max_per_gpu: int
    max_per_gpu_mixed: int | None  # None: not available in mixed-size mode
    mig_backed: bool
    gpu_slices: int | None  # compute slices of the MIG instance (MIG-backed only)
    mig_instance: str | None  # "3g.40gb" (MIG-backed only)
    prefix_confidence: str
    note: str = ""

    @property
    def vsphere_name(self) -> str:
        """The name to configure on a VM (first spelling of the source table)."""
        return self.vsphere_names[0]

    @property
    def time_sliced(self) -> bool:
        return not self.mig_backed

    @property
    def bare_name(self) -> str:
        """The profile's canonical key (``profile_key``): ``a100d-3-40c``."""
        return profile_key(self.vsphere_names[0])


@dataclass(frozen=True)
class GpuModel:
    """One GPU board of the catalog."""

    name: str  # canonical model name: A100-80GB-PCIe
    aliases: tuple[str, ...]
    display_name: str
    architecture: str  # turing, ampere, ada, hopper
    form_factor: str  # PCIe or SXM
    pci_device_ids: tuple[int, ...]
    pci_device_name: str
    vgpu_prefix: str  # A100D
    profiles_file: str
    mig_geometry: str | None  # key into the MIG table, e.g. A100-80GB; None: no MIG
    nvlink: bool
    mmio_gb: int  # 64-bit MMIO a VM needs per GPU of this board; 0: no 64-bit MMIO needed
    mmio_source: str
    profiles: tuple[VgpuProfile, ...] = field(repr=False)
    mig_profiles: tuple[MigProfile, ...] = field(repr=False)

    @property
    def mig_capable(self) -> bool:
        return bool(self.mig_profiles)

    @property
    def memory_slices(self) -> int:
        """MIG memory slices of the GPU (8 on A100/H100, 4 on A30); 0 without MIG."""
        return max((start + p.size for p in self.mig_profiles for start in p.starts), default=0)

    @property
    def compute_slices(self) -> int:
        """SM slices of the GPU (7 on A100/H100, 4 on A30); 0 without MIG."""
        return max((p.compute_slices for p in self.mig_profiles), default=0)

    @property
    def mig_reboot_required(self) -> bool:
        """Enabling MIG on ESXi needs a host reboot on Ampere, not on Hopper and later (NVAIE doc)."""
        return self.mig_capable and self.architecture == "ampere"

    @property
    def framebuffer_mb(self) -> int:
        """Framebuffer of the GPU: its largest vGPU profile."""
        return max(p.framebuffer_mb for p in self.profiles)

    @property
    def supports_mixed_size(self) -> bool:
        return any(p.max_per_gpu_mixed for p in self.profiles)

    @property
    def time_sliced_profiles(self) -> tuple[VgpuProfile, ...]:
        return tuple(p for p in self.profiles if not p.mig_backed)

    @property
    def mig_backed_profiles(self) -> tuple[VgpuProfile, ...]:
        return tuple(p for p in self.profiles if p.mig_backed)

    def profile(self, name: str) -> VgpuProfile | None:
        """The vGPU profile called ``name`` (``grid_``/``nvidia_`` prefix optional, any case), or None."""
        key = profile_key(name)
        return next((p for p in self.profiles if p.bare_name == key), None)

    def mig_profile(self, name: str) -> MigProfile | None:
        """The MIG GPU-instance profile ``3g.40gb`` (``MIG 3g.40gb`` also accepted), or None."""
        key = name.strip().lower().removeprefix("mig ").strip()
        return next((p for p in self.mig_profiles if p.name == key), None)

    def placements(self, mig_name: str) -> tuple[int, ...]:
        """Allowed start slots of a MIG instance profile on this GPU (empty when unknown)."""
        profile = self.mig_profile(mig_name)
        return profile.starts if profile else ()

    def profile_names(self) -> tuple[str, ...]:
        return tuple(p.vsphere_name for p in self.profiles)


def profile_key(name: str) -> str:
    """The canonical key of a vGPU profile however it is spelled: ``GRID_A100D-3-40C``, ``nvidia_a100d-3-40c``,
    ``A100D-3-40C`` -> ``a100d-3-40c`` (case, outer blanks and the ``grid_``/``nvidia_`` prefix vSphere adds by
    board and driver ignored). The one normalisation of a profile name: the spec's ``VgpuProfileName`` makes it
    where the stack is read, and every spelling vSphere reports back is read through it."""
    key = name.strip().lower()
    for prefix in VSPHERE_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key
