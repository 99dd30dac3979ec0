"""What people and logs see (issue 12, item 11): plain text off a terminal (no ANSI codes, no 80-column wrapping),
no ANSI with NO_COLOR on a terminal either, `gpufleet --version`, help without typer's type noise, lab status in
words, a compact verify summary with progress a line per host, passthrough VMs "not needed" in the licensing
table, vGPU profiles as the stack spells them. No lab needed: the verbs used are offline or fed fabricated data."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from gpufleet.catalog import profile_key
from gpufleet.checks.run import CheckResult, CheckRun
from gpufleet.cli import verify_cmd
from gpufleet.cli.main import app
from gpufleet.spec.stack import load_stack
from gpufleet.vms.changes import Change, ChangeSet, stack_spelling
from lab import cli as lab_cmd

REPO = Path(__file__).resolve().parents[2]
LAB_STACK = REPO / "stacks" / "Pulumi.lab.yaml"
GPUFLEET = [sys.executable, "-m", "gpufleet"]
ESC = "\x1b["


def _plain_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "TERM")}
    return {**env, **extra}


def _on_a_terminal(argv: list[str], env: dict[str, str]) -> str:
    """Run ``argv`` with its stdout on a pseudo-terminal and return what it printed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: stdout and stderr are the terminal
        os.chdir(REPO)
        os.execvpe(argv[0], argv, env)
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode(errors="replace")


