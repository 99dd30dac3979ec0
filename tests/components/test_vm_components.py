"""GpuVmTemplate, GpuVm and VgpuMobility graphs under Pulumi mocks: children, their inputs, parents, providers."""

from __future__ import annotations

import base64
from pathlib import Path

import dill
import pulumi
import pytest
from pulumi_mocks import GraphMocks, plain

from components.gpu_vm import GpuVm, GpuVmArgs
from components.gpu_vm_template import GpuVmTemplate, GpuVmTemplateArgs, NicArgs
from components.inventory import VsphereRefs
from components.vgpu_mobility import VgpuMobility, VgpuMobilityArgs
from gpufleet.spec.models import VcenterSpec
from gpufleet.spec.stack import load_stack

ROOT = Path(__file__).resolve().parents[2]
LAB = load_stack(ROOT / "stacks" / "Pulumi.lab.yaml")
VCENTER = VcenterSpec(
    host="vc.example.com",
    user="administrator@vsphere.local",
    password={"env": "VC_PW"},
    thumbprint=":".join(["AB"] * 32),
)


def _urn_parent(urn: str) -> str:
    """The type chain in a URN: 'gpufleet:vsphere:GpuVm$vsphere:index/virtualMachine:VirtualMachine'."""
    return urn.split("::")[2]


@pulumi.runtime.test
def test_template_builds_a_gpu_ready_vm_and_marks_it(mocks: GraphMocks):
    fleet = LAB.fleet.model_copy(
        update={
            "templates": [
                LAB.fleet.templates[0].model_copy(
                    update={"network": "VM Network", "p2p": True, "relax_acs": True, "numa_node": 0}
                )
            ]
        }
    )
    tpl = GpuVmTemplate(
        "tpl",
        GpuVmTemplateArgs(
            spec=fleet.templates[0],
            fleet=fleet,
            refs=VsphereRefs(fleet),
            vcenter=VCENTER,
            nics=[NicArgs("VM Network"), NicArgs("rdma-pg", "vrdma")],
        ),
    )

    def check(args):
        vm_urn, mark_urn = args
        vm = mocks.named("tpl-vm").inputs
        assert vm["firmware"] == "efi" and vm["guestId"] == "ubuntu64Guest"
        assert vm["memoryReservationLockedToMax"] is True and vm["memoryReservation"] == 65536
        assert vm["hardwareVersion"] == LAB.fleet.templates[0].hardware_version == 20
        # MMIO sized from the biggest GPU need among the template's VMs (derive): H100/A100-80GB need 256.
        assert vm["extraConfig"] == {
            "pciPassthru.use64bitMMIO": "TRUE",
            "pciPassthru.64bitMMIOSizeGB": "256",
            "pciPassthru.allowP2P": "true",
            "pciPassthru.RelaxACSforP2P": "true",
            "numa.nodeAffinity": "0",
        }
        assert [n["adapterType"] for n in vm["networkInterfaces"]] == ["vmxnet3", "vrdma"]
        assert vm["networkInterfaces"][1]["networkId"] == "getNetwork-rdma-pg"
        assert vm["resourcePoolId"] == "resgroup-GPU-Cluster"
        assert "pciDeviceIds" not in vm
        mark = mocks.named("tpl-mark").inputs
        assert mark["vmUuid"] == "4200-tpl-vm" and mark["vmName"] == "tpl-ubuntu2204-gpu"
        assert mark["vcenter"]["password"] == {"env": "VC_PW"}  # a reference to the secret, never its value
        assert _urn_parent(vm_urn).startswith("gpufleet:vsphere:GpuVmTemplate$")
        assert _urn_parent(mark_urn).startswith("gpufleet:vsphere:GpuVmTemplate$")
        assert mocks.check_failures["tpl-mark"] == []

    return pulumi.Output.all(tpl.vm.urn, tpl.mark.urn).apply(check)


def test_template_config_errors_are_run_errors(mocks: GraphMocks) -> None:
    fleet = LAB.fleet
    old = fleet.templates[0].model_copy(update={"hardware_version": 11})
    with pytest.raises(pulumi.RunError, match="PVRDMA NIC needs hardware version >= 13"):
        GpuVmTemplate("bad", GpuVmTemplateArgs(old, fleet, VsphereRefs(fleet), VCENTER, nics=[NicArgs("n", "vrdma")]))
    with pytest.raises(pulumi.RunError, match="SR-IOV NIC needs physical_function"):
        GpuVmTemplate(
            "bad2",
            GpuVmTemplateArgs(fleet.templates[0], fleet, VsphereRefs(fleet), VCENTER, nics=[NicArgs("n", "sriov")]),
        )


