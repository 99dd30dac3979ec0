"""Benchmark: rolling host preparation on 24 lab hosts, max-unavailable 4, with a fixed reboot time.

    .venv/bin/python benchmarks/hosts_bench.py                               # 24 hosts, k=4, reboot 10 s
    .venv/bin/python benchmarks/hosts_bench.py --hosts 8 --reboot-seconds 5 --measure-sequential

It starts a private embedded lab (its own directory and ports: it never touches a running `gpufleet lab up`)
of N fresh hosts (no NVIDIA driver) whose reboot keeps a host away exactly R seconds, writes a stack where every
host needs the same work (driver install + graphics + one reboot; time-sliced vGPU, so no MIG second reboot),
and times the real `hosts prepare` code path (host_setup.command.prepare_stack: plan, then the rollout):

1. one host alone: T1 = its wall time (plan + maintenance + install + reboot + verify + exit), with the
   install and reboot step times it reports;
2. all N hosts with max-unavailable k: the wall time W;

and prints W side by side with the ideal ceil(N/k) x T1 (the per-host work made perfectly parallel) and the
sequential N x T1 (or measured with max-unavailable 1: --measure-sequential). Target (issue 4): W <= 1.15 x ideal.
The stricter ceil(N/k) x (install + R), counting only the install step and the fixed reboot time, is printed too.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BUNDLE = "NVD-AIE-800_550.90.05-1OEM.800.1.0.20613240_23471011.zip"
_GPUS = {"A100-80GB-PCIe": 2, "H100-80GB-PCIe": 2, "L40S": 2, "T4": 4}  # lab.topology's cycle of host types
_BUSES = ["3b", "5e", "86", "af"]


def _free_port(addresses: list[str]) -> int:
    """A TCP port free on every lab host address (each host's sshd listens on its own 127.0.0.x)."""
    for port in range(22300, 23000):
        try:
            for address in addresses:
                with socket.socket() as s:
                    s.bind((address, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port for the lab's sshd")


def _stack(hosts: int, path: Path) -> Path:
    models = list(_GPUS)
    fleet_hosts = []
    for i in range(hosts):
        model = models[i % len(models)]
        gpus = [{"pci": f"0000:{_BUSES[j]}:00.0", "model": model, "mode": "vgpu"} for j in range(_GPUS[model])]
        fleet_hosts.append({"name": f"esxi-{i + 1:02d}.lab", "graphicsType": "sharedDirect", "gpus": gpus})
    document = {
        "config": {
            "gpufleet:vcenter": {"lab": True},
            "gpufleet:fleet": {
                "version": "v1",
                "datacenter": "DC-Lab",
                "cluster": "GPU-Cluster",
                "datastore": "datastore-lab",
                "driver": {
                    "version": "550.90.05",
                    "kind": "component",
                    "bundle": f"/vmfs/volumes/datastore1/{BUNDLE}",
                    "localPath": f"lab-depot://{BUNDLE}",
                },
                "rollout": {"maxUnavailable": 4, "rebootTimeoutSeconds": 300, "failureThreshold": 1},
                "hosts": fleet_hosts,
            },
        }
    }
    with path.open("w") as fh:
        YAML().dump(document, fh)
    return path


def _run(stack: Path, k: int, only: tuple[str, ...] = ()) -> tuple[float, dict[str, Any]]:
    from host_setup.command import prepare_stack

    started = time.monotonic()
    report = prepare_stack(stack, max_unavailable=k, only=only)
    wall = time.monotonic() - started
    document = report.to_json()
    if report.exit_code != 0:
        failed = [(h["name"], h["error"]) for h in document["hosts"] if h["error"]]
        raise SystemExit(f"the rollout failed (exit {report.exit_code}): {failed}")
    return wall, document


def _step_seconds(document: dict[str, Any], name: str) -> list[float]:
    return [s["seconds"] for h in document["hosts"] for s in h["steps"] if s["name"] == name and "seconds" in s]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=24)
    parser.add_argument("--max-unavailable", type=int, default=4)
    parser.add_argument("--reboot-seconds", type=float, default=10.0)
    parser.add_argument("--measure-sequential", action="store_true", help="also run all hosts with max-unavailable 1")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    args = parser.parse_args()
    n, k, reboot = args.hosts, args.max_unavailable, args.reboot_seconds

    lab_dir = Path(tempfile.mkdtemp(prefix="gpufleet-hosts-bench-"))
    os.environ["GPUFLEET_LAB_DIR"] = str(lab_dir)
    from lab.manager import LabShape, down, reset_host, up
    from lab.paths import LabPaths
    from lab.topology import build_topology

    addresses = [h.address for h in build_topology(hosts=n).hosts]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        vcenter_port = s.getsockname()[1]
    shape = LabShape(hosts=n, reboot_seconds=reboot, ssh_port=_free_port(addresses), vcenter_port=vcenter_port)
    paths = LabPaths.resolve(lab_dir)
    say = (lambda m: print(m, file=sys.stderr)) if not args.json else (lambda m: None)
    try:
        started = time.monotonic()
        up(shape, paths)
        say(f"lab of {n} hosts up in {time.monotonic() - started:.1f} s ({lab_dir}, reboot {reboot:g} s)")
        stack = _stack(n, lab_dir / "Pulumi.bench.yaml")

        t1, alone = _run(stack, k, only=("esxi-01.lab",))
        install = _step_seconds(alone, "driver")[0]
        reboot_step = _step_seconds(alone, "reboot")[0]
        say(f"one host alone: {t1:.1f} s (install {install:.2f} s, reboot step {reboot_step:.2f} s)")
        reset_host("esxi-01.lab", paths)

        wall, fleet = _run(stack, k)
        peak = fleet["peak_in_maintenance"]
        say(f"{n} hosts, max-unavailable {k}: {wall:.1f} s (peak in maintenance {peak})")

        sequential_measured = None
        if args.measure_sequential:
            for i in range(n):
                reset_host(f"esxi-{i + 1:02d}.lab", paths)
            sequential_measured, _ = _run(stack, 1)

        waves = math.ceil(n / k)
        ideal = waves * t1
        strict = waves * (install + reboot)
        sequential = n * t1
        installs = _step_seconds(fleet, "driver")
        figures = {
            "hosts": n,
            "max_unavailable": k,
            "reboot_seconds": reboot,
            "one_host_seconds": round(t1, 2),
            "install_seconds_alone": round(install, 2),
            "install_seconds_median_in_fleet": round(statistics.median(installs), 2),
            "wall_seconds": round(wall, 2),
            "ideal_seconds": round(ideal, 2),
            "ratio_to_ideal": round(wall / ideal, 3),
            "strict_ideal_seconds": round(strict, 2),
            "ratio_to_strict_ideal": round(wall / strict, 3),
            "sequential_seconds": round(sequential, 2),
            "sequential_measured_seconds": round(sequential_measured, 2) if sequential_measured else None,
            "speedup_vs_sequential": round((sequential_measured or sequential) / wall, 2),
            "peak_in_maintenance": peak,
            "target_ratio": 1.15,
            "target_met": wall / ideal <= 1.15,
        }
        if args.json:
            print(json.dumps(figures, indent=2))
        else:
            rows = [
                ("rollout wall time (measured)", wall, ""),
                (f"ideal ceil({n}/{k}) x one host ({t1:.1f} s)", ideal, f"{wall / ideal:.3f}x  (target <= 1.15x)"),
                (
                    f"strict ideal ceil({n}/{k}) x (install {install:.1f} + reboot {reboot:g})",
                    strict,
                    f"{wall / strict:.3f}x",
                ),
                (f"sequential {n} x one host", sequential, f"{sequential / wall:.1f}x slower than the rollout"),
            ]
            if sequential_measured:
                rows.append(
                    (
                        "sequential measured (max-unavailable 1)",
                        sequential_measured,
                        f"{sequential_measured / wall:.1f}x",
                    )
                )
            print(
                f"\nhosts prepare: {n} lab hosts, max-unavailable {k}, reboot {reboot:g} s (peak in maintenance: {peak})"
            )
            for label, seconds, note in rows:
                print(f"  {label:<58} {seconds:8.1f} s   {note}")
            print(f"  target met: {figures['target_met']}")
        return 0 if figures["target_met"] else 2
    finally:
        down(paths)


if __name__ == "__main__":
    raise SystemExit(main())
