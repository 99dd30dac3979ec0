"""Planner benchmark: 400 GPUs / 2,800 VM requests of mixed profiles (see fleets.benchmark_fleet).

Prints, side by side, for the planner (best fit, exact MIG search) and a first-fit baseline (spec order, first
GPU that fits, MIG instances at the first free start slot): wall time, GPUs used, VMs left unplaced, and the
slice lower bound. Targets (TARGET lines, exit 0 met / 3 missed: benchmarks/targets.py): planner under 1 s and at
most one GPU above the bound, every VM placed, the plan re-checked clean. Every plan is re-checked by
pinning each VM to the host/GPU the plan chose and running the spec validator on that fleet.

    .venv/bin/python benchmarks/plan_bench.py [--repeat N]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleets import benchmark_fleet  # noqa: E402
from targets import Target, report  # noqa: E402

from gpufleet.placement.bounds import lower_bounds  # noqa: E402
from gpufleet.placement.planner import pinned_fleet, plan  # noqa: E402
from gpufleet.spec.models import Fleet  # noqa: E402
from gpufleet.spec.validate import validate_fleet  # noqa: E402


def timed(fn: Any, repeat: int) -> tuple[Any, float]:
    best = float("inf")
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best time is shown)")
    args = parser.parse_args()

    fleet = Fleet.model_validate(benchmark_fleet())
    gpus = sum(len(h.gpus) for h in fleet.hosts)
    requests = sum(len(vm.vgpu) + len(vm.passthrough) for vm in fleet.vms)
    issues, t_validate = timed(lambda: validate_fleet(fleet), args.repeat)
    if issues:
        print("benchmark fleet is invalid:", *issues[:5], sep="\n  ")
        return 1
    bounds = lower_bounds(fleet)
    bound = sum(bounds.values())

    best, t_best = timed(lambda: plan(fleet), args.repeat)
    base, t_base = timed(lambda: plan(fleet, strategy="first-fit"), args.repeat)
    recheck = {name: validate_fleet(pinned_fleet(fleet, p)) for name, p in (("planner", best), ("first-fit", base))}

    print(f"fleet: {len(fleet.hosts)} hosts, {gpus} GPUs, {len(fleet.vms)} VMs, {requests} GPU device requests")
    print(f"validate_fleet: {t_validate * 1000:.0f} ms    slice lower bound: {bound} GPUs")
    print()
    print(f"{'':24}{'planner (best fit)':>20}{'first-fit baseline':>20}")
    rows = [
        ("wall time", f"{t_best * 1000:.0f} ms", f"{t_base * 1000:.0f} ms"),
        ("GPUs used", str(best.gpus_used), str(base.gpus_used)),
        ("lower bound", str(bound), str(bound)),
        ("GPUs above bound", str(best.gpus_used - bound), str(base.gpus_used - bound)),
        ("VMs unplaced", str(len(best.unplaced)), str(len(base.unplaced))),
        ("re-check issues", str(len(recheck["planner"])), str(len(recheck["first-fit"]))),
    ]
    for label, a, b in rows:
        print(f"{label:24}{a:>20}{b:>20}")
    print()
    print("per board and mode:  bound / planner / first-fit GPUs used")
    used_best = Counter((g.model, g.mode) for g in best.gpus if g.assignments)
    used_base = Counter((g.model, g.mode) for g in base.gpus if g.assignments)
    for (board, mode), b in sorted(bounds.items()):
        print(f"  {board:16} {mode:12} {b:5} {used_best[(board, mode)]:5} {used_base[(board, mode)]:5}")
    print()
    return report(
        [
            Target("plan wall time", t_best < 1.0, f"{t_best * 1000:.0f} ms", "< 1000 ms"),
            Target("plan GPUs above the lower bound", best.gpus_used <= bound + 1, str(best.gpus_used - bound), "<= 1"),
            Target("plan places every VM", best.feasible, f"{len(best.unplaced)} unplaced", "0 unplaced"),
            Target("plan re-check clean", not recheck["planner"], f"{len(recheck['planner'])} issues", "0 issues"),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
