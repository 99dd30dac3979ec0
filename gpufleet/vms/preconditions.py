"""Before a VM's GPU devices change: what its host offers, and whether the change can be made there.

``read_host_facts`` asks vCenter once per host: the vGPU profiles it offers (``config.sharedPassthruGpuTypes``,
plus the config target's ``sharedGpuPassthroughTypes``), its PCI devices and their passthrough state, its
networks, and the GPU devices of the other VMs on it. ``check_preconditions`` then answers, before anything
changes, with every problem at once (``PreconditionError``): a profile the host does not offer (listing those it
does), a PCI device missing, not enabled for passthrough or taken by another VM, a hardware version too old for
Dynamic DirectPath / PVRDMA, a network the host lacks, no MIG room left on the host's GPUs. The power-state rule
(``ChangeSet.require_power``) is checked last.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from pyVmomi import vim

from gpufleet.catalog import GpuModel, VgpuProfile, gpu_by_pci_device_id, lookup_profile, profile_key
from gpufleet.catalog.capacity import GpuCapacity
from gpufleet.errors import GpufleetError
from gpufleet.spec.derive import MIN_HW_VERSION_DYNAMIC_DIRECTPATH, MIN_HW_VERSION_PVRDMA, vsphere_profile_name
from gpufleet.spec.models import GpuMode, HostSpec
from gpufleet.vms.changes import ChangeSet, DesiredDevices
from gpufleet.vsphere.inventory import collect
from gpufleet.vsphere.vm_devices import DynamicDirectPathDevice, VmDeviceState

NVIDIA_VENDOR_ID = 0x10DE


class PreconditionError(GpufleetError):
    """A VM's device change cannot be made on its host; nothing was changed. ``problems`` lists each reason."""

    def __init__(self, vm: str, problems: list[str]) -> None:
        self.vm = vm
        self.problems = list(problems)
        super().__init__(f"{vm}: " + "; ".join(self.problems))


@dataclass(frozen=True)
class PciInfo:
    id: str
    vendor_id: int
    device_id: int
    name: str
    passthru_enabled: bool | None  # None: the host does not report passthrough state for it


@dataclass(frozen=True)
class VmHostFacts:
    """What one host offers and what its other VMs already use."""

    name: str
    offered_profiles: tuple[str, ...]
    pci: dict[str, PciInfo] = field(default_factory=dict)
    networks: tuple[str, ...] = ()
    vgpus_in_use: tuple[tuple[str, str], ...] = ()  # (vm, profile) of the other VMs on the host
    directpath_in_use: dict[str, str] = field(default_factory=dict)  # PCI address -> vm

    def gpus(self) -> list[tuple[PciInfo, GpuModel]]:
        """The host's NVIDIA GPUs the catalog knows, by PCI address."""
        found = []
        for info in sorted(self.pci.values(), key=lambda p: p.id):
            model = gpu_by_pci_device_id(info.device_id) if info.vendor_id == NVIDIA_VENDOR_ID else None
            if model is not None:
                found.append((info, model))
        return found


def _u16(value: int | None) -> int:
    return (value or 0) & 0xFFFF


