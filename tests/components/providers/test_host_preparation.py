"""``HostPreparation`` (and the legacy per-step resources) through Pulumi's dynamic provider server against the
embedded lab (vcsim + the ESXi simulator over SSH), each on a host reset for the test: the whole host in one
maintenance window with one reboot for everything pending, as the lab's event log records it."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from dynamic_server import DIFF_NONE, DIFF_SOME, DynamicProviderServer, urn, with_provider

from components.providers.host_prepare import HostPreparationProvider
from components.providers.host_step import HostStepProvider
from gpufleet.connections import resolve_connections
from gpufleet.readers import esxcli
from gpufleet.remote.ssh import SshRunner
from gpufleet.spec.stack import load_stack

pytestmark = [pytest.mark.lab, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[3]
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
        "mayPowerOff": [],
    }


def ssh(name: str) -> SshRunner:
    return SshRunner(resolve_connections(LAB).host(name))


def windows_and_reboots(lab_paths: Any, host: str, since: float) -> tuple[int, int]:
    from lab.esxi.events import read_events

    found = read_events(lab_paths, since=since, host=host)
    return (
        sum(1 for e in found if e["event"] == "maintenance_enter"),
        sum(1 for e in found if e["event"] == "reboot_start"),
    )


def test_a_fresh_host_in_one_window_and_one_reboot(
    lab_server: DynamicProviderServer, lab_host: Callable[[str], Any], lab_paths: Any
) -> None:
    lab_host("esxi-02.lab")  # Hopper: driver (reboot), graphics, MIG (at once), ATS (reboot) -> one window, one reboot
    props = host_props("esxi-02.lab")
    prep = with_provider(HostPreparationProvider(), props)
    u = urn("HostPreparation", "esxi-02-prepare")
    assert lab_server.check(u, {}, prep)[1] == []
    started = time.time()
    created = lab_server.create(u, prep)
    assert created.id == "esxi-02.lab"
    outs = created.outs
    assert outs["inSync"] is True and outs["reboots"] == 1, outs["lastRun"]
    assert all(step["inSync"] for step in outs["steps"].values()), outs["steps"]
    assert "enabled on 0000:3b:00.0" in outs["steps"]["mig"]["detail"]
    assert windows_and_reboots(lab_paths, "esxi-02.lab", started) == (1, 1)
    with closing(ssh("esxi-02.lab")) as runner:
        assert esxcli.nvidia_driver(runner, "component") == "550.90.05"
        assert esxcli.maintenance_mode(runner) is False  # left maintenance: gpufleet entered it
    read = lab_server.read(u, created.id, outs)
    assert read.outs["inSync"] is True
    assert lab_server.diff(u, created.id, read.outs, prep).changes == DIFF_NONE

    # Drift behind its back: graphics type; read sees it, update fixes it without a reboot.
    with closing(ssh("esxi-02.lab")) as runner:
        esxcli.set_graphics_host(runner, "Shared")
    drifted = lab_server.read(u, created.id, read.outs)
    assert drifted.outs["inSync"] is False and drifted.outs["steps"]["graphics"]["inSync"] is False
    assert lab_server.diff(u, created.id, drifted.outs, prep).changes == DIFF_SOME
    again = time.time()
    fixed = lab_server.update(u, created.id, drifted.outs, prep)
    assert fixed["inSync"] is True and fixed["reboots"] == 0
    assert windows_and_reboots(lab_paths, "esxi-02.lab", again) == (1, 0)
    lab_server.delete(u, created.id, fixed)  # the host stays prepared
    with closing(ssh("esxi-02.lab")) as runner:
        assert esxcli.graphics_host(runner).default_type == "SharedPassthru"

    other = with_provider(HostPreparationProvider(), host_props("esxi-03.lab"))
    assert list(lab_server.diff(u, created.id, read.outs, other).replaces) == ["host"]


def test_nothing_to_do_touches_nothing_and_legacy_steps_report_their_own_check(
    lab_server: DynamicProviderServer, lab_host: Callable[[str], Any], lab_paths: Any
) -> None:
    lab_host("esxi-04.lab")
    props = host_props("esxi-04.lab")
    u = urn("HostPreparation", "esxi-04-prepare")
    created = lab_server.create(u, with_provider(HostPreparationProvider(), props))
    assert created.outs["inSync"] is True
    started = time.time()
    again = lab_server.update(u, created.id, created.outs, with_provider(HostPreparationProvider(), props))
    assert again["reboots"] == 0
    assert windows_and_reboots(lab_paths, "esxi-04.lab", started) == (0, 0)  # in sync: not touched
    # A stack deployed before HostPreparation still holds HostMigMode & co: they read their own step.
    legacy = with_provider(HostStepProvider("mig"), {k: v for k, v in props.items() if k != "mayPowerOff"})
    read = lab_server.read(urn("HostMigMode", "esxi-04-mig"), "esxi-04.lab/mig", legacy)
    assert read.outs["inSync"] is True and read.outs["detail"] == "disabled on every GPU"
    lab_server.delete(urn("HostMigMode", "esxi-04-mig"), "esxi-04.lab/mig", read.outs)  # a no-op


def test_a_refused_step_fails_naming_it_with_the_host_untouched(
    lab_server: DynamicProviderServer, lab_host: Callable[[str], Any], lab_paths: Any
) -> None:
    lab_host("esxi-03.lab")
    u = urn("HostPreparation", "esxi-03-prepare")
    good = host_props("esxi-03.lab")
    created = lab_server.create(u, with_provider(HostPreparationProvider(), good))  # driver loaded: MIG is knowable
    bad = host_props("esxi-03.lab")
    bad["host"]["gpus"][0]["mode"] = "mig"  # an L40S has no MIG: refused before anything is changed
    started = time.time()
    with pytest.raises(
        Exception, match=r"esxi-03.lab: mig: GPU 0000:3b:00.0 \(NVIDIA L40S\) does not support MIG"
    ) as err:
        lab_server.update(u, created.id, created.outs, with_provider(HostPreparationProvider(), bad))
    assert windows_and_reboots(lab_paths, "esxi-03.lab", started) == (0, 0)
    with closing(ssh("esxi-03.lab")) as runner:
        assert esxcli.maintenance_mode(runner) is False
    assert "stays in maintenance" not in str(err.value)


def test_check_names_the_bad_host_field(lab_server: DynamicProviderServer) -> None:
    props = host_props("esxi-01.lab")
    props["host"]["gpus"][0]["model"] = "A100-81GB"
    failures = lab_server.check(urn("HostPreparation", "x"), {}, with_provider(HostPreparationProvider(), props))[1]
    assert [p for p, _ in failures] == ["host.gpus[0].model"]
