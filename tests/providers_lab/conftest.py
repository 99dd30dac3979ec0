"""Fixtures of the dynamic provider tests: a private lab vCenter (tests/vms_lab/private_lab.py) and Pulumi's own
dynamic provider server (``python -m pulumi.dynamic``) configured as the engine would with the stack config."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vms_lab"))

from dynamic_server import DynamicProviderServer  # noqa: E402
from private_lab import PrivateLab, private_lab  # noqa: E402


@pytest.fixture(scope="session")
def prov_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateLab]:
    with private_lab(tmp_path_factory.mktemp("prov-lab")) as lab:
        yield lab


@pytest.fixture(scope="module")
def server(prov_lab: PrivateLab) -> Iterator[DynamicProviderServer]:
    """The dynamic provider server, configured with the stack config (the vCenter password is a Pulumi secret;
    GPUFLEET_LAB_DIR lets `vcenter: {lab: true}` resources find the private lab)."""
    srv = DynamicProviderServer(env={"GPUFLEET_LAB_DIR": str(prov_lab.dir)})
    try:
        srv.configure({"gpufleet:vcenterPassword": prov_lab.password, "gpufleet:fleet": "{}"})
        yield srv
    finally:
        log = srv.close()
        sys.stderr.write(log[-4000:])


@pytest.fixture(scope="module")
def lab_server(lab_env: Any) -> Iterator[DynamicProviderServer]:
    """A provider server that reads the suite's shared lab (GPUFLEET_LAB_DIR is the test lab's), for resources
    whose ``vcenter`` is ``{lab: true}`` and that need the lab's hosts or guests."""
    srv = DynamicProviderServer(env={"GPUFLEET_LAB_DIR": os.environ["GPUFLEET_LAB_DIR"]}, timeout=300)
    try:
        srv.configure({})
        yield srv
    finally:
        srv.close()


@pytest.fixture
def lab_vms(prov_lab: PrivateLab) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    with prov_lab.session() as si:
        for name in names:
            prov_lab.destroy_vm(si, name)
