"""``VmGpuDevices`` through Pulumi's dynamic provider server against the lab's vCenter:
check -> create -> read -> diff (no change) -> update -> drift seen by read -> delete (only what it owns)."""

from __future__ import annotations

import copy

import grpc
import pytest
from dynamic_server import DIFF_NONE, DIFF_SOME, DynamicProviderServer, urn, with_provider
from private_lab import PrivateLab
from pyVmomi import vim

from components.providers.vm_gpu_devices import VmGpuDevicesProvider
from gpufleet.vsphere.tasks import wait_for_task
from gpufleet.vsphere.vm_devices import read_vm_devices

pytestmark = pytest.mark.lab
URN = urn("VmGpuDevices", "vm-gpu")
HOST_L40S = {
    "name": "esxi-03.lab",
    "gpus": [
        {"pci": "0000:3b:00.0", "model": "L40S", "mode": "vgpu"},
        {"pci": "0000:5e:00.0", "model": "L40S", "mode": "vgpu"},
    ],
    "driver": {"version": "550.90.05", "bundle": "/vmfs/volumes/datastore1/NVD.zip"},
}
TEMPLATE = {"name": "tpl-ubuntu2204-gpu", "hardwareVersion": 19, "network": "VM Network", "numaNode": 0}


def inputs(lab: PrivateLab, vm_name: str, vgpu: str = "nvidia_l40s-24c", **extra) -> dict:
    props = {
        "vcenter": lab.vcenter_spec(),  # not the lab's env file: the password comes from Configure
        "datacenter": "DC-Lab",
        "cluster": "GPU-Cluster",
        "vmName": vm_name,
        "vm": {
            "name": vm_name,
            "template": TEMPLATE["name"],
            "host": "esxi-03.lab",
            "vgpu": [{"profile": vgpu}],
            "rdma": [{"type": "pvrdma", "network": "VM Network", "roce": "v2"}],
        },
        "template": TEMPLATE,
        "host": HOST_L40S,
        "allowPowerCycle": False,
        "ownPvrdma": True,
    }
    return with_provider(VmGpuDevicesProvider(), props | extra)


def vm_named(lab: PrivateLab, si: vim.ServiceInstance, name: str) -> vim.VirtualMachine:
    return lab.find(si, vim.VirtualMachine, name)


def test_lifecycle_create_read_diff_update_drift_delete(
    server: DynamicProviderServer, prov_lab: PrivateLab, lab_vms: list[str]
) -> None:
    with prov_lab.session() as si:
        vm = prov_lab.clone_vm(si, "esxi-03.lab")
        name, uuid = vm.name, vm.config.uuid
        lab_vms.append(name)
    news = inputs(prov_lab, name)

    checked, failures = server.check(URN, {}, news)
    assert failures == [] and checked["vmName"] == name

    created = server.create(URN, checked)
    assert created.id == uuid
    observed = created.outs["observed"]
    assert [v["profile"] for v in observed["vgpus"]] == ["nvidia_l40s-24c"]
    assert [(n["network"], n["protocol"]) for n in observed["pvrdma"]] == [("VM Network", "rocev2")]
    assert observed["extra_config"] == {
        "pciPassthru.use64bitMMIO": "TRUE",
        "pciPassthru.64bitMMIOSizeGB": "128",
        "numa.nodeAffinity": "0",
    }
    assert "add vgpu nvidia_l40s-24c" in created.outs["lastChanges"]
    assert prov_lab.password not in str(created.outs)  # the configured secret never reaches the state

    read = server.read(URN, created.id, created.outs)
    assert read.id == uuid and read.outs["observed"] == observed
    assert server.diff(URN, uuid, read.outs, news).changes == DIFF_NONE

    bigger = inputs(prov_lab, name, vgpu="nvidia_l40s-48c")
    diff = server.diff(URN, uuid, read.outs, bigger)
    assert diff.changes == DIFF_SOME and list(diff.replaces) == []
    updated = server.update(URN, uuid, read.outs, bigger)
    assert [v["profile"] for v in updated["observed"]["vgpus"]] == ["nvidia_l40s-48c"]
    assert updated["lastChanges"][:2] == ["remove vgpu nvidia_l40s-24c", "add vgpu nvidia_l40s-48c"]

    # Drift behind its back: someone removes the vGPU and the PVRDMA protocol falls back to RoCE v1.
    with prov_lab.session() as si:
        vm = vm_named(prov_lab, si, name)
        gpu = next(d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualPCIPassthrough))
        nic = next(d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualVmxnet3Vrdma))
        nic.deviceProtocol = "rocev1"
        spec = vim.vm.ConfigSpec(
            deviceChange=[
                vim.vm.device.VirtualDeviceSpec(operation="remove", device=gpu),
                vim.vm.device.VirtualDeviceSpec(operation="edit", device=nic),
            ],
            extraConfig=[vim.option.OptionValue(key="e5.notOurs", value="keep")],
        )
        wait_for_task(vm.ReconfigVM_Task(spec=spec), what="drift", timeout=60)
    refreshed = server.read(URN, uuid, updated)
    assert refreshed.outs["observed"]["vgpus"] == []
    assert refreshed.outs["observed"]["pvrdma"][0]["protocol"] == "rocev1"
    assert server.diff(URN, uuid, refreshed.outs, bigger).changes == DIFF_SOME
    repaired = server.update(URN, uuid, refreshed.outs, bigger)
    assert set(repaired["lastChanges"]) == {"add vgpu nvidia_l40s-48c", "edit pvrdma VM Network: rocev1 -> rocev2"}

    server.delete(URN, uuid, repaired)
    with prov_lab.session() as si:
        vm = vm_named(prov_lab, si, name)
        after = read_vm_devices(vm)
        assert after.vgpus == () and after.pvrdma == () and after.extra_config == {}
        keys = {o.key: o.value for o in vm.config.extraConfig}
        assert keys.get("e5.notOurs") == "keep"  # not ours: left alone
        assert any(
            isinstance(d, vim.vm.device.VirtualVmxnet3) and not isinstance(d, vim.vm.device.VirtualVmxnet3Vrdma)
            for d in vm.config.hardware.device
        )  # the template's own NIC stays

    assert server.read(URN, uuid, repaired).outs["observed"]["vgpus"] == []


