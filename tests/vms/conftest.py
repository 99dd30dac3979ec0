"""Fixtures of the VM device tests: a private lab vCenter (see private_lab.py) and per-test VMs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from private_lab import PrivateLab, private_lab


@pytest.fixture(scope="session")
def vm_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateLab]:
    with private_lab(tmp_path_factory.mktemp("vm-lab")) as lab:
        yield lab


@pytest.fixture
def lab_vms(vm_lab: PrivateLab) -> Iterator[list[str]]:
    """Names of the VMs a test cloned (append to it); they are destroyed after the test."""
    names: list[str] = []
    yield names
    with vm_lab.session() as si:
        for name in names:
            vm_lab.destroy_vm(si, name)
