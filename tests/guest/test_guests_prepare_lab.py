"""``gpufleet guests prepare`` on the lab: a bare guest (nouveau loaded, no NVIDIA software) is taken to a state
where every guest check of ``verify`` passes, with one reboot; a second run changes nothing; each fault ends in a
named state; the dry run answers 2 while changes are pending."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "stacks" / "Pulumi.lab.yaml"
VM = "vm-ts-01"


def _run(lab_paths: Any, *args: str) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "GPUFLEET_LAB_DIR": str(lab_paths.root)}
    return subprocess.run(
        [sys.executable, "-m", "gpufleet", *args], capture_output=True, text=True, env=env, timeout=600
    )


def _cli(lab_paths: Any, *args: str) -> tuple[int, dict]:
    import os

    env = {**os.environ, "GPUFLEET_LAB_DIR": str(lab_paths.root)}
    proc = subprocess.run(
        [sys.executable, "-m", "gpufleet", *args, "--json"], capture_output=True, text=True, env=env, timeout=600
    )
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"no JSON document: rc {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc.returncode, doc


def _bare(lab_guest: Callable[..., None], lab_paths: Any, name: str = VM) -> None:
    from lab.guest.units import reset_guest

    lab_guest(name, apply=True)  # the VM has its vGPU in vCenter, the persona answers
    reset_guest(lab_paths, name, bare=True)


def _guest(doc: dict, name: str = VM) -> dict:
    return next(g for g in doc["guests"] if g["name"] == name)


def _fault(lab_paths: Any, kind: str, name: str = VM) -> None:
    from lab.guest import faults

    faults.inject(name, kind, paths=lab_paths)


def test_bare_guest_converges_and_verify_passes(lab_guest: Callable[..., None], lab_paths: Any) -> None:
    _bare(lab_guest, lab_paths)
    rc, doc = _cli(lab_paths, "guests", "prepare", str(STACK), "--vm", VM, "--dry-run")
    assert rc == 2, doc
    pending = {s["name"] for s in _guest(doc)["steps"] if s["state"] == "needed"}
    assert pending == {"nouveau", "driver", "toolkit", "docker"}, doc

    rc, doc = _cli(lab_paths, "guests", "prepare", str(STACK), "--vm", VM)
    g = _guest(doc)
    assert rc == 0 and g["state"] == "converged", json.dumps(doc, indent=1)
    assert g["reboots"] == 1, g  # nouveau was loaded: one reboot, and only one
    assert g["facts"]["driverLoaded"] == "550.90.07" and g["facts"]["dockerRuntimes"], g
    assert {s["name"]: s["state"] for s in g["steps"]}["licensing"] in ("done", "ok"), g

    rc, verify = _cli(lab_paths, "verify", str(STACK), "--node", VM)
    failed = [c for c in verify["checks"] if c["outcome"] in ("failed", "error")]
    assert rc == 0 and not failed, failed

    rc, again = _cli(lab_paths, "guests", "prepare", str(STACK), "--vm", VM)
    g = _guest(again)
    assert rc == 0 and not g["changed"] and g["reboots"] == 0, g
    assert all(s["state"] == "ok" for s in g["steps"]), g["steps"]


def test_package_conflict_fails_naming_the_step_and_a_rerun_converges(
    lab_guest: Callable[..., None], lab_paths: Any
) -> None:
    from lab.guest import faults

    _bare(lab_guest, lab_paths)
    _fault(lab_paths, "package-conflict")
    rc, doc = _cli(lab_paths, "guests", "prepare", str(STACK), "--vm", VM)
    g = _guest(doc)
    assert rc == 1 and g["state"] == "failed" and g["error"]["step"] == "toolkit", g
    assert "Conflicts: nvidia-container-runtime" in g["error"]["message"], g
    faults.clear(VM, paths=lab_paths)
    rc, doc = _cli(lab_paths, "guests", "prepare", str(STACK), "--vm", VM)
    g = _guest(doc)
    assert rc == 0 and g["state"] == "converged", g
    assert {s["name"]: s["state"] for s in g["steps"]}["driver"] == "ok", g  # installed by the first run


def test_depot_unreachable_fails_naming_the_step(lab_guest: Callable[..., None], lab_paths: Any) -> None:
    _bare(lab_guest, lab_paths)
    _fault(lab_paths, "depot-unreachable")
    rc, doc = _cli(lab_paths, "guests", "prepare", str(STACK), "--vm", VM)
    g = _guest(doc)
    # The .run package travels over SFTP, but DKMS comes from the guest's mirror: the driver step stops there.
    assert rc == 1 and g["state"] == "failed" and g["error"]["step"] == "driver", g
    assert "installing dkms" in g["error"]["message"], g
    assert "Temporary failure resolving" in g["error"]["message"], g


def test_reboot_needed_without_permission_is_a_named_state(
    lab_guest: Callable[..., None], lab_paths: Any, tmp_path: Path
) -> None:
    from ruamel.yaml import YAML

    _bare(lab_guest, lab_paths)
    _fault(lab_paths, "reboot-needed")
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    doc = yaml.load(STACK.read_text())
    vm = next(v for v in doc["config"]["gpufleet:fleet"]["vms"] if v["name"] == VM)
    vm["guest"]["allowReboot"] = False
    stack = tmp_path / "Pulumi.lab.yaml"
    with stack.open("w") as fh:
        yaml.dump(doc, fh)
    rc, out = _cli(lab_paths, "guests", "prepare", str(stack), "--vm", VM)
    g = _guest(out)
    assert rc == 1 and g["state"] == "reboot-required" and g["error"]["step"] == "reboot", g
    assert g["reboots"] == 0, g


def test_unknown_vm_is_a_usage_error_naming_the_valid_ones(lab_env: Any, lab_paths: Any) -> None:
    proc = _run(lab_paths, "guests", "prepare", str(STACK), "--vm", "vm-nope")
    assert proc.returncode == 1, proc
    message = "vm-nope: not a VM with a guest: block or a GPU pool client (valid: vm-ts-01, vm-mig-01, vm-rdma-01)"
    assert message in " ".join(proc.stderr.split()), proc.stderr
    assert "Traceback" not in proc.stderr