def test_another_vm_is_a_replace_deleting_first(server: DynamicProviderServer, prov_lab: PrivateLab) -> None:
    olds = inputs(prov_lab, "vm-a") | {"observed": None}
    diff = server.diff(URN, "x", olds, inputs(prov_lab, "vm-b"))
    assert diff.changes == DIFF_SOME and list(diff.replaces) == ["vmName"] and diff.deleteBeforeReplace


def test_check_returns_one_failure_per_bad_field(server: DynamicProviderServer, prov_lab: PrivateLab) -> None:
    news = inputs(prov_lab, "vm-x", vgpu="nvidia_l40s-7c")
    news["vm"]["rdma"][0]["roce"] = "v3"
    _inputs, failures = server.check(URN, {}, news)
    assert [p for p, _ in failures] == ["vm.rdma[0].roce"]  # shape first: v3 is not v1 or v2
    news["vm"]["rdma"][0]["roce"] = "v2"
    _inputs, failures = server.check(URN, {}, news)
    assert [p for p, _ in failures] == ["vm.vgpu[0].profile"]
    assert "nvidia_l40s-24c" in failures[0][1]
    missing = copy.deepcopy(news)
    del missing["datacenter"]
    assert ("datacenter", "required") in server.check(URN, {}, missing)[1]


def test_create_is_transactional_and_power_cycles_only_when_allowed(
    server: DynamicProviderServer, prov_lab: PrivateLab, lab_vms: list[str]
) -> None:
    with prov_lab.session() as si:
        vm = prov_lab.clone_vm(si, "esxi-03.lab")
        name = vm.name
        lab_vms.append(name)
        wait_for_task(vm.PowerOnVM_Task(), what="power on", timeout=60)
    news = inputs(prov_lab, name)
    with pytest.raises(grpc.RpcError) as refused:
        server.create(URN, news)
    assert "PowerCycleRequiredError" in refused.value.details() and "allowPowerCycle" in refused.value.details()
    with prov_lab.session() as si:
        state = read_vm_devices(vm_named(prov_lab, si, name))
        assert state.vgpus == () and state.pvrdma == () and state.power_state == "poweredOn"  # nothing changed

    # The diff of a change on a running VM says it needs a power cycle (in the provider's log).
    observed = {"observed": state.to_dict()}
    assert server.diff(URN, "id", news | observed, news).changes == DIFF_SOME
    assert f"gpufleet: {name}: this update powers the VM off and on" in server.log()

    allowed = inputs(prov_lab, name, allowPowerCycle=True)
    created = server.create(URN, allowed)
    assert created.outs["powerCycled"] is True
    assert created.outs["observed"]["power_state"] == "poweredOn"
    assert [v["profile"] for v in created.outs["observed"]["vgpus"]] == ["nvidia_l40s-24c"]


def test_lab_stacks_take_the_vcenter_from_the_lab_env_file(
    server: DynamicProviderServer, prov_lab: PrivateLab, lab_vms: list[str]
) -> None:
    with prov_lab.session() as si:
        name = prov_lab.clone_vm(si, "esxi-03.lab").name
        lab_vms.append(name)
    created = server.create(URN, inputs(prov_lab, name, vcenter={"lab": True}))
    assert [v["profile"] for v in created.outs["observed"]["vgpus"]] == ["nvidia_l40s-24c"]