def read_host_facts(si: vim.ServiceInstance, host: vim.HostSystem, vm: vim.VirtualMachine | None) -> VmHostFacts:
    """Everything ``check_preconditions`` needs about ``host``; ``vm`` (the one being changed) is left out of the
    in-use lists."""
    offered = list(host.config.sharedPassthruGpuTypes or []) if host.config else []
    browser = vm.environmentBrowser if vm is not None else None
    if browser is not None:
        try:
            target = browser.QueryConfigTarget(host=host)
        except vim.fault.VimFault:
            target = None
        offered += [t.vgpu for t in (target.sharedGpuPassthroughTypes if target else None) or [] if t.vgpu]
    enabled = {
        (info.id or "").lower(): bool(info.passthruEnabled)
        for info in (host.config.pciPassthruInfo if host.config else None) or []
    }
    pci = {
        (d.id or "").lower(): PciInfo(
            id=(d.id or "").lower(),
            vendor_id=_u16(d.vendorId),
            device_id=_u16(d.deviceId),
            name=d.deviceName or "",
            passthru_enabled=enabled.get((d.id or "").lower()),
        )
        for d in (host.hardware.pciDevice if host.hardware else None) or []
    }
    vgpus: list[tuple[str, str]] = []
    directpath: dict[str, str] = {}
    for row in _vms_of(si, host):
        if vm is not None and row["obj"] == vm:
            continue
        for device in row["config.hardware.device"] or []:
            if not isinstance(device, vim.vm.device.VirtualPCIPassthrough):
                continue
            backing = device.backing
            if isinstance(backing, vim.vm.device.VirtualPCIPassthrough.VmiopBackingInfo):
                vgpus.append((row["name"], backing.vgpu))
            elif isinstance(backing, vim.vm.device.VirtualPCIPassthrough.DeviceBackingInfo) and backing.id:
                directpath[backing.id.lower()] = row["name"]
    return VmHostFacts(
        name=host.name,
        offered_profiles=tuple(dict.fromkeys(offered)),
        pci=pci,
        networks=tuple(sorted({n.name for n in host.network or []})),
        vgpus_in_use=tuple(vgpus),
        directpath_in_use=directpath,
    )


def _vms_of(si: vim.ServiceInstance, host: vim.HostSystem) -> list[dict[str, Any]]:
    """Name and devices of every VM running on or registered to ``host``: one PropertyCollector round trip over
    the host's cluster, filtered on ``runtime.host`` (``host.vm`` may list objects already gone)."""
    rows = collect(si, vim.VirtualMachine, ["name", "runtime.host", "config.hardware.device"], root=host.parent)
    return [r for r in rows if r["runtime.host"] == host]


def resolve_desired(desired: DesiredDevices, facts: VmHostFacts) -> DesiredDevices:
    """``desired`` in the host's terms: vGPU profiles spelled as the host offers them (``grid_`` or
    ``nvidia_``), Dynamic DirectPath device ids as the host's GPUs of that board report them."""
    vgpus = tuple(vsphere_profile_name(p, facts.offered_profiles, unoffered=p) for p in desired.vgpus)
    dynamic = []
    for slot in desired.dynamic:
        wanted = gpu_by_pci_device_id(slot.device_id)
        match = next(
            (
                info
                for info, model in facts.gpus()
                if wanted is not None and model.name == wanted.name and info.vendor_id == slot.vendor_id
            ),
            None,
        )
        dynamic.append(replace(slot, device_id=match.device_id) if match else slot)
    return replace(desired, vgpus=vgpus, dynamic=tuple(dynamic))


def mig_room(facts: VmHostFacts, profiles: list[str], host_spec: HostSpec | None = None) -> tuple[bool, str]:
    """Can the host's MIG-mode GPUs hold these MIG-backed vGPU profiles (those of every VM on the host,
    counted whatever their power state: vSphere creates the GPU instances at power-on)? Exact search: each
    profile goes to one GPU, and each GPU's set must fit it (``gpufleet.catalog.capacity``, the planner's model)."""
    wanted = [(p, found) for p in profiles if (found := lookup_profile(p)) is not None and found[1].mig_backed]
    if not wanted:
        return True, ""
    mig_modes = {g.pci: g.mode == GpuMode.MIG for g in host_spec.gpus} if host_spec else {}
    gpus = [
        (info, GpuCapacity(model, GpuMode.MIG.value))
        for info, model in facts.gpus()
        if model.mig_capable and mig_modes.get(info.id, True)
    ]
    if not gpus:
        return False, f"host {facts.name} has no GPU in MIG mode for {', '.join(p for p, _ in wanted)}"
    # Largest instances first prunes the search early.
    order = sorted(
        wanted, key=lambda w: -(inst.size if (inst := w[1][0].mig_profile(w[1][1].mig_instance or "")) else 0)
    )
    loads: list[list[VgpuProfile | None]] = [[] for _ in gpus]

    def place(i: int) -> bool:
        if i == len(order):
            return True
        vgpu = order[i][1][1]
        tried: set[tuple[str, ...]] = set()
        for g, (_info, capacity) in enumerate(gpus):
            state = tuple(sorted(p.vsphere_name for p in loads[g] if p))
            if state in tried or capacity.refusal(loads[g], vgpu) is not None:
                continue
            tried.add(state)
            loads[g].append(vgpu)
            if place(i + 1):
                return True
            loads[g].pop()
        return False

    if place(0):
        return True, ""
    return False, (
        f"no MIG room on host {facts.name} for {', '.join(p for p, _ in wanted)} across its MIG GPUs "
        f"({', '.join(info.id for info, _ in gpus)})"
    )


