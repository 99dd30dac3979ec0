"""A private vcsim for the lab_vcenter tests (session-wide per worker); hosts are reset after each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pyVim.connect import Disconnect
from pyVmomi import vim
from vcsim_helpers import DEFAULT_HOST_STATE, VcsimLab, running_vcsim

from lab.topology import build_topology


@pytest.fixture(scope="session")
def vcsim_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VcsimLab]:
    with running_vcsim(tmp_path_factory.mktemp("vcsim"), build_topology()) as lab:
        yield lab


@pytest.fixture
def si(vcsim_lab: VcsimLab) -> Iterator[vim.ServiceInstance]:
    service = vcsim_lab.connect()
    yield service
    Disconnect(service)


@pytest.fixture(autouse=True)
def reset_hosts(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests share one vcsim: put every host back to the lab's initial state afterwards."""
    yield
    if "vcsim_lab" in request.fixturenames:
        lab: VcsimLab = request.getfixturevalue("vcsim_lab")
        for host in lab.topology.hosts:
            lab.admin.update_host(host.name, **DEFAULT_HOST_STATE)
