"""Packing the bulk of a fleet: unpinned VMs with one vGPU, by board and mode, once pinned VMs are placed.

MIG: GPU by GPU, each gets the best *pattern* (multiset of GPU instances that has an exact placement) that the
remaining requests can fill: fullest first (memory + compute slices), then the largest instances. A GPU whose
one "excess" instance (7g, 3g@4 or 1g.20gb@6: more memory than compute slices) covers the 8th memory slice is
full on both counts, and this order finds those patterns before the ones that strand slices. GPUs already
partly used by pinned VMs are completed first the same way.

Time-sliced: profiles without a mixed-size maximum (Q-series) first, whole GPUs of one profile; then whole
GPUs of each mixable profile; the remainders ("tails") by framebuffer, largest first, best fit into mixed-size
GPUs, then into GPUs already holding that profile, and only then onto a new GPU (mixed-size ones first).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from gpufleet.catalog import GpuModel, MigProfile, VgpuProfile
from gpufleet.catalog.mig_geometry import search
from gpufleet.placement.state import GpuState

Request = tuple[str, VgpuProfile]  # (vm name, profile)
Commit = Callable[[str, GpuState], None]  # place the VM's single vGPU on the GPU


@dataclass(frozen=True)
class Pattern:
    counts: tuple[int, ...]  # per board.mig_profiles index
    rank: tuple[object, ...]  # larger is better


@cache
def mig_patterns(board: GpuModel) -> tuple[Pattern, ...]:
    """Every multiset of the board's GPU instances that fits one GPU, best first."""
    profiles = board.mig_profiles
    found: list[tuple[int, ...]] = []

    def rec(i: int, counts: list[int], chosen: list[MigProfile]) -> None:
        if i == len(profiles):
            if chosen:
                found.append(tuple(counts))
            return
        for k in range(profiles[i].max_instances + 1):
            trial = chosen + [profiles[i]] * k
            if k and search(trial) is None:
                break
            counts.append(k)
            rec(i + 1, counts, trial)
            counts.pop()

    rec(0, [], [])
    patterns = []
    for counts in found:
        items = [p for p, k in zip(profiles, counts, strict=True) for _ in range(k)]
        used = sum(p.size for p in items) + sum(p.compute_slices for p in items)
        sizes = tuple(sorted((p.size for p in items), reverse=True))
        compute = tuple(sorted((p.compute_slices for p in items), reverse=True))
        patterns.append(Pattern(counts, (used, sizes, compute)))
    patterns.sort(key=lambda p: p.rank, reverse=True)
    return tuple(patterns)


def pack_mig(board: GpuModel, gpus: list[GpuState], requests: list[Request], commit: Commit) -> list[Request]:
    """Place MIG-backed requests of one board on its MIG GPUs; returns those that did not fit."""
    names = [p.name for p in board.mig_profiles]
    queues: dict[str, deque[Request]] = {n: deque() for n in names}
    for req in requests:
        queues[req[1].mig_instance or ""].append(req)
    patterns = mig_patterns(board)

    def fill(gpu: GpuState) -> bool:
        have = [0] * len(names)
        for _, _, inst in gpu.owners:
            if inst is not None:
                have[names.index(inst.name)] += 1
        demand = [len(queues[n]) for n in names]
        for pattern in patterns:
            extra = [c - h for c, h in zip(pattern.counts, have, strict=True)]
            if any(e < 0 for e in extra) or not any(extra):
                continue
            if any(e > d for e, d in zip(extra, demand, strict=True)):
                continue
            for name, e in zip(names, extra, strict=True):
                for _ in range(e):
                    vm, _ = queues[name].popleft()
                    commit(vm, gpu)
            return True
        return False

    for gpu in gpus:  # partly used (pinned VMs) first, then empty ones in order
        if gpu.used:
            fill(gpu)
    for gpu in gpus:
        if not any(queues.values()):
            break
        if not gpu.used:
            fill(gpu)
    return [req for q in queues.values() for req in q]


def pack_time_sliced(gpus: list[GpuState], requests: list[Request], commit: Commit) -> list[Request]:
    """Place time-sliced requests of one board on its vGPU GPUs; returns those that did not fit."""
    queues: dict[str, deque[Request]] = {}
    profiles: dict[str, VgpuProfile] = {}
    for req in requests:
        queues.setdefault(req[1].vsphere_name, deque()).append(req)
        profiles[req[1].vsphere_name] = req[1]
    plain = [g for g in gpus if not g.mixed]
    mixed = [g for g in gpus if g.mixed]

    def put(name: str, gpu: GpuState) -> bool:
        if not queues[name] or not gpu.fits(profiles[name]):
            return False
        vm, _ = queues[name].popleft()
        commit(vm, gpu)
        return True

    def run(name: str, gpu: GpuState) -> None:
        while put(name, gpu):
            pass

    # GPUs already holding a profile (pinned VMs) take more of it first.
    for gpu in plain:
        held = [p for _, p, _ in gpu.owners if p]
        if held and held[0].vsphere_name in queues:
            run(held[0].vsphere_name, gpu)
    by_weight = sorted(profiles, key=lambda n: (-profiles[n].framebuffer_mb, n))
    # Profiles that cannot run in mixed-size mode, then whole GPUs of the others.
    for name in [n for n in by_weight if profiles[n].max_per_gpu_mixed is None]:
        for gpu in plain:
            if not queues[name]:
                break
            if not gpu.used:
                run(name, gpu)
    for name in [n for n in by_weight if profiles[n].max_per_gpu_mixed is not None]:
        for gpu in plain:
            if len(queues[name]) < profiles[name].max_per_gpu:
                break
            if not gpu.used:
                run(name, gpu)
    # Tails, largest first, best fit; open mixed-size GPUs before plain ones.
    tails = [req for n in by_weight for req in queues[n]]
    for q in queues.values():
        q.clear()
    left: list[Request] = []
    for vm, prof in tails:
        used = [g for g in gpus if g.used and g.fits(prof)]
        if used:
            target = min(used, key=lambda g: (g.free_after(prof), g.index))
        else:
            fresh = [g for g in mixed + plain if not g.used and g.fits(prof)]
            if not fresh:
                left.append((vm, prof))
                continue
            target = fresh[0]
        commit(vm, target)
    return left
