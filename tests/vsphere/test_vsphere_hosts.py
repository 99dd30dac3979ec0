"""gpufleet.vsphere connect / tasks / hosts / fields against a private copy of the lab's vCenter (vcsim over
verified TLS): maintenance with evacuation, the capacity refusal, the GPU VM rules, custom attributes.

Private (one vcsim per test module) because these tests move VMs and put hosts in maintenance."""

from __future__ import annotations

import dataclasses
import secrets
import socket
import ssl
import time
from collections.abc import Iterator

import pytest
from pyVmomi import vim

from gpufleet.connections import Secret, VcenterSettings
from gpufleet.errors import SpecError, TaskError, TlsVerificationError
from gpufleet.vsphere import fields, hosts
from gpufleet.vsphere.connect import connect
from gpufleet.vsphere.inventory import find_by_name
from gpufleet.vsphere.tasks import wait_for_task

pytestmark = pytest.mark.lab

USER = "administrator@lab.local"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def vcenter_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VcenterSettings]:
    try:
        from lab import vcenter
        from lab.topology import build_topology, write_topology
    except ImportError as exc:  # the lab package is part of this repository; only a broken checkout lacks it
        pytest.skip(f"the lab's vCenter is not available: {exc}")
    work = tmp_path_factory.mktemp("hosts-vc")
    binary = vcenter.build_vcsim()
    tls = vcenter.make_lab_ca(work / "tls")
    # The lab's persona VMs start poweredOn; here they are off, so each test's evacuation sees only its own VMs.
    lab = build_topology()
    lab.vms = [dataclasses.replace(v, power_state="poweredOff") for v in lab.vms]
    topology = write_topology(lab, work / "topology.json")
    password = secrets.token_urlsafe(16)
    port = _free_port()
    proc = vcenter.start_vcsim(binary, topology, tls, port, USER, password, work / "vcsim.log", timeout=90)
    try:
        yield VcenterSettings("127.0.0.1", port, USER, Secret(password), ca_file=tls.ca_cert, thumbprint=None)
    finally:
        vcenter.stop_vcsim(proc.pid)
        proc.wait(timeout=15)


@pytest.fixture
def si(vcenter_settings: VcenterSettings) -> Iterator[vim.ServiceInstance]:
    with connect(vcenter_settings) as service:
        yield service


def _thumbprint(settings: VcenterSettings) -> str:
    from lab.vcenter import cert_thumbprint

    return cert_thumbprint(ssl.get_server_certificate((settings.host, settings.port)).encode())


def test_connect_with_the_ca_bundle_and_with_a_pinned_thumbprint(vcenter_settings: VcenterSettings) -> None:
    with connect(vcenter_settings) as si:
        assert si.RetrieveContent().about.apiType == "VirtualCenter"
    pinned = VcenterSettings(
        vcenter_settings.host,
        vcenter_settings.port,
        USER,
        vcenter_settings.password,
        thumbprint=_thumbprint(vcenter_settings),
    )
    with connect(pinned) as si:
        assert si.RetrieveContent().rootFolder is not None
    wrong = VcenterSettings(
        vcenter_settings.host, vcenter_settings.port, USER, vcenter_settings.password, thumbprint="AB:" * 31 + "AB"
    )
    with pytest.raises(TlsVerificationError, match="not the pinned"), connect(wrong):
        pass


def test_unknown_host_lists_the_known_ones(si: vim.ServiceInstance) -> None:
    with pytest.raises(
        SpecError, match=r"esxi-77.lab: no HostSystem of this name in vCenter \(valid: esxi-01.lab, esxi-02.lab"
    ):
        hosts.find_host(si, "esxi-77.lab")


def test_task_failure_is_a_typed_task_error(si: vim.ServiceInstance) -> None:
    vm = find_by_name(si, vim.VirtualMachine, "vm-ts-01")
    was_on = vm.runtime.powerState == "poweredOn"  # the lab's persona VMs start poweredOn
    if not was_on:
        wait_for_task(vm.PowerOnVM_Task(), what="power on vm-ts-01", timeout=60)
    try:
        with pytest.raises(TaskError) as err:
            wait_for_task(vm.PowerOnVM_Task(), what="power on vm-ts-01 again", timeout=60)
        assert err.value.fault == "InvalidPowerState"
        assert "power on vm-ts-01 again failed" in str(err.value)
        assert isinstance(err.value.__cause__, vim.fault.InvalidPowerState)
    finally:
        if not was_on:
            wait_for_task(vm.PowerOffVM_Task(), what="power off vm-ts-01", timeout=60)


