"""``gpufleet promote`` on the embedded lab: FROM is the lab stack cut to esxi-03.lab and vm-ts-01 (deployed with
``hosts prepare``, ``vms apply`` and ``license apply``), TO a staging copy whose VM (``stg-ts-01``, the same role
``ts-01``) has another vGPU profile. While FROM is drifted (vm-ts-01's vGPU changed behind gpufleet's back) the
promotion is refused, live and from a recorded proof; once FROM is in sync it is allowed, from a proof recorded at
FROM's content hash; a proof recorded for other content is refused."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lab_drift import swap_vgpu
from pyVmomi import vim
from ruamel.yaml import YAML

from gpufleet.connections import resolve_connections
from gpufleet.spec.stack import load_stack
from gpufleet.vms.apply import apply_vms
from gpufleet.vsphere.connect import connect
from gpufleet.vsphere.inventory import find_by_name
from gpufleet.vsphere.tasks import wait_for_task

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "stacks" / "Pulumi.lab.yaml"
HOSTS = ("esxi-01.lab", "esxi-02.lab", "esxi-03.lab", "esxi-04.lab")
HOST, VM = "esxi-03.lab", "vm-ts-01"


def _cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gpufleet", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def _stacks(tmp_path: Path) -> tuple[Path, Path]:
    """FROM: the lab stack with esxi-03.lab and vm-ts-01 only (no host licence: pulumi up's part); TO: the same as
    a staging stack, its VM stg-ts-01 with nvidia_l40s-12c, its own comment."""
    yaml = YAML()
    yaml.preserve_quotes = True
    document = yaml.load(STACK.read_text())
    fleet = document["config"]["gpufleet:fleet"]
    fleet["hosts"] = [h for h in fleet["hosts"] if h["name"] == HOST]
    fleet["vms"] = [v for v in fleet["vms"] if v["name"] == VM]
    del fleet["licensing"]["hostLicense"]
    source = tmp_path / "Pulumi.lab.yaml"  # the lab stack's name: `vcenter.lab` stacks are the lab's
    with open(source, "w") as fh:
        yaml.dump(document, fh)
    fleet["vms"][0]["name"] = "stg-ts-01"
    fleet["vms"][0]["vgpu"][0]["profile"] = "nvidia_l40s-12c"
    fleet.yaml_set_comment_before_after_key("vms", before="staging's VMs: changed only by gpufleet promote", indent=4)
    target = tmp_path / "Pulumi.staging.yaml"
    with open(target, "w") as fh:
        yaml.dump(document, fh)
    return source, target


def _without_gpus(si: Any, names: tuple[str, ...]) -> None:
    """The lab's other VMs without the GPU / RDMA devices earlier tests left on them: FROM does not mention them,
    and the audit reports GPU VMs a stack does not mention."""
    kinds = (vim.vm.device.VirtualPCIPassthrough, vim.vm.device.VirtualVmxnet3Vrdma)
    for name in names:
        vm = find_by_name(si, vim.VirtualMachine, name)
        changes = [
            vim.vm.device.VirtualDeviceSpec(operation="remove", device=d)
            for d in vm.config.hardware.device
            if isinstance(d, kinds)
        ]
        if changes:
            task = vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=changes))
            wait_for_task(task, what=f"remove the GPUs of {name}", timeout=60)


def _doc(done: subprocess.CompletedProcess) -> dict[str, Any]:
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        raise AssertionError(done.stdout[-3000:] + done.stderr[-3000:]) from None


def test_promotion_is_refused_while_from_drifts_and_allowed_with_proof(
    lab_env: Any, lab_host: Callable[[str], Any], tmp_path: Path
) -> None:
    for name in HOSTS:  # `hosts prepare` takes the cluster's rollout lease: hold every host, as the other tests do
        lab_host(name)
    source, target = _stacks(tmp_path)
    with connect(resolve_connections(load_stack(source)).vcenter) as si:
        _without_gpus(si, ("vm-mig-01", "vm-pt-01", "vm-rdma-01"))
    for args in (["hosts", "prepare", source, "--json"], ["vms", "apply", source, "--json"]):
        done = _cli(*args)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    stack = load_stack(source)
    with connect(resolve_connections(stack).vcenter) as si:
        vm = find_by_name(si, vim.VirtualMachine, VM)
        if vm.runtime.powerState != "poweredOn":  # the guest answers only while its VM runs
            wait_for_task(vm.PowerOnVM_Task(), what=f"power on {VM}", timeout=60)
        licensed = _cli("license", "apply", source, "--vm", VM, "--json")
        assert licensed.returncode == 0, licensed.stdout[-3000:] + licensed.stderr[-3000:]
        swap_vgpu(si, VM, "nvidia_l40s-8c")

        # Drifted: refused live (the audit names the drift) and refused from a proof recorded now.
        live = _cli("promote", source, target, "--json")
        doc = _doc(live)
        assert live.returncode == 2 and doc["status"] == "refused", doc
        assert doc["proof"]["source"] == "live" and not doc["proof"]["proven"]
        assert any("audit of FROM is not in sync (drift" in r and "vm.vgpu" in r for r in doc["proof"]["reasons"])
        assert [(c["kind"], c["path"]) for c in doc["changes"]] == [("vgpu", "vms[stg-ts-01].vgpu")]
        drifted_proof = tmp_path / "proof-drifted"
        recorded = _cli("proof", "record", source, "--out", drifted_proof, "--json")
        assert recorded.returncode == 2 and not _doc(recorded)["proven"], recorded.stdout[-2000:]
        refused = _cli("promote", source, target, "--proof", drifted_proof, "--write", "--json")
        assert refused.returncode == 2 and _doc(refused)["status"] == "refused", refused.stdout[-2000:]
        assert "nvidia_l40s-12c" in target.read_text()  # nothing written

        # In sync again: a live check proves FROM (audit in sync, verify green); so does a proof recorded now.
        report = apply_vms(si, stack.fleet, names=[VM])
        assert not report.failed, report.to_json()
    markdown = _cli("audit", source, "--format", "markdown")
    assert markdown.returncode == 0 and "| lab | in-sync |" in markdown.stdout, markdown.stdout[-2000:]
    live = _cli("promote", source, target, "--json")
    doc = _doc(live)
    assert live.returncode == 2 and doc["status"] == "pending" and doc["proof"]["proven"], doc["proof"]
    assert doc["proof"]["verify"]["summary"]["failed"] == 0 and doc["proof"]["verify"]["summary"]["passed"] > 0
    proof = tmp_path / "proof"
    recorded = _cli("proof", "record", source, "--out", proof, "--json")
    stamp = _doc(recorded)
    assert recorded.returncode == 0 and stamp["proven"], stamp
    written = _cli("promote", source, target, "--proof", proof, "--write", "--json")
    assert written.returncode == 0 and _doc(written)["status"] == "written", written.stdout[-2000:]
    text = target.read_text()
    assert "vgpu: [{profile: nvidia_l40s-24c}]" in text and "# staging's VMs: changed only by gpufleet promote" in text
    again = _cli("promote", source, target, "--proof", proof, "--json")
    assert again.returncode == 0 and _doc(again)["status"] == "in-sync"

    # A proof recorded for other content: FROM changed after the proof (licensing featureType).
    source.write_text(source.read_text().replace("featureType: 1", "featureType: 4"))
    other = _cli("promote", source, target, "--proof", proof, "--json")
    doc = _doc(other)
    assert other.returncode == 2 and doc["status"] == "refused", doc
    assert (
        f"proof is for content hash {stamp['contentHash']}, FROM is now {doc['contentHash']}" in doc["proof"]["reasons"]
    )