def test_plan_in_a_pipe_is_plain_one_row_per_line_and_spells_profiles_as_the_stack() -> None:
    proc = subprocess.run(
        [*GPUFLEET, "plan", str(LAB_STACK)], capture_output=True, text=True, cwd=REPO, env=_plain_env(), timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert ESC not in proc.stdout
    # one table row per line, however long (80 columns would wrap and truncate it: "grid_h100-…")
    row = next(line for line in proc.stdout.splitlines() if "vm-rdma-01" in line)
    assert "vm-rdma-01: nvidia_h100-3-40c 3g.40gb @0:4" in row and len(row) > 80
    assert "grid_h100" not in proc.stdout  # the stack writes nvidia_h100-3-40c
    assert "…" not in proc.stdout
    summary = [line for line in proc.stdout.splitlines() if line.startswith("lab: ")]
    assert summary and "mean density of used GPUs" in summary[0]  # the sentence is not wrapped


def test_no_color_on_a_terminal_prints_no_escape_codes() -> None:
    args = [*GPUFLEET, "plan", str(LAB_STACK)]
    coloured = _on_a_terminal(args, _plain_env(TERM="xterm-256color"))
    assert ESC in coloured  # on a terminal rich styles the tables: the check below can fail
    plain = _on_a_terminal(args, _plain_env(TERM="xterm-256color", NO_COLOR="1"))
    assert "vm-rdma-01" in plain and ESC not in plain


def test_version_comes_from_the_package_metadata() -> None:
    proc = subprocess.run([*GPUFLEET, "--version"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"gpufleet {version('gpufleet')}"


def _command_paths() -> list[list[str]]:
    paths: list[list[str]] = []

    def walk(command: Any, path: list[str]) -> None:
        paths.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return [p for p in paths if p != ["pulumi"]]  # `gpufleet pulumi --help` is pulumi's own help


@pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p) or "gpufleet")
def test_help_shows_no_python_types(path: list[str]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "--help" in result.output
    for noise in ("<bool>", "<path>", "<int>", "<float>", "<str>", "<list[", "{stack}"):
        assert noise not in result.output, f"{' '.join(path)} --help shows {noise}:\n{result.output}"


def test_help_names_option_values_in_words() -> None:
    out = CliRunner().invoke(app, ["verify", "--help"], env={"COLUMNS": "200"}).output
    assert "FILE" in out and "STACK" in out and "NODE" in out
    out = CliRunner().invoke(app, ["license", "apply", "--help"], env={"COLUMNS": "200"}).output
    assert "SECONDS" in out


def test_lab_status_prints_words_not_python_values(monkeypatch: pytest.MonkeyPatch) -> None:
    from lab import manager

    host = {
        "name": "esxi-01.lab",
        "address": "127.0.0.11",
        "port": 22,
        "gpus": "2x A100-80GB-PCIe",
        "power": "on",
        "ssh": True,
        "connectionState": None,  # vCenter did not answer
        "maintenance": False,
        "driver": None,
        "faults": [],
    }
    doc = {
        "running": True,
        "root": "/tmp/lab",
        "shape": {"hosts": 1},
        "vcenter": {"pid": 1, "alive": True, "url": "https://127.0.0.1:8989/sdk"},
        "supervisor": {"pid": 2, "alive": True},
        "hosts": [host, {**host, "name": "esxi-02.lab", "maintenance": True, "connectionState": "connected"}],
        "guests": [],
    }
    monkeypatch.setattr(manager, "status", lambda: doc)
    result = CliRunner().invoke(app, ["lab", "status"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "False" not in result.output and "True" not in result.output and "None" not in result.output
    rows = {line.split()[1]: line for line in result.output.splitlines() if "esxi-0" in line}
    assert " unknown " in rows["esxi-01.lab"] and " no " in rows["esxi-01.lab"]
    assert " connected " in rows["esxi-02.lab"] and " yes " in rows["esxi-02.lab"]
    assert lab_cmd._word(None) == "unknown" and lab_cmd._word(True) == "yes" and lab_cmd._word(False) == "no"


def _run() -> CheckRun:
    ok = [CheckResult("esxi-01.lab", f"test_host_check_{i}", "passed", "") for i in range(30)]
    ok += [CheckResult(f"esxi-01.lab-0000:{b}:00.0", "test_gpu_mig_mode_is_as_desired", "passed", "") for b in "35"]
    ok += [CheckResult("vm-ts-01", f"test_guest_check_{i}", "passed", "") for i in range(40)]
    skips = [
        CheckResult("vm-pt-01", f"test_rdma_{i}", "skipped", "vm-pt-01: no RDMA NIC in the spec") for i in range(3)
    ]
    skips.append(CheckResult("vm-ts-01", "test_rdma_0", "skipped", "vm-ts-01: no RDMA NIC in the spec"))
    failed = CheckResult(
        "vm-pt-01", "test_passthrough_gpu_is_visible", "failed", "$ nvidia-smi -L\nline one\nline two [/] kept"
    )
    return CheckRun(1, [*ok, *skips, failed])


NAMES = ["esxi-01.lab", "vm-ts-01", "vm-pt-01"]


def test_verify_summary_is_compact_counts_per_node_and_failures_in_full(capsys: pytest.CaptureFixture[str]) -> None:
    verify_cmd._print_verify(Path("stacks/Pulumi.lab.yaml"), _run(), NAMES, None)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert ESC not in out
    assert not any(line.count("passed") and "host_check" in line for line in lines)  # no row per passed check
    assert len(lines) < 25  # 76 checks, 3 nodes: a row per node, not per check
    cells = [[c.strip() for c in line.strip("│").split("│")] for line in lines if line.startswith("│")]
    assert cells == [  # host / VM, passed, failed, error, skipped
        ["esxi-01.lab", "32", "0", "0", "0"],
        ["vm-ts-01", "40", "0", "0", "1"],
        ["vm-pt-01", "0", "1", "0", "3"],
    ]
    assert "FAILED vm-pt-01 test_passthrough_gpu_is_visible" in out
    assert "$ nvidia-smi -L\nline one\nline two [/] kept" in out  # in full, markup not interpreted
    assert "no RDMA NIC in the spec: vm-pt-01, vm-ts-01 (4)" in out  # a skip reason once, with its nodes
    assert "72 passed, 1 failed, 0 error, 4 skipped" in out


def test_verify_progress_is_a_line_per_host_once_its_checks_ran() -> None:
    run = _run()
    planned = [r.node for r in run.results]
    lines: list[str] = []
    ticks = 0

    def update(message: str, advance: int = 0, log: bool = True, total: int | None = None) -> None:
        nonlocal ticks
        ticks += advance
        assert total in (None, len(planned))
        if log:
            lines.append(message)

    on_result = verify_cmd._progress_of(update, NAMES)
    for done, result in enumerate(run.results, start=1):
        on_result(result, done, planned)
    assert ticks == len(planned)  # every check moves the bar on a terminal
    assert lines == [
        "esxi-01.lab: 32 checks (32 passed)",
        "vm-ts-01: 41 checks (40 passed, 1 skipped)",
        "vm-pt-01: 4 checks (1 failed, 3 skipped)",
    ]


def test_licensing_table_shows_the_passthrough_vm_as_not_needed(capsys: pytest.CaptureFixture[str]) -> None:
    fleet = load_stack(LAB_STACK).fleet
    not_needed = verify_cmd._not_needed(fleet)
    assert not_needed == [{"vm": "vm-pt-01", "reason": "passthrough GPU: no vGPU licence"}]
    guests = [{"vm": "vm-ts-01", "changed": False, "status": "Licensed", "error": None, "featureType": 1,
               "tokenFile": "/etc/nvidia/ClientConfigToken/t.tok"}]  # fmt: skip
    verify_cmd._print_license_tables(LAB_STACK, [], guests + not_needed, dry_run=False)
    row = next(line for line in capsys.readouterr().out.splitlines() if "vm-pt-01" in line)
    assert "not needed" in row and "passthrough GPU: no vGPU licence" in row


def test_vm_changes_name_vgpu_profiles_as_the_stack_spells_them() -> None:
    change_set = ChangeSet("vm-rdma-01", "poweredOn", (Change("add", "vgpu", "grid_h100-3-40c"),))
    rdma = next(vm for vm in load_stack(LAB_STACK).fleet.vms if vm.name == "vm-rdma-01")
    spelled = stack_spelling(rdma)  # what vms apply and the VmGpuDevices provider (lastChanges) pass
    assert spelled == {profile_key("nvidia_h100-3-40c"): "nvidia_h100-3-40c"}
    assert change_set.summaries(spelled) == ["add vgpu nvidia_h100-3-40c (the host's name: grid_h100-3-40c)"]
    assert change_set.summaries() == ["add vgpu grid_h100-3-40c"]  # without the stack: the device's name
    same = ChangeSet("vm-ts-01", "poweredOn", (Change("add", "vgpu", "nvidia_l40s-24c"),))
    assert same.summaries({profile_key("nvidia_l40s-24c"): "nvidia_l40s-24c"}) == ["add vgpu nvidia_l40s-24c"]


def test_demo_steps_print_no_colour_codes_in_a_pipe() -> None:
    script = "source scripts/demo_lib.sh; step '1. Start the lab'"
    piped = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=REPO, env=_plain_env())
    assert piped.returncode == 0 and piped.stdout == "\n== 1. Start the lab\n"
    coloured = _on_a_terminal(["bash", "-c", script], _plain_env(TERM="xterm"))
    assert "\x1b[1;36m== 1. Start the lab" in coloured  # a person at a terminal still gets the colour


def test_demo_lab_ports_come_from_the_environment(tmp_path: Path) -> None:
    fake = tmp_path / "gpufleet"
    fake.write_text('#!/bin/sh\necho "$@"\n')
    fake.chmod(0o755)
    script = f"source scripts/demo_lib.sh; G={fake}; lab_up --json"
    env = _plain_env(GPUFLEET_DEMO_SSH_PORT="7022", GPUFLEET_DEMO_VCENTER_PORT="24443")
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=REPO, env=env)
    assert proc.stdout.strip() == "lab up --ssh-port 7022 --vcenter-port 24443 --json"
    unset = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=REPO, env=_plain_env())
    assert unset.stdout.strip() == "lab up --json"
