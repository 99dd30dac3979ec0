"""Derived values other layers rely on: MMIO size, extraConfig keys, MIG mode per GPU, canonical profile names."""

from __future__ import annotations

from pathlib import Path

import pytest
from spec_factory import base, fleet_of

from gpufleet.spec import derive
from gpufleet.spec.models import VgpuRequest
from gpufleet.spec.stack import load_stack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lab():  # type: ignore[no-untyped-def]
    return load_stack(ROOT / "stacks" / "Pulumi.lab.yaml").fleet


@pytest.mark.parametrize(
    ("vm", "mmio"), [("vm-ts-01", 128), ("vm-mig-01", 256), ("vm-pt-01", 256), ("vm-rdma-01", 256)]
)
def test_lab_vm_mmio(lab, vm: str, mmio: int) -> None:  # type: ignore[no-untyped-def]
    spec = next(v for v in lab.vms if v.name == vm)
    config = derive.vm_extra_config(lab, spec)
    assert config == {"pciPassthru.use64bitMMIO": "TRUE", "pciPassthru.64bitMMIOSizeGB": str(mmio)}


def test_template_takes_the_largest_need_of_its_vms(lab) -> None:  # type: ignore[no-untyped-def]
    assert derive.template_mmio_gb(lab, lab.templates[0]) == 256


def test_several_gpus_sum_then_round_up() -> None:
    fleet = fleet_of(base())
    train = next(v for v in fleet.vms if v.name == "vm-train")  # 2 x H100 (256 each)
    assert derive.vm_mmio_gb(fleet, train) == 512
    assert derive.required_mmio_gb([]) == 0


def test_t4_needs_no_64bit_mmio_keys() -> None:
    f = base()
    f["hosts"].append({"name": "esxi-t4", "gpus": [{"pci": "0000:3b:00.0", "model": "T4", "mode": "vgpu"}]})
    f["vms"].append({"name": "vm-t4", "template": "tpl", "vgpu": [{"profile": "grid_t4-8c"}]})
    fleet = fleet_of(f)
    assert derive.vm_extra_config(fleet, fleet.vms[-1]) == {}


def test_override_p2p_acs_and_numa() -> None:
    f = base()
    f["templates"][1].update(mmioSizeGb=1024, relaxAcs=True, numaNode=1)
    fleet = fleet_of(f)
    gdr = next(v for v in fleet.vms if v.name == "vm-gdr")
    assert derive.vm_extra_config(fleet, gdr) == {
        "pciPassthru.use64bitMMIO": "TRUE",
        "pciPassthru.64bitMMIOSizeGB": "1024",
        "pciPassthru.allowP2P": "true",
        "pciPassthru.RelaxACSforP2P": "true",
        "numa.nodeAffinity": "1",
    }
    assert set(derive.vm_extra_config(fleet, gdr)) <= set(derive.MANAGED_EXTRA_CONFIG_KEYS)


def test_mig_modes_and_reboots(lab) -> None:  # type: ignore[no-untyped-def]
    a100, h100, l40s, _ = lab.hosts
    assert derive.host_mig_modes(a100) == {"0000:3b:00.0": True, "0000:5e:00.0": True}
    assert derive.host_mig_modes(h100) == {"0000:3b:00.0": True, "0000:5e:00.0": False}
    assert derive.host_mig_reboot_required(a100) is True  # Ampere
    assert derive.host_mig_reboot_required(h100) is False  # Hopper
    assert derive.host_mig_reboot_required(l40s) is False
    assert derive.host_needs_vgpu_driver(l40s)


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("nvidia_a100d-3-40c", "grid_a100d-3-40c"),
        ("grid_l40s-24c", "nvidia_l40s-24c"),
        ("H100-3-40C", "grid_h100-3-40c"),
    ],
)
def test_vsphere_profile_name(given: str, canonical: str) -> None:
    assert derive.vsphere_profile_name(given) == canonical


def test_vsphere_profile_name_takes_the_hosts_spelling_when_offered() -> None:
    offered = ("nvidia_a100d-3-40c", "grid_l40s-24c")
    assert derive.vsphere_profile_name("a100d-3-40c", offered) == "nvidia_a100d-3-40c"
    assert derive.vsphere_profile_name("GRID_L40S-24C", offered) == "grid_l40s-24c"
    assert derive.vsphere_profile_name("h100-3-40c", offered) == "grid_h100-3-40c"  # not offered: the catalog's
    assert derive.vsphere_profile_name("h100-3-40c", offered, unoffered="nvidia_h100-3-40c") == "nvidia_h100-3-40c"
    assert derive.vsphere_profile_name("Grid_A100D-9-99C") == "grid_a100d-9-99c"  # unknown: lower-cased


@pytest.mark.parametrize("written", ["nvidia_h100-3-40c", "GRID_H100-3-40C", " H100-3-40C "])
def test_the_spec_holds_one_key_per_profile_and_keeps_the_stacks_words(written: str) -> None:
    request = VgpuRequest.model_validate({"profile": written})
    assert request.profile == "h100-3-40c"  # the key every layer below compares
    assert request.profile.spelled == written.strip().lower()  # what people are shown
    dumped = request.model_dump(mode="json", by_alias=True)
    assert dumped["profile"] == written.strip().lower()  # a dumped spec reads as its stack wrote it
    again = VgpuRequest.model_validate(dumped)
    assert (again.profile, again.profile.spelled) == ("h100-3-40c", written.strip().lower())
    assert VgpuRequest(profile=request.profile).profile.spelled == request.profile.spelled


@pytest.mark.parametrize(("value", "power"), [(1, 1), (2, 2), (3, 4), (128, 128), (129, 256), (384, 512)])
def test_next_power_of_two(value: int, power: int) -> None:
    assert derive.next_power_of_two(value) == power
    assert derive.is_power_of_two(power)
