"""The guest: block, the catalog's branch table and the guest readers (no lab)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from pydantic import ValidationError

from gpufleet.catalog.guest_drivers import compatible_guest_branches, default_guest_driver, pairing_problem
from gpufleet.readers import guest as rd
from gpufleet.spec.guest_desired import guest_desired
from gpufleet.spec.guest_models import GuestSpec
from gpufleet.spec.stack import load_stack, parse_stack
from gpufleet.spec.validate import validate_fleet

LAB = str(Path(__file__).resolve().parents[2] / "stacks" / "Pulumi.lab.yaml")  # not cwd-relative (xdist)


def test_branch_table_pairs_and_defaults() -> None:
    assert default_guest_driver("550.90.05") == "550.90.07"
    assert default_guest_driver("580.65.05") == "580.65.06"
    assert default_guest_driver("550.54.16") == "550.127.05"  # unknown release: newest of the branch
    assert default_guest_driver("470.82.02") is None
    assert compatible_guest_branches("550.90.05") == ["550", "535"]
    assert pairing_problem("550.90.05", "535.183.06") is None
    problem = pairing_problem("550.90.05", "570.124.06")
    assert problem and "570.124.06" in problem and "550.90.05" in problem


def test_lab_stack_guest_block_defaults_to_the_paired_driver() -> None:
    stack = load_stack(LAB)
    vm = next(v for v in stack.fleet.vms if v.name == "vm-ts-01")
    desired = guest_desired(stack.fleet, vm)
    assert desired is not None and desired.driver_version == "550.90.07" and desired.host_driver == "550.90.05"
    assert guest_desired(stack.fleet, next(v for v in stack.fleet.vms if v.name == "vm-pt-01")) is None
    assert validate_fleet(stack.fleet) == []


def _variant(change) -> list[str]:  # type: ignore[no-untyped-def]
    stack = load_stack(LAB)
    doc = {"config": copy.deepcopy(stack.config)}
    change(doc["config"]["gpufleet:fleet"])
    return [str(i) for i in validate_fleet(parse_stack(doc, name="v").fleet)]


def test_validate_refuses_a_guest_driver_of_another_branch_naming_both_versions() -> None:
    def wrong(fleet: dict) -> None:
        fleet["vms"][0]["guest"]["driver"] = {"source": "packages", "path": "/srv/depot", "version": "570.124.06"}

    issues = _variant(wrong)
    assert len(issues) == 1
    assert issues[0].startswith("vms[0].guest.driver.version: vm-ts-01: guest driver 570.124.06 (branch 570)")
    assert "vGPU Manager 550.90.05" in issues[0]


def test_guest_block_shape_errors_name_the_field() -> None:
    with pytest.raises(ValidationError, match="does not match the package"):
        GuestSpec.model_validate(
            {
                "driver": {"path": "NVIDIA-Linux-x86_64-550.90.07-grid.run", "version": "550.90.05"},
                "dockerRuntime": "none",
            }
        )
    with pytest.raises(ValidationError, match="needs containerToolkit"):
        GuestSpec.model_validate({"driver": {"path": "NVIDIA-Linux-x86_64-550.90.07-grid.run"}})
    with pytest.raises(ValidationError, match="not a kernel parameter"):
        GuestSpec.model_validate({"dockerRuntime": "none", "kernelParams": ["a b"]})
    with pytest.raises(ValidationError, match="not an NVIDIA .run package"):
        GuestSpec.model_validate({"driver": {"path": "driver.zip"}, "dockerRuntime": "none"})


def test_guest_readers() -> None:
    assert rd.parse_smi_query("550.90.07, NVIDIA L40S-24C\n") == [("550.90.07", "NVIDIA L40S-24C")]
    assert (
        rd.parse_dpkg_query("nvidia-container-toolkit\t1.16.2-1\ndkms\t2.8.7\n")["nvidia-container-toolkit"]
        == "1.16.2-1"
    )
    assert rd.parse_daemon_json_runtimes('{"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}}') == {"nvidia"}
    assert rd.parse_daemon_json_runtimes("") == set()
    with pytest.raises(rd.ReadError):
        rd.parse_daemon_json_runtimes("{not json")
    assert rd.parse_dkms_status("nvidia/550.90.07, 5.15.0-119-generic, x86_64: installed\n") == ["550.90.07"]
    assert rd.package_family(rd.parse_os_release('ID=rocky\nID_LIKE="rhel centos fedora"\n')) == "rpm"
    assert rd.package_family(rd.parse_os_release("ID=ubuntu\nID_LIKE=debian\n")) == "deb"
    text = rd.set_grub_cmdline('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', ["pci=realloc", "quiet"])
    assert rd.grub_cmdline(text) == ["quiet", "pci=realloc"]
    assert rd.nouveau_blacklisted("# x\nblacklist nouveau\n") and not rd.nouveau_blacklisted("#blacklist nouveau\n")
