"""`gpufleet lab up|status|env|down` on a private lab (own directory and ports, one host): up is idempotent and
fast the second time, status tells what runs, down leaves no process behind and removes the state."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

GPUFLEET = str(Path(sys.executable).with_name("gpufleet"))


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def _port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def test_up_reuse_status_env_and_down_leave_nothing_behind(tmp_path: Path) -> None:
    from lab.manager import lab_processes
    from lab.paths import LabPaths

    root = Path(f"/tmp/gpufleet-lifecycle-{os.getpid()}")
    env = dict(os.environ, GPUFLEET_LAB_DIR=str(root), COLUMNS="200")
    ssh_port, vc_port = _free_port("127.0.0.11"), _free_port("127.0.0.1")

    def gf(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([GPUFLEET, "lab", *args], capture_output=True, text=True, timeout=300, env=env)

    up_args = (
        "up",
        "--hosts",
        "1",
        "--reboot-seconds",
        "1",
        "--ssh-port",
        str(ssh_port),
        "--vcenter-port",
        str(vc_port),
        "--json",
    )
    try:
        started = time.monotonic()
        first = gf(*up_args)
        first_s = time.monotonic() - started
        assert first.returncode == 0, first.stderr
        first_doc = json.loads(first.stdout)
        assert first_doc["reused"] is False
        started_by_first = sorted(lab_processes(LabPaths(root)))
        started = time.monotonic()
        second = gf(*up_args)
        second_s = time.monotonic() - started
        assert second.returncode == 0, second.stderr
        second_doc = json.loads(second.stdout)
        assert second_doc["reused"] is True and second_doc["env"] == first_doc["env"]
        # Reused means nothing started or restarted (the same processes), not "fast": no clock bound under load.
        assert sorted(lab_processes(LabPaths(root))) == started_by_first
        print(
            f"\nlab up (1 host, vcsim cached): first {first_s:.1f} s (lab.manager {first_doc['seconds']:.2f} s), second {second_s:.1f} s (reused)"
        )

        other = gf("up", "--hosts", "2", "--ssh-port", str(ssh_port), "--vcenter-port", str(vc_port))
        assert other.returncode == 1 and "another shape" in other.stderr

        status = gf("status", "--json")
        assert status.returncode == 0, status.stderr
        doc = json.loads(status.stdout)
        assert doc["running"] is True and [h["name"] for h in doc["hosts"]] == ["esxi-01.lab"]
        assert doc["hosts"][0]["ssh"] is True and doc["hosts"][0]["connectionState"] == "connected"

        lab_env = json.loads(gf("env", "--json").stdout)
        assert set(lab_env) == {"vcenter", "hosts", "guests"} and lab_env["guests"] == []
        assert lab_env["vcenter"]["port"] == vc_port and lab_env["hosts"][0]["port"] == ssh_port
        running = lab_processes(LabPaths(root))
        assert len(running) >= 3  # vcsim, the supervisor, one sshd
        assert _port_open("127.0.0.11", ssh_port) and _port_open("127.0.0.1", vc_port)
    finally:
        down = gf("down", "--json")
    assert down.returncode == 0, down.stderr
    report = json.loads(down.stdout)
    assert report["leftovers"] == [] and report["removed"] is True
    assert set(report["stopped"]) >= {p for p, _ in running}
    assert lab_processes(LabPaths(root)) == []
    assert not _port_open("127.0.0.11", ssh_port) and not _port_open("127.0.0.1", vc_port)
    assert not root.exists()
    again = gf("status", "--json")
    assert again.returncode == 2 and json.loads(again.stdout)["running"] is False