def _powered_on_vm(si: vim.ServiceInstance, host: str, name: str, memory_mb: int = 16384) -> vim.VirtualMachine:
    """A fresh powered-on VM on ``host`` (cloned from the lab template)."""
    template = find_by_name(si, vim.VirtualMachine, "tpl-ubuntu2204-gpu")
    target = hosts.find_host(si, host)
    where = vim.vm.RelocateSpec(host=target, pool=target.parent.resourcePool)
    wait_for_task(
        template.CloneVM_Task(folder=template.parent, name=name, spec=vim.vm.CloneSpec(location=where, powerOn=False)),
        what="clone",
        timeout=120,
    )
    vm = find_by_name(si, vim.VirtualMachine, name)
    if vm.runtime.host != target:
        wait_for_task(vm.RelocateVM_Task(spec=where), what="relocate", timeout=120)
    wait_for_task(vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(memoryMB=memory_mb)), what="memory", timeout=60)
    wait_for_task(vm.PowerOnVM_Task(), what="power on", timeout=60)
    return vm


def _cleanup(si: vim.ServiceInstance, *vms: vim.VirtualMachine) -> None:
    for vm in vms:
        if vm.runtime.powerState == "poweredOn":
            wait_for_task(vm.PowerOffVM_Task(), what="off", timeout=60)
        wait_for_task(vm.Destroy_Task(), what="destroy", timeout=60)


def test_enter_maintenance_moves_powered_on_vms_then_exit(si: vim.ServiceInstance) -> None:
    host = hosts.find_host(si, "esxi-03.lab")
    vm = _powered_on_vm(si, "esxi-03.lab", "hs-evac-1")
    try:
        plan = hosts.evacuation_plan(si, host)
        assert [m.vm_name for m in plan] == ["hs-evac-1"] and plan[0].target_name != "esxi-03.lab"
        moves = hosts.enter_maintenance(si, host, timeout=120)
        assert [m.vm_name for m in moves] == ["hs-evac-1"]
        assert vm.runtime.host.name == moves[0].target_name
        assert hosts.host_state(si, host).in_maintenance
        assert hosts.enter_maintenance(si, host, timeout=120) == []  # already in: nothing to do
        assert hosts.exit_maintenance(si, host, timeout=120) is True
        assert not hosts.host_state(si, host).in_maintenance
        assert hosts.exit_maintenance(si, host, timeout=120) is False
    finally:
        _cleanup(si, vm)


def test_host_prepare_api_moves_evacuated_vms_back_on_exit(si: vim.ServiceInstance) -> None:
    """The spec pins VMs to hosts and ``vms apply`` does not move them: host preparation puts back what it moved,
    to the host they first left (here esxi-03 -> refuge -> refuge in maintenance too -> esxi-03)."""
    from gpufleet.hosts.vcenter import VsphereHostApi

    api = VsphereHostApi(si)
    vm = _powered_on_vm(si, "esxi-03.lab", "hs-home-1")
    try:
        [line] = api.enter_maintenance("esxi-03.lab", timeout=120, allow_vgpu_vmotion=False)
        refuge = vm.runtime.host.name
        assert line == f"hs-home-1 -> {refuge}" and refuge != "esxi-03.lab"
        api.enter_maintenance(refuge, timeout=120, allow_vgpu_vmotion=False)  # moves it on again
        assert vm.runtime.host.name not in ("esxi-03.lab", refuge)
        assert api.exit_maintenance(refuge, timeout=120) is True
        assert vm.runtime.host.name not in ("esxi-03.lab", refuge)  # its home is esxi-03, still in maintenance
        assert api.exit_maintenance("esxi-03.lab", timeout=120) is True
        assert vm.runtime.host.name == "esxi-03.lab" and vm.runtime.powerState == "poweredOn"
    finally:
        for name in ("esxi-03.lab", *(h.name for h in hosts_in_maintenance(si))):
            hosts.exit_maintenance(si, hosts.find_host(si, name), timeout=60)
        _cleanup(si, vm)


