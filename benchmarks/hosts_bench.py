"""Benchmark: rolling host preparation on 24 lab hosts, max-unavailable 4, with a fixed reboot time.

    .venv/bin/python benchmarks/hosts_bench.py                               # 24 hosts, k=4, reboot 10 s, both paths
    .venv/bin/python benchmarks/hosts_bench.py --hosts 8 --reboot-seconds 5 --measure-sequential --path cli

It starts a private embedded lab (its own directory and ports: it never touches a running `gpufleet lab up`)
of N fresh hosts (no NVIDIA driver) whose reboot keeps a host away exactly R seconds, writes a stack where every
host needs the same work (driver install + graphics + one reboot; time-sliced vGPU, so no MIG second reboot),
and times the real `hosts prepare` code path (gpufleet.hosts.command.prepare_stack: plan, then the rollout):

1. one host alone: T1 = its wall time (plan + maintenance + install + reboot + verify + exit), with the
   install and reboot step times it reports;
2. all N hosts with max-unavailable k: the wall time W;

3. the same N hosts reset, then ``pulumi up`` of the same stack through the real engine (``gpufleet pulumi``; the
   program's HostPreparation resources in maxUnavailable lanes after every BundleStaging): its wall time, and the
   span from the first host entering maintenance to the last leaving it (the lab's event log), which leaves out
   the engine's own start-up;

and prints each side by side with the strict ideal ceil(N/k) x (install + R) (the install step of one host alone
and the fixed reboot time: nothing else of a host's window counted), the looser ceil(N/k) x T1 and the sequential
N x T1 (or measured with max-unavailable 1: --measure-sequential), with the peak in maintenance from the lab's
event log. Target (issue 11): the rollout <= 1.10 x the strict ideal (``hosts prepare``'s wall time; for
``pulumi up`` its maintenance span). Prints ``TARGET <name>: met|missed (...)`` per target; exit 0 all met, 3 not.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from targets import Target, report

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BUNDLE = "NVD-AIE-800_550.90.05-1OEM.800.1.0.20613240_23471011.zip"
_GPUS = {"A100-80GB-PCIe": 2, "H100-80GB-PCIe": 2, "L40S": 2, "T4": 4}  # lab.topology's cycle of host types
_BUSES = ["3b", "5e", "86", "af"]
TARGET = 1.10  # issue 11: the rollout <= 1.10 x ceil(N/k) x (install + reboot)


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


def _stack(hosts: int, path: Path, max_unavailable: int) -> Path:
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
                "rollout": {"maxUnavailable": max_unavailable, "rebootTimeoutSeconds": 300, "failureThreshold": 1},
                "hosts": fleet_hosts,
            },
        }
    }
    with path.open("w") as fh:
        YAML().dump(document, fh)
    return path


def _run(
    stack: Path, k: int, only: tuple[str, ...] = (), notes: list[tuple[float, str, str]] | None = None
) -> tuple[float, dict[str, Any]]:
    """``hosts prepare`` of ``stack``; ``notes`` collects the rollout's own events as (UNIX time, host, message)."""
    from gpufleet.hosts.command import prepare_stack

    def note(host: str, message: str) -> None:
        if notes is not None:
            notes.append((time.time(), host, message))

    started = time.monotonic()
    report = prepare_stack(stack, max_unavailable=k, only=only, on_event=note)
    wall = time.monotonic() - started
    document = report.to_json()
    if report.exit_code != 0:
        failed = [(h["name"], h["error"]) for h in document["hosts"] if h["error"]]
        raise SystemExit(f"the rollout failed (exit {report.exit_code}): {failed}")
    return wall, document


