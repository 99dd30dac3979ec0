"""Values derived from the fleet spec and the catalog that other layers need. Compute them here, nowhere else.

- the GPU boards a VM's devices are (``vm_gpu_models``);
- the 64-bit MMIO size of a VM / template (power of two >= the sum of what its GPUs need, NVAIE Table 18);
- the extraConfig keys a VM / template needs (``pciPassthru.use64bitMMIO``, ``pciPassthru.64bitMMIOSizeGB``,
  ``pciPassthru.allowP2P``, ``pciPassthru.RelaxACSforP2P``, ``numa.nodeAffinity``);
- the MIG mode each host GPU needs, and whether enabling it needs a host reboot (Ampere) or not (Hopper);
- the name vSphere gets for a vGPU profile key (``grid_`` or ``nvidia_``: the host's spelling, else the catalog's).
"""

from __future__ import annotations

from collections.abc import Iterable

from gpufleet.catalog import GpuModel, lookup_gpu, lookup_profile, profile_key
from gpufleet.spec.models import Fleet, GpuMode, HostSpec, TemplateSpec, VgpuProfileName, VmSpec

USE_64BIT_MMIO = "pciPassthru.use64bitMMIO"
MMIO_SIZE_GB = "pciPassthru.64bitMMIOSizeGB"
ALLOW_P2P = "pciPassthru.allowP2P"
RELAX_ACS = "pciPassthru.RelaxACSforP2P"
NUMA_AFFINITY = "numa.nodeAffinity"
MANAGED_EXTRA_CONFIG_KEYS = (USE_64BIT_MMIO, MMIO_SIZE_GB, ALLOW_P2P, RELAX_ACS, NUMA_AFFINITY)
"""Every extraConfig key gpufleet owns on a GPU VM (set when needed, removed when no longer needed)."""

MIN_HW_VERSION_PVRDMA = 13
MIN_HW_VERSION_DYNAMIC_DIRECTPATH = 17
MAX_VGPUS_PER_VM = 4  # vSphere 6.7 U3+ "up to four NVIDIA vGPUs" per VM (vm_advanced_settings_gpu_rdma_pvrdma.txt)


def next_power_of_two(value: int) -> int:
    """Smallest power of two >= value (value >= 1)."""
    return 1 << max(0, (value - 1).bit_length())


def is_power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


def vsphere_profile_name(profile: str, offered: Iterable[str] = (), *, unoffered: str | None = None) -> str:
    """vSphere's form of a vGPU profile (the spec's key, or any spelling): the host's own spelling when ``offered``
    (its ``sharedPassthruGpuTypes``) has it, else ``unoffered`` when given, else the catalog's (``grid_h100-3-40c``);
    unknown names come back lower-cased. The one place a profile is spelled for vSphere; ``catalog.profile_key``
    reads vSphere's spellings back."""
    key = profile_key(profile)
    host = {profile_key(p): p for p in offered}.get(key)  # the last spelling wins, as the host lists them
    if host is not None:
        return host
    if unoffered is not None:
        return unoffered
    found = lookup_profile(key)
    if found is not None:
        return found[1].vsphere_name
    return profile.spelled if isinstance(profile, VgpuProfileName) else profile.strip().lower()


def vm_gpu_models(fleet: Fleet, vm: VmSpec) -> list[GpuModel]:
    """One catalog board per GPU device of the VM (vGPUs by profile, DirectPath by host GPU, Dynamic by model).
    Devices whose board is unknown (invalid spec) are left out; ``validate_fleet`` reports them."""
    models: list[GpuModel] = []
    for request in vm.vgpu:
        found = lookup_profile(request.profile)
        if found:
            models.append(found[0])
    host = fleet.host(vm.host) if vm.host else None
    for pt in vm.passthrough:
        if pt.model:
            gpu = lookup_gpu(pt.model)
        else:
            spec = next((g for g in host.gpus if g.pci == pt.gpu), None) if host else None
            gpu = lookup_gpu(spec.model) if spec else None
        if gpu:
            models.append(gpu)
    return models


