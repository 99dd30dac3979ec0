"""``VcenterAdvancedSetting`` and ``VmTemplateMark`` through Pulumi's dynamic provider server against the lab."""

from __future__ import annotations

import pytest
from dynamic_server import DIFF_NONE, DIFF_SOME, DynamicProviderServer, urn, with_provider
from private_lab import PrivateLab
from pyVmomi import vim

from components.providers.template_mark import VmTemplateMarkProvider
from components.providers.vcenter_setting import VcenterAdvancedSettingProvider
from gpufleet.vsphere.settings import VGPU_HOTMIGRATE, read_setting, write_setting

pytestmark = pytest.mark.lab


def test_vgpu_hotmigrate_setting_lifecycle(server: DynamicProviderServer, prov_lab: PrivateLab) -> None:
    u = urn("VcenterAdvancedSetting", "hotmigrate")
    with prov_lab.session() as si:
        write_setting(si, VGPU_HOTMIGRATE, False)  # the state this test starts from
    news = with_provider(
        VcenterAdvancedSettingProvider(), {"vcenter": prov_lab.vcenter_spec(), "key": VGPU_HOTMIGRATE, "value": True}
    )
    checked, failures = server.check(u, {}, news)
    assert failures == []
    created = server.create(u, checked)
    assert created.id == VGPU_HOTMIGRATE
    assert created.outs["actual"] == "true" and created.outs["previous"] == "false"
    with prov_lab.session() as si:
        assert read_setting(si, VGPU_HOTMIGRATE) == "true"

    read = server.read(u, created.id, created.outs)
    assert read.outs["actual"] == "true"
    assert server.diff(u, created.id, read.outs, news).changes == DIFF_NONE

    off = news | {"value": False}
    assert server.diff(u, created.id, read.outs, off).changes == DIFF_SOME
    updated = server.update(u, created.id, read.outs, off)
    assert updated["actual"] == "false" and updated["previous"] == "false"

    with prov_lab.session() as si:  # drift: someone turns it back on in the vSphere Client
        write_setting(si, VGPU_HOTMIGRATE, True)
    drifted = server.read(u, created.id, updated)
    assert drifted.outs["actual"] == "true"
    assert server.diff(u, created.id, drifted.outs, off).changes == DIFF_SOME

    other_key = server.diff(u, created.id, drifted.outs, off | {"key": "config.vpxd.x"})
    assert list(other_key.replaces) == ["key"]

    server.delete(u, created.id, drifted.outs)  # puts back what was there before the resource
    with prov_lab.session() as si:
        assert read_setting(si, VGPU_HOTMIGRATE) == "false"

    bad = news | {"key": "not a key"}
    assert [p for p, _ in server.check(u, {}, bad)[1]] == ["key"]


def test_template_mark_lifecycle(server: DynamicProviderServer, prov_lab: PrivateLab, lab_vms: list[str]) -> None:
    u = urn("VmTemplateMark", "tpl-mark")
    with prov_lab.session() as si:
        vm = prov_lab.clone_vm(si, "esxi-01.lab")
        name, uuid = vm.name, vm.config.uuid
        lab_vms.append(name)
    news = with_provider(
        VmTemplateMarkProvider(),
        {"vcenter": prov_lab.vcenter_spec(), "datacenter": "DC-Lab", "vmName": name, "vmUuid": uuid},
    )
    assert server.check(u, {}, news)[1] == []
    created = server.create(u, news)
    assert created.id == uuid and created.outs["isTemplate"] is True
    with prov_lab.session() as si:
        assert prov_lab.find(si, vim.VirtualMachine, name).config.template is True
    read = server.read(u, uuid, created.outs)
    assert read.outs["isTemplate"] is True
    assert server.diff(u, uuid, read.outs, news).changes == DIFF_NONE

    with prov_lab.session() as si:  # drift: converted back to a VM by hand
        vm = prov_lab.find(si, vim.VirtualMachine, name)
        vm.MarkAsVirtualMachine(pool=vm.runtime.host.parent.resourcePool, host=vm.runtime.host)
    drifted = server.read(u, uuid, created.outs)
    assert drifted.outs["isTemplate"] is False
    assert server.diff(u, uuid, drifted.outs, news).changes == DIFF_SOME
    assert server.update(u, uuid, drifted.outs, news)["isTemplate"] is True

    server.delete(u, uuid, created.outs)
    with prov_lab.session() as si:
        assert prov_lab.find(si, vim.VirtualMachine, name).config.template is False  # a VM again, not deleted
    with prov_lab.session() as si:
        prov_lab.destroy_vm(si, name)
    assert server.read(u, uuid, created.outs).id == ""  # the VM is gone: so is the mark


def test_host_license_assignment_lifecycle(server: DynamicProviderServer, prov_lab: PrivateLab) -> None:
    from components.providers.host_license import HostLicenseAssignmentProvider
    from gpufleet.vsphere.licenses import EVALUATION_KEY, assign_license, assigned_license

    u = urn("HostLicenseAssignment", "esxi-04")
    key1, key2 = "AAAAA-BBBBB-CCCCC-DDDDD-E5KY1", "AAAAA-BBBBB-CCCCC-DDDDD-E5KY2"
    news = with_provider(
        HostLicenseAssignmentProvider(),
        {"vcenter": prov_lab.vcenter_spec(), "datacenter": "DC-Lab", "host": "esxi-04.lab", "licenseKey": key1},
    )
    bad = server.check(u, {}, news | {"licenseKey": "nope"})[1]
    assert bad == [("licenseKey", "not a vSphere licence key (five groups of five letters/digits)")]
    assert server.check(u, {}, news)[1] == []

    created = server.create(u, news)
    assert created.outs["assignedFingerprint"] == "*****-*****-*****-*****-E5KY1"
    assert created.outs["previous"] == EVALUATION_KEY
    host_id = created.id
    with prov_lab.session() as si:
        host = prov_lab.find(si, vim.HostSystem, "esxi-04.lab")
        assert host._moId == host_id and assigned_license(si, host).key == key1

    read = server.read(u, host_id, created.outs)
    assert server.diff(u, host_id, read.outs, news).changes == DIFF_NONE
    updated = server.update(u, host_id, read.outs, news | {"licenseKey": key2})
    assert updated["assignedFingerprint"].endswith("E5KY2") and updated["previous"] == EVALUATION_KEY

    with prov_lab.session() as si:  # drift: an operator assigns another key
        assign_license(si, prov_lab.find(si, vim.HostSystem, "esxi-04.lab"), key1)
    drifted = server.read(u, host_id, updated)
    assert drifted.outs["assignedFingerprint"].endswith("E5KY1")
    assert server.diff(u, host_id, drifted.outs, news | {"licenseKey": key2}).changes == DIFF_SOME
    repaired = server.update(u, host_id, drifted.outs, news | {"licenseKey": key2})

    server.delete(u, host_id, repaired)
    with prov_lab.session() as si:
        assert assigned_license(si, prov_lab.find(si, vim.HostSystem, "esxi-04.lab")).key == EVALUATION_KEY
