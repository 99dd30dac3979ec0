"""The lab's fork server (lab.forkserver) and its ForceCommand client (labexec, lab/execclient): every SSH command runs in
a fork of one warm simulator, with the same output and status as a fresh ``python -m lab.esxi.shell``, and dies
with its SSH session."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from simhost import ssh_client, ssh_run

from lab import forkserver

HOST = "esxi-03.lab"
_COMMANDS = [
    "esxcli --formatter=xml graphics host get",
    "esxcli hardware pci list -c 0x0302",
    "vmware -vl",
    "esxcli software nosuchcommand",
    "echo one two | wc -w",
    "false",
    "cat /no/such/file",
]


@pytest.fixture(scope="module")
def labexec() -> Path:
    if shutil.which("go") is None:
        pytest.skip("labexec is built from the Go module lab/execclient: needs Go >= 1.26 on PATH")
    from lab.vcenter import build_exec_client

    return build_exec_client()


def test_labexec_sends_its_descriptors_and_request_and_exits_with_the_status(labexec: Path, tmp_path: Path) -> None:
    """labexec against a stand-in server: what it sends reads back exactly, its stdout is the one it passed, and
    it exits with the status the server reports."""
    (tmp_path / "run").mkdir()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "run" / forkserver.SOCKET_NAME))
    listener.listen(1)
    env = {
        "GPUFLEET_LAB_DIR": str(tmp_path),
        "A": "x=y=z",
        "NEWLINE": "one\ntwo",
        "UNICODE": "Grüße ✓",
        "EMPTY": "",
    }
    proc = subprocess.Popen(
        [str(labexec), sys.executable, "lab.esxi.shell", "--flag", "two words"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        listener.settimeout(10)
        conn, _ = listener.accept()
        with conn:
            request, fds = forkserver.receive_request(conn)
            assert request["module"] == "lab.esxi.shell"
            assert request["argv"] == ["--flag", "two words"]
            assert request["env"] == env
            assert request["cwd"] == str(tmp_path)
            assert request["parent"] == str(os.getpid())
            assert len(fds) == 3
            os.write(fds[1], b"written by the command\n")  # the command writes straight to labexec's stdout
            for fd in fds:
                os.close(fd)
            conn.sendall(b"+4242\n=7\n")
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()
        listener.close()
    assert proc.returncode == 7
    assert out == b"written by the command\n"


def test_labexec_without_a_server_runs_the_simulator_itself(labexec: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [str(labexec), sys.executable, "lab.esxi.shell"],
        env={"GPUFLEET_LAB_DIR": str(tmp_path)},  # no run/exec.sock there
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    # `python -I -m lab.esxi.shell` itself, refusing to run outside the lab's sshd
    assert done.returncode == 1
    assert b"GPUFLEET_LAB_HOST and GPUFLEET_LAB_DIR must be set" in done.stderr


@pytest.mark.parametrize("body", [b"", b"lab.esxi.shell\0/\0" + b"1", b"m\0/\0 1\0x\0"])
def test_a_malformed_request_is_refused(body: bytes) -> None:
    with pytest.raises(ValueError, match="malformed"):
        forkserver.parse_request(body)


def _status(lab_paths: Any) -> dict[str, Any]:
    from lab.manager import supervisor_request

    return supervisor_request(lab_paths, {"op": "status"}, timeout=5)


def _children(pid: int) -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry))
    return out


def _fresh_process(lab_paths: Any, command: str) -> tuple[int, str, str]:
    """What the same command gives from a fresh `python -I -m lab.esxi.shell` (the way before the fork server)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GPUFLEET_LAB_HOST": HOST,
        "GPUFLEET_LAB_DIR": str(lab_paths.root),
        "SSH_ORIGINAL_COMMAND": command,
    }
    done = subprocess.run(
        [sys.executable, "-I", "-m", "lab.esxi.shell"], env=env, capture_output=True, stdin=subprocess.DEVNULL
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def _wait_for_new_child(server: int, before: set[int]) -> set[int]:
    deadline = time.monotonic() + 10
    while not (_children(server) - before) and time.monotonic() < deadline:
        time.sleep(0.02)
    return _children(server) - before


@pytest.mark.lab
def test_commands_run_in_forks_of_the_server_with_a_fresh_process_s_output(lab_host: Any, lab_paths: Any) -> None:
    endpoint = lab_host(HOST)
    server = _status(lab_paths)["forkserver_pid"]
    assert server is not None and forkserver.socket_path(lab_paths).exists()
    client = ssh_client(endpoint)
    try:
        for command in _COMMANDS:
            assert ssh_run(client, command) == _fresh_process(lab_paths, command), command
        # While a command runs, it is a child of the fork server (not a new interpreter under sshd).
        before = _children(server)
        worker = threading.Thread(target=ssh_run, args=(client, "sleep 2"))
        worker.start()
        assert _wait_for_new_child(server, before), "no fork of the server ran `sleep 2`"
        worker.join()
    finally:
        client.close()


@pytest.mark.lab
def test_a_command_dies_with_its_ssh_session(lab_host: Any, lab_paths: Any) -> None:
    """Killing the ForceCommand (what a reboot's teardown of the host's sshd does) kills its forked command."""
    endpoint = lab_host(HOST)
    server = _status(lab_paths)["forkserver_pid"]
    before = _children(server)
    client = ssh_client(endpoint)
    try:
        channel = client.get_transport().open_session()
        channel.exec_command("sleep 60")
        (worker,) = _wait_for_new_child(server, before)
        clients = _lab_clients(lab_paths)
        assert clients, "no labexec process for the running command"
        for pid in clients:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not Path(f"/proc/{worker}").exists(), "the forked command outlived its SSH session"
    finally:
        client.close()


def _lab_clients(lab_paths: Any) -> list[int]:
    """The ForceCommand clients of HOST now running (their environment names the host and this lab)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        ours = f"GPUFLEET_LAB_HOST={HOST}\0".encode() in environ and str(lab_paths.root).encode() in environ
        if b"labexec" in cmdline and ours:
            out.append(int(entry))
    return out
