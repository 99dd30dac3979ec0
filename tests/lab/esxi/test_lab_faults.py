"""Each injected fault fires on the running lab, from the Python API and from `gpufleet lab fault`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import paramiko
import pytest
from simhost import ssh_client, ssh_run, try_ssh, wait_for

from lab import faults
from lab.esxi.events import read_events

pytestmark = pytest.mark.lab

HOST = "esxi-03.lab"  # L40S: these tests are about the host, not the GPU model
OTHER = "esxi-04.lab"


def _upload(client: Any, lab_paths: Any, driver: str = "550.90.05") -> str:
    bundle = next(lab_paths.depot_dir.glob(f"NVD-AIE-800_{driver}-*.zip"))
    sftp = client.open_sftp()
    sftp.put(str(bundle), f"/vmfs/volumes/datastore1/{bundle.name}")
    sftp.close()
    return f"/vmfs/volumes/datastore1/{bundle.name}"


def _install_cmd(path: str) -> str:
    return f"esxcli software vib install -d {path} --maintenance-mode"


def test_vib_install_error_fails_the_install_and_changes_nothing(lab_paths: Any, lab_host: Any) -> None:
    endpoint = lab_host(HOST)
    since = time.time()  # after taking the host: earlier events belong to its previous user
    faults.inject(HOST, "vib-install-error", paths=lab_paths)
    client = ssh_client(endpoint)
    try:
        path = _upload(client, lab_paths)
        rc, out, err = ssh_run(client, _install_cmd(path))
        assert (rc, out) == (1, "")
        assert err.splitlines() == [
            " [InstallationError]",
            " There was an error checking file system on altbootbank, please see log for detail.",
            " Please refer to the log file for more details.",
        ]
        assert "NVD-AIE" not in ssh_run(client, "esxcli software vib list")[1]
        assert ssh_run(client, _install_cmd(path))[0] == 1  # armed until cleared
        assert faults.clear(HOST, "vib-install-error", paths=lab_paths) == ["vib-install-error"]
        rc, out, _ = ssh_run(client, _install_cmd(path))
        assert rc == 0 and "VIBs Installed: NVIDIA_bootbank_NVD-AIE" in out
    finally:
        client.close()
    fired = [e for e in read_events(None, since=since, host=HOST) if e["event"] == "fault_fired"]
    assert [e["kind"] for e in fired] == ["vib-install-error", "vib-install-error"]


@pytest.mark.parametrize("when", ["after", "before"])
def test_ssh_drop_cuts_the_install_connection(lab_paths: Any, lab_host: Any, when: str) -> None:
    endpoint = lab_host(HOST)
    faults.inject(HOST, "ssh-drop", paths=lab_paths, when=when)
    client = ssh_client(endpoint)
    try:
        path = _upload(client, lab_paths)
        _stdin, stdout, _stderr = client.exec_command(_install_cmd(path), timeout=30)
        status = stdout.channel.recv_exit_status()  # -1: the connection went away without an exit status
        assert status == -1 and stdout.read() == b""
        wait_for(lambda: not client.get_transport().is_active(), timeout=5, what="the transport to close")
        with pytest.raises((paramiko.SSHException, EOFError, OSError)):
            client.exec_command("true")
    finally:
        client.close()
    client = ssh_client(endpoint)  # the host itself is fine: a new connection works
    try:
        listing = ssh_run(client, "esxcli software vib list")[1]
        assert ("NVD-AIE_ESXi_8.0.0_Driver" in listing) is (when == "after")
        rc, out, _ = ssh_run(client, _install_cmd(path))  # the fault fired once; a retry completes
        assert rc == 0
        assert ("Host is not changed." in out) is (when == "after")
    finally:
        client.close()
    assert faults.active(HOST, paths=lab_paths) == {}


def test_no_return_keeps_the_host_down_until_cleared(lab_env: Any, lab_paths: Any, lab_host: Any) -> None:
    from lab.vcenter import LabAdmin

    endpoint = lab_host(HOST)
    faults.inject(HOST, "no-return", paths=lab_paths)
    client = ssh_client(endpoint)
    try:
        assert ssh_run(client, "reboot")[0] == 0
    finally:
        client.close()
    admin = LabAdmin()
    time.sleep(2.5)  # well past the lab's 1 s reboot
    assert try_ssh(endpoint) is None
    assert admin.host(HOST)["connectionState"] == "notResponding"
    assert any(e["event"] == "reboot_no_return" for e in read_events(None, host=HOST))
    faults.clear(HOST, "no-return", paths=lab_paths)
    client = wait_for(lambda: try_ssh(endpoint), timeout=15, what="the host to boot once the fault is cleared")
    client.close()
    wait_for(lambda: admin.host(HOST)["connectionState"] == "connected", timeout=5, what="connected in vCenter")


def test_slow_reboot_keeps_the_host_away_longer(lab_paths: Any, lab_host: Any) -> None:
    endpoint = lab_host(HOST)
    since = time.time()  # after taking the host: earlier events belong to its previous user
    faults.inject(HOST, "slow-reboot", paths=lab_paths, seconds=3.0)
    client = ssh_client(endpoint)
    try:
        assert ssh_run(client, "reboot")[0] == 0
    finally:
        client.close()
    wait_for(lambda: _unreachable(endpoint), timeout=15, what="the host to go down for its reboot")
    client = wait_for(lambda: try_ssh(endpoint), timeout=30, what="the slow host to come back")
    client.close()
    # What the lab recorded, not the test's clock (a loaded machine stretches any wall-clock bound): the reboot
    # took the fault's away time instead of the lab's, and SSH came back only after that time had passed.
    events = read_events(None, since=since, host=HOST)
    names = [e["event"] for e in events]
    start = next(e for e in events if e["event"] == "reboot_start")
    fired = next(e for e in events if e["event"] == "fault_fired")
    done = next(e for e in events if e["event"] == "reboot_done")
    assert start["awaySeconds"] == 3.0 and fired["kind"] == "slow-reboot" and fired["seconds"] == 3.0
    assert names.index("reboot_start") < names.index("reboot_done")
    assert done["seconds"] >= 3.0  # measured by the lab from the reboot to sshd listening again
    print(f"slow-reboot: host away {done['seconds']:.1f} s (fault 3 s)")


def _unreachable(endpoint: Any) -> bool:
    client = try_ssh(endpoint)
    if client is None:
        return True
    client.close()
    return False


def test_fault_cli_arms_and_clears_and_rejects_bad_input(lab_env: Any, lab_paths: Any, lab_host: Any) -> None:
    lab_host(OTHER)
    gpufleet = str(Path(sys.executable).with_name("gpufleet"))

    def run(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([gpufleet, "lab", "fault", *args], capture_output=True, text=True, timeout=60)
        proc.stderr = " ".join(proc.stderr.split())  # rich wraps messages at the terminal width
        return proc

    armed = run(OTHER, "slow-reboot", "--seconds", "5", "--json")
    assert armed.returncode == 0, armed.stderr
    assert json.loads(armed.stdout) == {
        "host": OTHER,
        "kind": "slow-reboot",
        "armed": {"remaining": None, "seconds": 5.0},
    }
    assert faults.active(OTHER, paths=lab_paths) == {"slow-reboot": {"remaining": None, "seconds": 5.0}}
    bad_kind = run(OTHER, "disk-full")
    assert (
        bad_kind.returncode == 1
        and "valid kinds: vib-install-error, ssh-drop, no-return, slow-reboot" in bad_kind.stderr
    )
    bad_host = run("esxi-99.lab", "ssh-drop")
    assert bad_host.returncode == 1 and "esxi-01.lab" in bad_host.stderr
    bad_opt = run(OTHER, "ssh-drop", "--seconds", "3")
    assert bad_opt.returncode == 1 and "seconds applies only to the slow-reboot fault" in bad_opt.stderr
    cleared = run(OTHER, "--clear", "--json")
    assert cleared.returncode == 0 and json.loads(cleared.stdout)["cleared"] == ["slow-reboot"]
    assert faults.active(OTHER, paths=lab_paths) == {}
