"""``plan(fleet)``: place every VM's GPU requests onto hosts, GPUs and MIG slots; deterministic.

Strategy (``best-fit``, the default): VMs pinned to a host first, then VMs with several GPU devices, then the
rest; within each group the largest requests first (first-fit decreasing), each placed by best fit: the GPU
already in use that would be left with the least free capacity, and only when none fits, the first empty GPU.
MIG fit is the exact placement search on the whole set of instances of a GPU (vSphere creates the GPU
instances at power-on, so the set, not the order, decides). GPUs in equal states are grouped, and fit answers
memoised by state, so planning stays fast on hundreds of GPUs.

``strategy="first-fit"`` is the naive baseline of the benchmark: VMs in spec order, the first GPU that fits,
and MIG instances put at the first free start slot and never moved (what powering VMs on in that order does).

Pinned placements are honoured: ``vms[].host`` restricts the VM to that host, ``vgpu[].gpu`` and DirectPath
``passthrough[].gpu`` to that GPU. A VM is placed whole or not at all; those that cannot be placed are listed
with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from gpufleet.catalog import GpuModel, VgpuProfile, lookup_gpu, lookup_profile
from gpufleet.catalog.capacity import GpuCapacity
from gpufleet.placement.bounds import lower_bound
from gpufleet.placement.packers import pack_mig, pack_time_sliced
from gpufleet.placement.result import DevicePlacement, GpuReport, Plan, Unplaced, VmPlacement
from gpufleet.placement.state import GpuState
from gpufleet.spec.dump import stack_form
from gpufleet.spec.models import Fleet, GpuMode, VmSpec

Strategy = Literal["best-fit", "first-fit"]
PASSTHROUGH_MODES = (GpuMode.PASSTHROUGH.value, GpuMode.DYNAMIC_PASSTHROUGH.value)


@dataclass(frozen=True)
class Device:
    """One GPU device a VM asks for."""

    kind: Literal["vgpu", "passthrough"]
    index: int  # position in vm.vgpu / vm.passthrough
    board: GpuModel | None  # None: DirectPath I/O by PCI address (whatever board the host has there)
    mode: str
    profile: VgpuProfile | None  # None for a whole GPU
    pinned_pci: str | None
    spelled: str = ""  # the profile as the stack writes it (grid_/nvidia_): what people are shown

    @property
    def weight(self) -> float:
        """Share of a GPU this device takes (largest first)."""
        if self.profile is None or self.board is None:
            return 1.0
        return GpuCapacity(self.board, self.mode).load([self.profile])


class _NoRoom(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def vm_devices(vm: VmSpec) -> list[Device]:
    """The GPU devices a VM asks for, resolved against the catalog (the spec is assumed valid)."""
    devices: list[Device] = []
    for k, req in enumerate(vm.vgpu):
        found = lookup_profile(req.profile)
        if found is None:
            raise _NoRoom(f"vgpu[{k}]: unknown profile {req.profile.spelled!r}")
        board, prof = found
        mode = GpuMode.MIG.value if prof.mig_backed else GpuMode.VGPU.value
        devices.append(Device("vgpu", k, board, mode, prof, req.gpu, req.profile.spelled))
    for k, pt in enumerate(vm.passthrough):
        if pt.gpu is not None:
            devices.append(Device("passthrough", k, None, GpuMode.PASSTHROUGH.value, None, pt.gpu))
        else:
            board = lookup_gpu(pt.model or "")
            if board is None:
                raise _NoRoom(f"passthrough[{k}]: unknown model {pt.model!r}")
            devices.append(Device("passthrough", k, board, GpuMode.DYNAMIC_PASSTHROUGH.value, None, None))
    return devices


class Planner:
    def __init__(self, fleet: Fleet, strategy: Strategy = "best-fit") -> None:
        self.fleet = fleet
        self.strategy = strategy
        self.gpus: list[GpuState] = []
        self.by_host: dict[str, list[GpuState]] = {}
        for host in fleet.hosts:
            if host.name in self.by_host:
                continue
            states = self.by_host.setdefault(host.name, [])
            seen: set[str] = set()
            for gpu in host.gpus:
                model = lookup_gpu(gpu.model)
                if model is None or gpu.pci in seen:
                    continue
                seen.add(gpu.pci)
                state = GpuState(
                    index=len(self.gpus),
                    host=host.name,
                    pci=gpu.pci,
                    model=model,
                    mode=gpu.mode.value,
                    mixed=gpu.mixed_size,
                    exact_mig=strategy == "best-fit",
                )
                self.gpus.append(state)
                states.append(state)
        self.host_order = {name: i for i, name in enumerate(self.by_host)}
        # NVLink links, undirected
        self.links: set[tuple[str, str, str]] = set()
        for host in fleet.hosts:
            for gpu in host.gpus:
                for peer in gpu.nvlink_peers:
                    self.links.add((host.name, gpu.pci, peer))
                    self.links.add((host.name, peer, gpu.pci))
        # fast path: used GPUs grouped by (board, mode, mixed, state key); empty GPUs in order
        self.buckets: dict[tuple[str, str, bool], dict[tuple[object, ...], set[int]]] = {}
        self.empty: dict[tuple[str, str, bool], list[int]] = {}
        self.empty_ptr: dict[tuple[str, str, bool], int] = {}
        for s in self.gpus:
            self.empty.setdefault((s.model.name, s.mode, s.mixed), []).append(s.index)
        self.eval_cache: dict[tuple[object, ...], float | None] = {}

    # -- evaluation -----------------------------------------------------------------------------------
    def _score(self, gpu: GpuState, device: Device) -> float | None:
        """free fraction left after adding the device, or None when it does not fit (memoised by state)."""
        if device.profile is None:
            return 0.0 if gpu.fits(None) else None
        key = (gpu.model.name, gpu.mode, gpu.mixed, gpu.key, device.profile.vsphere_name)
        if key not in self.eval_cache:
            self.eval_cache[key] = gpu.free_after(device.profile) if gpu.fits(device.profile) else None
        return self.eval_cache[key]

    def _compatible(self, gpu: GpuState, device: Device) -> bool:
        if device.pinned_pci is not None and gpu.pci != device.pinned_pci:
            return False
        if device.board is None:  # DirectPath I/O by address
            return gpu.mode == GpuMode.PASSTHROUGH.value
        return gpu.model.name == device.board.name and gpu.mode == device.mode

    def _candidates(self, host: str, device: Device) -> list[tuple[int, float, int, GpuState]]:
        """GPUs of the host that can take the device, best first: in use before empty, tightest, lowest index."""
        out = []
        for gpu in self.by_host.get(host, []):
            if not self._compatible(gpu, device):
                continue
            score = self._score(gpu, device)
            if score is None:
                continue
            opens = 0 if gpu.used else 1
            if self.strategy == "first-fit":
                out.append((0, 0.0, gpu.index, gpu))
            else:
                out.append((opens, score, gpu.index, gpu))
        out.sort(key=lambda c: c[:3])
        return out

    def _fit_on_host(
        self, host: str, devices: list[Device], p2p: bool
    ) -> tuple[tuple[int, float], list[GpuState]] | None:
        """A choice of distinct GPUs on the host for all devices (best-first DFS), with its cost, or None."""
        cands = [self._candidates(host, d) for d in devices]
        if any(not c for c in cands):
            return None
        chosen: list[GpuState] = []

        def dfs(i: int) -> bool:
            if i == len(devices):
                return True
            for _, _, _, gpu in cands[i]:
                if gpu in chosen:
                    continue
                if (
                    p2p
                    and devices[i].kind == "vgpu"
                    and any(
                        (host, gpu.pci, other.pci) not in self.links
                        for other, d in zip(chosen, devices, strict=False)
                        if d.kind == "vgpu"
                    )
                ):
                    continue
                chosen.append(gpu)
                if dfs(i + 1):
                    return True
                chosen.pop()
            return False

        if not dfs(0):
            return None
        opens = sum(0 if g.used else 1 for g in chosen)
        free = sum(self._score(g, d) or 0.0 for g, d in zip(chosen, devices, strict=True))
        return (opens, free), list(chosen)

    # -- committing ----------------------------------------------------------------------------------
    def _commit(self, vm: VmSpec, host: str, devices: list[Device], gpus: list[GpuState]) -> None:
        for device, gpu in zip(devices, gpus, strict=True):
            group = (gpu.model.name, gpu.mode, gpu.mixed)
            bucket = self.buckets.setdefault(group, {})
            if gpu.used:
                members = bucket.get(gpu.key)
                if members is not None:
                    members.discard(gpu.index)
                    if not members:
                        del bucket[gpu.key]
            gpu.add((vm.name, _device_slot(device)), device.profile)
            bucket.setdefault(gpu.key, set()).add(gpu.index)
        self.placed[vm.name] = (host, devices, gpus)

    # -- the fast path: one device, any host ---------------------------------------------------------
    def _fast_single(self, device: Device) -> GpuState | None:
        assert device.board is not None
        best: tuple[float, int] | None = None
        for mixed in (False, True):
            group = (device.board.name, device.mode, mixed)
            for members in self.buckets.get(group, {}).values():
                rep = self.gpus[min(members)]
                score = self._score(rep, device)
                if score is None:
                    continue
                cand = (0.0 if self.strategy == "first-fit" else score, rep.index)
                if best is None or cand < best:
                    best = cand
        if best is not None:
            return self.gpus[best[1]]
        opened: list[GpuState] = []
        for mixed in (False, True):
            group = (device.board.name, device.mode, mixed)
            order = self.empty.get(group, [])
            ptr = self.empty_ptr.get(group, 0)
            while ptr < len(order) and self.gpus[order[ptr]].used:
                ptr += 1
            self.empty_ptr[group] = ptr
            if ptr < len(order) and self._score(self.gpus[order[ptr]], device) is not None:
                opened.append(self.gpus[order[ptr]])
        return min(opened, key=lambda g: g.index) if opened else None

    # -- the driver ----------------------------------------------------------------------------------
    def run(self) -> Plan:
        self.placed: dict[str, tuple[str, list[Device], list[GpuState]]] = {}
        plan = Plan(strategy=self.strategy)
        jobs: list[tuple[tuple[object, ...], int, VmSpec, list[Device]]] = []
        for vi, vm in enumerate(self.fleet.vms):
            try:
                devices = vm_devices(vm)
            except _NoRoom as exc:
                plan.unplaced.append(Unplaced(vm.name, f"vms[{vi}]", exc.reason))
                continue
            if not devices:
                continue
            jobs.append((self._order_key(vi, vm, devices), vi, vm, devices))
        jobs.sort(key=lambda j: j[0])
        bulk: dict[tuple[str, str], list[tuple[int, VmSpec, Device]]] = {}
        for _, vi, vm, devices in jobs:
            if self._is_bulk(vm, devices):
                board = devices[0].board
                assert board is not None
                bulk.setdefault((board.name, devices[0].mode), []).append((vi, vm, devices[0]))
                continue
            reason = self._place(vm, devices)
            if reason:
                plan.unplaced.append(Unplaced(vm.name, f"vms[{vi}]", reason))
        for (board_name, mode), items in bulk.items():
            for vi, vm, device in self._pack(board_name, mode, items):
                plan.unplaced.append(Unplaced(vm.name, f"vms[{vi}]", self._why([device], None)))
        plan.unplaced.sort(key=lambda u: int(u.path[4:-1]))
        self._report(plan)
        return plan

    def _is_bulk(self, vm: VmSpec, devices: list[Device]) -> bool:
        """Unpinned VMs with one vGPU are packed per board and mode once the others are placed."""
        return (
            self.strategy == "best-fit"
            and vm.host is None
            and len(devices) == 1
            and devices[0].kind == "vgpu"
            and devices[0].pinned_pci is None
        )

    def _pack(
        self, board_name: str, mode: str, items: list[tuple[int, VmSpec, Device]]
    ) -> list[tuple[int, VmSpec, Device]]:
        """Run the group packer; returns the items it could not place."""
        by_name = {vm.name: (vi, vm, device) for vi, vm, device in items}
        gpus = [g for g in self.gpus if g.model.name == board_name and g.mode == mode]

        def commit(vm_name: str, gpu: GpuState) -> None:
            _, vm, device = by_name[vm_name]
            self._commit(vm, gpu.host, [device], [gpu])

        requests = [(vm.name, device.profile) for _, vm, device in items if device.profile is not None]
        board = gpus[0].model if gpus else None
        if board is None:
            return items
        if mode == GpuMode.MIG.value:
            left = pack_mig(board, gpus, requests, commit)
        else:
            left = pack_time_sliced(gpus, requests, commit)
        return [by_name[vm_name] for vm_name, _ in left]

    def _order_key(self, vi: int, vm: VmSpec, devices: list[Device]) -> tuple[object, ...]:
        if self.strategy == "first-fit":
            return (vi,)
        pinned = any(d.pinned_pci for d in devices)
        phase = 0 if pinned else 1 if vm.host else 2 if len(devices) > 1 else 3
        weight = sum(d.weight for d in devices)
        first = devices[0].profile.vsphere_name if devices[0].profile else ""
        board = devices[0].board.name if devices[0].board else ""
        return (phase, -weight, board, first, vm.name)

    def _place(self, vm: VmSpec, devices: list[Device]) -> str | None:
        ordered = sorted(devices, key=lambda d: (d.pinned_pci is None, -d.weight, d.kind, d.index))
        p2p = self._p2p(vm, devices)
        if vm.host is None and len(ordered) == 1 and ordered[0].pinned_pci is None:
            gpu = self._fast_single(ordered[0])
            if gpu is None:
                return self._why(ordered, None)
            self._commit(vm, gpu.host, ordered, [gpu])
            return None
        hosts: Iterable[str] = [vm.host] if vm.host else list(self.by_host)
        best: tuple[tuple[int, float], int, str, list[GpuState]] | None = None
        for host in hosts:
            found = self._fit_on_host(host, ordered, p2p)
            if found is None:
                continue
            cost, gpus = found
            cand = (cost if self.strategy == "best-fit" else (0, 0.0), self.host_order.get(host, 0), host, gpus)
            if best is None or cand[:2] < best[:2]:
                best = cand
                if self.strategy == "first-fit" or cost[0] == 0:
                    break  # nothing better than using no new GPU; first host in order wins ties
        if best is None:
            return self._why(ordered, vm.host)
        self._commit(vm, best[2], ordered, best[3])
        return None

    def _p2p(self, vm: VmSpec, devices: list[Device]) -> bool:
        template = self.fleet.template(vm.template)
        return bool(template and template.p2p and sum(1 for d in devices if d.kind == "vgpu") > 1)

    def _why(self, devices: list[Device], host: str | None) -> str:
        where = host or "any host"
        parts = []
        for d in devices:
            board = d.board.name if d.board else "passthrough"
            what = d.spelled if d.profile else (f"GPU {d.pinned_pci}" if d.pinned_pci else board)
            label = f"{d.kind}[{d.index}] {what}"
            scope = self.by_host.get(host, []) if host else self.gpus
            pool = [g for g in scope if self._compatible(g, d)]
            room = [g for g in pool if self._score(g, d) is not None]
            if not pool:
                parts.append(f"{label}: no {board} GPU in mode {d.mode} on {where}")
            elif not room:
                parts.append(f"{label}: all {len(pool)} matching GPU(s) on {where} are full")
        if not parts:
            parts.append(
                f"the devices fit separately but not together on one host (need {len(devices)} distinct "
                f"GPUs{', NVLink peers' if len(devices) > 1 else ''} on the same host)"
            )
        return "; ".join(parts)

    def _report(self, plan: Plan) -> None:
        # Profiles are reported as the stack spells them: nvidia_h100-3-40c and grid_h100-3-40c are one profile,
        # and a user looking for the VM's request must find its own words.
        spelled = {(vm.name, ("vgpu", k)): r.profile.spelled for vm in self.fleet.vms for k, r in enumerate(vm.vgpu)}
        device_of: dict[tuple[str, tuple[str, int]], DevicePlacement] = {}
        for gpu in self.gpus:
            assignments: list[dict[str, Any]] = []
            if gpu.mode == GpuMode.MIG.value:
                for (vm, slot), inst, start, size in gpu.mig_layout():
                    profile = next(p for o, p, _ in gpu.owners if o == (vm, slot))
                    assert profile is not None
                    name = spelled.get((vm, slot), profile.vsphere_name)
                    assignments.append({"vm": vm, "profile": name, "instance": inst.name, "start": start, "size": size})
                    device_of[(vm, slot)] = DevicePlacement(slot[0], slot[1], gpu.pci, name, inst.name, start, size)
            else:
                for (vm, slot), profile, _ in gpu.owners:
                    entry: dict[str, Any] = {"vm": vm, "device": f"{slot[0]}[{slot[1]}]"}
                    name = spelled.get((vm, slot), profile.vsphere_name) if profile is not None else None
                    if name is not None:
                        entry["profile"] = name
                    assignments.append(entry)
                    device_of[(vm, slot)] = DevicePlacement(slot[0], slot[1], gpu.pci, name)
            plan.gpus.append(
                GpuReport(
                    gpu.host,
                    gpu.pci,
                    gpu.model.name,
                    gpu.mode,
                    gpu.mixed,
                    tuple(assignments),
                    gpu.free_text(),
                    gpu.density(),
                )
            )
        for vm in self.fleet.vms:
            if vm.name not in self.placed:
                continue
            host, devices, _ = self.placed[vm.name]
            placed = sorted(
                (device_of[(vm.name, _device_slot(d))] for d in devices), key=lambda p: (p.kind != "vgpu", p.index)
            )
            plan.placements[vm.name] = VmPlacement(vm.name, host, tuple(placed))
        plan.lower_bound = lower_bound(self.fleet)


def _device_slot(device: Device) -> tuple[str, int]:
    return (device.kind, device.index)


def plan(fleet: Fleet, strategy: Strategy = "best-fit") -> Plan:
    """Place every VM's GPU devices (see the module docstring). The fleet should pass ``validate_fleet``."""
    return Planner(fleet, strategy).run()


def pinned_fleet(fleet: Fleet, result: Plan) -> Fleet:
    """The fleet with every placed VM pinned where ``result`` put it (host, and GPU for each vGPU); unplaced VMs
    are dropped. Dynamic DirectPath requests stay by model: the host pin is what matters for them."""
    doc = stack_form(fleet)
    vms = []
    for vm in doc["vms"]:
        placed = result.placements.get(vm["name"])
        if placed is None:
            continue
        vm["host"] = placed.host
        for device in placed.devices:
            if device.kind == "vgpu":
                vm["vgpu"][device.index]["gpu"] = device.gpu
        vms.append(vm)
    doc["vms"] = vms
    return Fleet.model_validate(doc)