def test_a_vm_moved_then_stopped_on_its_refuge_goes_home_cold_and_runs_again(si: vim.ServiceInstance) -> None:
    """esxi-03 -> refuge; the refuge enters maintenance too and the VM can go nowhere else, so it is powered off
    there; esxi-03 leaves first: the VM goes home cold; the refuge leaves: the VM is powered on (at home)."""
    from gpufleet.hosts.vcenter import VsphereHostApi

    api = VsphereHostApi(si)
    vm = _powered_on_vm(si, "esxi-03.lab", "hs-chain-1")
    others: list[vim.HostSystem] = []
    try:
        api.enter_maintenance("esxi-03.lab", timeout=120, allow_vgpu_vmotion=False)
        refuge = vm.runtime.host.name
        others = [h for h in hosts_all(si) if h.name not in ("esxi-03.lab", refuge)]
        for h in others:
            hosts.enter_maintenance(si, h, timeout=60)
        assert api.enter_maintenance(
            refuge, timeout=120, allow_vgpu_vmotion=False, may_power_off=frozenset({"hs-chain-1"})
        ) == ["hs-chain-1 powered off"]
        assert api.exit_maintenance("esxi-03.lab", timeout=120) is True
        assert vm.runtime.host.name == "esxi-03.lab" and vm.runtime.powerState == "poweredOff"
        assert api.exit_maintenance(refuge, timeout=120) is True
        assert vm.runtime.host.name == "esxi-03.lab" and vm.runtime.powerState == "poweredOn"
    finally:
        for h in hosts_all(si):
            hosts.exit_maintenance(si, h, timeout=60)
        _cleanup(si, vm)


def hosts_all(si: vim.ServiceInstance) -> list[vim.HostSystem]:
    return [hosts.find_host(si, f"esxi-0{i}.lab") for i in range(1, 5)]


def hosts_in_maintenance(si: vim.ServiceInstance) -> list[vim.HostSystem]:
    return [h for h in (hosts.find_host(si, f"esxi-0{i}.lab") for i in range(1, 5)) if h.runtime.inMaintenanceMode]


def test_refused_when_the_cluster_cannot_absorb_the_vms(si: vim.ServiceInstance) -> None:
    big = _powered_on_vm(si, "esxi-04.lab", "hs-big-1", memory_mb=4 * 1024 * 1024)  # 4 TB: fits nowhere else
    try:
        with pytest.raises(
            hosts.EvacuationRefused, match=r"esxi-04.lab: the cluster cannot absorb.*hs-big-1 needs 4194304 MB"
        ):
            hosts.enter_maintenance(si, hosts.find_host(si, "esxi-04.lab"), timeout=60)
        assert not hosts.host_state(si, hosts.find_host(si, "esxi-04.lab")).in_maintenance
        assert big.runtime.host.name == "esxi-04.lab"
    finally:
        _cleanup(si, big)


def test_other_hosts_in_maintenance_are_not_targets(si: vim.ServiceInstance) -> None:
    others = [hosts.find_host(si, n) for n in ("esxi-01.lab", "esxi-02.lab", "esxi-03.lab")]
    vm = _powered_on_vm(si, "esxi-04.lab", "hs-stuck-1")
    try:
        for h in others:
            hosts.enter_maintenance(si, h, timeout=60)
        with pytest.raises(hosts.EvacuationRefused, match="no other connected host of the cluster outside maintenance"):
            hosts.evacuation_plan(si, hosts.find_host(si, "esxi-04.lab"))
    finally:
        for h in others:
            hosts.exit_maintenance(si, h, timeout=60)
        _cleanup(si, vm)


