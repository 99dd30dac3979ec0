"""The VM device change set, computed before touching a VM (pure: no lab needed)."""

from __future__ import annotations

import pytest

from gpufleet.vms.changes import (
    DesiredDevices,
    PowerCycleRequiredError,
    compute_change_set,
    removal_change_set,
)
from gpufleet.vsphere.vm_devices import (
    DirectPathDevice,
    DynamicDirectPathDevice,
    PvrdmaNic,
    VgpuDevice,
    VmDeviceState,
)


def state(**kw) -> VmDeviceState:
    base = dict(
        vm="vm-1", power_state="poweredOff", host="esxi-01.lab", hardware_version=19, memory_reservation_locked=True
    )
    return VmDeviceState(**(base | kw))


def test_empty_vm_gets_a_vgpu_and_mmio_keys() -> None:
    cs = compute_change_set(
        state(memory_reservation_locked=False),
        DesiredDevices(
            vgpus=("nvidia_l40s-24c",),
            extra_config={"pciPassthru.use64bitMMIO": "TRUE", "pciPassthru.64bitMMIOSizeGB": "128"},
            lock_memory=True,
        ),
    )
    assert cs.summaries() == [
        "add vgpu nvidia_l40s-24c",
        "set extra-config pciPassthru.use64bitMMIO=TRUE",
        "set extra-config pciPassthru.64bitMMIOSizeGB=128",
        "set memory-reservation memoryReservationLockedToMax: false -> true",
    ]
    assert not cs.power_cycle_required  # powered off


def test_converged_vm_has_no_changes_whatever_the_profile_prefix_and_bool_case() -> None:
    current = state(
        vgpus=(VgpuDevice("grid_a100d-3-40c", key=13000),),
        extra_config={"pciPassthru.use64bitMMIO": "true", "pciPassthru.64bitMMIOSizeGB": "256"},
    )
    desired = DesiredDevices(
        vgpus=("nvidia_a100d-3-40c",),
        extra_config={"pciPassthru.use64bitMMIO": "TRUE", "pciPassthru.64bitMMIOSizeGB": "256"},
        lock_memory=True,
    )
    assert compute_change_set(current, desired).changes == ()


def test_profile_swap_removes_the_old_device_by_key_and_needs_power_cycle_when_on() -> None:
    current = state(power_state="poweredOn", vgpus=(VgpuDevice("nvidia_l40s-24c", key=13000),))
    cs = compute_change_set(current, DesiredDevices(vgpus=("nvidia_l40s-48c",), lock_memory=True))
    assert [(c.action, c.kind, c.target, c.key) for c in cs.changes] == [
        ("remove", "vgpu", "nvidia_l40s-24c", 13000),
        ("add", "vgpu", "nvidia_l40s-48c", None),
    ]
    assert cs.power_cycle_required
    with pytest.raises(PowerCycleRequiredError, match="vm-1 is poweredOn.*allowPowerCycle"):
        cs.require_power(allow_power_cycle=False)
    cs.require_power(allow_power_cycle=True)  # allowed: no error


def test_multiset_of_vgpus_adds_only_the_missing_one() -> None:
    current = state(vgpus=(VgpuDevice("grid_h100-80c", key=1),))
    cs = compute_change_set(current, DesiredDevices(vgpus=("grid_h100-80c", "grid_h100-80c"), lock_memory=True))
    assert cs.summaries() == ["add vgpu grid_h100-80c"]


def test_directpath_dynamic_and_pvrdma() -> None:
    current = state(
        directpath=(DirectPathDevice("0000:5e:00.0", 0x10DE, 0x2331, key=5),),
        dynamic=(DynamicDirectPathDevice(0x10DE, 0x20B8, key=6),),  # an A100 80GB under its second device id
        pvrdma=(PvrdmaNic("VM Network", "rocev1", key=4000),),
    )
    desired = DesiredDevices(
        directpath=("0000:3b:00.0",),
        dynamic=(DynamicDirectPathDevice(0x10DE, 0x20B5),),  # same board: no change
        pvrdma=(PvrdmaNic("VM Network", "rocev2"), PvrdmaNic("rdma-pg", "rocev2")),
        lock_memory=True,
    )
    cs = compute_change_set(current, desired)
    assert cs.summaries() == [
        "remove directpath 0000:5e:00.0",
        "add directpath 0000:3b:00.0",
        "edit pvrdma VM Network: rocev1 -> rocev2",
        "add pvrdma rdma-pg",
    ]


def test_pvrdma_owned_by_pulumi_vsphere_only_gets_its_protocol() -> None:
    current = state(pvrdma=(PvrdmaNic("VM Network", None, key=4000),))
    desired = DesiredDevices(pvrdma=(PvrdmaNic("other", "rocev2"), PvrdmaNic("x", "rocev2")), own_pvrdma=False)
    assert compute_change_set(current, desired).summaries() == ["edit pvrdma VM Network: None -> rocev2"]


def test_managed_keys_not_wanted_are_removed_and_others_are_not_ours() -> None:
    current = state(extra_config={"numa.nodeAffinity": "1"})
    cs = compute_change_set(current, DesiredDevices())
    assert cs.summaries() == ["unset extra-config numa.nodeAffinity"]
    with pytest.raises(ValueError, match="not managed"):
        DesiredDevices(extra_config={"svga.present": "FALSE"})


def test_removal_touches_only_what_the_resource_owns() -> None:
    current = state(
        vgpus=(VgpuDevice("grid_t4-16c", key=1), VgpuDevice("grid_t4-16c", key=2)),
        pvrdma=(PvrdmaNic("VM Network", "rocev2", key=3),),
        extra_config={"pciPassthru.allowP2P": "true", "numa.nodeAffinity": "0"},
    )
    owned = DesiredDevices(
        vgpus=("grid_t4-16c",),
        pvrdma=(PvrdmaNic("VM Network", "rocev2"),),
        own_pvrdma=False,
        extra_config={"numa.nodeAffinity": "0"},
    )
    cs = removal_change_set(current, owned)
    assert cs.summaries() == ["remove vgpu grid_t4-16c", "unset extra-config numa.nodeAffinity"]
    assert [c.key for c in cs.changes] == [1, None]


def test_desired_round_trips_through_pulumi_style_numbers() -> None:
    desired = DesiredDevices(dynamic=(DynamicDirectPathDevice(0x10DE, 0x2331, "Training"),), lock_memory=True)
    wire = desired.to_dict()
    wire["dynamic"][0]["device_id"] = float(wire["dynamic"][0]["device_id"])
    assert DesiredDevices.from_dict(wire) == desired
    st = state(vgpus=(VgpuDevice("grid_t4-16c", key=13000),))
    wire = st.to_dict()
    wire["vgpus"][0]["key"] = 13000.0
    assert VmDeviceState.from_dict(wire) == st
