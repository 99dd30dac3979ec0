"""``GuestNvidiaLicensing`` through Pulumi's dynamic provider server against a lab guest persona (over SSH):
create -> read -> diff (no change) -> drift (token removed behind its back) -> update -> delete."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest
from dynamic_server import DIFF_NONE, DIFF_SOME, DynamicProviderServer, urn, with_provider

from components.providers.guest_licensing import GuestNvidiaLicensingProvider
from gpufleet.connections import resolve_connections
from gpufleet.licensing.guest import GuestSshRunner, resolve_client_token
from gpufleet.spec.stack import load_stack

pytestmark = [pytest.mark.lab, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[3]
LAB = load_stack(ROOT / "stacks" / "Pulumi.lab.yaml")
VM = "vm-ts-01"


def test_guest_licensing_lifecycle(lab_server: DynamicProviderServer, vgpu_guest: None) -> None:
    token = resolve_client_token(LAB).reveal()  # the token the lab's "license server" accepts
    u = urn("GuestNvidiaLicensing", VM)
    news = with_provider(
        GuestNvidiaLicensingProvider(),
        {"vcenter": {"lab": True}, "vmName": VM, "ssh": None, "featureType": 1, "token": token},
    )
    bad = lab_server.check(u, {}, news | {"featureType": 3})[1]
    assert [p for p, _ in bad] == ["featureType"] and token not in bad[0][1]
    assert lab_server.check(u, {}, news)[1] == []

    created = lab_server.create(u, news)
    assert created.outs["licensed"] is True and created.outs["status"].startswith("Licensed")
    assert created.outs["tokenFile"].startswith("/etc/nvidia/ClientConfigToken/")
    read = lab_server.read(u, created.id, created.outs)
    assert read.outs["licensed"] is True
    assert lab_server.diff(u, created.id, read.outs, news).changes == DIFF_NONE
    assert token not in lab_server.log()  # never logged by the provider

    guest = resolve_connections(LAB).guest(VM)
    with closing(GuestSshRunner(guest)) as runner:  # drift: someone deletes the token and restarts gridd
        runner.run(["rm", "-f", created.outs["tokenFile"]]).check(VM)
        runner.run(["systemctl", "restart", "nvidia-gridd"]).check(VM)
    drifted = lab_server.read(u, created.id, created.outs)
    assert drifted.outs["licensed"] is False
    assert lab_server.diff(u, created.id, drifted.outs, news).changes == DIFF_SOME
    repaired = lab_server.update(u, created.id, drifted.outs, news)
    assert repaired["licensed"] is True and repaired["changed"] is True

    lab_server.delete(u, created.id, repaired)
    with closing(GuestSshRunner(guest)) as runner:
        assert runner.run(["test", "-f", repaired["tokenFile"]]).rc != 0  # its token file is gone
