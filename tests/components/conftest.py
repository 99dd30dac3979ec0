"""Fixtures of the component graph tests: ``mocks`` installs fresh ``GraphMocks`` (see pulumi_mocks.py)."""

from __future__ import annotations

import pulumi
import pytest
from pulumi_mocks import GraphMocks, GraphMonitor


@pytest.fixture
def mocks() -> GraphMocks:
    m = GraphMocks()
    pulumi.runtime.set_mocks(m, project="gpufleet", stack="test", preview=False, monitor=GraphMonitor(m))
    return m


@pytest.fixture(autouse=True)
def no_rollout_lease(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Under mocks there is no vCenter: the program's lease (tested on the lab, tests/e2e) is recorded, not taken."""
    import components.rollout_lease

    taken: list[object] = []
    monkeypatch.setattr(components.rollout_lease, "hold_rollout_leases", lambda stack: taken.append(stack))
    return taken
