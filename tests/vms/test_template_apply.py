"""``gpufleet vms apply`` converges the stack's templates too (private lab vCenter): apply, idempotence, dry run,
and a failing reconfigure that leaves the template a template.

Each test works on its own template (cloned from the lab's, then set to BIOS, no GPU keys, memory not locked, as a
template made by hand would be) and one VM cloned from it, so nothing is shared with other tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from private_lab import CLONE_SOURCE, PrivateLab, stack_document
from pyVmomi import vim
from ruamel.yaml import YAML

from gpufleet.spec.stack import parse_stack
from gpufleet.vms import template as template_apply
from gpufleet.vms.apply import apply_vms
from gpufleet.vsphere.tasks import wait_for_task

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
HOST = "esxi-03.lab"
CHANGES = [
    "set extra-config pciPassthru.use64bitMMIO=TRUE",
    "set extra-config pciPassthru.64bitMMIOSizeGB=128",  # L40S (the VM cloned from it): 128 GB
    "set extra-config pciPassthru.allowP2P=true",
    "set memory-reservation memoryReservationLockedToMax: false -> true",
    "set firmware: bios -> efi",
]


def _template_as_found(lab: PrivateLab, si: vim.ServiceInstance, name: str) -> None:
    """A template made by hand: cloned from the lab's, BIOS firmware."""
    tpl = lab.clone_template(si, name, source=CLONE_SOURCE)
    host = tpl.runtime.host
    tpl.MarkAsVirtualMachine(pool=host.parent.resourcePool, host=host)
    wait_for_task(tpl.ReconfigVM_Task(spec=vim.vm.ConfigSpec(firmware="bios")), what="bios", timeout=60)
    tpl.MarkAsTemplate()


@pytest.fixture
def fleet_doc(vm_lab: PrivateLab, lab_vms: list[str]) -> Iterator[dict[str, Any]]:
    """A stack with its own template (as found, see above) and one L40S vGPU VM cloned from it."""
    tpl_name = f"e2-tpl-{uuid.uuid4().hex[:8]}"
    with vm_lab.session() as si:
        _template_as_found(vm_lab, si, tpl_name)
        lab_vms.append(tpl_name)
        vm = vm_lab.clone_vm(si, HOST, prefix="e2").name
        lab_vms.append(vm)
    doc = stack_document(
        [{"name": vm, "template": tpl_name, "host": HOST, "vgpu": [{"profile": "nvidia_l40s-24c"}]}], {"lab": True}
    )
    # hardwareVersion 21 > the lab's vmx-20: reported, never upgraded.
    doc["config"]["gpufleet:fleet"]["templates"] = [{"name": tpl_name, "hardwareVersion": 21, "p2p": True}]
    yield doc


def _tpl_name(doc: dict[str, Any]) -> str:
    return doc["config"]["gpufleet:fleet"]["templates"][0]["name"]


def _write(doc: dict[str, Any], path: Path) -> Path:
    YAML().dump(doc, path)
    return path