def check_preconditions(
    state: VmDeviceState,
    desired: DesiredDevices,
    change_set: ChangeSet,
    facts: VmHostFacts,
    *,
    allow_power_cycle: bool,
    host_spec: HostSpec | None = None,
) -> None:
    """Raise ``PreconditionError`` (every problem) or ``PowerCycleRequiredError`` before anything changes."""
    problems: list[str] = []
    offered = {profile_key(p) for p in facts.offered_profiles}
    added = Counter((c.kind, c.target) for c in change_set.changes if c.action == "add")
    for kind, target in added:
        if kind == "vgpu" and profile_key(target) not in offered:
            valid = ", ".join(facts.offered_profiles) or "none: is the NVIDIA host driver installed?"
            problems.append(f"host {facts.name} does not offer vGPU profile {target} (offers: {valid})")
        elif kind == "directpath":
            info = facts.pci.get(target)
            if info is None:
                problems.append(
                    f"host {facts.name} has no PCI device {target} (devices: {', '.join(sorted(facts.pci))})"
                )
            elif info.passthru_enabled is False:
                problems.append(f"PCI device {target} of host {facts.name} is not enabled for passthrough")
            if target in facts.directpath_in_use:
                problems.append(
                    f"PCI device {target} of host {facts.name} is already passed to {facts.directpath_in_use[target]}"
                )
        elif kind == "dynamic-directpath":
            allowed = target.split(" ")[0]
            if not any(f"0x{i.vendor_id:04x}:0x{i.device_id:04x}" == allowed for i in facts.pci.values()):
                problems.append(f"host {facts.name} has no PCI device {allowed} for Dynamic DirectPath")
            if state.hardware_version < MIN_HW_VERSION_DYNAMIC_DIRECTPATH:
                problems.append(
                    f"Dynamic DirectPath needs hardware version >= {MIN_HW_VERSION_DYNAMIC_DIRECTPATH} "
                    f"(the VM is vmx-{state.hardware_version})"
                )
        elif kind == "pvrdma":
            if state.hardware_version < MIN_HW_VERSION_PVRDMA:
                problems.append(
                    f"PVRDMA needs hardware version >= {MIN_HW_VERSION_PVRDMA} (the VM is vmx-{state.hardware_version})"
                )
            if target not in facts.networks:
                problems.append(f"host {facts.name} has no network {target!r} (networks: {', '.join(facts.networks)})")
    if any(c.kind == "vgpu" and c.action == "add" for c in change_set.changes):
        others = [p for _vm, p in facts.vgpus_in_use]
        ok, why = mig_room(facts, others + list(desired.vgpus), host_spec)
        if not ok:
            problems.append(why)
    if problems:
        raise PreconditionError(state.vm, problems)
    change_set.require_power(allow_power_cycle)


def dynamic_slot_for_model(model: GpuModel, label: str | None = None) -> DynamicDirectPathDevice:
    """The Dynamic DirectPath slot of a board: NVIDIA's vendor id and the board's (first) PCI device id."""
    return DynamicDirectPathDevice(vendor_id=NVIDIA_VENDOR_ID, device_id=model.pci_device_ids[0], label=label)
