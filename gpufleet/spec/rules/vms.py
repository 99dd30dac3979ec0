"""Rules on VMs: template and host exist, each vGPU profile exists for a GPU in the right mode, multi-vGPU and
NVLink rules, passthrough GPUs exclusive, RDMA NICs (PVRDMA needs vmx-13 and a 64-bit Linux guest), and the
template settings GPUs need (64-bit guest, EFI for 64-bit MMIO, memory reserved, MMIO large enough)."""

from __future__ import annotations

from dataclasses import dataclass

from gpufleet.catalog import GpuModel, VgpuProfile, lookup_gpu, lookup_profile, model_names
from gpufleet.catalog.capacity import BOARD, MODE, PASSTHROUGH, GpuCapacity
from gpufleet.spec.derive import (
    MAX_VGPUS_PER_VM,
    MIN_HW_VERSION_DYNAMIC_DIRECTPATH,
    MIN_HW_VERSION_PVRDMA,
    is_power_of_two,
    next_power_of_two,
    vm_gpu_models,
    vm_required_mmio_gb,
)
from gpufleet.spec.models import GpuMode, HostSpec, TemplateSpec, VmSpec
from gpufleet.spec.rules.context import PASSTHROUGH_EXCLUSIVE_RULE, Context, HostGpu, few, mode_for_profile
from gpufleet.spec.rules.guest import is_64bit_guest, is_linux_guest


@dataclass(frozen=True)
class PinnedVgpu:
    """A vGPU request pinned to one host GPU that passed the per-request rules (input of the capacity rules)."""

    path: str
    vm: str
    gpu: HostGpu
    profile: VgpuProfile


def offered(gpus: list[HostGpu], mode: GpuMode | None = None) -> list[str]:
    """vGPU profile names the given GPUs offer in their current mode (or in ``mode``)."""
    names: list[str] = []
    for g in gpus:
        if g.model is None:
            continue
        names += GpuCapacity(g.model, str(mode or g.spec.mode), g.spec.mixed_size).offered()
    return names


def nvlinked(ctx: Context, host: HostSpec, a: str, b: str) -> bool:
    """NVLink peers are undirected: declaring the link on either GPU is enough."""
    ga, gb = ctx.gpus.get((host.name, a)), ctx.gpus.get((host.name, b))
    return bool(ga and gb and (b in ga.spec.nvlink_peers or a in gb.spec.nvlink_peers))


