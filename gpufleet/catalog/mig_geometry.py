"""Exact MIG placement search: can this set of GPU instances coexist on one GPU, and at which start slots?

The driver gives every GPU-instance profile a fixed set of start slots and a size in memory slices
(``nvidia-smi mig -lgipp``). Whether a set of instances fits is a search over those start slots, not a
first-fit: e.g. on an A100-80GB, 3g.40gb placed first at slot 0 would leave no room for a 4g.40gb (slot 0 only),
yet 4g.40gb@0 + 3g.40gb@4 fits. The search is a backtracking over start slots with the most constrained
instance first; with 8 slices it is tiny, and results are memoised per multiset of instance names.

This module sits in the catalog layer (pure data + geometry) so that both ``gpufleet.spec.validate`` and
``gpufleet.placement`` use the same search; the public face is ``gpufleet.placement.mig.fit``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from functools import cache

from gpufleet.catalog.types import GpuModel, MigProfile

Slot = tuple[int, int]  # (start, size)


def _mask(start: int, size: int) -> int:
    return ((1 << size) - 1) << start


def search(profiles: Sequence[MigProfile], occupied: int = 0) -> list[Slot] | None:
    """Start/size for each profile (same order) so that no two overlap, or None when none exists.

    ``occupied`` is a bit mask of memory slices already taken by instances that cannot move. Per-profile maxima
    and the one-``+me``-instance-per-GPU rule are checked too.
    """
    counts = Counter(p.name for p in profiles)
    by_name = {p.name: p for p in profiles}
    if any(counts[name] > by_name[name].max_instances for name in counts):
        return None
    if sum(1 for p in profiles if p.media_extensions) > 1:
        return None
    # Most constrained first: fewest start choices, then largest; ties by name for determinism.
    order = sorted(range(len(profiles)), key=lambda i: (len(profiles[i].starts), -profiles[i].size, profiles[i].name))
    chosen: list[Slot | None] = [None] * len(profiles)

    def place(k: int, taken: int) -> bool:
        if k == len(order):
            return True
        i = order[k]
        p = profiles[i]
        # Identical profiles are interchangeable: force increasing starts to avoid re-trying permutations.
        floor = -1
        if k > 0 and profiles[order[k - 1]].name == p.name:
            prev = chosen[order[k - 1]]
            floor = prev[0] if prev else -1
        for start in p.starts:
            if start <= floor:
                continue
            m = _mask(start, p.size)
            if taken & m:
                continue
            chosen[i] = (start, p.size)
            if place(k + 1, taken | m):
                return True
        chosen[i] = None
        return False

    if not place(0, occupied):
        return None
    return [slot for slot in chosen if slot is not None]


@cache
def fits_sorted(profiles: tuple[MigProfile, ...]) -> tuple[Slot, ...] | None:
    """Memoised ``search`` for a canonically ordered tuple of profiles (callers sort them, e.g. by name)."""
    result = search(profiles)
    return tuple(result) if result is not None else None


def minimal_conflict(profiles: Sequence[MigProfile]) -> list[int]:
    """Indices of a smallest-effort minimal subset that still does not fit (deletion filter).

    Removing any one instance of the returned subset makes it fit, so it names the instances that conflict.
    """
    keep = list(range(len(profiles)))
    for i in reversed(range(len(profiles))):
        trial = [j for j in keep if j != i]
        if search([profiles[j] for j in trial]) is None:
            keep = trial
    return keep


def _describe(label: str, instance: MigProfile) -> str:
    name = label if label == instance.name else f"{label} ({instance.name})"
    return f"{name} at {instance.placements_text()}"


def explain_conflict(gpu: GpuModel, labels: Sequence[str], instances: Sequence[MigProfile]) -> tuple[list[int], str]:
    """For instances that do not fit: the indices of those that conflict and why, in words a person can act on.

    ``labels`` name each instance in the message (the profile as the user wrote it, or a spec path).
    """
    counts = Counter(p.name for p in instances)
    for p in gpu.mig_profiles:
        if counts[p.name] > p.max_instances:
            idx = [i for i, inst in enumerate(instances) if inst.name == p.name]
            return idx, f"at most {p.max_instances} x {p.name} per {gpu.name} GPU, {counts[p.name]} requested"
    me = [i for i, inst in enumerate(instances) if inst.media_extensions]
    if len(me) > 1:
        return me, "only one +me (media extensions) instance per GPU"
    subset = minimal_conflict(instances)
    parts = ", ".join(_describe(labels[i], instances[i]) for i in subset)
    return subset, (
        f"no placement on the {gpu.memory_slices} memory slices of {gpu.name}: {parts} overlap for every "
        "choice of allowed start slots ({starts}:size)"
    )
