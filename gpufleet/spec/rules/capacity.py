"""Capacity rules for vGPUs pinned to a GPU: time-sliced counts and sizes, MIG exact placement.

Requests placed automatically (no ``gpu``) are the planner's job (``gpufleet plan``); here only what the spec
fixes itself is checked, so that an impossible pinning is refused before anything is touched.
"""

from __future__ import annotations

from collections import defaultdict

from gpufleet.catalog import MigProfile
from gpufleet.catalog.mig_geometry import explain_conflict, search
from gpufleet.spec.models import GpuMode
from gpufleet.spec.rules.context import MIG_LAYOUT_RULE, Context, few
from gpufleet.spec.rules.vms import PinnedVgpu


def check_pinned_capacity(ctx: Context, pinned: list[PinnedVgpu]) -> None:
    by_gpu: dict[tuple[str, str], list[PinnedVgpu]] = defaultdict(list)
    for p in pinned:
        by_gpu[(p.gpu.host.name, p.gpu.spec.pci)].append(p)
    for group in by_gpu.values():
        gpu = group[0].gpu
        if gpu.spec.mode == GpuMode.MIG:
            _check_mig(ctx, group)
        elif gpu.spec.mixed_size:
            _check_mixed(ctx, group)
        else:
            _check_equal(ctx, group)


def _check_equal(ctx: Context, group: list[PinnedVgpu]) -> None:
    """Without mixed-size mode: one profile per GPU, at most its per-GPU maximum."""
    first = group[0]
    same = []
    for p in group:
        if p.profile.vsphere_name != first.profile.vsphere_name:
            ctx.add(
                f"{p.path}.profile",
                f"{p.gpu.label} already carries {first.profile.vsphere_name} ({first.path}); without mixedSize all "
                "vGPUs on a GPU are the same profile",
                [first.profile.vsphere_name],
            )
        else:
            same.append(p)
    limit = first.profile.max_per_gpu
    if len(same) > limit:
        extra = same[limit]
        ctx.add(
            f"{extra.path}.gpu",
            f"{first.gpu.label} holds at most {limit} x {first.profile.vsphere_name}; {len(same)} are pinned to it "
            f"({', '.join(p.path for p in same)})",
        )


def _check_mixed(ctx: Context, group: list[PinnedVgpu]) -> None:
    """Mixed-size mode: one series, each profile within its mixed-size maximum, framebuffers within the GPU's."""
    gpu = group[0].gpu
    model = gpu.model
    assert model is not None  # pinned requests only exist for known boards
    first = group[0]
    counts: dict[str, int] = defaultdict(int)
    used_mb = 0
    for p in group:
        prof = p.profile
        if prof.series != first.profile.series:
            ctx.add(
                f"{p.path}.profile",
                f"{gpu.label} carries {first.profile.series}-series vGPUs ({first.path}); one series per GPU",
            )
            continue
        if prof.max_per_gpu_mixed is None:
            ctx.add(
                f"{p.path}.profile",
                f"{prof.vsphere_name} is not available in mixed-size mode",
                few([q.vsphere_name for q in model.time_sliced_profiles if q.max_per_gpu_mixed]),
            )
            continue
        counts[prof.vsphere_name] += 1
        if counts[prof.vsphere_name] > prof.max_per_gpu_mixed:
            ctx.add(
                f"{p.path}.gpu",
                f"{gpu.label} holds at most {prof.max_per_gpu_mixed} x {prof.vsphere_name} in mixed-size mode",
            )
            continue
        used_mb += prof.framebuffer_mb
        if used_mb > model.framebuffer_mb:
            ctx.add(
                f"{p.path}.gpu",
                f"the vGPUs pinned to {gpu.label} need {used_mb} MB of framebuffer; it has {model.framebuffer_mb} MB",
            )
            used_mb -= prof.framebuffer_mb


def _check_mig(ctx: Context, group: list[PinnedVgpu]) -> None:
    """The MIG instances pinned to one GPU must have a placement (exact search over start slots)."""
    model = group[0].gpu.model
    assert model is not None
    instances: list[MigProfile] = []
    for p in group:
        inst = model.mig_profile(p.profile.mig_instance or "")
        if inst is None:  # catalog inconsistency; the catalog tests guard against it
            ctx.add(f"{p.path}.profile", f"{p.profile.vsphere_name} has no MIG instance profile on {model.name}")
            return
        instances.append(inst)
    if search(instances) is not None:
        return
    labels = [p.path for p in group]
    idx, reason = explain_conflict(model, labels, instances)
    culprit = group[idx[-1]] if idx else group[-1]
    ctx.add(
        f"{culprit.path}.gpu",
        f"the MIG-backed vGPUs pinned to {group[0].gpu.label} do not fit: {reason}",
        rule=MIG_LAYOUT_RULE,
    )