def _pulumi_up(stack: Path, lab_dir: Path) -> tuple[float, str]:
    """``gpufleet pulumi up`` of ``stack`` through the real engine, in an engine state of the bench's own; returns
    its wall time and the end of its output."""
    import subprocess

    from gpufleet.engine import workspace as engine

    env = dict(os.environ, GPUFLEET_LAB_DIR=str(lab_dir), GPUFLEET_ENGINE_STATE=str(lab_dir / "engine"))
    project = engine.sync_workspace(lab_dir / "engine")
    (project / "stacks" / "Pulumi.bench.yaml").write_text(stack.read_text())
    gpufleet = [sys.executable, "-m", "gpufleet", "pulumi"]
    subprocess.run([*gpufleet, "stack", "init", "bench"], env=env, cwd=REPO, capture_output=True, check=True)
    started = time.monotonic()
    done = subprocess.run(
        [*gpufleet, "up", "--yes", "--skip-preview", "--stack", "bench"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"pulumi up failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    return wall, done.stdout[-400:]


def _maintenance_span(paths: Any, since: float) -> tuple[float, int]:
    """From the first host entering maintenance to the last leaving it, and the peak in maintenance at once."""
    from lab.esxi.events import max_concurrent, read_events

    events = read_events(paths, since=since)
    windows = [e["ts"] for e in events if e["event"] in ("maintenance_enter", "maintenance_exit")]
    return (max(windows) - min(windows) if windows else 0.0), max_concurrent(events)


# One host's window, phase by phase: (label, from, to); a mark is a rollout note (prefix) or a lab event.
_PHASES = [
    ("slot -> in maintenance", "note:started", "lab:maintenance_enter"),
    ("in maintenance -> install starts", "lab:maintenance_enter", "note:driver:"),
    ("install (esxcli)", "note:driver:", "note:rebooting:"),
    ("reboot asked -> lab reboot starts", "note:rebooting:", "lab:reboot_start"),
    ("lab reboot (configured away time)", "lab:reboot_start", "lab:reboot_done"),
    ("host back -> maintenance exit", "lab:reboot_done", "note:exiting maintenance"),
    ("exit maintenance (vCenter)", "note:exiting maintenance", "lab:maintenance_exit"),
    ("out of maintenance -> host done", "lab:maintenance_exit", "note:done"),
]


def _row(label: str, seconds: list[float]) -> list[str]:
    """One breakdown line, median and max (none when nothing was measured)."""
    if not seconds:
        return []
    return [f"  {label:<40} median {statistics.median(seconds):6.2f} s   max {max(seconds):6.2f} s"]


def _phase_rows(marks: dict[str, dict[str, float]], phases: list[tuple[str, str, str]]) -> list[str]:
    """Per phase (label, from mark, to mark): its span on every host that has both marks."""
    return [
        line
        for label, start, end in phases
        for line in _row(label, [m[end] - m[start] for m in marks.values() if start in m and end in m])
    ]


def _handover(label: str, frees: list[float], starts: list[float], k: int) -> list[str]:
    """From the j-th slot coming free to the (j+k)-th start (the first k start at once)."""
    return _row(label, [s - f for f, s in zip(sorted(frees), sorted(starts)[k:], strict=False)])


def _breakdown(notes: list[tuple[float, str, str]], events: list[dict[str, Any]], k: int) -> list[str]:
    """Median / max seconds of each phase of a host's run, and the lane gap: from a host's slot coming free
    ("done") to the next host starting ("started")."""
    marks: dict[str, dict[str, float]] = {}
    for ts, host, message in notes:
        for _, start, end in _PHASES:
            for mark in (start, end):
                if mark.startswith("note:") and message.startswith(mark[5:]):
                    marks.setdefault(host, {}).setdefault(mark, ts)
    for event in events:
        marks.setdefault(event["host"], {}).setdefault(f"lab:{event['event']}", event["ts"])
    started = [ts for ts, _, message in notes if message == "started"]
    lines = _phase_rows(marks, _PHASES)
    lines += _handover("lane gap: slot free -> next host starts", [ts for ts, _, m in notes if m == "done"], started, k)
    if started and notes:
        lines.append(f"  {'run start -> first host starts':<40} {min(started) - notes[0][0]:6.2f} s (plan + staging)")
    return lines


def _lab_breakdown(events: list[dict[str, Any]], k: int) -> list[str]:
    """From the lab's event log alone (so for either face): a window's phases, and the slot hand-over: from the
    j-th maintenance exit to the (j+k)-th entry (a free slot to the next host in maintenance)."""
    marks: dict[str, dict[str, float]] = {}
    for event in events:
        marks.setdefault(event["host"], {}).setdefault(event["event"], event["ts"])
    lines = _phase_rows(
        marks,
        [
            ("in maintenance -> reboot starts", "maintenance_enter", "reboot_start"),
            ("host back -> out of maintenance", "reboot_done", "maintenance_exit"),
        ],
    )
    return lines + _handover(
        "slot hand-over: exit -> next enter",
        [e["ts"] for e in events if e["event"] == "maintenance_exit"],
        [e["ts"] for e in events if e["event"] == "maintenance_enter"],
        k,
    )


def _step_seconds(document: dict[str, Any], name: str) -> list[float]:
    return [s["seconds"] for h in document["hosts"] for s in h["steps"] if s["name"] == name and "seconds" in s]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=24)
    parser.add_argument("--max-unavailable", type=int, default=4)
    parser.add_argument("--reboot-seconds", type=float, default=10.0)
    parser.add_argument("--measure-sequential", action="store_true", help="also run all hosts with max-unavailable 1")
    parser.add_argument("--breakdown", action="store_true", help="print where a host's window goes, phase by phase")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    parser.add_argument("--path", choices=["cli", "pulumi", "both"], default="both", help="which face to time")
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
        stack = _stack(n, lab_dir / "Pulumi.bench.yaml", k)

        t1, alone = _run(stack, k, only=("esxi-01.lab",))
        install = _step_seconds(alone, "driver")[0]
        reboot_step = _step_seconds(alone, "reboot")[0]
        say(f"one host alone: {t1:.1f} s (install {install:.2f} s, reboot step {reboot_step:.2f} s)")
        reset_host("esxi-01.lab", paths)

        wall = cli_span = pulumi_wall = pulumi_span = None
        peak: Any = None
        pulumi_peak = None
        installs = [install]
        if args.path in ("cli", "both"):
            started_at = time.time()
            notes: list[tuple[float, str, str]] = []
            wall, fleet = _run(stack, k, notes=notes)
            peak = fleet["peakInMaintenance"]
            installs = _step_seconds(fleet, "driver")
            say(f"hosts prepare: {n} hosts, max-unavailable {k}: {wall:.1f} s (peak in maintenance {peak})")
            cli_span, _ = _maintenance_span(paths, started_at)
            if args.breakdown:
                from lab.esxi.events import read_events

                say("hosts prepare, per host (rollout notes and the lab's event log):")
                cli_events = read_events(paths, since=started_at)
                for line in _breakdown(notes, cli_events, k) + _lab_breakdown(cli_events, k):
                    say(line)
        if args.path in ("pulumi", "both"):
            for i in range(n):
                reset_host(f"esxi-{i + 1:02d}.lab", paths)
            started_at = time.time()
            pulumi_wall, _ = _pulumi_up(stack, lab_dir)
            pulumi_span, pulumi_peak = _maintenance_span(paths, started_at)
            say(
                f"pulumi up: {n} hosts, max-unavailable {k}: {pulumi_wall:.1f} s, first maintenance to last "
                f"{pulumi_span:.1f} s (peak in maintenance {pulumi_peak})"
            )
            if args.breakdown:
                from lab.esxi.events import read_events

                say("pulumi up, per host (the lab's event log):")
                for line in _lab_breakdown(read_events(paths, since=started_at), k):
                    say(line)

        sequential_measured = None
        if args.measure_sequential:
            for i in range(n):
                reset_host(f"esxi-{i + 1:02d}.lab", paths)
            sequential_measured, _ = _run(stack, 1)

        waves = math.ceil(n / k)
        ideal = waves * t1
        strict = waves * (install + reboot)
        sequential = n * t1
        figures: dict[str, Any] = {
            "hosts": n,
            "max_unavailable": k,
            "reboot_seconds": reboot,
            "one_host_seconds": round(t1, 2),
            "install_seconds_alone": round(install, 2),
            "install_seconds_median_in_fleet": round(statistics.median(installs), 2),
            "strict_ideal_seconds": round(strict, 2),
            "ideal_seconds": round(ideal, 2),
            "sequential_seconds": round(sequential, 2),
            "sequential_measured_seconds": round(sequential_measured, 2) if sequential_measured else None,
            "target_ratio_to_strict_ideal": TARGET,
        }
        rows = []
        if wall is not None:
            figures |= {
                "wall_seconds": round(wall, 2),
                "ratio_to_strict_ideal": round(wall / strict, 3),
                "ratio_to_ideal": round(wall / ideal, 3),
                "peak_in_maintenance": peak,
                "speedup_vs_sequential": round((sequential_measured or sequential) / wall, 2),
            }
            rows += [
                ("hosts prepare: wall time (measured)", wall, f"{wall / strict:.3f}x strict ideal"),
                ("hosts prepare: first maintenance to last exit", cli_span or 0.0, f"{(cli_span or 0) / strict:.3f}x"),
            ]
        if pulumi_wall is not None and pulumi_span is not None:
            figures |= {
                "pulumi_wall_seconds": round(pulumi_wall, 2),
                "pulumi_maintenance_span_seconds": round(pulumi_span, 2),
                "pulumi_ratio_to_strict_ideal": round(pulumi_span / strict, 3),
                "pulumi_peak_in_maintenance": pulumi_peak,
            }
            rows += [
                ("pulumi up: wall time (engine start-up included)", pulumi_wall, f"{pulumi_wall / strict:.3f}x"),
                ("pulumi up: first maintenance to last exit", pulumi_span, f"{pulumi_span / strict:.3f}x strict ideal"),
            ]
        rows += [
            (f"strict ideal ceil({n}/{k}) x (install {install:.2f} + reboot {reboot:g})", strict, "baseline"),
            (f"ideal ceil({n}/{k}) x one host alone ({t1:.1f} s)", ideal, f"{ideal / strict:.3f}x"),
            (f"sequential {n} x one host", sequential, f"{sequential / strict:.3f}x"),
        ]
        if sequential_measured:
            rows.append(("sequential measured (max-unavailable 1)", sequential_measured, ""))
        if args.json:
            print(json.dumps(figures, indent=2))
        else:
            print(f"\nhost rollout: {n} lab hosts, max-unavailable {k}, reboot {reboot:g} s")
            for label, seconds, note in rows:
                print(f"  {label:<62} {seconds:8.1f} s   {note}")
            if peak is not None:
                print(f"  peak in maintenance: hosts prepare {peak}")
            if pulumi_peak is not None:
                print(f"  peak in maintenance: pulumi up {pulumi_peak} (lab event log; bound {k})")
        targets: list[Target] = []
        if wall is not None:
            targets += [
                Target(
                    "hosts_prepare_vs_strict_ideal", wall / strict <= TARGET, f"{wall / strict:.3f}x", f"<= {TARGET}x"
                ),
                Target(
                    "hosts_prepare_peak_in_maintenance",
                    max(peak.values()) <= k,
                    f"{max(peak.values())} hosts",
                    f"<= {k}",
                ),
            ]
        if pulumi_span is not None and pulumi_peak is not None:
            ratio = pulumi_span / strict
            targets += [
                Target(
                    "pulumi_up_vs_strict_ideal", ratio <= TARGET, f"{ratio:.3f}x (maintenance span)", f"<= {TARGET}x"
                ),
                Target("pulumi_up_peak_in_maintenance", pulumi_peak <= k, f"{pulumi_peak} hosts", f"<= {k}"),
            ]
        return report(targets)
    finally:
        down(paths)
        shutil.rmtree(lab_dir, ignore_errors=True)  # the lab's CA and keys: nothing left behind


if __name__ == "__main__":
    raise SystemExit(main())