def test_vgpu_vm_moves_only_with_vgpu_vmotion(si: vim.ServiceInstance) -> None:
    vm = _powered_on_vm(si, "esxi-03.lab", "hs-vgpu-1")
    try:
        wait_for_task(vm.PowerOffVM_Task(), what="off", timeout=60)
        backing = vim.vm.device.VirtualPCIPassthrough.VmiopBackingInfo(vgpu="nvidia_l40s-24c")
        device = vim.vm.device.VirtualDeviceSpec(
            operation="add", device=vim.vm.device.VirtualPCIPassthrough(key=-1, backing=backing)
        )
        wait_for_task(vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=[device])), what="add vGPU", timeout=60)
        wait_for_task(vm.PowerOnVM_Task(), what="on", timeout=60)
        host = hosts.find_host(si, "esxi-03.lab")
        with pytest.raises(hosts.EvacuationRefused, match="hs-vgpu-1 has vGPU nvidia_l40s-24c and vGPU vMotion is off"):
            hosts.evacuation_plan(si, host, allow_vgpu_vmotion=False)
        # With vGPU vMotion, only a host offering the profile can take it: in the lab only esxi-03 has L40S.
        with pytest.raises(hosts.EvacuationRefused, match="hs-vgpu-1 has vGPU nvidia_l40s-24c and no other host"):
            hosts.evacuation_plan(si, host, allow_vgpu_vmotion=True)
        # Allowed to power it off (allowPowerCycle): it is stopped for the maintenance and started after.
        [move] = hosts.evacuation_plan(si, host, allow_vgpu_vmotion=True, may_power_off=frozenset({"hs-vgpu-1"}))
        assert move.target is None and move.describe() == "hs-vgpu-1 powered off"
    finally:
        _cleanup(si, vm)


def test_a_vm_that_cannot_move_is_powered_off_when_allowed_and_on_again_by_any_api(si: vim.ServiceInstance) -> None:
    """What evacuation did is noted in vCenter: another VsphereHostApi (another process, a rerun) that takes the
    host out of maintenance powers the VM on again and moves the moved one back."""
    from gpufleet.hosts.vcenter import VsphereHostApi

    stuck = _powered_on_vm(si, "esxi-03.lab", "hs-stop-1", memory_mb=4 * 1024 * 1024)  # fits nowhere else
    mover = _powered_on_vm(si, "esxi-03.lab", "hs-move-1")
    try:
        with pytest.raises(hosts.EvacuationRefused, match="hs-stop-1 needs 4194304 MB"):
            VsphereHostApi(si).enter_maintenance("esxi-03.lab", timeout=120, allow_vgpu_vmotion=False)
        lines = VsphereHostApi(si).enter_maintenance(
            "esxi-03.lab", timeout=120, allow_vgpu_vmotion=False, may_power_off=frozenset({"hs-stop-1"})
        )
        assert "hs-stop-1 powered off" in lines and any(line.startswith("hs-move-1 -> ") for line in lines)
        assert stuck.runtime.powerState == "poweredOff" and mover.runtime.host.name != "esxi-03.lab"
        assert fields.get_field(si, stuck, fields.STOPPED_FIELD) == "esxi-03.lab"
        assert fields.get_field(si, mover, fields.HOME_FIELD) == "esxi-03.lab"
        assert VsphereHostApi(si).exit_maintenance("esxi-03.lab", timeout=120) is True  # a fresh API: no memory
        assert stuck.runtime.powerState == "poweredOn" and stuck.runtime.host.name == "esxi-03.lab"
        assert mover.runtime.host.name == "esxi-03.lab" and mover.runtime.powerState == "poweredOn"
        assert fields.get_field(si, stuck, fields.STOPPED_FIELD) is None
        assert fields.get_field(si, mover, fields.HOME_FIELD) is None
    finally:
        hosts.exit_maintenance(si, hosts.find_host(si, "esxi-03.lab"), timeout=60)
        _cleanup(si, stuck)
        _cleanup(si, mover)


