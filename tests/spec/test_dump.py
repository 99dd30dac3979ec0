"""``stack_form``: the one dump of a spec model, as a stack writes it, and validating it gives the same spec back."""

from __future__ import annotations

from pathlib import Path

from gpufleet.spec.dump import stack_form
from gpufleet.spec.models import Fleet, RolloutPolicy
from gpufleet.spec.stack import load_stack

ROOT = Path(__file__).resolve().parents[2]


def test_the_lab_fleet_round_trips_through_its_stack_form() -> None:
    fleet = load_stack(ROOT / "stacks" / "Pulumi.lab.yaml").fleet
    doc = stack_form(fleet)
    assert Fleet.model_validate(doc) == fleet
    assert [vm["template"] for vm in doc["vms"]] == [vm.template for vm in fleet.vms]


def test_keys_are_camel_case_and_unset_ones_left_out() -> None:
    doc = stack_form(RolloutPolicy(allow_power_cycle=True))
    assert doc["allowPowerCycle"] is True and doc["maxUnavailable"] == 1
    assert "vgpuVmotion" not in doc  # None: not written
    assert "allow_power_cycle" not in doc


def test_a_vgpu_profile_is_dumped_as_the_stack_spelled_it() -> None:
    vm = {"name": "vm", "template": "tpl", "vgpu": [{"profile": "NVIDIA_H100-3-40C"}]}
    fleet = Fleet.model_validate({"version": "v1", "datacenter": "dc", "cluster": "c", "vms": [vm]})
    assert stack_form(fleet)["vms"][0]["vgpu"] == [{"profile": "nvidia_h100-3-40c"}]
