"""`gpufleet hosts prepare` killed with SIGKILL at each point of a host's run - just after it entered maintenance
(its VM moved away), just after the driver install, in the middle of the reboot - and then run again: every host
ends out of maintenance, the evacuated VM is back on its host and running, and nothing is done twice (one install,
one reboot). What makes it converge is what vCenter keeps: the host's ``gpufleet.maintenance`` marker and the
VM's ``gpufleet.home`` note (gpufleet.vsphere.hosts), not the killed process's memory.

A lab of its own per test (its own dir and ports: it is killed mid-rollout), with slow enough reboots to kill
inside one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyVmomi import vim
from ruamel.yaml import YAML

from gpufleet.connections import read_lab_env, vcenter_from_lab
from gpufleet.vsphere import fields
from gpufleet.vsphere.connect import connect
from gpufleet.vsphere.inventory import find_by_name

pytestmark = [pytest.mark.lab, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CRASH_LAB_DIR = Path(os.environ.get("GPUFLEET_CRASH_LAB_DIR", "/tmp/gpufleet-crash-lab"))
CRASH_SSH_PORT = int(os.environ.get("GPUFLEET_CRASH_LAB_SSH_PORT", "2722"))
CRASH_VCENTER_PORT = int(os.environ.get("GPUFLEET_CRASH_LAB_VCENTER_PORT", "19243"))
HOST = "esxi-03.lab"  # L40S: driver + graphics, one reboot; vm-ts-01 runs on it (no GPU yet: it can move)
VM = "vm-ts-01"


@pytest.fixture
def crash_lab(tmp_path: Path) -> Iterator[Any]:
    from lab import manager
    from lab.paths import LabPaths

    paths = LabPaths.resolve(CRASH_LAB_DIR)
    manager.down(paths)
    shape = manager.LabShape(
        hosts=4, vms_per_host=0, reboot_seconds=4.0, ssh_port=CRASH_SSH_PORT, vcenter_port=CRASH_VCENTER_PORT
    )
    manager.up(shape, paths)
    try:
        yield paths
    finally:
        manager.down(paths)


def _stack(tmp_path: Path) -> Path:
    document = YAML(typ="safe").load((REPO / "stacks" / "Pulumi.lab.yaml").read_text())
    fleet = document["config"]["gpufleet:fleet"]
    fleet["hosts"] = [h for h in fleet["hosts"] if h["name"] in (HOST, "esxi-04.lab")]
    fleet["vms"] = [v for v in fleet["vms"] if v.get("host") in (HOST, "esxi-04.lab")]
    fleet["rollout"].update({"maxUnavailable": 1, "rebootTimeoutSeconds": 60, "maintenanceTimeoutSeconds": 60})
    path = tmp_path / "Pulumi.crash.yaml"
    with path.open("w") as fh:
        YAML().dump(document, fh)
    return path


def _prepare(stack: Path) -> list[str]:
    return [sys.executable, "-m", "gpufleet", "hosts", "prepare", str(stack), "--json"]


def _events(paths: Any, since: float = 0.0) -> list[dict[str, Any]]:
    from lab.esxi.events import read_events

    return [e for e in read_events(paths, since=since) if e["host"] == HOST]


def _wait_for(paths: Any, event: str, since: float, proc: subprocess.Popen | None = None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(e["event"] == event for e in _events(paths, since)):
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"hosts prepare ended (exit {proc.returncode}) before `{event}` on {HOST}")
        time.sleep(0.05)
    raise AssertionError(f"no `{event}` on {HOST} within {timeout} s")


def _where(paths: Any) -> dict[str, Any]:
    with connect(vcenter_from_lab(read_lab_env(paths.root))) as si:
        vm = find_by_name(si, vim.VirtualMachine, VM)
        hosts = {h: find_by_name(si, vim.HostSystem, h) for h in (HOST, "esxi-04.lab")}
        return {
            "vm_host": vm.runtime.host.name,
            "vm_power": str(vm.runtime.powerState),
            "vm_home_note": fields.get_field(si, vm, fields.HOME_FIELD),
            "in_maintenance": {h: bool(o.runtime.inMaintenanceMode) for h, o in hosts.items()},
        }


@pytest.mark.parametrize("kill_after", ["maintenance_enter", "component_apply", "reboot_start"])
def test_a_rerun_after_sigkill_converges_with_every_vm_back(crash_lab: Any, tmp_path: Path, kill_after: str) -> None:
    stack = _stack(tmp_path)
    env = dict(os.environ, GPUFLEET_LAB_DIR=str(crash_lab.root))
    started = time.time()
    proc = subprocess.Popen(
        _prepare(stack), env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        _wait_for(crash_lab, kill_after, started, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    killed = _where(crash_lab)
    assert killed["in_maintenance"][HOST] is True  # killed inside the host's maintenance window
    assert killed["vm_host"] != HOST and killed["vm_home_note"] == HOST  # moved away, and vCenter knows from where
    # The rerun starts at once, even while the host is still rebooting: a host in gpufleet's own maintenance window
    # that does not answer SSH is waited for (rollout.rebootTimeoutSeconds), not failed.
    rerun = subprocess.run(_prepare(stack), env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-2000:]
    after = _where(crash_lab)
    assert after["in_maintenance"] == {HOST: False, "esxi-04.lab": False}
    assert (after["vm_host"], after["vm_power"], after["vm_home_note"]) == (HOST, "poweredOn", None)
    done = [e["event"] for e in _events(crash_lab, started)]
    assert done.count("component_apply") == 1, done  # nothing done twice
    assert done.count("reboot_start") == 1, done


def _set_lease(paths: Any, value: str) -> None:
    with connect(vcenter_from_lab(read_lab_env(paths.root))) as si:
        fields.set_field(si, find_by_name(si, vim.ClusterComputeResource, "GPU-Cluster"), "gpufleet.lease", value)


def _lease(paths: Any) -> str | None:
    with connect(vcenter_from_lab(read_lab_env(paths.root))) as si:
        return fields.get_field(si, find_by_name(si, vim.ClusterComputeResource, "GPU-Cluster"), "gpufleet.lease")


def test_a_second_run_on_the_cluster_is_refused_naming_the_holder(crash_lab: Any, tmp_path: Path) -> None:
    """The lease in vCenter: held by a live run elsewhere -> refused before anything is touched; `--take-over`
    takes it; a lease whose time is up, or whose holder was a process of this machine that has ended, is taken
    over without asking (the SIGKILL test above reruns at once); the lease is released after the run."""
    from gpufleet.vsphere.lease import Lease

    stack = _stack(tmp_path)
    env = dict(os.environ, GPUFLEET_LAB_DIR=str(crash_lab.root))
    other = Lease("ops@jumphost-7 pid 4242", "f" * 32, "jumphost-7", 4242, time.time() + 600)
    _set_lease(crash_lab, other.to_value())
    started = time.time()
    refused = subprocess.run(_prepare(stack), env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    message = " ".join(refused.stderr.split())
    assert "cluster GPU-Cluster is being rolled out by ops@jumphost-7 pid 4242" in message, message
    assert "--take-over" in message and "Traceback" not in refused.stderr
    assert [e for e in _events(crash_lab, started) if e["event"] != "ssh_session"] == []  # nothing touched
    assert Lease.parse(_lease(crash_lab) or "") == other  # and the holder's lease is left as it was

    taken = subprocess.run(
        [*_prepare(stack), "--take-over"], env=env, cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert taken.returncode == 0, taken.stdout[-3000:] + taken.stderr[-2000:]
    assert _lease(crash_lab) is None  # released

    expired = Lease("ops@jumphost-7 pid 4242", "e" * 32, "jumphost-7", 4242, time.time() - 1)
    _set_lease(crash_lab, expired.to_value())
    again = subprocess.run(_prepare(stack), env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
    assert _lease(crash_lab) is None


def test_sigint_finishes_the_host_in_its_window_and_starts_no_other(crash_lab: Any, tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) while the first host is in maintenance: that
    host finishes its window (install, reboot, verify, out of maintenance, its VM back), the second is never
    started, the JSON names it as left, exit 130; a rerun does only the second."""
    import json

    from lab.esxi.events import read_events

    stack = _stack(tmp_path)
    env = dict(os.environ, GPUFLEET_LAB_DIR=str(crash_lab.root))
    started = time.time()
    proc = subprocess.Popen(
        _prepare(stack),
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_for(crash_lab, "maintenance_enter", started, proc)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, out[-3000:] + err[-2000:]
    assert "Traceback" not in err and "SIGINT" in err
    document = json.loads(out)
    assert document["interrupted"] is True
    by_name = {h["name"]: h for h in document["hosts"]}
    assert by_name[HOST]["error"] is None and by_name[HOST]["inMaintenance"] is False
    assert by_name["esxi-04.lab"]["error"]["step"] == "skipped"
    assert "interrupted (SIGINT)" in by_name["esxi-04.lab"]["error"]["message"]
    after = _where(crash_lab)
    assert after["in_maintenance"] == {HOST: False, "esxi-04.lab": False}
    assert (after["vm_host"], after["vm_power"], after["vm_home_note"]) == (HOST, "poweredOn", None)
    other = [e["event"] for e in read_events(crash_lab, since=started) if e["host"] == "esxi-04.lab"]
    assert "maintenance_enter" not in other and "reboot_start" not in other

    rerun = subprocess.run(_prepare(stack), env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-2000:]
    done = {h["name"]: h["changed"] for h in json.loads(rerun.stdout)["hosts"]}
    assert done == {HOST: False, "esxi-04.lab": True}
