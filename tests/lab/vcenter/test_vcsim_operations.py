"""Operations the product performs on the lab vCenter: maintenance mode, VM GPU reconfigure, licences, settings,
and the /lab/ admin endpoints agreeing with pyvmomi both ways."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyVim.task import WaitForTask
from pyVmomi import vim, vmodl
from vcsim_helpers import VcsimLab, find

from gpufleet.errors import ConnectError
from lab import vcenter

pytestmark = pytest.mark.lab

Pci = vim.vm.device.VirtualPCIPassthrough


def _add(*devices: vim.vm.device.VirtualDevice) -> list[vim.vm.device.VirtualDeviceSpec]:
    return [vim.vm.device.VirtualDeviceSpec(operation="add", device=d) for d in devices]


def _opts(**kv: str) -> list[vim.option.OptionValue]:
    return [vim.option.OptionValue(key=k.replace("__", "."), value=v) for k, v in kv.items()]


def test_maintenance_mode_round_trip(vcsim_lab: VcsimLab, si: vim.ServiceInstance) -> None:
    host = find(si, vim.HostSystem, "esxi-01.lab")
    WaitForTask(host.EnterMaintenanceMode_Task(timeout=0))
    assert host.runtime.inMaintenanceMode is True
    assert vcsim_lab.admin.host("esxi-01.lab")["inMaintenanceMode"] is True
    WaitForTask(host.ExitMaintenanceMode_Task(timeout=0))
    assert vcsim_lab.admin.host("esxi-01.lab")["inMaintenanceMode"] is False
    # and the other way: the ESXi side (esxcli) flips it, vCenter shows it
    vcsim_lab.admin.update_host("esxi-01.lab", inMaintenanceMode=True)
    assert host.runtime.inMaintenanceMode is True and host.summary.runtime.inMaintenanceMode is True


def test_connection_state_from_admin(vcsim_lab: VcsimLab, si: vim.ServiceInstance) -> None:
    host = find(si, vim.HostSystem, "esxi-02.lab")
    view = vcsim_lab.admin.update_host("esxi-02.lab", connectionState="notResponding")
    assert view["connectionState"] == "notResponding"
    assert host.runtime.connectionState == "notResponding"
    vcsim_lab.admin.update_host("esxi-02.lab", connectionState="connected")
    assert host.runtime.connectionState == "connected"


def test_admin_rejects_bad_input_before_changing_anything(vcsim_lab: VcsimLab) -> None:
    with pytest.raises(vcenter.LabAdminError, match="connectionState.*valid values: connected, notResponding"):
        vcsim_lab.admin.update_host("esxi-01.lab", driverActive=True, connectionState="gone")
    assert vcsim_lab.admin.host("esxi-01.lab")["driverActive"] is False  # nothing applied
    with pytest.raises(vcenter.LabAdminError, match="driverActive"):
        vcsim_lab.admin._request("POST", "/lab/hosts/esxi-01.lab", {"driverActive": "yes"})
    with pytest.raises(vcenter.LabAdminError, match="unknown field.*bogus"):
        vcsim_lab.admin._request("POST", "/lab/hosts/esxi-01.lab", {"bogus": 1})
    with pytest.raises(vcenter.LabAdminError, match="unknown field"):
        vcsim_lab.admin.update_host("esxi-01.lab", nope=True)
    with pytest.raises(vcenter.LabNotFound, match="esxi-99.lab"):
        vcsim_lab.admin.host("esxi-99.lab")
    with pytest.raises(LookupError):
        vcsim_lab.admin.vm("no-such-vm")
    assert vcsim_lab.admin.hosts() == ["esxi-01.lab", "esxi-02.lab", "esxi-03.lab", "esxi-04.lab"]


def test_admin_needs_credentials(vcsim_lab: VcsimLab) -> None:
    anon = vcenter.LabAdmin(f"https://127.0.0.1:{vcsim_lab.port}", vcsim_lab.user, "wrong", vcsim_lab.tls.ca_cert)
    with pytest.raises(vcenter.LabAdminError, match="HTTP 401"):
        anon.host("esxi-01.lab")
    assert "wrong" not in repr(anon)


def test_vgpu_passthrough_pvrdma_reconfigure_reads_back(vcsim_lab: VcsimLab, si: vim.ServiceInstance) -> None:
    vm = find(si, vim.VirtualMachine, "vm-rdma-01")
    host = vm.runtime.host
    vgpu = Pci(key=-1, backing=Pci.VmiopBackingInfo(vgpu="grid_a100d-4-40c"))
    dynamic = Pci(
        key=-2,
        backing=Pci.DynamicBackingInfo(
            deviceName="", allowedDevice=[Pci.AllowedDevice(vendorId=0x10DE, deviceId=0x2331)], customLabel="h100"
        ),
    )
    fixed = Pci(
        key=-3,
        backing=Pci.DeviceBackingInfo(
            id="0000:31:00.0", deviceId="101d", vendorId=0x15B3, systemId=host.hardware.systemInfo.uuid, deviceName=""
        ),
    )
    rdma = vim.vm.device.VirtualVmxnet3Vrdma(
        key=-4,
        deviceProtocol="rocev2",
        backing=vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(deviceName="VM Network"),
    )
    spec = vim.vm.ConfigSpec(
        deviceChange=_add(vgpu, dynamic, fixed, rdma),
        extraConfig=_opts(pciPassthru__use64bitMMIO="TRUE", pciPassthru__64bitMMIOSizeGB="128"),
    )
    WaitForTask(vm.ReconfigVM_Task(spec))

    devices = vm.config.hardware.device
    pcis = [d for d in devices if isinstance(d, Pci)]
    assert [type(d.backing) for d in pcis] == [Pci.VmiopBackingInfo, Pci.DynamicBackingInfo, Pci.DeviceBackingInfo]
    assert pcis[0].backing.vgpu == "grid_a100d-4-40c"
    assert [(a.vendorId, a.deviceId) for a in pcis[1].backing.allowedDevice] == [(0x10DE, 0x2331)]
    assert pcis[1].backing.customLabel == "h100"
    assert (pcis[2].backing.id, pcis[2].backing.deviceId, pcis[2].backing.vendorId) == ("0000:31:00.0", "101d", 0x15B3)
    vrdma = [d for d in devices if isinstance(d, vim.vm.device.VirtualVmxnet3Vrdma)]
    assert len(vrdma) == 1 and vrdma[0].deviceProtocol == "rocev2"
    extra = {o.key: o.value for o in vm.config.extraConfig}
    assert extra["pciPassthru.use64bitMMIO"] == "TRUE" and extra["pciPassthru.64bitMMIOSizeGB"] == "128"

    view = vcsim_lab.admin.vm("vm-rdma-01")
    assert view["host"] == "esxi-02.lab" and view["vgpus"] == ["grid_a100d-4-40c"]
    assert view["passthrough"] == [
        {"id": "", "vendorId": 0x10DE, "deviceId": 0x2331, "dynamic": True},
        {"id": "0000:31:00.0", "vendorId": 0x15B3, "deviceId": 0x101D, "dynamic": False},
    ]
    assert {"type": "vmxnet3vrdma", "deviceProtocol": "rocev2"}.items() <= view["nics"][-1].items()
    assert view["extraConfig"]["pciPassthru.64bitMMIOSizeGB"] == "128"

    # remove the vGPU again: both faces agree
    WaitForTask(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[
        vim.vm.device.VirtualDeviceSpec(operation="remove", device=pcis[0])])))  # fmt: skip
    assert vcsim_lab.admin.vm("vm-rdma-01")["vgpus"] == []
    assert not any(isinstance(d.backing, Pci.VmiopBackingInfo) for d in vm.config.hardware.device if isinstance(d, Pci))


def test_extra_config_replaces_and_deletes_keys(vcsim_lab: VcsimLab, si: vim.ServiceInstance) -> None:
    vm = find(si, vim.VirtualMachine, "vm-ts-01")
    WaitForTask(vm.ReconfigVM_Task(vim.vm.ConfigSpec(extraConfig=_opts(pciPassthru__allowP2P="true", a__b="1"))))
    WaitForTask(vm.ReconfigVM_Task(vim.vm.ConfigSpec(extraConfig=_opts(a__b="2", pciPassthru__allowP2P=""))))
    keys = [o.key for o in vm.config.extraConfig]
    assert len(keys) == len(set(keys)), keys  # vSphere replaces a key's value (no duplicate)
    extra = {o.key: o.value for o in vm.config.extraConfig}
    assert extra["a.b"] == "2" and "pciPassthru.allowP2P" not in extra
    assert vcsim_lab.admin.vm("vm-ts-01")["extraConfig"]["a.b"] == "2"


def test_power_on_assigns_dynamic_device_and_guest_address(vcsim_lab: VcsimLab, si: vim.ServiceInstance) -> None:
    vm = find(si, vim.VirtualMachine, "vm-pt-01")
    if vm.runtime.powerState == "poweredOn":  # the persona VMs start poweredOn: this test powers it on itself
        WaitForTask(vm.PowerOffVM_Task())
    dynamic = Pci(
        key=-1,
        backing=Pci.DynamicBackingInfo(
            deviceName="", allowedDevice=[Pci.AllowedDevice(vendorId=0x10DE, deviceId=0x2331)]
        ),
    )
    WaitForTask(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=_add(dynamic))))
    task = vm.PowerOnVM_Task()
    WaitForTask(task)
    # vCenter names a task's method as the SOAP API does (pyVim's WaitForTask resolves it while the task runs)
    assert task.info.name.info.wsdlName == "PowerOnVM_Task"
    try:
        [dev] = [d for d in vm.config.hardware.device if isinstance(d, Pci)]
        assert dev.backing.assignedId == "0000:3b:00.0"  # the first H100 on esxi-02
        assert vm.guest.ipAddress == "127.0.100.13"  # the vm-pt-01 guest persona
        view = vcsim_lab.admin.vm("vm-pt-01")
        assert view["powerState"] == "poweredOn"
        assert view["passthrough"] == [{"id": "0000:3b:00.0", "vendorId": 0x10DE, "deviceId": 0x2331, "dynamic": True}]
    finally:
        WaitForTask(vm.PowerOffVM_Task())
    assert vcsim_lab.admin.vm("vm-pt-01")["passthrough"][0]["id"] == ""
    assert vm.guest.ipAddress in (None, "")  # powered off: no guest address
    [dev] = [d for d in vm.config.hardware.device if isinstance(d, Pci)]
    WaitForTask(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[vim.vm.device.VirtualDeviceSpec(
        operation="remove", device=dev)])))  # fmt: skip
    WaitForTask(vm.PowerOnVM_Task())  # back as the lab starts it


def test_licence_add_and_assign(vcsim_lab: VcsimLab, si: vim.ServiceInstance) -> None:
    content = si.RetrieveContent()
    lm = content.licenseManager
    key = "J0A2H-8KJ92-08Y8N-0A1AH-2QJQ4"
    info = lm.AddLicense(licenseKey=key)
    assert info.licenseKey == key
    assert key in [lic.licenseKey for lic in lm.licenses]
    with pytest.raises(vim.fault.InvalidLicense):
        lm.AddLicense(licenseKey="not-a-key")

    host = find(si, vim.HostSystem, "esxi-03.lab")
    lam = lm.licenseAssignmentManager
    assigned = lam.UpdateAssignedLicense(entity=host._moId, licenseKey=key)
    assert assigned.licenseKey == key
    [row] = lam.QueryAssignedLicenses(entityId=host._moId)
    assert (row.entityId, row.assignedLicense.licenseKey, row.entityDisplayName) == (host._moId, key, "esxi-03.lab")
    others = {r.entityId: r.assignedLicense.licenseKey for r in lam.QueryAssignedLicenses()}
    assert others[host._moId] == key
    assert others[content.about.instanceUuid] == "00000-00000-00000-00000-00000"  # vCenter still on evaluation
    with pytest.raises(vim.fault.LicenseEntityNotFound):
        lam.UpdateAssignedLicense(entity="host-does-not-exist", licenseKey=key)
    with pytest.raises(vim.fault.InvalidLicense):
        lam.UpdateAssignedLicense(entity=host._moId, licenseKey="AAAAA-BBBBB-CCCCC-DDDDD-EEEEE")


def test_vcenter_advanced_setting_round_trip(si: vim.ServiceInstance) -> None:
    setting = si.RetrieveContent().setting
    [opt] = setting.QueryOptions("vgpu.hotmigrate.enabled")
    assert opt.value is False
    setting.UpdateOptions(changedValue=[vim.option.OptionValue(key="vgpu.hotmigrate.enabled", value=True)])
    try:
        [opt] = setting.QueryOptions("vgpu.hotmigrate.enabled")
        assert opt.value is True
        assert any(o.key == "vgpu.hotmigrate.enabled" and o.value is True for o in setting.setting)
    finally:
        setting.UpdateOptions(changedValue=[vim.option.OptionValue(key="vgpu.hotmigrate.enabled", value=False)])


def test_unknown_setting_name_is_a_fault(si: vim.ServiceInstance) -> None:
    with pytest.raises(vim.fault.InvalidName):
        si.RetrieveContent().setting.QueryOptions("no.such.setting")


def test_clone_keeps_source_extra_config(vcsim_lab: VcsimLab, si: vim.ServiceInstance) -> None:
    src = find(si, vim.VirtualMachine, "vm-mig-01")
    WaitForTask(src.ReconfigVM_Task(vim.vm.ConfigSpec(extraConfig=_opts(numa__nodeAffinity="0"))))
    config = vim.vm.ConfigSpec(extraConfig=_opts(pciPassthru__allowP2P="true"), numCPUs=6, memoryMB=24576)
    spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(), config=config)
    WaitForTask(src.CloneVM_Task(folder=src.parent, name="vm-mig-01-clone", spec=spec), si=si)
    clone = find(si, vim.VirtualMachine, "vm-mig-01-clone")
    try:
        extra = {o.key: o.value for o in clone.config.extraConfig}
        assert extra["numa.nodeAffinity"] == "0" and extra["pciPassthru.allowP2P"] == "true"
        assert clone.config.firmware == "efi" and clone.config.version == src.config.version == "vmx-20"
        assert (clone.config.hardware.numCPU, clone.config.hardware.memoryMB) == (6, 24576)  # the clone spec's
        assert (clone.summary.config.numCpu, clone.summary.config.memorySizeMB) == (6, 24576)
        assert vcsim_lab.admin.vm("vm-mig-01-clone")["extraConfig"]["numa.nodeAffinity"] == "0"
    finally:
        WaitForTask(clone.Destroy_Task())
    with pytest.raises(vmodl.fault.ManagedObjectNotFound):
        _ = clone.name
    # without CPUs/memory in the clone spec, the clone has the source's
    bare = vim.vm.CloneSpec(location=vim.vm.RelocateSpec())
    WaitForTask(src.CloneVM_Task(folder=src.parent, name="vm-mig-01-clone2", spec=bare))
    clone = find(si, vim.VirtualMachine, "vm-mig-01-clone2")
    try:
        hw = (clone.config.hardware.numCPU, clone.config.hardware.memoryMB)
        assert hw == (src.config.hardware.numCPU, src.config.hardware.memoryMB) == (8, 65536)
        assert {o.key: o.value for o in clone.config.extraConfig}["numa.nodeAffinity"] == "0"
    finally:
        WaitForTask(clone.Destroy_Task())


def test_lab_admin_without_arguments_reads_the_lab_env_file(
    vcsim_lab: VcsimLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUFLEET_LAB_DIR", str(tmp_path))
    with pytest.raises(ConnectError, match="no running lab"):
        vcenter.LabAdmin()
    vc = {
        "url": f"https://127.0.0.1:{vcsim_lab.port}/sdk",
        "host": "127.0.0.1",
        "port": vcsim_lab.port,
        "user": vcsim_lab.user,
        "password": vcsim_lab.password,
        "ca_file": str(vcsim_lab.tls.ca_cert),
        "thumbprint": vcsim_lab.tls.thumbprint,
    }
    (tmp_path / "env.json").write_text(json.dumps({"vcenter": vc}))
    admin = vcenter.LabAdmin()
    assert admin.health() == {"ok": True, "pid": vcsim_lab.pid}
    assert admin.vm("tpl-ubuntu2204-gpu")["template"] is True
