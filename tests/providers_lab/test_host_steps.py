"""The host step resources (HostDriver, HostGraphics, HostMigMode, HostAts) through Pulumi's dynamic provider
server against the embedded lab (vcsim + the ESXi simulator over SSH), each on a host reset for the test."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from dynamic_server import DIFF_NONE, DIFF_SOME, DynamicProviderServer, urn, with_provider

from components.providers.host_step import HostStepProvider
from gpufleet.connections import resolve_connections
from gpufleet.spec.stack import load_stack
from host_setup import esxcli
from host_setup.ssh import SshRunner

pytestmark = [pytest.mark.lab, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
LAB = load_stack(ROOT / "stacks" / "Pulumi.lab.yaml")


def host_props(name: str) -> dict[str, Any]:
    fleet = LAB.fleet
    spec = fleet.host(name)
    assert spec is not None
    return {
        "vcenter": {"lab": True},
        "cluster": fleet.cluster,
        "host": spec.model_copy(update={"driver": fleet.driver_for(spec)}).model_dump(
            mode="json", by_alias=True, exclude_none=True
        ),
        "rollout": fleet.rollout.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


@pytest.fixture(scope="module")
def lab_server(lab_env: Any) -> Iterator[DynamicProviderServer]:
    """A provider server that reads the session lab (GPUFLEET_LAB_DIR is the test lab's)."""
    srv = DynamicProviderServer(env={"GPUFLEET_LAB_DIR": os.environ["GPUFLEET_LAB_DIR"]}, timeout=300)
    try:
        srv.configure({})
        yield srv
    finally:
        srv.close()


def ssh(name: str) -> SshRunner:
    return SshRunner(resolve_connections(LAB).host(name))


def test_driver_and_graphics_on_a_fresh_host(lab_server: DynamicProviderServer, lab_host: Callable[[str], Any]) -> None:
    lab_host("esxi-04.lab")
    props = host_props("esxi-04.lab")

    driver = with_provider(HostStepProvider("driver"), props)
    u = urn("HostDriver", "esxi-04-driver")
    assert lab_server.check(u, {}, driver)[1] == []
    created = lab_server.create(u, driver)
    assert created.id == "esxi-04.lab/driver"
    assert created.outs["inSync"] is True
    actions = " | ".join(created.outs["lastActions"])
    assert "entered" in actions and "rebooted" in actions and "exited" in actions, actions
    with closing(ssh("esxi-04.lab")) as runner:
        assert esxcli.nvidia_driver(runner, "component") == "550.90.05"
        assert esxcli.maintenance_mode(runner) is False  # left maintenance: gpufleet entered it
    read = lab_server.read(u, created.id, created.outs)
    assert read.outs["inSync"] is True
    assert lab_server.diff(u, created.id, read.outs, driver).changes == DIFF_NONE

    graphics = with_provider(HostStepProvider("graphics"), props)
    g = urn("HostGraphics", "esxi-04-graphics")
    made = lab_server.create(g, graphics)
    assert made.outs["inSync"] is True
    with closing(ssh("esxi-04.lab")) as runner:
        assert esxcli.graphics_host(runner).default_type == "SharedPassthru"
        esxcli.set_graphics_host(runner, "Shared")  # drift behind its back
    drifted = lab_server.read(g, made.id, made.outs)
    assert drifted.outs["inSync"] is False
    assert lab_server.diff(g, made.id, drifted.outs, graphics).changes == DIFF_SOME
    fixed = lab_server.update(g, made.id, drifted.outs, graphics)
    assert fixed["inSync"] is True
    lab_server.delete(g, made.id, fixed)  # the host stays prepared
    with closing(ssh("esxi-04.lab")) as runner:
        assert esxcli.graphics_host(runner).default_type == "SharedPassthru"

    mig = with_provider(HostStepProvider("mig"), props)  # T4: no MIG anywhere, nothing to do
    none = lab_server.create(urn("HostMigMode", "esxi-04-mig"), mig)
    assert none.outs["inSync"] is True and none.outs["lastActions"] == []

    other = with_provider(HostStepProvider("driver"), host_props("esxi-03.lab"))
    assert list(lab_server.diff(u, created.id, read.outs, other).replaces) == ["host"]


def test_mig_and_ats_on_a_hopper_host(lab_server: DynamicProviderServer, lab_host: Callable[[str], Any]) -> None:
    lab_host("esxi-02.lab")
    props = host_props("esxi-02.lab")
    lab_server.create(urn("HostDriver", "esxi-02-driver"), with_provider(HostStepProvider("driver"), props))

    mig = with_provider(HostStepProvider("mig"), props)
    u = urn("HostMigMode", "esxi-02-mig")
    created = lab_server.create(u, mig)
    assert created.outs["inSync"] is True
    assert any("enabled on 0000:3b:00.0" in a for a in created.outs["lastActions"]), created.outs["lastActions"]
    assert not any("rebooted" in a for a in created.outs["lastActions"])  # Hopper: no reboot for MIG
    assert lab_server.diff(u, created.id, lab_server.read(u, created.id, created.outs).outs, mig).changes == DIFF_NONE

    ats = with_provider(HostStepProvider("ats"), props)
    made = lab_server.create(urn("HostAts", "esxi-02-ats"), ats)
    assert made.outs["inSync"] is True
    assert any("rebooted" in a for a in made.outs["lastActions"]), made.outs["lastActions"]


def test_check_names_the_bad_host_field(lab_server: DynamicProviderServer) -> None:
    props = host_props("esxi-01.lab")
    props["host"]["gpus"][0]["model"] = "A100-81GB"
    failures = lab_server.check(urn("HostDriver", "x"), {}, with_provider(HostStepProvider("driver"), props))[1]
    assert [p for p, _ in failures] == ["host.gpus[0].model"]