def test_custom_attribute_marker(si: vim.ServiceInstance) -> None:
    host = hosts.find_host(si, "esxi-02.lab")
    assert fields.get_field(si, host, fields.MAINTENANCE_FIELD) is None
    fields.set_field(si, host, fields.MAINTENANCE_FIELD, "entered by gpufleet hosts prepare")
    assert fields.get_field(si, host, fields.MAINTENANCE_FIELD) == "entered by gpufleet hosts prepare"
    fields.set_field(si, host, fields.MAINTENANCE_FIELD, "")
    assert fields.get_field(si, host, fields.MAINTENANCE_FIELD) is None
    assert fields.get_field(si, hosts.find_host(si, "esxi-01.lab"), fields.MAINTENANCE_FIELD) is None


def test_wait_until_connected(si: vim.ServiceInstance) -> None:
    state = hosts.wait_until_connected(si, hosts.find_host(si, "esxi-01.lab"), timeout=10)
    assert state.connection_state == "connected" and state.cluster == "GPU-Cluster"


def test_state_of_every_host(si: vim.ServiceInstance) -> None:
    states = {s.name: s for s in hosts.all_host_states(si)}
    assert set(states) == {"esxi-01.lab", "esxi-02.lab", "esxi-03.lab", "esxi-04.lab"}
    assert all(s.cluster == "GPU-Cluster" for s in states.values())


def test_failed_hosts_are_counted_for_the_run_holding_the_lease_only(si: vim.ServiceInstance) -> None:
    """The failure threshold across the engine's host resources: failures recorded beside the lease count for the
    run that holds it; without a lease nothing is recorded; the next run starts from zero."""
    from gpufleet.vsphere.lease import cluster_leases, failed_hosts, record_failure

    cluster = next(
        c.name
        for c in si.content.viewManager.CreateContainerView(
            si.content.rootFolder, [vim.ClusterComputeResource], True
        ).view
    )
    assert record_failure(si, cluster, "esxi-01.lab") == [] and failed_hosts(si, cluster) == []
    with cluster_leases(si, [cluster]):
        assert record_failure(si, cluster, "esxi-01.lab") == ["esxi-01.lab"]
        assert record_failure(si, cluster, "esxi-02.lab") == ["esxi-01.lab", "esxi-02.lab"]
        assert record_failure(si, cluster, "esxi-01.lab") == ["esxi-01.lab", "esxi-02.lab"]  # once per host
        assert failed_hosts(si, cluster) == ["esxi-01.lab", "esxi-02.lab"]
    assert failed_hosts(si, cluster) == []  # no lease: no run to count for
    with cluster_leases(si, [cluster]):
        assert failed_hosts(si, cluster) == []  # another run: the earlier one's failures do not count


def test_a_claimed_lease_refuses_others_at_once_and_confirm_catches_a_run_that_wrote_over_it(
    si: vim.ServiceInstance,
) -> None:
    """claimed_leases writes the lease before the caller's read-only planning; a second run is refused from that
    moment, and confirm() (after the settle time) refuses when another run's value replaced this one's."""
    from gpufleet.vsphere import fields
    from gpufleet.vsphere.inventory import find_by_name
    from gpufleet.vsphere.lease import LEASE_FIELD, Lease, LeaseHeld, claimed_leases

    cluster = next(
        c.name
        for c in si.content.viewManager.CreateContainerView(
            si.content.rootFolder, [vim.ClusterComputeResource], True
        ).view
    )
    obj = find_by_name(si, vim.ClusterComputeResource, cluster)
    with claimed_leases(si, [cluster]) as claim:
        with pytest.raises(LeaseHeld, match="is being rolled out by"), claimed_leases(si, [cluster]):
            pass
        claim.confirm()
        assert Lease.parse(fields.get_field(si, obj, LEASE_FIELD) or "").run == claim.run
    assert not fields.get_field(si, obj, LEASE_FIELD)  # released
    with claimed_leases(si, [cluster]) as claim:
        other = Lease("someone@else pid 1", "f" * 32, "elsewhere", 1, time.time() + 60)
        fields.set_field(si, obj, LEASE_FIELD, other.to_value())  # the same moment, another run wins the write
        with pytest.raises(LeaseHeld, match="took the lease at the same moment"):
            claim.confirm()
    assert Lease.parse(fields.get_field(si, obj, LEASE_FIELD) or "").run == "f" * 32  # not cleared: not ours
    fields.set_field(si, obj, LEASE_FIELD, "")
