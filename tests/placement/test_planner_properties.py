"""Hypothesis: on valid generated fleets, every plan passes the independent checker, re-validates when pinned,
is deterministic, and never uses fewer GPUs than the lower bound claims possible."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from placement_factory import valid_fleets
from plan_checker import check_plan

from gpufleet.placement.planner import pinned_fleet, plan
from gpufleet.spec.models import Fleet
from gpufleet.spec.validate import validate_fleet

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(valid_fleets())
def test_plans_of_generated_fleets_pass_the_independent_checker(document: dict[str, Any]) -> None:
    fleet = Fleet.model_validate(document)
    assert validate_fleet(fleet) == [], "the generator must only build valid fleets"
    for strategy in ("best-fit", "first-fit"):
        result = plan(fleet, strategy=strategy)  # type: ignore[arg-type]
        doc = result.to_json()
        assert check_plan(fleet, doc) == []
        assert validate_fleet(pinned_fleet(fleet, result)) == []
        for unplaced in result.unplaced:
            assert unplaced.reason and unplaced.path.startswith("vms[")


@SETTINGS
@given(valid_fleets())
def test_plans_are_deterministic_and_respect_the_bound(document: dict[str, Any]) -> None:
    fleet = Fleet.model_validate(document)
    first = plan(fleet)
    again = plan(Fleet.model_validate(document))
    assert first.to_json() == again.to_json()
    if first.feasible:
        assert first.gpus_used >= first.lower_bound
