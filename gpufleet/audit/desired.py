"""The desired GPU state of a fleet, as plain dataclasses the diff compares with the actual state.

``desired_state(fleet)`` derives it from the spec with the same functions the deploy uses: the catalog (PCI device
ids, MIG geometry), ``gpufleet.spec.derive`` (extraConfig per VM: MMIO, P2P, NUMA; MIG mode per GPU),
``gpufleet.placement.mig`` (where each MIG-backed vGPU lands on its GPU's 8 memory slices) and
``gpufleet.vms.desired`` (a VM's GPU/RDMA devices as ``vms apply`` converges them).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from gpufleet.audit.vcenter_state import key_digest
from gpufleet.catalog import GpuModel, lookup_gpu
from gpufleet.catalog.capacity import GpuCapacity
from gpufleet.placement import mig
from gpufleet.spec.derive import (
    host_mig_modes,
    host_needs_vgpu_driver,
    template_extra_config,
    vsphere_profile_name,
)
from gpufleet.spec.models import Fleet, GpuSpec, HostSpec
from gpufleet.vms.changes import DesiredDevices
from gpufleet.vms.desired import desired_devices
from gpufleet.vsphere.licenses import key_fingerprint


@dataclass(frozen=True)
class MigSlot:
    """One GPU instance on a MIG map: profile, start memory slice, size in slices, and who uses it."""

    profile: str  # "3g.40gb"
    start: int
    size: int
    owner: str | None = None  # VM name (desired) or GI id (actual)


@dataclass(frozen=True)
class VgpuUse:
    """One vGPU on a physical GPU (for occupancy bars): which VM, which profile, its framebuffer."""

    vm: str
    profile: str
    framebuffer_mb: int = 0


@dataclass(frozen=True)
class DesiredGpu:
    pci: str
    model: str
    mode: str  # vgpu | mig | passthrough | dynamic-passthrough
    device_ids: tuple[int, ...] = ()  # PCI device ids of the catalog model
    mig_capable: bool = False
    memory_slices: int = 0  # 8 on A100/H100
    framebuffer_mb: int = 0
    mig_enabled: bool = False  # desired MIG mode
    mig_layout: tuple[MigSlot, ...] = ()  # desired GPU instances (MIG-backed vGPUs placed on the slices)
    vgpus: tuple[VgpuUse, ...] = ()  # time-sliced vGPUs of VMs on this GPU
    max_vgpus: int | None = None  # capacity of the time-sliced profile in use (occupancy bar)


@dataclass(frozen=True)
class DesiredHost:
    name: str
    cluster: str
    graphics_type: str
    assignment_policy: str
    driver_version: str | None
    gpus: tuple[DesiredGpu, ...] = ()
    ats: bool = False  # any NIC with ats: true
    profiles_needed: tuple[str, ...] = ()  # vGPU profiles (bare names) the host's VMs use
    license_digest: str | None = None  # digest of the licence key the spec names (the key is not kept)
    license_fingerprint: str | None = None  # its masked form, *****-*****-*****-*****-ABCDE
    license_source: str | None = None  # where that key came from ("$GPUFLEET_HOST_LICENSE"), for messages

    def gpu(self, pci: str) -> DesiredGpu | None:
        return next((g for g in self.gpus if g.pci == pci), None)


@dataclass(frozen=True)
class DesiredVm:
    """A VM (or template) of the spec: its GPU/RDMA devices and GPU keys as ``vms apply`` converges them
    (``DesiredDevices``), plus what the template fixes (firmware, hardware version)."""

    name: str
    host: str | None
    firmware: str
    hardware_version: int
    devices: DesiredDevices
    template: bool = False


@dataclass(frozen=True)
class DesiredState:
    datacenter: str
    hosts: dict[str, DesiredHost]
    vms: dict[str, DesiredVm]  # VMs and templates, by name


# ------------------------------------------------------------------------------------------ from the spec


def _license(fleet: Fleet, host: HostSpec, environ: Mapping[str, str]) -> tuple[str | None, str | None, str | None]:
    """(digest, masked key, source) of the licence key the spec names for ``host``. No key at hand (variable unset):
    only the source, and the audit checks that the host is at least not in evaluation mode. No licence named: Nones."""
    ref = host.license or fleet.licensing.host_license
    if ref is None:
        return None, None, None  # the spec names no licence: not checked
    value = environ.get(ref.env) if ref.env else None
    if not value:
        return None, None, f"${ref.env} (unset)" if ref.env else f"Pulumi secret {ref.config}"
    return key_digest(value), key_fingerprint(value), f"${ref.env}"


@dataclass
class _GpuSlots:
    spec: GpuSpec
    model: GpuModel | None
    mig: list[tuple[str, str]] = field(default_factory=list)  # (vm, profile)
    timesliced: list[tuple[str, str]] = field(default_factory=list)


def _capacity(slot: _GpuSlots) -> GpuCapacity | None:
    return GpuCapacity(slot.model, str(slot.spec.mode), slot.spec.mixed_size) if slot.model else None


def _takes(slot: _GpuSlots, profile: str) -> bool:
    """Can this GPU take one more vGPU of ``profile``, as the driver would place it? (the capacity model's rules)"""
    capacity, vgpu = _capacity(slot), slot.model.profile(profile) if slot.model else None
    if capacity is None or vgpu is None:
        return False
    held = [slot.model.profile(p) for _, p in (slot.mig if vgpu.mig_backed else slot.timesliced)]
    return capacity.refusal([h for h in held if h is not None], vgpu) is None


def assign_vgpus(
    gpus: list[GpuSpec], requests: list[tuple[str, str, str | None]]
) -> tuple[dict[str, _GpuSlots], list[tuple[str, str]]]:
    """Which GPU of a host each vGPU (vm, profile, pinned pci) lands on: pinned ones where pinned, the others on
    the first GPU that takes them (same rule as the driver's: MIG fit, per-GPU maxima). Returns the slots per PCI
    address and the vGPUs that fit nowhere. Used to draw the maps, not to judge drift."""
    slots = {g.pci: _GpuSlots(g, lookup_gpu(g.model)) for g in gpus}
    unplaced: list[tuple[str, str]] = []
    ordered = sorted(requests, key=lambda r: r[2] is None)  # pinned first
    for vm, profile, pinned in ordered:
        candidates = [slots[pinned]] if pinned in slots else list(slots.values())
        target = next((s for s in candidates if _takes(s, profile)), None)
        if target is None:
            unplaced.append((vm, profile))
            continue
        vgpu = target.model.profile(profile) if target.model else None
        (target.mig if vgpu is not None and vgpu.mig_backed else target.timesliced).append((vm, profile))
    return slots, unplaced


def mig_layout(model: GpuModel | None, uses: list[tuple[str, str]]) -> tuple[MigSlot, ...]:
    """GPU instances of ``uses`` (vm, MIG-backed profile) on one GPU, placed as the driver places them."""
    if model is None or not uses or not model.mig_capable:
        return ()
    found = mig.fit(model, [p for _, p in uses])
    if not found.fits:
        return ()
    return tuple(
        MigSlot(profile=p.instance, start=p.start, size=p.size, owner=vm)
        for (vm, _), p in zip(uses, found.placements, strict=True)
    )


def _occupancy(slot: _GpuSlots | None) -> tuple[tuple[VgpuUse, ...], int | None]:
    """The time-sliced vGPUs a GPU holds and the most it holds of them (the capacity model's per-GPU maximum)."""
    capacity = _capacity(slot) if slot else None
    if slot is None or capacity is None:
        return (), None
    out, limit = [], None
    for vm, profile in slot.timesliced:
        vgpu = capacity.model.profile(profile)
        out.append(VgpuUse(vm=vm, profile=profile, framebuffer_mb=vgpu.framebuffer_mb if vgpu else 0))
        if vgpu is not None:
            cap = capacity.max_count(vgpu)
            limit = cap if limit is None else min(limit, cap)
    return tuple(out), limit


def _desired_gpu(spec: GpuSpec, slot: _GpuSlots | None, mig_wanted: bool) -> DesiredGpu:
    model = lookup_gpu(spec.model)
    vgpus, limit = _occupancy(slot)
    return DesiredGpu(
        pci=spec.pci,
        model=model.name if model else spec.model,
        mode=str(spec.mode),
        device_ids=tuple(model.pci_device_ids) if model else (),
        mig_capable=bool(model and model.mig_capable),
        memory_slices=model.memory_slices if model else 0,
        framebuffer_mb=model.framebuffer_mb if model else 0,
        mig_enabled=mig_wanted,
        mig_layout=mig_layout(model, slot.mig if slot else []),
        vgpus=vgpus,
        max_vgpus=limit,
    )


def desired_state(fleet: Fleet, environ: Mapping[str, str] | None = None) -> DesiredState:
    """The desired state of every host, GPU, VM and template of ``fleet``."""
    env = os.environ if environ is None else environ
    hosts: dict[str, DesiredHost] = {}
    for host in fleet.hosts:
        vms = [vm for vm in fleet.vms if vm.host == host.name]
        requests = [(vm.name, vsphere_profile_name(r.profile), r.gpu) for vm in vms for r in vm.vgpu]
        slots, _ = assign_vgpus(list(host.gpus), requests)
        modes = host_mig_modes(host)
        driver = fleet.driver_for(host)
        digest, masked, source = _license(fleet, host, env)
        hosts[host.name] = DesiredHost(
            name=host.name,
            cluster=host.cluster or fleet.cluster,
            graphics_type=host.graphics_type,
            assignment_policy=host.assignment_policy,
            driver_version=driver.version if driver and host_needs_vgpu_driver(host) else None,
            gpus=tuple(_desired_gpu(g, slots.get(g.pci), modes.get(g.pci, False)) for g in host.gpus),
            ats=any(n.ats for n in host.nics),
            profiles_needed=tuple(dict.fromkeys(p for _, p, _ in requests)),
            license_digest=digest,
            license_fingerprint=masked,
            license_source=source,
        )
    vms: dict[str, DesiredVm] = {}
    for tpl in fleet.templates:
        vms[tpl.name] = DesiredVm(
            name=tpl.name,
            host=None,
            firmware=tpl.firmware,
            hardware_version=tpl.hardware_version,
            devices=DesiredDevices(
                extra_config=template_extra_config(fleet, tpl), lock_memory=tpl.memory_reservation_locked
            ),
            template=True,
        )
    for vm in fleet.vms:
        tpl = fleet.template(vm.template)
        vms[vm.name] = DesiredVm(
            name=vm.name,
            host=vm.host,
            firmware=tpl.firmware if tpl else "efi",
            hardware_version=tpl.hardware_version if tpl else 0,
            devices=desired_devices(fleet, vm),
        )
    return DesiredState(datacenter=fleet.datacenter, hosts=hosts, vms=vms)
