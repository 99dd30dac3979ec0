"""The diff on fixture states: an in-sync fleet gives no finding; each kind of drift gives its finding, named,
at the right path, with desired, actual, severity and a fix hint; ids are stable; exit codes follow."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from audit_fixtures import (
    in_sync_ssh,
    in_sync_vcenter,
    lab_desired,
    replace_host,
    replace_ssh,
    replace_vm,
    result_for,
)

from gpufleet.audit.desired import desired_state
from gpufleet.audit.diff import diff
from gpufleet.audit.findings import Severity
from gpufleet.audit.state import LicenseState, PciDevice, Unreachable
from gpufleet.spec.stack import load_stack
from gpufleet.vsphere.vm_devices import VgpuDevice

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def desired():
    return lab_desired()


@pytest.fixture()
def vc(desired):
    return in_sync_vcenter(desired)


@pytest.fixture()
def ssh(desired):
    return in_sync_ssh(desired)


def only(findings, kind):
    hits = [f for f in findings if f.kind == kind]
    assert len(hits) == 1, f"expected one {kind}, got {[(f.kind, f.path) for f in findings]}"
    return hits[0]


def test_in_sync_fleet_has_no_findings_and_audits_every_object(desired, vc, ssh):
    findings, objects = diff(desired, vc, ssh)
    assert findings == []
    kinds = [o.kind for o in objects]
    assert kinds.count("host") == 4
    assert kinds.count("gpu") == 10  # 2 + 2 + 2 + 4
    assert kinds.count("vm") == 4
    assert kinds.count("template") == 1
    assert len({o.path for o in objects}) == len(objects)
    assert result_for(desired, vc, ssh).exit_code == 0


def test_vgpu_removed(desired, vc, ssh):
    vc = replace_vm(vc, "vm-ts-01", devices={"vgpus": ()})
    f = only(diff(desired, vc, ssh)[0], "vm.vgpu.missing")
    assert f.path == "vms/vm-ts-01/vgpu/nvidia_l40s-24c"
    assert (f.desired, f.actual, f.severity) == ("nvidia_l40s-24c", None, Severity.ERROR)
    assert "vms apply" in f.hint and f.object == "vms/vm-ts-01"


def test_vgpu_changed(desired, vc, ssh):
    vc = replace_vm(vc, "vm-mig-01", devices={"vgpus": (VgpuDevice("grid_a100d-4-40c", 13000),)})
    f = only(diff(desired, vc, ssh)[0], "vm.vgpu.changed")
    assert (f.desired, f.actual) == ("grid_a100d-3-40c", "grid_a100d-4-40c")
    assert f.path == "vms/vm-mig-01/vgpu/grid_a100d-3-40c"


def test_vgpu_prefix_spelling_is_not_drift(desired, vc, ssh):
    # vSphere may spell a profile nvidia_ where the spec wrote grid_ (or the reverse): same type.
    vc = replace_vm(vc, "vm-mig-01", devices={"vgpus": (VgpuDevice("nvidia_a100d-3-40c", 13000),)})
    assert diff(desired, vc, ssh)[0] == []


def test_extra_config_changed(desired, vc, ssh):
    vm = vc.vms["vm-ts-01"]
    changed = dict(vm.devices.extra_config, **{"pciPassthru.64bitMMIOSizeGB": "64"})
    vc = replace_vm(vc, "vm-ts-01", devices={"extra_config": changed}, extra_config=changed)
    f = only(diff(desired, vc, ssh)[0], "vm.extra_config.changed")
    assert f.path == "vms/vm-ts-01/extraConfig/pciPassthru.64bitMMIOSizeGB"
    assert (f.desired, f.actual, f.severity) == ("128", "64", Severity.ERROR)


def test_extra_config_boolean_case_is_not_drift(desired, vc, ssh):
    vm = vc.vms["vm-ts-01"]
    changed = dict(vm.devices.extra_config, **{"pciPassthru.use64bitMMIO": "true"})
    vc = replace_vm(vc, "vm-ts-01", devices={"extra_config": changed}, extra_config=changed)
    assert diff(desired, vc, ssh)[0] == []


def test_managed_extra_config_added(desired, vc, ssh):
    vm = vc.vms["vm-ts-01"]
    added = dict(vm.devices.extra_config, **{"numa.nodeAffinity": "1"})
    vc = replace_vm(vc, "vm-ts-01", devices={"extra_config": added}, extra_config=added)
    f = only(diff(desired, vc, ssh)[0], "vm.extra_config.added")
    assert f.path == "vms/vm-ts-01/extraConfig/numa.nodeAffinity"
    assert (f.desired, f.actual, f.severity) == (None, "1", Severity.ERROR)


def test_undeclared_extra_config_added(desired, vc, ssh):
    vm = vc.vms["vm-ts-01"]
    added = dict(vm.extra_config, **{"pciPassthru0.cfg.frame_rate_limiter": "0", "pciPassthru0.present": "TRUE"})
    vc = replace_vm(vc, "vm-ts-01", extra_config=added)
    f = only(diff(desired, vc, ssh)[0], "vm.extra_config.added")
    assert f.path == "vms/vm-ts-01/extraConfig/pciPassthru0.cfg.frame_rate_limiter"
    assert f.severity == Severity.WARNING and f.actual == "0"


def test_extra_config_missing(desired, vc, ssh):
    vm = vc.vms["vm-pt-01"]
    gone = {k: v for k, v in vm.devices.extra_config.items() if k != "pciPassthru.use64bitMMIO"}
    vc = replace_vm(vc, "vm-pt-01", devices={"extra_config": gone}, extra_config=gone)
    f = only(diff(desired, vc, ssh)[0], "vm.extra_config.missing")
    assert (f.desired, f.actual) == ("TRUE", None)


def test_graphics_type(desired, vc, ssh):
    vc = replace_host(vc, "esxi-03.lab", default_graphics_type="shared")
    f = only(diff(desired, vc, ssh)[0], "host.graphics_type")
    assert (f.path, f.desired, f.actual) == ("hosts/esxi-03.lab/graphics/defaultType", "sharedDirect", "shared")
    assert "hosts prepare" in f.hint


def test_gpu_graphics_type_and_passthrough(desired, vc, ssh):
    # vSphere shows a GPU given to passthrough as graphics type "direct": no vGPU can use it.
    t4 = vc.hosts["esxi-04.lab"]
    devices = tuple(replace(d, graphics_type="direct") if d.pci == "0000:86:00.0" else d for d in t4.devices)
    vc = replace_host(vc, "esxi-04.lab", devices=devices)
    h100 = vc.hosts["esxi-02.lab"]
    devices = tuple(replace(d, passthrough_enabled=False) if d.pci == "0000:5e:00.0" else d for d in h100.devices)
    findings = diff(desired, replace_host(vc, "esxi-02.lab", devices=devices), ssh)[0]
    f = only(findings, "gpu.graphics_type")
    assert (f.object, f.desired, f.actual) == ("hosts/esxi-04.lab/gpus/0000:86:00.0", "sharedDirect", "direct")
    f = only(findings, "gpu.passthrough")
    assert (f.object, f.desired, f.actual) == ("hosts/esxi-02.lab/gpus/0000:5e:00.0", "enabled", "disabled")


def test_mig_mode(desired, vc, ssh):
    host = ssh["esxi-01.lab"]
    gpus = tuple(replace(g, mig_current=False, mig_pending=False, instances=()) for g in host.gpus)
    findings = diff(desired, vc, replace_ssh(ssh, "esxi-01.lab", gpus=gpus))[0]
    hits = [f for f in findings if f.kind == "gpu.mig_mode"]
    assert {f.path for f in hits} == {
        "hosts/esxi-01.lab/gpus/0000:3b:00.0/migMode",
        "hosts/esxi-01.lab/gpus/0000:5e:00.0/migMode",
    }
    assert all((f.desired, f.actual) == ("enabled", "disabled") for f in hits)


def test_mig_pending_enable_names_the_reboot(desired, vc, ssh):
    host = ssh["esxi-01.lab"]
    gpus = tuple(replace(g, mig_current=False, mig_pending=True) for g in host.gpus)
    reasons = ("MIG enabled pending on 0000:3b:00.0", "MIG enabled pending on 0000:5e:00.0")
    findings = diff(
        desired, vc, replace_ssh(ssh, "esxi-01.lab", gpus=gpus, reboot_pending=True, reboot_reasons=reasons)
    )[0]
    mig = [f for f in findings if f.kind == "gpu.mig_mode"]
    assert len(mig) == 2 and all("pending enabled" in f.actual and "reboot" in f.hint for f in mig)
    reboot = only(findings, "host.reboot_pending")
    assert reboot.severity == Severity.WARNING and "MIG enabled pending on 0000:3b:00.0" in reboot.actual


def test_driver_version(desired, vc, ssh):
    findings = diff(desired, vc, replace_ssh(ssh, "esxi-02.lab", driver_version="535.161.05"))[0]
    f = only(findings, "host.driver")
    assert (f.path, f.desired, f.actual) == ("hosts/esxi-02.lab/driver", "550.90.05", "535.161.05")


def test_driver_missing(desired, vc, ssh):
    f = only(diff(desired, vc, replace_ssh(ssh, "esxi-02.lab", driver_version=None))[0], "host.driver")
    assert f.actual == "not installed"


def test_nvidia_smi_is_not_expected_on_a_host_whose_gpus_are_all_passed_through():
    """The pool stack's esxi-04.lab passes its four T4s through to the Bitfusion servers: no host driver there, so
    an nvidia-smi that fails is no drift (verify skips it too); on esxi-03.lab (vGPU) it is."""
    pool = desired_state(load_stack(ROOT / "stacks" / "Pulumi.lab-bitfusion.yaml").fleet, {})
    vc, ssh = in_sync_vcenter(pool), in_sync_ssh(pool)
    assert diff(pool, vc, ssh)[0] == []
    no_driver = replace_ssh(ssh, "esxi-04.lab", driver_version=None, nvidia_smi_ok=False)
    assert diff(pool, vc, no_driver)[0] == []
    f = only(diff(pool, vc, replace_ssh(ssh, "esxi-03.lab", nvidia_smi_ok=False))[0], "host.nvidia_smi")
    assert f.path == "hosts/esxi-03.lab/nvidia-smi"


def test_host_in_maintenance(desired, vc, ssh):
    f = only(diff(desired, replace_host(vc, "esxi-02.lab", in_maintenance=True), ssh)[0], "host.maintenance")
    assert (f.path, f.desired, f.actual, f.severity) == ("hosts/esxi-02.lab/maintenanceMode", "off", "on", "error")


def test_license_other_key(desired, vc, ssh):
    other = LicenseState("vSphere 8 Standard", "*****-*****-*****-*****-ZZZZZ", "sha256:0123456789ab", False)
    f = only(diff(desired, replace_host(vc, "esxi-01.lab", license=other), ssh)[0], "host.license")
    assert f.actual == "vSphere 8 Standard (*****-*****-*****-*****-ZZZZZ)"
    assert f.desired == "*****-*****-*****-*****-EEEEE (from $GPUFLEET_HOST_LICENSE)"
    assert "AAAAA" not in (f.desired + f.actual + f.message)  # the key itself never appears


def test_license_evaluation_without_key_in_env(vc, ssh):
    desired = lab_desired(with_license=False)
    vc = in_sync_vcenter(desired)
    evaluation = LicenseState("Evaluation Mode", "*****-*****-*****-*****-00000", "sha256:aaaaaaaaaaaa", True)
    assert diff(desired, vc, in_sync_ssh(desired))[0] == []
    f = only(
        diff(desired, replace_host(vc, "esxi-04.lab", license=evaluation), in_sync_ssh(desired))[0], "host.license"
    )
    assert f.severity == Severity.WARNING and f.actual == "Evaluation Mode"
    assert desired.hosts["esxi-04.lab"].license_source == "$GPUFLEET_HOST_LICENSE (unset)"
    # A spec that names no licence at all is not checked.
    unlicensed = replace(desired, hosts={k: replace(h, license_source=None) for k, h in desired.hosts.items()})
    assert diff(unlicensed, replace_host(vc, "esxi-04.lab", license=evaluation), in_sync_ssh(desired))[0] == []


def test_ats_off(desired, vc, ssh):
    f = only(diff(desired, vc, replace_ssh(ssh, "esxi-02.lab", ats_enabled=False))[0], "host.ats")
    assert f.object == "hosts/esxi-02.lab"


def test_pvrdma_protocol(desired, vc, ssh):
    vm = vc.vms["vm-rdma-01"]
    nics = tuple(replace(n, protocol="rocev1") for n in vm.devices.pvrdma)
    f = only(diff(desired, replace_vm(vc, "vm-rdma-01", devices={"pvrdma": nics}), ssh)[0], "vm.rdma.roce")
    assert (f.desired, f.actual) == ("rocev2", "rocev1")


def test_passthrough_removed(desired, vc, ssh):
    f = only(diff(desired, replace_vm(vc, "vm-pt-01", devices={"directpath": ()}), ssh)[0], "vm.passthrough.missing")
    assert f.desired == "0000:5e:00.0"


def test_memory_reservation_and_firmware(desired, vc, ssh):
    vc = replace_vm(vc, "vm-ts-01", firmware="bios", devices={"memory_reservation_locked": False})
    findings = diff(desired, vc, ssh)[0]
    assert only(findings, "vm.firmware").actual == "bios"
    assert only(findings, "vm.memory_reservation").actual == "false"


def test_unknown_gpu_and_unknown_vm_with_gpu(desired, vc, ssh):
    host = vc.hosts["esxi-03.lab"]
    extra = PciDevice("0000:af:00.0", 0x10DE, 0x26B9, "AD102GL [L40S]", "sharedDirect", False)
    vc = replace_host(vc, "esxi-03.lab", devices=host.devices + (extra,))
    stranger = replace(
        vc.vms["vm-ts-01"],
        name="shadow-ai",
        moid="vm-99",
        devices=replace(vc.vms["vm-ts-01"].devices, vm="shadow-ai"),
    )
    vc = replace(vc, vms={**vc.vms, "shadow-ai": stranger})
    findings, objects = diff(desired, vc, ssh)
    gpu = only(findings, "gpu.unknown")
    assert gpu.path == "hosts/esxi-03.lab/gpus/0000:af:00.0" and gpu.severity == Severity.WARNING
    vm = only(findings, "vm.unknown")
    assert vm.path == "vms/shadow-ai" and "nvidia_l40s-24c" in vm.actual
    assert {"hosts/esxi-03.lab/gpus/0000:af:00.0", "vms/shadow-ai"} <= {o.path for o in objects}


def test_missing_vm_and_host(desired, vc, ssh):
    vc = replace(vc, vms={k: v for k, v in vc.vms.items() if k != "vm-pt-01"})
    vc = replace(vc, hosts={k: v for k, v in vc.hosts.items() if k != "esxi-04.lab"})
    findings = diff(desired, vc, ssh)[0]
    assert only(findings, "vm.missing").path == "vms/vm-pt-01"
    assert only(findings, "host.missing").path == "hosts/esxi-04.lab"


def test_ids_are_stable_and_distinct(desired, vc, ssh):
    drifted = replace_vm(vc, "vm-ts-01", devices={"vgpus": ()})
    drifted = replace_host(drifted, "esxi-02.lab", in_maintenance=True)
    first = diff(desired, drifted, ssh)[0]
    second = diff(desired, drifted, ssh)[0]
    assert [f.id for f in first] == [f.id for f in second]
    assert len({f.id for f in first}) == len(first) == 2
    assert all(f.id.startswith("GF-") and len(f.id) == 13 for f in first)


def test_exit_codes(desired, vc, ssh):
    drift = replace_host(vc, "esxi-02.lab", in_maintenance=True)
    assert result_for(desired, drift, ssh).exit_code == 2
    down = {k: v for k, v in ssh.items() if k != "esxi-04.lab"}
    incomplete = result_for(desired, drift, down, [Unreachable("esxi-04.lab", "timed out")])
    assert incomplete.exit_code == 1 and incomplete.status == "incomplete"
    # The rest is still compared: the maintenance drift of esxi-02 is reported next to the unreachable host.
    assert any(f.kind == "host.maintenance" for f in incomplete.findings)


def test_vcenter_unreachable_still_compares_hosts(desired, ssh):
    findings, objects = diff(desired, None, replace_ssh(ssh, "esxi-02.lab", driver_version="535.161.05"))
    assert [f.kind for f in findings] == ["host.driver"]
    assert not [o for o in objects if o.kind == "vm"]


def test_info_findings_are_not_drift(desired, vc, ssh):
    vc = replace_vm(vc, "vm-ts-01", devices={"hardware_version": 21})
    result = result_for(desired, vc, ssh)
    f = only(result.findings, "vm.hardware_version")
    assert f.severity == Severity.INFO and result.exit_code == 0
