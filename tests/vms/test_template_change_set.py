"""A template's change set (``gpufleet.vms.template``), computed before touching it (pure: no lab)."""

from __future__ import annotations

from gpufleet.spec.stack import parse_stack
from gpufleet.vms.template import compute_template_change_set
from gpufleet.vsphere.vm_devices import DirectPathDevice, PvrdmaNic, VmDeviceState

TPL = "tpl-a"


def fleet(template: dict | None = None):
    document = {
        "config": {
            "gpufleet:vcenter": {"lab": True},
            "gpufleet:fleet": {
                "version": "v1",
                "datacenter": "DC-Lab",
                "cluster": "GPU-Cluster",
                "hosts": [{"name": "esxi-03.lab", "gpus": [{"pci": "0000:3b:00.0", "model": "L40S", "mode": "vgpu"}]}],
                "templates": [{"name": TPL, "hardwareVersion": 19} | (template or {})],
                "vms": [
                    {"name": "vm-1", "template": TPL, "host": "esxi-03.lab", "vgpu": [{"profile": "nvidia_l40s-24c"}]}
                ],
            },
        }
    }
    parsed = parse_stack(document).fleet
    return parsed, parsed.templates[0]


def state(**kw) -> VmDeviceState:
    base = dict(
        vm=TPL, power_state="poweredOff", host="esxi-01.lab", hardware_version=19, memory_reservation_locked=False
    )
    return VmDeviceState(**(base | kw))


def test_bare_template_gets_mmio_from_its_clones_gpus_memory_lock_and_efi() -> None:
    f, tpl = fleet({"p2p": True})
    cs = compute_template_change_set(state(), "bios", f, tpl)
    assert cs.changed
    assert cs.summaries() == [
        "set extra-config pciPassthru.use64bitMMIO=TRUE",
        "set extra-config pciPassthru.64bitMMIOSizeGB=128",  # L40S: 128 GB, from vm-1 cloned from it
        "set extra-config pciPassthru.allowP2P=true",
        "set memory-reservation memoryReservationLockedToMax: false -> true",
        "set firmware: bios -> efi",
    ]
    assert cs.skipped == ()


def test_converged_template_has_no_change_and_undeclared_managed_keys_are_removed() -> None:
    f, tpl = fleet()
    keys = {"pciPassthru.use64bitMMIO": "TRUE", "pciPassthru.64bitMMIOSizeGB": "128"}
    done = state(memory_reservation_locked=True, extra_config=keys)
    assert not compute_template_change_set(done, "efi", f, tpl).changed
    extra = state(memory_reservation_locked=True, extra_config=keys | {"numa.nodeAffinity": "1"})
    assert compute_template_change_set(extra, "efi", f, tpl).summaries() == ["unset extra-config numa.nodeAffinity"]


def test_hardware_version_efi_to_bios_and_devices_are_reported_not_changed() -> None:
    f, tpl = fleet({"firmware": "bios", "hardwareVersion": 21, "mmioSizeGb": None})
    have = state(
        hardware_version=19,
        memory_reservation_locked=True,
        extra_config={"pciPassthru.use64bitMMIO": "TRUE", "pciPassthru.64bitMMIOSizeGB": "128"},
        directpath=(DirectPathDevice(id="0000:3b:00.0", key=4001),),
        pvrdma=(PvrdmaNic(network="VM Network", protocol="rocev2", key=4002),),
    )
    cs = compute_template_change_set(have, "efi", f, tpl)
    assert not cs.changed, cs.summaries()  # nothing vms apply would change: not pending in a dry run
    skipped = {s.setting: s for s in cs.skipped}
    assert set(skipped) == {"devices", "firmware", "hardwareVersion"}  # the PVRDMA NIC is not gpufleet's here
    assert skipped["devices"].actual == "remove directpath 0000:3b:00.0"
    assert (skipped["firmware"].desired, skipped["firmware"].actual) == ("bios", "efi")
    hw = skipped["hardwareVersion"]
    assert (hw.desired, hw.actual) == ("vmx-21", "vmx-19") and "never upgrades" in hw.reason
    newer = compute_template_change_set(state(hardware_version=20), "efi", *fleet())
    assert [s.reason for s in newer.skipped if s.setting == "hardwareVersion"] == [
        "newer than the spec and vSphere cannot downgrade it: set hardwareVersion: 20 in the spec"
    ]
