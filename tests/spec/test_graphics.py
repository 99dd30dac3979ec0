"""The one map of host graphics names (gpufleet.spec.graphics) against the lab's own (the oracle)."""

from __future__ import annotations

from typing import get_args

from gpufleet.spec.graphics import (
    ESXCLI_ASSIGNMENT_POLICIES,
    ESXCLI_GRAPHICS_TYPES,
    SHARED_DIRECT,
    AssignmentPolicy,
    GraphicsType,
)
from gpufleet.spec.models import HostSpec
from lab.esxi.vcface import GRAPHICS_TO_ESXCLI, POLICY_TO_ESXCLI


def test_every_spec_value_has_its_esxcli_name_as_the_lab_spells_it() -> None:
    assert set(ESXCLI_GRAPHICS_TYPES) == set(get_args(GraphicsType))
    assert set(ESXCLI_ASSIGNMENT_POLICIES) == set(get_args(AssignmentPolicy))
    assert ESXCLI_GRAPHICS_TYPES == GRAPHICS_TO_ESXCLI
    assert ESXCLI_ASSIGNMENT_POLICIES == POLICY_TO_ESXCLI


def test_hosts_default_to_shared_direct() -> None:
    assert HostSpec(name="esxi-01.lab").graphics_type == SHARED_DIRECT == "sharedDirect"
    assert ESXCLI_GRAPHICS_TYPES[SHARED_DIRECT] == "SharedPassthru"
