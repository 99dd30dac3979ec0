"""``gpufleet vms apply`` against the lab's vCenter: converge, idempotence, dry run, power cycles, preconditions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from private_lab import PrivateLab, stack_document
from pyVmomi import vim
from ruamel.yaml import YAML

from gpufleet.spec.stack import parse_stack
from gpufleet.vms.apply import apply_vms
from gpufleet.vsphere.tasks import wait_for_task
from gpufleet.vsphere.vm_devices import read_vm_devices

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]


def write_stack(path: Path, vms: list[dict], **rollout) -> Path:
    YAML().dump(stack_document(vms, {"lab": True}, **rollout), path)
    return path


def cli(lab: PrivateLab, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gpufleet", "vms", "apply", *args],
        cwd=ROOT,
        env={**os.environ, "GPUFLEET_LAB_DIR": str(lab.dir)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_apply_converges_and_a_second_run_changes_nothing(
    vm_lab: PrivateLab, lab_vms: list[str], tmp_path: Path
) -> None:
    with vm_lab.session() as si:
        ts, mig, pt = (vm_lab.clone_vm(si, h).name for h in ("esxi-03.lab", "esxi-01.lab", "esxi-02.lab"))
    lab_vms += [ts, mig, pt]
    stack = write_stack(
        tmp_path / "Pulumi.t.yaml",
        [
            {
                "name": ts,
                "template": "tpl-ubuntu2204-gpu",
                "host": "esxi-03.lab",
                "vgpu": [{"profile": "nvidia_l40s-24c"}],
            },
            {
                "name": mig,
                "template": "tpl-ubuntu2204-gpu",
                "host": "esxi-01.lab",
                "vgpu": [{"profile": "grid_a100d-3-40c"}],
            },
            {
                "name": pt,
                "template": "tpl-ubuntu2204-gpu",
                "host": "esxi-02.lab",
                "passthrough": [{"gpu": "0000:5e:00.0"}],
                "rdma": [{"type": "pvrdma", "network": "VM Network", "roce": "v2"}],
            },
        ],
    )
    first = cli(vm_lab, str(stack), "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    report = {v["name"]: v for v in json.loads(first.stdout)["vms"]}
    assert set(report) == {ts, mig, pt}
    assert all(v["changed"] and v["error"] is None for v in report.values()), report
    assert "add vgpu nvidia_l40s-24c" in report[ts]["changes"]
    assert "set extra-config pciPassthru.64bitMMIOSizeGB=128" in report[ts]["changes"]  # L40S: 128 GB
    assert "set extra-config pciPassthru.64bitMMIOSizeGB=256" in report[mig]["changes"]  # A100 80GB: 256 GB
    assert {"add directpath 0000:5e:00.0", "add pvrdma VM Network"} <= set(report[pt]["changes"])

    second = cli(vm_lab, str(stack), "--json")
    assert second.returncode == 0, second.stdout + second.stderr
    again = json.loads(second.stdout)["vms"]
    assert [(v["name"], v["changed"], v["changes"], v["error"]) for v in again] == [
        (n, False, [], None) for n in (ts, mig, pt)
    ]

    with vm_lab.session() as si:  # what vCenter shows, read independently of the apply
        states = {n: read_vm_devices(vm_lab.find(si, vim.VirtualMachine, n)) for n in (ts, mig, pt)}
    assert [v.profile for v in states[ts].vgpus] == ["nvidia_l40s-24c"]
    assert [v.profile for v in states[mig].vgpus] == ["grid_a100d-3-40c"]
    assert [d.id for d in states[pt].directpath] == ["0000:5e:00.0"]
    assert [(n.network, n.protocol) for n in states[pt].pvrdma] == [("VM Network", "rocev2")]
    assert states[pt].extra_config == {"pciPassthru.use64bitMMIO": "TRUE", "pciPassthru.64bitMMIOSizeGB": "256"}
    assert all(s.memory_reservation_locked for s in states.values())


def test_dry_run_reports_pending_changes_with_exit_2_and_changes_nothing(
    vm_lab: PrivateLab, lab_vms: list[str], tmp_path: Path
) -> None:
    with vm_lab.session() as si:
        name = vm_lab.clone_vm(si, "esxi-04.lab").name
    lab_vms.append(name)
    stack = write_stack(
        tmp_path / "Pulumi.t.yaml",
        [{"name": name, "template": "tpl-ubuntu2204-gpu", "host": "esxi-04.lab", "vgpu": [{"profile": "grid_t4-16c"}]}],
    )
    dry = cli(vm_lab, str(stack), "--dry-run", "--json")
    assert dry.returncode == 2, dry.stderr
    entry = json.loads(dry.stdout)["vms"][0]
    assert entry["changed"] is True and entry["changes"] == [
        "add vgpu grid_t4-16c",
        "set memory-reservation memoryReservationLockedToMax: false -> true",
    ]
    with vm_lab.session() as si:
        assert read_vm_devices(vm_lab.find(si, vim.VirtualMachine, name)).vgpus == ()


def _fleet(lab: PrivateLab, vms: list[dict], **rollout):
    return parse_stack(stack_document(vms, {"lab": True}, **rollout)).fleet


def test_powered_on_vm_is_refused_unless_power_cycles_are_allowed(vm_lab: PrivateLab, lab_vms: list[str]) -> None:
    with vm_lab.session() as si:
        vm = vm_lab.clone_vm(si, "esxi-03.lab")
        lab_vms.append(vm.name)
        wait_for_task(vm.PowerOnVM_Task(), what="power on", timeout=60)
        spec = [
            {
                "name": vm.name,
                "template": "tpl-ubuntu2204-gpu",
                "host": "esxi-03.lab",
                "vgpu": [{"profile": "nvidia_l40s-48c"}],
            }
        ]
        refused = apply_vms(si, _fleet(vm_lab, spec, allowPowerCycle=False)).vms[0]
        assert refused.error and f"{vm.name} is poweredOn" in refused.error and "allowPowerCycle" in refused.error
        assert read_vm_devices(vm).vgpus == ()  # untouched
        assert str(vm.runtime.powerState) == "poweredOn"

        done = apply_vms(si, _fleet(vm_lab, spec, allowPowerCycle=True)).vms[0]
        assert done.error is None and done.changed and done.power_cycled
        assert [v.profile for v in read_vm_devices(vm).vgpus] == ["nvidia_l40s-48c"]
        assert str(vm.runtime.powerState) == "poweredOn"  # powered on again, as it was

        # The VM's own allowPowerCycle wins over the rollout's.
        spec[0] |= {"vgpu": [{"profile": "nvidia_l40s-24c"}], "allowPowerCycle": False}
        assert "allowPowerCycle" in (apply_vms(si, _fleet(vm_lab, spec, allowPowerCycle=True)).vms[0].error or "")


def test_profile_not_offered_by_the_host_is_refused_naming_what_it_offers(
    vm_lab: PrivateLab, lab_vms: list[str]
) -> None:
    with vm_lab.session() as si:
        vm = vm_lab.clone_vm(si, "esxi-04.lab")
        lab_vms.append(vm.name)
        spec = [
            {
                "name": vm.name,
                "template": "tpl-ubuntu2204-gpu",
                "host": "esxi-04.lab",
                "vgpu": [{"profile": "grid_t4-8c"}],
            }
        ]
        vm_lab.admin.update_host("esxi-04.lab", driverActive=False)  # no vGPU driver loaded: no profile offered
        try:
            entry = apply_vms(si, _fleet(vm_lab, spec)).vms[0]
        finally:
            vm_lab.admin.update_host("esxi-04.lab", driverActive=True)
        assert entry.error and "esxi-04.lab does not offer vGPU profile grid_t4-8c" in entry.error
        entry = apply_vms(si, _fleet(vm_lab, spec)).vms[0]
        assert entry.error is None and entry.changes[0] == "add vgpu grid_t4-8c"


def test_no_mig_room_left_by_other_vms_is_refused(vm_lab: PrivateLab, lab_vms: list[str]) -> None:
    passthrough = vim.vm.device.VirtualPCIPassthrough
    with vm_lab.session() as si:
        # Two VMs gpufleet does not manage already take both A100s of esxi-01 whole (7g.80gb each).
        for _ in range(2):
            other = vm_lab.clone_vm(si, "esxi-01.lab", prefix="e5-other")
            lab_vms.append(other.name)
            add = vim.vm.device.VirtualDeviceSpec(
                operation="add",
                device=passthrough(key=-1, backing=passthrough.VmiopBackingInfo(vgpu="grid_a100d-7-80c")),
            )
            wait_for_task(
                other.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=[add])), what="reconfigure", timeout=60
            )
        vm = vm_lab.clone_vm(si, "esxi-01.lab")
        lab_vms.append(vm.name)
        spec = [
            {
                "name": vm.name,
                "template": "tpl-ubuntu2204-gpu",
                "host": "esxi-01.lab",
                "vgpu": [{"profile": "grid_a100d-1-10c"}],
            }
        ]
        entry = apply_vms(si, _fleet(vm_lab, spec)).vms[0]
        assert entry.error and "no MIG room on host esxi-01.lab" in entry.error
        assert read_vm_devices(vm).vgpus == ()


def test_drift_behind_its_back_is_repaired_and_directpath_conflicts_are_refused(
    vm_lab: PrivateLab, lab_vms: list[str]
) -> None:
    with vm_lab.session() as si:
        a, b = vm_lab.clone_vm(si, "esxi-02.lab"), vm_lab.clone_vm(si, "esxi-02.lab")
        lab_vms += [a.name, b.name]
        spec = [
            {
                "name": a.name,
                "template": "tpl-ubuntu2204-gpu",
                "host": "esxi-02.lab",
                "passthrough": [{"gpu": "0000:5e:00.0"}],
            }
        ]
        assert apply_vms(si, _fleet(vm_lab, spec)).vms[0].changed
        # Someone removes the GPU by hand: the next apply sees it and puts it back.
        device = read_vm_devices(a).directpath[0]
        gone = vim.vm.device.VirtualDeviceSpec(
            operation="remove", device=next(d for d in a.config.hardware.device if d.key == device.key)
        )
        wait_for_task(a.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=[gone])), what="reconfigure", timeout=60)
        again = apply_vms(si, _fleet(vm_lab, spec)).vms[0]
        assert again.changes == ["add directpath 0000:5e:00.0"]
        # The same GPU for a second VM is refused before anything changes.
        spec.append(
            {
                "name": b.name,
                "template": "tpl-ubuntu2204-gpu",
                "host": "esxi-02.lab",
                "passthrough": [{"gpu": "0000:3b:00.0"}],
            }
        )
        fleet = _fleet(vm_lab, spec)
        taken = fleet.vms[1].model_copy(update={"passthrough": fleet.vms[0].passthrough})
        report = apply_vms(si, fleet.model_copy(update={"vms": [fleet.vms[0], taken]}))
        assert report.vms[0].changed is False
        assert report.vms[1].error and f"already passed to {a.name}" in report.vms[1].error


def test_several_vgpus_dynamic_directpath_and_a_passthrough_nic(vm_lab: PrivateLab, lab_vms: list[str]) -> None:
    with vm_lab.session() as si:
        t4, h100 = vm_lab.clone_vm(si, "esxi-04.lab"), vm_lab.clone_vm(si, "esxi-02.lab")
        lab_vms += [t4.name, h100.name]
        spec = [
            {
                "name": t4.name,
                "template": "tpl-ubuntu2204-gpu",
                "host": "esxi-04.lab",
                "vgpu": [{"profile": "grid_t4-16c"}, {"profile": "grid_t4-16c"}],
            },
            {
                "name": h100.name,
                "template": "tpl-ubuntu2204-gpu",
                "host": "esxi-02.lab",
                "passthrough": [{"model": "H100-80GB-PCIe"}],
                "rdma": [{"type": "passthrough", "nic": "0000:31:00.0"}],
            },
        ]
        report = apply_vms(si, _fleet(vm_lab, spec))
        assert [v.error for v in report.vms] == [None, None]
        assert report.vms[0].changes[:2] == ["add vgpu grid_t4-16c", "add vgpu grid_t4-16c"]
        assert "pciPassthru.64bitMMIOSizeGB" not in " ".join(report.vms[0].changes)  # T4: no 64-bit MMIO needed
        assert {"add dynamic-directpath 0x10de:0x2331", "add directpath 0000:31:00.0"} <= set(report.vms[1].changes)
        state = read_vm_devices(h100)
        assert [(d.vendor_id, d.device_id) for d in state.dynamic] == [(0x10DE, 0x2331)]
        assert [(d.id, d.vendor_id) for d in state.directpath] == [("0000:31:00.0", 0x15B3)]  # the ConnectX
        assert [v.profile for v in read_vm_devices(t4).vgpus] == ["grid_t4-16c", "grid_t4-16c"]
        again = apply_vms(si, _fleet(vm_lab, spec))
        assert [(v.changed, v.error) for v in again.vms] == [(False, None), (False, None)]