def cli(lab: PrivateLab, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gpufleet", "vms", "apply", *args],
        cwd=ROOT,
        env={**os.environ, "GPUFLEET_LAB_DIR": str(lab.dir), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _read(lab: PrivateLab, name: str) -> dict[str, Any]:
    """The template as vCenter shows it, read independently of gpufleet's readers."""
    with lab.session() as si:
        config = lab.find(si, vim.VirtualMachine, name).config
        keys = {o.key: o.value for o in config.extraConfig or [] if o.key.startswith("pciPassthru.")}
        return {
            "template": config.template,
            "firmware": config.firmware,
            "version": config.version,
            "locked": bool(config.memoryReservationLockedToMax),
            "keys": keys,
        }


def test_apply_converges_the_template_and_a_second_run_changes_nothing(
    vm_lab: PrivateLab, fleet_doc: dict[str, Any], tmp_path: Path
) -> None:
    name = _tpl_name(fleet_doc)
    stack = _write(fleet_doc, tmp_path / "Pulumi.t.yaml")
    first = cli(vm_lab, str(stack), "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    [entry] = json.loads(first.stdout)["templates"]
    assert (entry["name"], entry["exists"], entry["changed"], entry["error"]) == (name, True, True, None)
    assert entry["changes"] == CHANGES
    assert [(s["setting"], s["desired"], s["actual"]) for s in entry["skipped"]] == [
        ("hardwareVersion", "vmx-21", "vmx-20")
    ]
    assert _read(vm_lab, name) == {
        "template": True,
        "firmware": "efi",
        "version": "vmx-20",  # never upgraded
        "locked": True,
        "keys": {
            "pciPassthru.use64bitMMIO": "TRUE",
            "pciPassthru.64bitMMIOSizeGB": "128",
            "pciPassthru.allowP2P": "true",
        },
    }

    second = cli(vm_lab, str(stack), "--json")
    assert second.returncode == 0, second.stdout + second.stderr
    document = json.loads(second.stdout)
    [again] = document["templates"]
    assert (again["changed"], again["changes"], again["error"]) == (False, [], None)
    assert [v["changed"] for v in document["vms"]] == [False]
    # --dry-run on the converged stack: nothing pending, exit 0 (the skipped hardware version is not pending).
    dry = cli(vm_lab, str(stack), "--dry-run", "--json")
    assert dry.returncode == 0, dry.stdout + dry.stderr


def test_dry_run_reports_the_template_pending_with_exit_2_and_changes_nothing(
    vm_lab: PrivateLab, fleet_doc: dict[str, Any], tmp_path: Path
) -> None:
    name = _tpl_name(fleet_doc)
    before = _read(vm_lab, name)
    assert before["firmware"] == "bios" and not before["locked"] and before["keys"] == {}
    stack = _write(fleet_doc, tmp_path / "Pulumi.t.yaml")
    dry = cli(vm_lab, str(stack), "--dry-run", "--json")
    assert dry.returncode == 2, dry.stdout + dry.stderr
    [entry] = json.loads(dry.stdout)["templates"]
    assert entry["changed"] is True and entry["changes"] == CHANGES and entry["error"] is None
    human = cli(vm_lab, str(stack), "--dry-run")
    assert human.returncode == 2, human.stdout + human.stderr
    assert "templates (dry run)" in human.stdout and name in human.stdout and "bios -> efi" in human.stdout
    assert "vmx-21" in human.stdout  # the hardware version it will not change, with the reason
    assert _read(vm_lab, name) == before


def test_failing_reconfigure_leaves_it_a_template_and_reports_the_error(
    vm_lab: PrivateLab, fleet_doc: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _tpl_name(fleet_doc)
    real = template_apply.build_config_spec

    def invalid(*args: Any, **kwargs: Any) -> vim.vm.ConfigSpec:
        # A disk to create without a unit number: vCenter (vcsim too) fails the task with InvalidDeviceSpec.
        spec = real(*args, **kwargs)
        disk = vim.vm.device.VirtualDisk(
            key=-1, capacityInKB=1024, backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(diskMode="persistent")
        )
        spec.deviceChange = [
            *spec.deviceChange,
            vim.vm.device.VirtualDeviceSpec(operation="add", fileOperation="create", device=disk),
        ]
        return spec

    monkeypatch.setattr(template_apply, "build_config_spec", invalid)
    fleet = parse_stack(fleet_doc).fleet
    with vm_lab.session() as si:
        report = apply_vms(si, fleet)
    [entry] = report.templates
    assert entry.error and f"reconfigure template {name} failed" in entry.error and "InvalidDeviceSpec" in entry.error
    assert report.failed and not entry.changed
    assert _read(vm_lab, name)["template"] is True  # marked back as a template

    monkeypatch.setattr(template_apply, "build_config_spec", real)
    with vm_lab.session() as si:
        fixed = apply_vms(si, fleet).templates[0]
    assert fixed.error is None and fixed.changed  # the next run converges it


def test_missing_template_is_reported_and_a_vm_named_as_template_is_an_error(
    vm_lab: PrivateLab, fleet_doc: dict[str, Any]
) -> None:
    vm_name = fleet_doc["config"]["gpufleet:fleet"]["vms"][0]["name"]
    fleet_doc["config"]["gpufleet:fleet"]["templates"] += [{"name": "no-such-template"}, {"name": vm_name}]
    fleet = parse_stack(fleet_doc).fleet
    with vm_lab.session() as si:
        report = apply_vms(si, fleet, dry_run=True)
    by_name = {t.name: t for t in report.templates}
    missing, vm = by_name["no-such-template"], by_name[vm_name]
    assert (missing.exists, missing.changed, missing.error) == (False, False, None)
    assert vm.error and f"{vm_name} is a VM in vCenter, not a template" in vm.error
    with vm_lab.session() as si:
        assert not vm_lab.find(si, vim.VirtualMachine, vm_name).config.template  # untouched