class VmRules:
    """Applies the per-VM rules; collects pinned vGPUs for the capacity rules."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.pinned: list[PinnedVgpu] = []
        self._passthrough_owners: dict[tuple[str, str], list[str]] = {}
        self._nic_owner: dict[tuple[str, str], str] = {}
        self._dynamic_use: dict[tuple[str, str], int] = {}
        self._reported: set[tuple[str, str]] = set()

    def add_once(self, path: str, message: str, valid: tuple[str, ...] | list[str] = ()) -> None:
        """Template-level issues found through several VMs are reported once."""
        if (path, message) not in self._reported:
            self._reported.add((path, message))
            self.ctx.add(path, message, valid)

    def run(self) -> list[PinnedVgpu]:
        for ti, template in enumerate(self.ctx.fleet.templates):
            self._check_template(ti, template)
        for vi, vm in enumerate(self.ctx.fleet.vms):
            self._check_vm(vi, vm)
        return self.pinned

    # -- templates -------------------------------------------------------------------------------------
    def _check_template(self, ti: int, template: TemplateSpec) -> None:
        mmio = template.mmio_size_gb
        if mmio is not None and not is_power_of_two(mmio):
            lower = next_power_of_two(mmio) // 2
            self.ctx.add(
                f"templates[{ti}].mmioSizeGb",
                f"{mmio} is not a power of two",
                [str(v) for v in (lower, lower * 2) if v >= 1],
            )

    # -- VMs --------------------------------------------------------------------------------------------
    def _check_vm(self, vi: int, vm: VmSpec) -> None:
        ctx, base = self.ctx, f"vms[{vi}]"
        template = ctx.template_of(vm)
        if template is None:
            ctx.add(
                f"{base}.template", f"no template named {vm.template!r}", few([t.name for t in ctx.fleet.templates])
            )
        host: HostSpec | None = None
        host_ok = True
        if vm.host is not None:
            found = ctx.hosts.get(vm.host)
            if found is None:
                ctx.add(f"{base}.host", f"no host named {vm.host!r}", few([h.name for h in ctx.fleet.hosts]))
                host_ok = False
            else:
                host = found[1]
        if host_ok:
            self._check_vgpus(vi, vm, host, template)
            self._check_passthrough(vi, vm, host, template)
            self._check_rdma(vi, vm, host, template)
        if template is not None:
            self._check_vm_template(vi, vm, template)

    def _check_vgpus(self, vi: int, vm: VmSpec, host: HostSpec | None, template: TemplateSpec | None) -> None:
        ctx, base = self.ctx, f"vms[{vi}]"
        scope = ctx.host_gpus(host.name) if host else ctx.all_gpus()
        accepted: list[tuple[int, GpuModel, VgpuProfile, HostGpu | None]] = []
        for k, req in enumerate(vm.vgpu):
            path = f"{base}.vgpu[{k}]"
            found = lookup_profile(req.profile)
            if found is None:
                where = f" for the GPUs of {host.name}" if host else ""
                ctx.add(f"{path}.profile", f"unknown vGPU profile {req.profile.spelled!r}{where}", few(offered(scope)))
                continue
            board, prof = found
            mode = mode_for_profile(prof.mig_backed)
            target: HostGpu | None = None
            if req.gpu is not None:
                if host is None:
                    ctx.add(f"{path}.gpu", "pinning a vGPU to a GPU needs the VM pinned to a host (set `host`)")
                    continue
                target = ctx.gpus.get((host.name, req.gpu))
                if target is None:
                    ctx.add(f"{path}.gpu", f"{host.name} has no GPU {req.gpu}", few([g.spec.pci for g in scope]))
                    continue
                capacity = target.capacity
                if capacity is None:
                    continue  # unknown board: reported on the host
                # The capacity model decides whether the GPU takes this kind of vGPU at all (and says why not); the
                # spec adds which GPUs would.
                wrong = [p for p in capacity.problems([prof]) if p.kind in (PASSTHROUGH, BOARD, MODE)]
                if wrong:
                    valid = (
                        [g.spec.pci for g in scope if g.model and g.model.name == board.name and g.spec.mode == mode]
                        if wrong[0].kind == PASSTHROUGH
                        else offered([target])
                    )
                    ctx.add(f"{path}.{wrong[0].field}", wrong[0].message, few(valid))
                    continue
                self.pinned.append(PinnedVgpu(path, vm.name, target, prof))
            else:
                if not ctx.usable(host.name if host else None, board.name, prof):
                    where = host.name if host else "the fleet"
                    mixed = "" if prof.mig_backed or prof.max_per_gpu_mixed else ", not in mixed-size mode"
                    ctx.add(
                        f"{path}.profile",
                        f"no GPU in {where} offers {prof.vsphere_name} (needs a {board.name} in mode {mode.value}"
                        f"{mixed})",
                        few(offered(scope)) if host else (),
                    )
                    continue
            accepted.append((k, board, prof, target))
        if len(vm.vgpu) > 1:
            self._check_multi_vgpu(vi, vm, host, template, accepted)

    def _check_multi_vgpu(
        self,
        vi: int,
        vm: VmSpec,
        host: HostSpec | None,
        template: TemplateSpec | None,
        accepted: list[tuple[int, GpuModel, VgpuProfile, HostGpu | None]],
    ) -> None:
        ctx, base = self.ctx, f"vms[{vi}]"
        if len(vm.vgpu) > MAX_VGPUS_PER_VM:
            ctx.add(f"{base}.vgpu", f"{len(vm.vgpu)} vGPUs: vSphere allows at most {MAX_VGPUS_PER_VM} per VM")
        if not accepted:
            return
        k0, board0, prof0, _ = accepted[0]
        used: dict[str, int] = {}
        for k, board, prof, target in accepted:
            path = f"{base}.vgpu[{k}]"
            if board.name != board0.name:
                ctx.add(
                    f"{path}.profile",
                    f"all vGPUs of a VM are of one board: vgpu[{k0}] is {board0.name}, this is {board.name}",
                    few([p.vsphere_name for p in board0.profiles if p.series == prof0.series]),
                )
                continue
            if prof.series != prof0.series:
                ctx.add(
                    f"{path}.profile",
                    f"all vGPUs of a VM are of one series: vgpu[{k0}] is {prof0.series}-series, this is {prof.series}",
                )
                continue
            if prof.series == "Q" and prof.max_per_gpu > 1:
                ctx.add(
                    f"{path}.profile",
                    "several vGPUs in one VM: Q-series only with full-framebuffer profiles",
                    few([p.vsphere_name for p in board.profiles if p.max_per_gpu == 1 and not p.mig_backed]),
                )
            if target is not None:
                if target.spec.pci in used:
                    ctx.add(
                        f"{path}.gpu",
                        f"each vGPU of a VM needs its own physical GPU; vgpu[{used[target.spec.pci]}] is already on "
                        f"{target.spec.pci}",
                    )
                used.setdefault(target.spec.pci, k)
        if host is not None:
            mode = mode_for_profile(prof0.mig_backed)
            have = ctx.count(host.name, board0.name, mode)
            if have < len(vm.vgpu):
                ctx.add(
                    f"{base}.vgpu",
                    f"{len(vm.vgpu)} vGPUs need {len(vm.vgpu)} {board0.name} GPUs in mode {mode.value} on "
                    f"{host.name} (one per vGPU); it has {have}",
                )
        if template is not None and template.p2p:
            self._check_nvlink_p2p(vi, host, accepted)

    def _check_nvlink_p2p(
        self, vi: int, host: HostSpec | None, accepted: list[tuple[int, GpuModel, VgpuProfile, HostGpu | None]]
    ) -> None:
        """P2P between a VM's vGPUs: only time-sliced C-series full-framebuffer vGPUs on NVLink GPUs (NVAIE)."""
        ctx, base = self.ctx, f"vms[{vi}]"
        for k, board, prof, _ in accepted:
            if prof.mig_backed or prof.series != "C" or prof.max_per_gpu != 1 or not board.nvlink:
                ctx.add(
                    f"{base}.vgpu[{k}].profile",
                    "P2P between the vGPUs of a VM (template p2p) needs full-framebuffer time-sliced C-series "
                    f"profiles on NVLink GPUs; {prof.vsphere_name} is not one",
                    few([p.vsphere_name for p in board.time_sliced_profiles if p.series == "C" and p.max_per_gpu == 1])
                    if board.nvlink
                    else (),
                )
        pinned = [(k, t) for k, _, _, t in accepted if t is not None]
        if host is None:
            return
        for i, (ka, ga) in enumerate(pinned):
            for kb, gb in pinned[i + 1 :]:
                if ga.spec.pci != gb.spec.pci and not nvlinked(ctx, host, ga.spec.pci, gb.spec.pci):
                    ctx.add(
                        f"{base}.vgpu[{kb}].gpu",
                        f"P2P needs NVLink: {gb.spec.pci} and {ga.spec.pci} (vgpu[{ka}]) are not NVLink peers on "
                        f"{host.name} (declare them in nvlinkPeers)",
                    )

    def _check_passthrough(self, vi: int, vm: VmSpec, host: HostSpec | None, template: TemplateSpec | None) -> None:
        ctx, base = self.ctx, f"vms[{vi}]"
        for k, pt in enumerate(vm.passthrough):
            path = f"{base}.passthrough[{k}]"
            if pt.gpu is not None:
                if vm.host is None:
                    ctx.add(f"{path}.gpu", "DirectPath I/O names a GPU of a host: set the VM's `host`")
                    continue
                if host is None:
                    continue
                target = ctx.gpus.get((host.name, pt.gpu))
                free = [g.spec.pci for g in ctx.host_gpus(host.name) if g.spec.mode == GpuMode.PASSTHROUGH]
                if target is None:
                    ctx.add(f"{path}.gpu", f"{host.name} has no GPU {pt.gpu}", few(free))
                elif target.spec.mode != GpuMode.PASSTHROUGH:
                    ctx.add(
                        f"{path}.gpu",
                        f"{target.label} is in mode {target.spec.mode.value}; DirectPath I/O needs mode passthrough "
                        "(a GPU is either shared or passed through, not both)",
                        few(free),
                        rule=PASSTHROUGH_EXCLUSIVE_RULE,
                    )
                elif target.capacity is not None:
                    owners = self._passthrough_owners.setdefault((host.name, pt.gpu), [])
                    problems = target.capacity.problems([None] * (len(owners) + 1), [*owners, f"{vm.name} ({path})"])
                    if problems:
                        ctx.add(f"{path}.gpu", problems[-1].message, rule=PASSTHROUGH_EXCLUSIVE_RULE)
                    else:
                        owners.append(f"{vm.name} ({path})")
                continue
            model = lookup_gpu(pt.model or "")
            if model is None:
                ctx.add(f"{path}.model", f"unknown GPU model {pt.model!r}", model_names())
                continue
            if template is not None and template.hardware_version < MIN_HW_VERSION_DYNAMIC_DIRECTPATH:
                ctx.add(
                    f"{path}.model",
                    f"Dynamic DirectPath I/O needs virtual hardware version >= {MIN_HW_VERSION_DYNAMIC_DIRECTPATH}; "
                    f"template {template.name} has {template.hardware_version}",
                )
            scope = ctx.host_gpus(host.name) if host else ctx.all_gpus()
            pool = ctx.count(host.name if host else None, model.name, GpuMode.DYNAMIC_PASSTHROUGH)
            if not pool:
                ctx.add(
                    f"{path}.model",
                    f"no {model.name} GPU in mode dynamic-passthrough on {host.name if host else 'any host'}",
                    few([g.model.name for g in scope if g.model and g.spec.mode == GpuMode.DYNAMIC_PASSTHROUGH]),
                )
            elif host is not None:
                key = (host.name, model.name)
                self._dynamic_use[key] = self._dynamic_use.get(key, 0) + 1
                if self._dynamic_use[key] > pool:
                    ctx.add(
                        f"{path}.model",
                        f"{host.name} has {pool} {model.name} GPU(s) for Dynamic DirectPath I/O, "
                        f"{self._dynamic_use[key]} requested by VMs pinned to it",
                    )

    def _check_rdma(self, vi: int, vm: VmSpec, host: HostSpec | None, template: TemplateSpec | None) -> None:
        ctx, base = self.ctx, f"vms[{vi}]"
        for k, rdma in enumerate(vm.rdma):
            path = f"{base}.rdma[{k}]"
            if rdma.type == "pvrdma":
                if template is not None and template.hardware_version < MIN_HW_VERSION_PVRDMA:
                    ctx.add(
                        f"{path}.type",
                        f"PVRDMA needs virtual hardware version >= {MIN_HW_VERSION_PVRDMA}; template {template.name} "
                        f"has {template.hardware_version}",
                    )
                if template is not None and not (
                    is_64bit_guest(template.guest_id) and is_linux_guest(template.guest_id)
                ):
                    ctx.add(
                        f"{path}.type",
                        f"PVRDMA needs a 64-bit Linux guest; template {template.name} has guestId {template.guest_id}",
                    )
                if not rdma.network:
                    ctx.add(
                        f"{path}.network",
                        "a PVRDMA adapter needs `network`: a distributed port group whose only uplink is the RDMA HCA",
                    )
                continue
            if vm.host is None:
                ctx.add(f"{path}.nic", "a passthrough RDMA NIC is a device of a host: set the VM's `host`")
                continue
            if host is None:
                continue
            hi = ctx.hosts[host.name][0]
            ni, nic = next(((i, n) for i, n in enumerate(host.nics) if n.pci == rdma.nic), (None, None))
            if nic is None:
                ctx.add(f"{path}.nic", f"{host.name} has no NIC {rdma.nic}", few([n.pci for n in host.nics]))
                continue
            if not nic.passthrough:
                ctx.add(
                    f"{path}.nic",
                    f"NIC {nic.pci} of {host.name} is not reserved for passthrough "
                    f"(set passthrough: true at hosts[{hi}].nics[{ni}])",
                )
            owner = self._nic_owner.setdefault((host.name, nic.pci), vm.name)
            if owner != vm.name:
                ctx.add(f"{path}.nic", f"NIC {nic.pci} of {host.name} is already passed through to {owner}")
            if template is not None and template.p2p and (vm.vgpu or vm.passthrough) and not nic.ats:
                ctx.add(
                    f"{path}.nic",
                    f"GPUDirect RDMA (template p2p with GPUs) needs ATS on NIC {nic.pci}: "
                    f"set ats: true at hosts[{hi}].nics[{ni}]",
                )

    def _check_vm_template(self, vi: int, vm: VmSpec, template: TemplateSpec) -> None:
        tpath = self.ctx.template_path(vm)
        if not (vm.vgpu or vm.passthrough) or tpath is None:
            return
        if not is_64bit_guest(template.guest_id):
            self.add_once(
                f"{tpath}.guestId",
                f"GPU VMs need a 64-bit guest OS; {template.guest_id} is not",
                ["ubuntu64Guest", "rhel9_64Guest", "windows2019srv_64Guest"],
            )
        if not template.memory_reservation_locked:
            self.add_once(
                f"{tpath}.memoryReservationLocked", "VMs with GPU devices need all guest memory reserved", ["true"]
            )
        need = vm_required_mmio_gb(self.ctx.fleet, vm)
        if need <= 0:
            return
        boards = ", ".join(dict.fromkeys(m.name for m in vm_gpu_models(self.ctx.fleet, vm)))
        if template.firmware != "efi":
            self.add_once(f"{tpath}.firmware", f"64-bit MMIO for {boards} GPUs needs EFI firmware", ["efi"])
        mmio = template.mmio_size_gb
        if mmio is not None and is_power_of_two(mmio) and mmio < need:
            self.ctx.add(
                f"{tpath}.mmioSizeGb",
                f"{mmio} GB is below the {need} GB of 64-bit MMIO that {vm.name} (vms[{vi}]) needs for its "
                f"GPUs ({boards}); omit it to derive it",
                [str(need)],
            )
