"""`make bench` (scripts/bench.sh) runs every benchmark and sums up each target met / missed; benchmarks leave
nothing in the temporary directory (the audit benchmark used to leave its lab CA's private key in /tmp)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "scripts" / "bench.sh"
TARGET_LINE = re.compile(r"^TARGET [^:]+: (met|missed) \(.+ vs .+\)$", re.MULTILINE)


def _bench(*benches: Path, tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PY": sys.executable, "TMPDIR": str(tmp)}
    return subprocess.run(
        [str(BENCH), *map(str, benches)], capture_output=True, text=True, cwd=REPO, env=env, timeout=600
    )


def _summary(out: str) -> list[list[str]]:
    table = out.split("== bench summary\n", 1)[1].splitlines()[1:-1]
    return [line.split(None, 2) for line in table]


def test_every_benchmark_runs_and_the_summary_reports_met_missed_and_errors(tmp_path: Path) -> None:
    benches = tmp_path / "benches"
    benches.mkdir()
    (benches / "a_bench.py").write_text(
        'print("TARGET speed: missed (9 ms vs < 2 ms)")\nprint("TARGET size: met (3 vs <= 4)")\nraise SystemExit(3)\n'
    )
    (benches / "b_bench.py").write_text('raise SystemExit("cannot measure: no vcsim")\n')  # exit 1
    (benches / "c_bench.py").write_text('print("no target line")\n')
    (benches / "d_bench.py").write_text('print("TARGET all: met (1 vs 1)")\n')
    proc = _bench(*sorted(benches.glob("*_bench.py")), tmp=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # an error wins over a miss
    # the run did not stop at the first miss or error: every benchmark ran and is in the table
    assert _summary(proc.stdout) == [
        ["a_bench", "missed", "speed (9 ms vs < 2 ms)"],
        ["a_bench", "met", "size (3 vs <= 4)"],
        ["b_bench", "error", "(exit 1, no TARGET line)"],
        ["c_bench", "error", "(exit 0, no TARGET line)"],
        ["d_bench", "met", "all (1 vs 1)"],
    ]
    missed = _bench(benches / "a_bench.py", benches / "d_bench.py", tmp=tmp_path)
    assert missed.returncode == 3 and missed.stdout.rstrip().endswith("some target missed")
    met = _bench(benches / "d_bench.py", tmp=tmp_path)
    assert met.returncode == 0 and met.stdout.rstrip().endswith("every target met")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["benches"]  # the script's own logs are gone


def test_the_planner_benchmark_follows_the_convention(tmp_path: Path) -> None:
    proc = _bench(REPO / "benchmarks" / "plan_bench.py", tmp=tmp_path)
    assert proc.returncode in (0, 3), proc.stdout + proc.stderr
    lines = TARGET_LINE.findall(proc.stdout)
    assert len(lines) == 4
    assert [row[0] for row in _summary(proc.stdout)] == ["plan_bench"] * 4
    assert proc.returncode == (3 if "missed" in lines else 0)


@pytest.mark.lab  # starts the lab's vcsim (built with Go on first use)
def test_the_audit_benchmark_reports_targets_and_removes_its_lab_ca(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    bench = REPO / "benchmarks" / "audit_bench.py"
    args = [sys.executable, str(bench), "--hosts", "2", "--vms-per-host", "1", "--repeat", "1"]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert proc.returncode in (0, 3), proc.stdout + proc.stderr
    assert len(TARGET_LINE.findall(proc.stdout)) == 2
    assert list(tmp_path.iterdir()) == []  # no topology, no vcsim log, no CA key left behind


def test_passing_tests_leave_no_temporary_directories() -> None:
    """pytest keeps every tmp_path of the last 3 sessions by default (lab CAs and keys among them): only the
    failed tests' are kept, and a session that passes removes its base directory."""
    options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert options["tmp_path_retention_policy"] == "failed"
