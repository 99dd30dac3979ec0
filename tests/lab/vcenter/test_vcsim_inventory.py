"""The lab vCenter over pyvmomi: verified TLS, inventory shaped by the topology, GPU host config, graphics manager."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pyVmomi import vim, vmodl
from vcsim_helpers import VcsimLab, all_of, find

from gpufleet.errors import TlsVerificationError
from lab import vcenter
from lab.gpu_catalog import LAB_GPU_MODELS
from lab.topology import CLUSTER, CONNECTX6DX_DEVICE_ID, DATACENTER, MELLANOX_VENDOR_ID, NVIDIA_VENDOR_ID

pytestmark = pytest.mark.lab


def test_pyvmomi_connects_with_lab_ca_and_sees_vcenter_8(vcsim_lab: VcsimLab, si: vim.ServiceInstance) -> None:
    about = si.RetrieveContent().about
    assert about.apiType == "VirtualCenter"
    assert about.apiVersion.startswith("8.0")


def test_server_certificate_matches_thumbprint(vcsim_lab: VcsimLab) -> None:
    pem = ssl.get_server_certificate(("127.0.0.1", vcsim_lab.port))
    assert vcenter.cert_thumbprint(pem.encode()) == vcsim_lab.tls.thumbprint
    assert len(vcsim_lab.tls.thumbprint.split(":")) == 32


def test_other_ca_is_refused(vcsim_lab: VcsimLab, tmp_path: Path) -> None:
    other = vcenter.make_lab_ca(tmp_path / "other")
    with pytest.raises(ssl.SSLCertVerificationError):
        vcsim_lab.connect(ca_file=other.ca_cert)
    # The system trust store does not know the lab CA either.
    with pytest.raises(ssl.SSLCertVerificationError):
        ssl.create_default_context().wrap_socket(
            __import__("socket").create_connection(("127.0.0.1", vcsim_lab.port), timeout=5),
            server_hostname="127.0.0.1",
        )
    admin = vcenter.LabAdmin(f"https://127.0.0.1:{vcsim_lab.port}", vcsim_lab.user, vcsim_lab.password, other.ca_cert)
    with pytest.raises(TlsVerificationError):
        admin.health()


def test_wrong_password_is_refused(vcsim_lab: VcsimLab) -> None:
    from pyVim.connect import SmartConnect

    ctx = ssl.create_default_context(cafile=str(vcsim_lab.tls.ca_cert))
    with pytest.raises(vim.fault.InvalidLogin):
        SmartConnect(host="127.0.0.1", port=vcsim_lab.port, user=vcsim_lab.user, pwd="wrong", sslContext=ctx)


def test_hosts_named_as_topology_in_gpu_cluster(vcsim_lab: VcsimLab, si: vim.ServiceInstance) -> None:
    cluster = find(si, vim.ClusterComputeResource, CLUSTER)
    assert cluster.parent.parent.name == DATACENTER
    assert sorted(h.name for h in cluster.host) == ["esxi-01.lab", "esxi-02.lab", "esxi-03.lab", "esxi-04.lab"]
    assert len(all_of(si, vim.HostSystem)) == 4
    assert [ds.name for ds in cluster.datastore] == ["datastore-lab"]


@pytest.mark.parametrize(
    "host_name, model, count", [("esxi-01.lab", "A100-80GB-PCIe", 2), ("esxi-02.lab", "H100-80GB-PCIe", 2),
                                ("esxi-03.lab", "L40S", 2), ("esxi-04.lab", "T4", 4)]
)  # fmt: skip
def test_host_pci_devices_have_real_ids(si: vim.ServiceInstance, host_name: str, model: str, count: int) -> None:
    host = find(si, vim.HostSystem, host_name)
    gpus = [d for d in host.hardware.pciDevice if d.vendorId & 0xFFFF == NVIDIA_VENDOR_ID]
    nics = [d for d in host.hardware.pciDevice if d.vendorId & 0xFFFF == MELLANOX_VENDOR_ID]
    assert len(gpus) == count
    assert {d.deviceId & 0xFFFF for d in gpus} == {LAB_GPU_MODELS[model].device_id}
    assert all(d.classId == 0x0302 and d.vendorName == "NVIDIA Corporation" for d in gpus)
    assert gpus[0].id == "0000:3b:00.0" and gpus[0].bus == 0x3B
    assert [(d.id, d.deviceId & 0xFFFF) for d in nics] == [
        ("0000:31:00.0", CONNECTX6DX_DEVICE_ID),
        ("0000:98:00.0", CONNECTX6DX_DEVICE_ID),
    ]
    passthru = {p.id: p for p in host.config.pciPassthruInfo}
    assert set(passthru) == {d.id for d in gpus + nics}
    assert all(p.passthruCapable and p.passthruActive for p in passthru.values())


def test_initial_graphics_state(si: vim.ServiceInstance) -> None:
    host = find(si, vim.HostSystem, "esxi-01.lab")
    info = host.config.graphicsInfo
    assert [g.pciId for g in info] == ["0000:3b:00.0", "0000:5e:00.0"]
    assert {(g.vendorName, g.graphicsType, g.memorySizeInKB) for g in info} == {
        ("NVIDIA Corporation", "basic", 80 << 20)
    }
    assert host.config.graphicsConfig.hostDefaultGraphicsType == "shared"
    assert host.config.graphicsConfig.sharedPassthruAssignmentPolicy == "performance"
    assert list(host.config.sharedPassthruGpuTypes) == []
    assert list(host.config.sharedGpuCapabilities) == []
    assert host.config.product.version.startswith("8.0")


def test_config_target_offers_profiles_once_driver_active(vcsim_lab: VcsimLab, si: vim.ServiceInstance) -> None:
    vm = find(si, vim.VirtualMachine, "vm-mig-01")
    host = vm.runtime.host
    before = vm.environmentBrowser.QueryConfigTarget(host=host)
    assert list(before.sharedGpuPassthroughTypes) == []
    # Passthrough entries do not depend on the vGPU driver: both A100s and both ConnectX NICs.
    assert sorted((p.pciDevice.id, p.pciDevice.deviceId & 0xFFFF) for p in before.pciPassthrough) == [
        ("0000:31:00.0", CONNECTX6DX_DEVICE_ID),
        ("0000:3b:00.0", 0x20B5),
        ("0000:5e:00.0", 0x20B5),
        ("0000:98:00.0", CONNECTX6DX_DEVICE_ID),
    ]
    assert {(d.vendorId, d.deviceId) for d in before.dynamicPassthrough} == {
        (NVIDIA_VENDOR_ID, 0x20B5),
        (MELLANOX_VENDOR_ID, CONNECTX6DX_DEVICE_ID),
    }

    vcsim_lab.admin.update_host(host.name, driverActive=True)
    after = vm.environmentBrowser.QueryConfigTarget(host=host)
    expected = vcsim_lab.topology.hosts[0].gpus[0].vgpu_profiles
    assert [t.vgpu for t in after.sharedGpuPassthroughTypes] == expected
    assert "grid_a100d-4-40c" in expected
    assert list(host.config.sharedPassthruGpuTypes) == expected
    caps = {c.vgpu: c for c in host.config.sharedGpuCapabilities}
    assert set(caps) == set(expected) and caps["grid_a100d-4-40c"].migrateSupported
    assert {g.graphicsType for g in host.config.graphicsInfo} == {"shared"}

    vcsim_lab.admin.update_host(host.name, driverActive=False)
    assert list(vm.environmentBrowser.QueryConfigTarget(host=host).sharedGpuPassthroughTypes) == []


def test_config_target_without_host_spans_the_cluster(vcsim_lab: VcsimLab, si: vim.ServiceInstance) -> None:
    vcsim_lab.admin.update_host("esxi-02.lab", driverActive=True)
    vcsim_lab.admin.update_host("esxi-04.lab", driverActive=True)
    target = find(si, vim.VirtualMachine, "vm-pt-01").environmentBrowser.QueryConfigTarget()
    profiles = {t.vgpu for t in target.sharedGpuPassthroughTypes}
    assert "grid_h100-4-40c" in profiles and "grid_t4-16c" in profiles
    assert not any(p.startswith("grid_a100") for p in profiles)  # esxi-01 has no driver


def test_update_graphics_config(vcsim_lab: VcsimLab, si: vim.ServiceInstance) -> None:
    host = find(si, vim.HostSystem, "esxi-02.lab")
    gm = host.configManager.graphicsManager
    assert gm.graphicsConfig.hostDefaultGraphicsType == "shared"
    gm.UpdateGraphicsConfig(
        vim.host.GraphicsConfig(hostDefaultGraphicsType="sharedDirect", sharedPassthruAssignmentPolicy="consolidation")
    )
    assert host.config.graphicsConfig.hostDefaultGraphicsType == "sharedDirect"
    assert gm.graphicsConfig.sharedPassthruAssignmentPolicy == "consolidation"
    view = vcsim_lab.admin.host("esxi-02.lab")
    assert (view["graphicsType"], view["assignmentPolicy"]) == ("sharedDirect", "consolidation")
    # The driver is not loaded: GPUs stay "basic" until it is, then run the configured type.
    assert {g.graphicsType for g in gm.graphicsInfo} == {"basic"}
    vcsim_lab.admin.update_host("esxi-02.lab", driverActive=True)
    assert {g.graphicsType for g in host.config.graphicsInfo} == {"sharedDirect"}
    assert gm.IsSharedGraphicsActive() is True

    with pytest.raises(vmodl.fault.InvalidArgument) as err:
        gm.UpdateGraphicsConfig(vim.host.GraphicsConfig(hostDefaultGraphicsType="direct"))
    assert err.value.invalidProperty == "config.hostDefaultGraphicsType"
    assert host.config.graphicsConfig.hostDefaultGraphicsType == "sharedDirect"


def test_admin_graphics_change_visible_to_pyvmomi(vcsim_lab: VcsimLab, si: vim.ServiceInstance) -> None:
    host = find(si, vim.HostSystem, "esxi-03.lab")
    vcsim_lab.admin.update_host("esxi-03.lab", graphicsType="sharedDirect", assignmentPolicy="consolidation")
    assert host.config.graphicsConfig.hostDefaultGraphicsType == "sharedDirect"
    assert host.configManager.graphicsManager.graphicsConfig.sharedPassthruAssignmentPolicy == "consolidation"


def test_pci_passthru_toggle(vcsim_lab: VcsimLab, si: vim.ServiceInstance) -> None:
    host = find(si, vim.HostSystem, "esxi-04.lab")
    pts = host.configManager.pciPassthruSystem
    try:
        pts.UpdatePassthruConfig([vim.host.PciPassthruConfig(id="0000:98:00.0", passthruEnabled=False)])
        info = {p.id: p.passthruActive for p in host.config.pciPassthruInfo}
        assert info["0000:98:00.0"] is False and info["0000:31:00.0"] is True
        target = find(si, vim.VirtualMachine, "tpl-ubuntu2204-gpu").environmentBrowser.QueryConfigTarget(host=host)
        assert "0000:98:00.0" not in {p.pciDevice.id for p in target.pciPassthrough}
        with pytest.raises(vmodl.fault.InvalidArgument):
            pts.UpdatePassthruConfig([vim.host.PciPassthruConfig(id="0000:ff:00.0", passthruEnabled=True)])
    finally:
        pts.UpdatePassthruConfig([vim.host.PciPassthruConfig(id="0000:98:00.0", passthruEnabled=True)])
    assert {p.id: p.passthruActive for p in host.config.pciPassthruInfo}["0000:98:00.0"] is True


def test_vms_and_template_on_their_hosts(vcsim_lab: VcsimLab, si: vim.ServiceInstance) -> None:
    vms = {vm.name: vm for vm in all_of(si, vim.VirtualMachine)}
    assert set(vms) == {v.name for v in vcsim_lab.topology.vms}
    for v in vcsim_lab.topology.vms:
        vm = vms[v.name]
        assert vm.runtime.host.name == v.host
        assert vm.config.template is v.template
        assert (vm.config.hardware.numCPU, vm.config.hardware.memoryMB) == (v.num_cpus, v.memory_mb)
        assert vm.config.firmware == "efi" and vm.config.version == "vmx-20"
        assert vm.runtime.powerState == ("poweredOff" if v.template else v.power_state)
    # The persona VMs run, like a deployed fleet's, and report their guest persona's address.
    for g in vcsim_lab.topology.guests:
        assert vms[g.name].runtime.powerState == "poweredOn", g.name
        assert vms[g.name].guest.ipAddress == g.address, g.name
