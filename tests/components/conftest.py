"""Fixtures of the component graph tests: ``mocks`` installs fresh ``GraphMocks`` (see pulumi_mocks.py)."""

from __future__ import annotations

import pulumi
import pytest
from pulumi_mocks import GraphMocks


@pytest.fixture
def mocks() -> GraphMocks:
    m = GraphMocks()
    pulumi.runtime.set_mocks(m, project="gpufleet", stack="test", preview=False)
    return m
