"""A lower bound on the GPUs any placement needs ("by slices"), to judge the planner against.

Per board and mode, from all the requests of the fleet:
- MIG: the largest of memory slices / slices per GPU, compute slices / compute slices per GPU, the number of
  instances that only start at slot 0 (4g, 7g: one per GPU), and each profile's count / its per-GPU maximum;
- time-sliced: without mixed-size GPUs of the board, GPUs hold one profile each: the sum of ceil(count / maximum);
  with some, profiles that have no mixed-size maximum still hold GPUs of their own (ceil(count / maximum) each),
  and the others take at least min(1 / their per-GPU maximum, their framebuffer / the GPU's) of a GPU each;
- passthrough: one GPU per device.
Every term is a valid bound, so their maximum is too; the fleet's bound is the sum over boards and modes.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from fractions import Fraction
from math import ceil

from gpufleet.catalog import GpuModel, VgpuProfile, lookup_gpu, lookup_profile
from gpufleet.spec.models import Fleet


def _mig_bound(board: GpuModel, profiles: list[VgpuProfile]) -> int:
    instances = [board.mig_profile(p.mig_instance or "") for p in profiles]
    known = [i for i in instances if i is not None]
    if not known:
        return 0
    counts = Counter(i.name for i in known)
    by_name = {i.name: i for i in known}
    return max(
        ceil(Fraction(sum(i.size for i in known), board.memory_slices)),
        ceil(Fraction(sum(i.compute_slices for i in known), board.compute_slices)),
        sum(1 for i in known if i.starts == (0,)),
        max(ceil(Fraction(n, by_name[name].max_instances)) for name, n in counts.items()),
        sum(1 for i in known if i.media_extensions),
    )


def _time_sliced_bound(board: GpuModel, profiles: list[VgpuProfile], mixed_exists: bool) -> int:
    if not profiles:
        return 0
    counts = Counter(p.vsphere_name for p in profiles)
    by_name = {p.vsphere_name: p for p in profiles}
    if not mixed_exists:
        return sum(ceil(Fraction(n, by_name[name].max_per_gpu)) for name, n in counts.items())
    # Profiles without a mixed-size maximum (Q-series here) only ever share a GPU with their own kind.
    alone = sum(
        ceil(Fraction(n, by_name[name].max_per_gpu))
        for name, n in counts.items()
        if by_name[name].max_per_gpu_mixed is None
    )
    share = sum(
        n * min(Fraction(1, by_name[name].max_per_gpu), Fraction(by_name[name].framebuffer_mb, board.framebuffer_mb))
        for name, n in counts.items()
        if by_name[name].max_per_gpu_mixed is not None
    )
    return alone + ceil(share)


def lower_bounds(fleet: Fleet) -> dict[tuple[str, str], int]:
    """(board, mode) -> the least GPUs of that board and mode any placement of the fleet's requests uses."""
    requests: dict[tuple[str, str], list[VgpuProfile]] = defaultdict(list)
    passthrough = 0
    for vm in fleet.vms:
        for req in vm.vgpu:
            found = lookup_profile(req.profile)
            if found:
                board, prof = found
                requests[(board.name, "mig" if prof.mig_backed else "vgpu")].append(prof)
        passthrough += len(vm.passthrough)
    mixed_boards = {
        model.name
        for host in fleet.hosts
        for gpu in host.gpus
        if gpu.mixed_size and (model := lookup_gpu(gpu.model)) is not None
    }
    bounds: dict[tuple[str, str], int] = {}
    for (board_name, mode), profiles in requests.items():
        board = lookup_gpu(board_name)
        assert board is not None
        if mode == "mig":
            bounds[(board_name, mode)] = _mig_bound(board, profiles)
        else:
            bounds[(board_name, mode)] = _time_sliced_bound(board, profiles, board_name in mixed_boards)
    if passthrough:
        bounds[("*", "passthrough")] = passthrough
    return bounds


def lower_bound(fleet: Fleet) -> int:
    """The least number of GPUs any placement of the fleet's GPU requests can use."""
    return sum(lower_bounds(fleet).values())