@pulumi.runtime.test
def test_gpu_vm_clones_the_template_and_gpufleet_owns_its_gpu_devices(mocks: GraphMocks):
    fleet = LAB.fleet
    spec = next(v for v in fleet.vms if v.name == "vm-rdma-01")
    vm = GpuVm(
        "rdma",
        GpuVmArgs(
            spec=spec,
            fleet=fleet,
            vcenter=VCENTER,
            refs=VsphereRefs(fleet),
            template_uuid="4200-tpl",
            network="VM Network",
        ),
    )

    def check(args):
        vm_urn, devices_urn = args
        clone = mocks.named("rdma-vm").inputs
        assert clone["clone"]["templateUuid"] == "4200-tpl"
        assert clone["hostSystemId"] == "getHost-esxi-02.lab"
        assert [n.get("adapterType", "vmxnet3") for n in clone["networkInterfaces"]] == ["vmxnet3", "vrdma"]
        assert "pciDeviceIds" not in clone and "extraConfig" not in clone
        devices = mocks.named("rdma-gpu").inputs
        assert devices["vmUuid"] == "4200-rdma-vm"
        assert devices["vm"]["vgpu"] == [{"profile": "nvidia_h100-3-40c"}]
        assert devices["vm"]["rdma"][0]["roce"] == "v2"
        assert devices["ownPvrdma"] is False  # pulumi-vsphere made the vrdma NIC; gpufleet sets its RoCE protocol
        assert devices["allowPowerCycle"] is True and devices["allowPowerCycleOnCreate"] is True
        assert devices["host"]["driver"]["version"] == "550.90.05"  # the fleet default, resolved for the host
        assert mocks.check_failures["rdma-gpu"] == []  # the real provider's check accepts what the component built
        assert _urn_parent(vm_urn).startswith("gpufleet:vsphere:GpuVm$")
        assert _urn_parent(devices_urn).startswith("gpufleet:vsphere:GpuVm$")
        assert mocks.of_type(":VmGpuDevices")[0].typ == "pulumi-python:dynamic/vsphere:VmGpuDevices"

    return pulumi.Output.all(vm.vm.urn, vm.devices.urn).apply(check)


@pulumi.runtime.test
def test_existing_vm_gets_only_a_device_resource_and_the_provider_carries_no_secret(mocks: GraphMocks):
    fleet = LAB.fleet
    spec = next(v for v in fleet.vms if v.name == "vm-mig-01")
    vm = GpuVm("mig", GpuVmArgs(spec=spec, fleet=fleet, vcenter=LAB.vcenter, existing=True))
    assert vm.vm is None

    def check(_urn):
        assert not mocks.of_type("virtualMachine:VirtualMachine")
        devices = mocks.named("mig-gpu").inputs
        assert devices["ownPvrdma"] is True and devices["allowPowerCycleOnCreate"] is False
        assert devices["vcenter"] == {"lab": True, "port": 443}
        # The provider is pickled into the state: it must hold no connection, password or configured secrets.
        provider = dill.loads(base64.b64decode(plain(devices["__provider"])))
        assert type(provider).__module__ == "components.providers.vm_gpu_devices"
        assert provider.__dict__ == {"_config": {}}

    return vm.devices.urn.apply(check)


@pulumi.runtime.test
def test_bad_profile_is_one_check_failure_naming_the_field(mocks: GraphMocks):
    fleet = LAB.fleet
    base = next(v for v in fleet.vms if v.name == "vm-ts-01").model_dump(by_alias=True)
    spec = type(fleet.vms[0]).model_validate(base | {"vgpu": [{"profile": "nvidia_l40s-7c"}]})
    vm = GpuVm("ts", GpuVmArgs(spec=spec, fleet=fleet, vcenter=LAB.vcenter, existing=True))

    def check(_urn):
        failures = mocks.check_failures["ts-gpu"]
        assert [p for p, _ in failures] == ["vm.vgpu[0].profile"]
        assert "nvidia_l40s-24c" in failures[0][1]  # says what would be valid

    return vm.devices.urn.apply(check)


@pulumi.runtime.test
def test_vgpu_mobility_sets_the_hotmigrate_setting(mocks: GraphMocks):
    mobility = VgpuMobility("mobility", VgpuMobilityArgs(vcenter=LAB.vcenter, enabled=True))

    def check(urn):
        setting = mocks.named("mobility-hotmigrate")
        assert setting.typ == "pulumi-python:dynamic/vsphere:VcenterAdvancedSetting"
        assert setting.inputs["key"] == "vgpu.hotmigrate.enabled" and setting.inputs["value"] is True
        assert _urn_parent(urn).startswith("gpufleet:vsphere:VgpuMobility$")
        assert mocks.check_failures["mobility-hotmigrate"] == []

    return mobility.setting.urn.apply(check)