def required_mmio_gb(models: list[GpuModel]) -> int:
    """64-bit MMIO a VM with these GPUs needs: the per-GPU needs summed, rounded up to a power of two;
    0 when none of them needs 64-bit MMIO (e.g. T4 only)."""
    total = sum(m.mmio_gb for m in models)
    return next_power_of_two(total) if total > 0 else 0


def vm_required_mmio_gb(fleet: Fleet, vm: VmSpec) -> int:
    """What the VM's own GPUs need (ignoring any template override)."""
    return required_mmio_gb(vm_gpu_models(fleet, vm))


def vm_mmio_gb(fleet: Fleet, vm: VmSpec) -> int:
    """The VM's 64-bit MMIO size: the template's ``mmioSizeGb`` when set, else what its GPUs need (0: none)."""
    template = fleet.template(vm.template)
    if template is not None and template.mmio_size_gb is not None:
        return template.mmio_size_gb
    return vm_required_mmio_gb(fleet, vm)


def template_mmio_gb(fleet: Fleet, template: TemplateSpec) -> int:
    """The template's 64-bit MMIO size: its override, else the largest need among the VMs cloned from it."""
    if template.mmio_size_gb is not None:
        return template.mmio_size_gb
    return max((vm_required_mmio_gb(fleet, vm) for vm in fleet.vms if vm.template == template.name), default=0)


def _extra_config(template: TemplateSpec | None, mmio: int) -> dict[str, str]:
    config: dict[str, str] = {}
    if mmio > 0:
        config[USE_64BIT_MMIO] = "TRUE"
        config[MMIO_SIZE_GB] = str(mmio)
    if template is not None:
        if template.p2p:
            config[ALLOW_P2P] = "true"
        if template.relax_acs:
            config[RELAX_ACS] = "true"
        if template.numa_node is not None:
            config[NUMA_AFFINITY] = str(template.numa_node)
    return config


def vm_extra_config(fleet: Fleet, vm: VmSpec) -> dict[str, str]:
    """extraConfig keys (of ``MANAGED_EXTRA_CONFIG_KEYS``) the VM needs, with their values."""
    return _extra_config(fleet.template(vm.template), vm_mmio_gb(fleet, vm))


def template_extra_config(fleet: Fleet, template: TemplateSpec) -> dict[str, str]:
    """extraConfig keys (of ``MANAGED_EXTRA_CONFIG_KEYS``) the template needs, with their values."""
    return _extra_config(template, template_mmio_gb(fleet, template))


def vm_has_gpu_devices(vm: VmSpec) -> bool:
    return bool(vm.vgpu or vm.passthrough or any(r.type == "passthrough" for r in vm.rdma))


def host_mig_modes(host: HostSpec) -> dict[str, bool]:
    """PCI address -> MIG mode wanted on that GPU (True only for GPUs in mode ``mig``)."""
    return {gpu.pci: gpu.mode == GpuMode.MIG for gpu in host.gpus}


def mig_reboot_required(model: str) -> bool:
    """Does enabling MIG on this board need an ESXi host reboot? Ampere yes, Hopper and later no."""
    gpu = lookup_gpu(model)
    return bool(gpu and gpu.mig_reboot_required)


def host_mig_reboot_required(host: HostSpec) -> bool:
    """Does any GPU of the host that must run MIG need a host reboot to enable it?"""
    return any(gpu.mode == GpuMode.MIG and mig_reboot_required(gpu.model) for gpu in host.gpus)


def host_needs_vgpu_driver(host: HostSpec) -> bool:
    """Hosts with time-sliced or MIG-backed vGPU GPUs need the NVIDIA vGPU host driver."""
    return any(gpu.mode in (GpuMode.VGPU, GpuMode.MIG) for gpu in host.gpus)
