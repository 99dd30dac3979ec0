"""What the HTML report draws, computed from an ``AuditResult``: per host its facts (desired / actual), its GPUs
as MIG slice maps (8 memory slices, desired and actual side by side) or vGPU occupancy bars, its VMs and findings.

The two sides are drawn each from its own state: the desired side from the spec, the actual side from what was
read only (the GPU's MIG mode from the host's nvidia-smi, passthrough from vCenter), so a GPU the spec wants as
time-sliced vGPU but that really runs MIG is drawn as a vGPU bar beside a MIG map. The actual MIG map is what the
host's ``nvidia-smi mig -lgi`` reports; while the VMs are off no GPU instance exists (vSphere creates them at
power-on), so the map is then projected from the VMs' MIG-backed vGPUs, placed on the GPUs that really are in MIG
mode as the driver would place them, and labelled so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gpufleet.audit.desired import DesiredGpu, DesiredHost, MigSlot, VgpuUse, assign_vgpus, mig_layout
from gpufleet.audit.findings import Finding
from gpufleet.audit.result import AuditResult
from gpufleet.audit.state import GpuSshState, HostSshState, HostVcState, VmVcState, normalize_pci
from gpufleet.catalog import lookup_gpu
from gpufleet.catalog.capacity import GpuCapacity
from gpufleet.spec.models import GpuSpec


@dataclass(frozen=True)
class SliceBlock:
    """A GPU instance (or a free slice) on the map: CSS grid column ``start+1`` spanning ``size``."""

    start: int
    size: int
    label: str  # "3g.40gb" or "free"
    owner: str = ""
    free: bool = False


@dataclass(frozen=True)
class SliceMap:
    slices: int
    blocks: tuple[SliceBlock, ...]
    source: str  # "spec (planned placement)", HOST_SOURCE, "projected from the VMs' vGPUs", "no GPU instances", ...

    @property
    def used(self) -> int:
        return sum(b.size for b in self.blocks if not b.free)


@dataclass(frozen=True)
class Bar:
    """vGPU occupancy of a time-sliced GPU: one segment per vGPU, ``capacity`` segments in all."""

    uses: tuple[VgpuUse, ...]
    capacity: int | None
    source: str

    @property
    def percent(self) -> int:
        if not self.capacity:
            return 0
        return min(100, round(100 * len(self.uses) / self.capacity))

    @property
    def free(self) -> int:
        return max(0, (self.capacity or 0) - len(self.uses))


@dataclass(frozen=True)
class GpuView:
    pci: str
    model: str
    mode: str
    status: str  # ok | drift | unknown
    findings: tuple[Finding, ...]
    mig_desired: str | None = None  # "enabled" / "disabled"
    mig_actual: str | None = None
    desired_map: SliceMap | None = None
    actual_map: SliceMap | None = None
    desired_bar: Bar | None = None
    actual_bar: Bar | None = None
    desired_owner: str | None = None  # passthrough: the VM the spec gives it to
    actual_owner: str | None = None
    actual_mode: str | None = None  # mig | vgpu | passthrough as read; None: not read


@dataclass(frozen=True)
class Fact:
    label: str
    desired: str
    actual: str
    ok: bool | None  # None: not compared (not read)


@dataclass(frozen=True)
class VmView:
    name: str
    power_state: str
    desired: str
    actual: str
    status: str
    findings: tuple[Finding, ...]


@dataclass
class HostView:
    name: str
    status: str  # ok | drift | unreachable
    unreachable: str | None
    facts: list[Fact] = field(default_factory=list)
    gpus: list[GpuView] = field(default_factory=list)
    vms: list[VmView] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


HOST_SOURCE = "read from the host (nvidia-smi mig -lgi)"


def _blocks(slots: tuple[MigSlot, ...], slices: int) -> tuple[SliceBlock, ...]:
    used: set[int] = set()
    blocks = []
    for s in sorted(slots, key=lambda s: s.start):
        blocks.append(SliceBlock(start=s.start, size=s.size, label=s.profile, owner=s.owner or ""))
        used.update(range(s.start, s.start + s.size))
    blocks += [SliceBlock(start=i, size=1, label="free", free=True) for i in range(slices) if i not in used]
    return tuple(sorted(blocks, key=lambda b: b.start))


def _actual_map(gpu: DesiredGpu, seen: GpuSshState | None, projected: tuple[MigSlot, ...], vms_off: bool) -> SliceMap:
    slices = gpu.memory_slices or 8
    if seen is not None and seen.instances:
        slots = tuple(
            MigSlot(i.profile, i.start, i.size, f"GI {i.gi_id}" if i.gi_id is not None else "") for i in seen.instances
        )
        return SliceMap(slices, _blocks(slots, slices), HOST_SOURCE)
    if projected:
        why = " (VMs off: no GPU instances yet)" if vms_off else ""
        return SliceMap(slices, _blocks(projected, slices), "projected from the VMs' vGPUs" + why)
    return SliceMap(slices, _blocks((), slices), "no GPU instances" if seen is not None else "not read")


def _onoff(value: bool | None) -> str | None:
    return None if value is None else ("enabled" if value else "disabled")


def _vm_devices_text(vgpus: list[str], directpath: list[str], dynamic: list[str], pvrdma: list[str]) -> str:
    parts = [*vgpus, *(f"DirectPath {d}" for d in directpath), *(f"Dynamic {d}" for d in dynamic)]
    parts += [f"PVRDMA {p}" for p in pvrdma]
    return ", ".join(parts) or "no GPU"


def _host_facts(
    want: DesiredHost, vc: HostVcState | None, ssh: HostSshState | None, findings: list[Finding]
) -> list[Fact]:
    facts: list[Fact] = []
    drifted = {f.path for f in findings}

    def ok(path: str) -> bool:
        """A host step's setting is as wanted when the diff (the steps' own comparison) found nothing there."""
        return f"hosts/{want.name}/{path}" not in drifted

    if vc is not None:
        facts.append(Fact("connection", "connected", vc.connection_state, vc.connection_state == "connected"))
        facts.append(Fact("maintenance mode", "off", "on" if vc.in_maintenance else "off", not vc.in_maintenance))
        lic = vc.license
        wanted = want.license_source or "not in the spec"
        if want.license_source is None:
            facts.append(Fact("licence", wanted, lic.name if lic else "not read", None))
        elif lic is None:
            facts.append(Fact("licence", wanted, "not read", None))
        elif want.license_digest:
            same = lic.key_digest == want.license_digest
            facts.append(Fact("licence", wanted, f"{lic.name} ({'same key' if same else 'other key'})", same))
        else:
            facts.append(Fact("licence", wanted, lic.name, not lic.evaluation))
        facts.append(
            Fact(
                "default graphics type",
                want.graphics_type,
                vc.default_graphics_type or "?",
                ok("graphics/defaultType"),
            )
        )
        facts.append(
            Fact(
                "assignment policy",
                want.assignment_policy,
                vc.assignment_policy or "?",
                ok("graphics/assignmentPolicy"),
            )
        )
    else:
        facts.append(Fact("vCenter", "readable", "not read", None))
    if ssh is not None:
        if want.driver_version:
            facts.append(
                Fact(
                    "NVIDIA host driver",
                    want.driver_version,
                    ssh.driver_version or "not installed",
                    ok("driver"),
                )
            )
        pending = "; ".join(ssh.reboot_reasons) or "yes"
        facts.append(Fact("reboot pending", "no", pending if ssh.reboot_pending else "no", not ssh.reboot_pending))
        if want.ats or ssh.ats_enabled:
            ats = _onoff(ssh.ats_enabled) or "?"
            facts.append(
                Fact("ATS (GPUDirect RDMA)", _onoff(want.ats) or "", ats, ok("ats") and ssh.ats_enabled is not None)
            )
        facts.append(Fact("nvidia-smi", "answers", "answers" if ssh.nvidia_smi_ok else "fails", ssh.nvidia_smi_ok))
    else:
        facts.append(Fact("SSH", "readable", "not read", None))
    return facts


def host_views(result: AuditResult) -> list[HostView]:
    """One view per host of the spec, in spec order."""
    views: list[HostView] = []
    vc_vms = result.vcenter.vms if result.vcenter else {}
    for want in result.desired.hosts.values():
        vc = result.vcenter.hosts.get(want.name) if result.vcenter else None
        ssh = result.ssh.get(want.name)
        unreachable = result.unreachable_of(want.name)
        findings = result.findings_of(f"hosts/{want.name}")
        status = "unreachable" if unreachable else ("drift" if any(f.drift for f in findings) else "ok")
        view = HostView(want.name, status, unreachable.reason if unreachable else None)
        view.facts = _host_facts(want, vc, ssh, findings)
        view.findings = findings

        actual_vms = [v for v in vc_vms.values() if v.host == want.name and not v.template]
        modes = {g.pci: _actual_mode(g, vc, ssh) for g in want.gpus}
        # The VMs' vGPUs placed on the GPUs as they really are (MIG mode as read), never as the spec wants them.
        gpu_specs = [GpuSpec(pci=g.pci, model=g.model, mode=m) for g in want.gpus if (m := modes[g.pci]) is not None]
        actual_requests = [(v.name, vg.profile, None) for v in actual_vms for vg in v.devices.vgpus]
        actual_slots, _ = assign_vgpus(gpu_specs, actual_requests)
        vms_off = all(v.power_state != "poweredOn" for v in actual_vms)

        for gpu in want.gpus:
            gfind = tuple(f for f in findings if f.object == f"hosts/{want.name}/gpus/{gpu.pci}")
            gstatus = "drift" if any(f.drift for f in gfind) else ("unknown" if vc is None and ssh is None else "ok")
            seen = ssh.gpu(gpu.pci) if ssh else None
            slices = gpu.memory_slices or 8
            fields: dict[str, object] = {}
            if gpu.mode == "mig":
                fields["desired_map"] = SliceMap(slices, _blocks(gpu.mig_layout, slices), "spec (planned placement)")
            elif gpu.mode == "vgpu":
                fields["desired_bar"] = Bar(gpu.vgpus, gpu.max_vgpus, "spec")
            else:
                fields["desired_owner"] = (
                    next(
                        (
                            v.name
                            for v in result.desired.vms.values()
                            if v.host == want.name and gpu.pci in [normalize_pci(d) for d in v.devices.directpath]
                        ),
                        None,
                    )
                    or "(none)"
                )
            slot = actual_slots.get(gpu.pci)
            uses = (slot.mig, slot.timesliced) if slot else ([], [])
            fields.update(_actual_side(gpu, modes[gpu.pci], seen, *uses, actual_vms, vms_off))
            view.gpus.append(
                GpuView(
                    gpu.pci,
                    gpu.model,
                    gpu.mode,
                    gstatus,
                    gfind,
                    mig_desired=_onoff(gpu.mig_enabled) if gpu.mig_capable else None,
                    mig_actual=_onoff(seen.mig_current) if seen and gpu.mig_capable else None,
                    actual_mode=modes[gpu.pci],
                    **fields,  # type: ignore[arg-type]
                )
            )
        for f in findings:
            if f.kind == "gpu.unknown":
                view.gpus.append(GpuView(f.object.rsplit("/", 1)[-1], f.actual or "?", "not in spec", "drift", (f,)))

        names = [v.name for v in result.desired.vms.values() if v.host == want.name and not v.template]
        names += [v.name for v in actual_vms if v.name not in names and (v.has_gpu or v.name in result.desired.vms)]
        for name in names:
            view.vms.append(_vm_view(result, name, vc_vms.get(name)))
        if view.status == "ok" and any(v.status == "drift" for v in view.vms):
            view.status = "drift"  # at a glance: something on this host drifted (its VM)
        views.append(view)
    return views


def _actual_mode(gpu: DesiredGpu, vc: HostVcState | None, ssh: HostSshState | None) -> str | None:
    """How the GPU really runs, from what was read: MIG when its nvidia-smi says so, passthrough when vCenter has
    it enabled for DirectPath, else time-sliced vGPU; None when neither could be read (MIG mode unknown)."""
    seen = ssh.gpu(gpu.pci) if ssh else None
    device = vc.device(gpu.pci) if vc else None
    if seen is not None and seen.mig_current:
        return "mig"
    if device is not None and device.passthrough_enabled:
        return "passthrough"
    mig_known = not gpu.mig_capable or (seen is not None and seen.mig_current is not None)
    return "vgpu" if mig_known and (device is not None or seen is not None) else None


def _actual_side(
    gpu: DesiredGpu,
    mode: str | None,
    seen: GpuSshState | None,
    mig_uses: list[tuple[str, str]],
    timesliced: list[tuple[str, str]],
    actual_vms: list[VmVcState],
    vms_off: bool,
) -> dict[str, object]:
    """The actual half of a GPU card, in the shape of the GPU's actual mode (``mig_uses`` / ``timesliced``: the
    (vm, profile) vGPUs placed on it)."""
    model = lookup_gpu(gpu.model)
    if mode == "mig":
        projected = mig_layout(model, mig_uses)
        return {"actual_map": _actual_map(gpu, seen, projected, vms_off)}
    if mode == "vgpu":
        uses = tuple(
            VgpuUse(vm, p, (model.profile(p).framebuffer_mb if model and model.profile(p) else 0))
            for vm, p in timesliced
        )
        first = model.profile(uses[0].profile) if uses and model is not None else None
        return {
            "actual_bar": Bar(
                uses, GpuCapacity(model, "vgpu").max_count(first) if model and first else None, "vCenter (VMs' vGPUs)"
            )
        }
    if mode == "passthrough":
        owner = next(
            (v.name for v in actual_vms if gpu.pci in [normalize_pci(d.id) for d in v.devices.directpath]), None
        )
        return {"actual_owner": owner or "(none)"}
    return {}  # not read: the card says so


def _vm_view(result: AuditResult, name: str, have: VmVcState | None) -> VmView:
    want = result.desired.vms.get(name)
    obj = f"vms/{name}"
    findings = tuple(f for f in result.findings if f.object == obj)
    desired = (
        _vm_devices_text(
            list(want.devices.vgpus),
            list(want.devices.directpath),
            [d.allowed for d in want.devices.dynamic],
            [p.protocol or "" for p in want.devices.pvrdma],
        )
        if want
        else "not in the spec"
    )
    actual = (
        _vm_devices_text(
            [v.profile for v in have.devices.vgpus],
            [d.id for d in have.devices.directpath],
            [d.allowed for d in have.devices.dynamic],
            [p.protocol or "" for p in have.devices.pvrdma],
        )
        if have
        else "absent"
    )
    status = "drift" if any(f.drift for f in findings) else ("unknown" if result.vcenter is None else "ok")
    return VmView(name, have.power_state if have else "-", desired, actual, status, findings)
