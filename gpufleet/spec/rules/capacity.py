"""Capacity rules for vGPUs pinned to a GPU: what the spec fixes itself must fit the GPU it names.

The rules are the catalog's per-GPU capacity model (``gpufleet.catalog.capacity``: time-sliced counts and sizes,
mixed-size series and framebuffer, MIG exact placement); here they are only asked and their answers given spec
paths. Requests placed automatically (no ``gpu``) are the planner's job (``gpufleet plan``), with the same model.
"""

from __future__ import annotations

from collections import defaultdict

from gpufleet.catalog.capacity import MIG_LAYOUT
from gpufleet.spec.rules.context import MIG_LAYOUT_RULE, Context, few
from gpufleet.spec.rules.vms import PinnedVgpu


def check_pinned_capacity(ctx: Context, pinned: list[PinnedVgpu]) -> None:
    by_gpu: dict[tuple[str, str], list[PinnedVgpu]] = defaultdict(list)
    for p in pinned:
        by_gpu[(p.gpu.host.name, p.gpu.spec.pci)].append(p)
    for group in by_gpu.values():
        capacity = group[0].gpu.capacity
        assert capacity is not None  # pinned requests only exist for known boards
        for problem in capacity.problems([p.profile for p in group], [p.path for p in group]):
            ctx.add(
                f"{group[problem.index].path}.{problem.field}",
                problem.message,
                few(problem.valid),
                rule=MIG_LAYOUT_RULE if problem.kind == MIG_LAYOUT else None,
            )
