"""`hosts prepare` on the embedded lab: a full rollout, a rerun that changes nothing, the concurrency bound as the
lab recorded it, every lab fault ending failed-in-maintenance (or done) and converging on the rerun, bad input
refused before any host is touched, and the two command lines."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from gpufleet.connections import _ssh_from_lab, read_lab_env
from gpufleet.errors import SpecError
from gpufleet.hosts.command import prepare_stack
from gpufleet.readers import esxcli, mlxconfig, nvidia_smi
from gpufleet.remote.ssh import SshRunner

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
LAB_STACK = REPO / "stacks" / "Pulumi.lab.yaml"
ALL_HOSTS = ["esxi-01.lab", "esxi-02.lab", "esxi-03.lab", "esxi-04.lab"]


def write_stack(tmp_path: Path, hosts: list[str] | None = None, **changes: Any) -> Path:
    """The lab stack, with only ``hosts``, short timeouts for tests, and ``changes`` merged into the fleet."""
    document = YAML(typ="safe").load(LAB_STACK.read_text())
    fleet = document["config"]["gpufleet:fleet"]
    if hosts is not None:
        fleet["hosts"] = [h for h in fleet["hosts"] if h["name"] in hosts]
        fleet["vms"] = [v for v in fleet["vms"] if v.get("host") in hosts]
    fleet["rollout"].update({"rebootTimeoutSeconds": 20, "maintenanceTimeoutSeconds": 60})
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(fleet.get(key), dict):
            fleet[key].update(value)
        else:
            fleet[key] = value
    path = tmp_path / "Pulumi.test.yaml"
    with path.open("w") as fh:
        YAML().dump(document, fh)
    return path


class Taken(list):
    """Hosts this test took, and when it had them all (earlier events belong to their previous users)."""

    since: float = 0.0


@pytest.fixture
def taken() -> Taken:
    return Taken()


@pytest.fixture
def hosts(lab_host: Callable[[str], Any], taken: Taken) -> Callable[..., list[str]]:
    """Take lab hosts exclusively (sorted, so tests taking several never deadlock), freshly reset."""

    def take(*names: str) -> list[str]:
        for name in sorted(names):
            lab_host(name)
            taken.append(name)
        taken.since = time.time()
        return list(names)

    return take


@pytest.fixture
def events(lab_paths: Any, taken: Taken) -> Callable[..., list[dict[str, Any]]]:
    """The lab's events of this test's hosts since it took them (other tests use the other hosts meanwhile)."""
    from lab.esxi.events import read_events

    def read(since: float | None = None, host: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        found = read_events(lab_paths, since=since if since is not None else taken.since, host=host)
        # What the tests themselves did to the lab (resets, arming faults) is not what the rollout did.
        own = ("host_reset", "fault_injected", "fault_cleared")
        return [
            e for e in found if e["host"] in taken and e["event"] not in own and (kind is None or e["event"] == kind)
        ]

    return read


# What a host prepare does to a host, as the lab records it (a maintenance *exit* can also be the lab's own
# reset of the previous test's host, recorded late by the lab's vCenter poller).
ACTIONS = (
    "maintenance_enter",
    "component_apply",
    "vib_install",
    "reboot_start",
    "mig_mode",
    "graphics_host_set",
    "kernel_set",
    "mlxconfig_set",
)


def actions(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in found if e["event"] in ACTIONS]


def inject(lab_paths: Any, host: str, kind: str, **params: Any) -> None:
    from lab import faults

    faults.inject(host, kind, paths=lab_paths, **params)


def clear(lab_paths: Any, host: str, kind: str) -> None:
    from lab import faults

    faults.clear(host, kind, paths=lab_paths)


@pytest.fixture
def ssh() -> Iterator[Callable[[str], SshRunner]]:
    opened: list[SshRunner] = []

    def open_(name: str) -> SshRunner:
        entry = next(h for h in read_lab_env()["hosts"] if h["name"] == name)
        runner = SshRunner(_ssh_from_lab(entry))
        opened.append(runner)
        return runner

    yield open_
    for runner in opened:
        runner.close()


def in_maintenance(name: str) -> bool:
    from lab.vcenter import LabAdmin

    return bool(LabAdmin().host(name)["inMaintenanceMode"])


def by_name(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {h["name"]: h for h in document["hosts"]}


# -- the main job ------------------------------------------------------------------------------------------------


def test_full_rollout_then_a_rerun_that_changes_nothing(
    hosts: Callable[..., list[str]],
    events: Callable[..., list[dict[str, Any]]],
    ssh: Callable[[str], SshRunner],
    tmp_path: Path,
) -> None:
    from lab.esxi.events import max_concurrent

    hosts(*ALL_HOSTS)
    stack = write_stack(tmp_path)
    report = prepare_stack(stack, max_unavailable=2)
    document = report.to_json()
    assert report.exit_code == 0, document
    assert all(h["changed"] and h["error"] is None and h["inMaintenance"] is False for h in document["hosts"])

    # What the hosts show now, read independently of the rollout's own verification.
    for name in ALL_HOSTS:
        runner = ssh(name)
        smi = nvidia_smi.query(runner)
        assert smi is not None and smi.driver_version == "550.90.05", name
        assert esxcli.graphics_host(runner).default_type == "SharedPassthru"
        assert not esxcli.maintenance_mode(runner)  # the ESXi face agrees with vCenter
    a100 = nvidia_smi.query(ssh("esxi-01.lab"))
    assert a100 is not None and all(g.mig_current == "Enabled" for g in a100.gpus)
    h100 = nvidia_smi.query(ssh("esxi-02.lab"))
    assert h100 is not None
    assert h100.gpu("0000:3b:00.0").mig_current == "Enabled"  # type: ignore[union-attr]
    assert h100.gpu("0000:5e:00.0").mig_current == "Disabled"  # type: ignore[union-attr] - passthrough GPU
    assert mlxconfig.nic_ats(ssh("esxi-02.lab"), "0000:31:00.0") == mlxconfig.NicAts(True, True)
    assert by_name(document)["esxi-01.lab"]["reboots"] == 2  # fresh Ampere: driver, then MIG
    assert by_name(document)["esxi-03.lab"]["reboots"] == 1  # one reboot for all its pending changes

    # The bound, as the lab recorded it: never more than 2 hosts in maintenance at once (and 2 were used).
    recorded = events()
    assert max_concurrent(recorded) <= 2  # the lab's record (vcsim logs each maintenance task as it completes)
    assert report.peak_in_maintenance == {"GPU-Cluster": 2}  # and the bound was used: hosts ran in parallel

    rerun_started = time.time()
    again = prepare_stack(stack, max_unavailable=2)
    assert again.exit_code == 0
    assert not any(h["changed"] for h in again.to_json()["hosts"])
    touched = actions(events(since=rerun_started))
    assert touched == []


def test_max_unavailable_one_is_never_exceeded(
    hosts: Callable[..., list[str]], events: Callable[..., list[dict[str, Any]]], tmp_path: Path
) -> None:
    from lab.esxi.events import max_concurrent

    names = hosts("esxi-03.lab", "esxi-04.lab")
    report = prepare_stack(write_stack(tmp_path, names), max_unavailable=1)
    assert report.exit_code == 0, report.to_json()
    recorded = events()
    assert max_concurrent(recorded) <= 1  # the lab's record (vcsim logs each maintenance task as it completes)
    assert report.peak_in_maintenance == {"GPU-Cluster": 1}
    enters = [e["ts"] for e in recorded if e["event"] == "maintenance_enter"]
    exits = [e["ts"] for e in recorded if e["event"] == "maintenance_exit"]
    assert all(x < y for x, y in zip(exits, enters[1:], strict=False))  # the second entered after the first left


# -- faults --------------------------------------------------------------------------------------------------------


def test_install_error_fails_in_maintenance_and_the_rerun_converges(
    hosts: Callable[..., list[str]], lab_paths: Any, tmp_path: Path
) -> None:
    (name,) = hosts("esxi-03.lab")
    stack = write_stack(tmp_path, [name])
    inject(lab_paths, name, "vib-install-error")
    report = prepare_stack(stack)
    entry = report.to_json()["hosts"][0]
    assert report.exit_code == 1
    assert entry["error"]["step"] == "driver" and "InstallationError" in entry["error"]["message"]
    assert entry["inMaintenance"] is True and in_maintenance(name)
    clear(lab_paths, name, "vib-install-error")
    again = prepare_stack(stack)
    assert again.exit_code == 0, again.to_json()
    assert not in_maintenance(name)


def test_ssh_drop_mid_install_fails_then_the_rerun_finds_it_installed(
    hosts: Callable[..., list[str]], lab_paths: Any, events: Callable[..., list[dict[str, Any]]], tmp_path: Path
) -> None:
    (name,) = hosts("esxi-04.lab")
    stack = write_stack(tmp_path, [name])
    inject(lab_paths, name, "ssh-drop", when="after")  # the install happens, the answer never arrives
    report = prepare_stack(stack)
    entry = report.to_json()["hosts"][0]
    assert report.exit_code == 1
    assert entry["error"]["step"] == "driver" and "connection lost" in entry["error"]["message"]
    assert in_maintenance(name)
    again = prepare_stack(stack)  # the fault fired once
    assert again.exit_code == 0, again.to_json()
    steps = {s["name"]: s["state"] for s in again.to_json()["hosts"][0]["steps"]}
    assert steps["driver"] == "ok" and steps["reboot"] == "done"  # not installed twice: rebooted to load it
    assert len(events(host=name, kind="component_apply")) == 1
    assert not in_maintenance(name)


def test_host_not_back_after_reboot_fails_then_converges(
    hosts: Callable[..., list[str]], lab_paths: Any, tmp_path: Path
) -> None:
    (name,) = hosts("esxi-03.lab")
    stack = write_stack(tmp_path, [name], rollout={"rebootTimeoutSeconds": 10})
    inject(lab_paths, name, "no-return")
    report = prepare_stack(stack)
    entry = report.to_json()["hosts"][0]
    assert report.exit_code == 1
    assert entry["error"]["step"] == "reboot" and "not back after the reboot within 10 s" in entry["error"]["message"]
    assert in_maintenance(name)
    clear(lab_paths, name, "no-return")  # someone power-cycled it: it finishes booting
    again = prepare_stack(stack)
    assert again.exit_code == 0, again.to_json()
    assert again.to_json()["hosts"][0]["reboots"] == 0  # the reboot it needed already happened
    assert not in_maintenance(name)


def test_slow_reboot_within_the_timeout_is_waited_for(
    hosts: Callable[..., list[str]], lab_paths: Any, tmp_path: Path
) -> None:
    (name,) = hosts("esxi-04.lab")
    inject(lab_paths, name, "slow-reboot", seconds=4)
    report = prepare_stack(write_stack(tmp_path, [name], rollout={"rebootTimeoutSeconds": 15}))
    entry = report.to_json()["hosts"][0]
    assert report.exit_code == 0, entry
    reboot = next(s for s in entry["steps"] if s["name"] == "reboot")
    assert reboot["seconds"] >= 4
    assert not in_maintenance(name)


def test_unknown_host_key_fails_that_host_untouched_and_converges_once_trusted(
    hosts: Callable[..., list[str]],
    lab_paths: Any,
    events: Callable[..., list[dict[str, Any]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = hosts("esxi-03.lab", "esxi-04.lab")
    stack = write_stack(tmp_path, names)
    # A view of the lab where esxi-04's key is not in known_hosts (as after a reinstall nobody vetted).
    view = tmp_path / "lab-view"
    view.mkdir()
    env = json.loads((Path(lab_paths.root) / "env.json").read_text())
    empty = view / "known_hosts"
    empty.write_text("")
    for entry in env["hosts"]:
        if entry["name"] == "esxi-04.lab":
            entry["known_hosts"] = str(empty)
    (view / "env.json").write_text(json.dumps(env))
    (view / "depot").symlink_to(Path(lab_paths.root) / "depot")
    monkeypatch.setenv("GPUFLEET_LAB_DIR", str(view))
    report = prepare_stack(stack)
    result = by_name(report.to_json())
    assert report.exit_code == 1
    assert result["esxi-04.lab"]["error"]["step"] == "check"
    assert "unknown ssh-ed25519 host key SHA256:" in result["esxi-04.lab"]["error"]["message"]
    assert result["esxi-04.lab"]["changed"] is False and result["esxi-04.lab"]["inMaintenance"] is False
    assert actions(events(host="esxi-04.lab")) == []  # never touched
    assert result["esxi-03.lab"]["error"] is None  # the others went on (failure threshold 2)
    assert empty.read_text() == ""  # nothing was trusted on the way
    monkeypatch.setenv("GPUFLEET_LAB_DIR", str(lab_paths.root))  # the key is trusted now
    again = prepare_stack(stack)
    assert again.exit_code == 0, again.to_json()
    assert by_name(again.to_json())["esxi-04.lab"]["changed"] is True


# -- bad input -------------------------------------------------------------------------------------------------------


def test_unknown_host_fails_before_any_host_is_touched(
    hosts: Callable[..., list[str]], events: Callable[..., list[dict[str, Any]]], tmp_path: Path
) -> None:
    hosts("esxi-03.lab")
    document = YAML(typ="safe").load(write_stack(tmp_path, ["esxi-03.lab"]).read_text())
    fleet = document["config"]["gpufleet:fleet"]
    fleet["hosts"].append({"name": "esxi-77.lab", "gpus": [{"pci": "0000:3b:00.0", "model": "T4", "mode": "vgpu"}]})
    stack = tmp_path / "Pulumi.unknown.yaml"
    with stack.open("w") as fh:
        YAML().dump(document, fh)
    with pytest.raises(SpecError, match=r"esxi-77.lab.*not a host of the running lab"):
        prepare_stack(stack)
    assert actions(events()) == []


def test_missing_bundle_fails_before_any_host_is_touched(
    hosts: Callable[..., list[str]], events: Callable[..., list[dict[str, Any]]], tmp_path: Path
) -> None:
    names = hosts("esxi-03.lab", "esxi-04.lab")
    missing = write_stack(tmp_path, names, driver={"localPath": "lab-depot://NVD-AIE-800_550.90.05-missing.zip"})
    with pytest.raises(SpecError, match=r"driver.localPath.*550.90.05-missing.zip: no such file"):
        prepare_stack(missing)
    nowhere = write_stack(tmp_path, names, driver={"localPath": None, "bundle": "/vmfs/volumes/datastore1/absent.zip"})
    with pytest.raises(SpecError, match=r"esxi-03.lab: driver.bundle.*absent.zip is not on the host"):
        prepare_stack(nowhere)
    assert actions(events()) == []


# -- the command lines ------------------------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*args], cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )


def test_cli_dry_run_json_then_python_m_host_setup(
    hosts: Callable[..., list[str]], events: Callable[..., list[dict[str, Any]]], tmp_path: Path
) -> None:
    names = hosts("esxi-04.lab")
    stack = write_stack(tmp_path, names)
    gpufleet = shutil.which("gpufleet", path=str(Path(sys.executable).parent)) or "gpufleet"
    dry = _cli(gpufleet, "hosts", "prepare", str(stack), "--dry-run", "--json")
    assert dry.returncode == 2, dry.stderr
    document = json.loads(dry.stdout)  # exactly one JSON document on stdout
    assert document["dryRun"] is True and document["summary"]["pending"] == 1
    steps = {s["name"]: s["state"] for s in document["hosts"][0]["steps"]}
    assert steps["driver"] == "needed" and steps["reboot"] == "needed"
    assert actions(events()) == []  # a dry run touches nothing

    run = _cli(sys.executable, "-m", "host_setup", "prepare", str(stack), "--max-unavailable", "1", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["hosts"][0]["changed"] is True
    human = _cli(gpufleet, "hosts", "prepare", str(stack))
    assert human.returncode == 0, human.stderr
    assert "1 host(s): 0 changed, 1 unchanged, 0 failed" in " ".join(human.stdout.split())
    bad = _cli(gpufleet, "hosts", "prepare", str(stack), "--host", "esxi-99.lab")
    assert bad.returncode == 1 and "esxi-99.lab" in bad.stderr and "not a host of this stack" in bad.stderr
