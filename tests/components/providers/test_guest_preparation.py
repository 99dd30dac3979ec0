"""``GuestPreparation`` through Pulumi's dynamic provider server against a lab guest persona (over SSH): check refuses
a bad block and an unpaired driver -> create takes a bare guest to converged (one reboot) -> read/diff: no change ->
drift (Docker's nvidia runtime gone behind its back) seen by read -> update repairs it -> a fault fails the
resource naming its state and step."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import grpc
import pytest
from dynamic_server import DIFF_NONE, DIFF_SOME, DynamicProviderServer, urn, with_provider

from components.providers.guest_prepare import GuestPreparationProvider, guest_inputs
from gpufleet.connections import resolve_connections
from gpufleet.licensing.guest import GuestSshRunner
from gpufleet.spec.stack import load_stack

pytestmark = [pytest.mark.lab, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[3]
LAB = load_stack(ROOT / "stacks" / "Pulumi.lab.yaml")
VM = "vm-ts-01"


@pytest.fixture
def bare_guest(vgpu_guest: None, lab_paths: Any) -> Iterator[None]:
    """vm-ts-01 with its vGPU, its guest fresh (nouveau loaded, no NVIDIA software); reset to its first state after."""
    from lab.guest import faults
    from lab.guest.units import reset_guest

    reset_guest(lab_paths, VM, bare=True)
    try:
        yield
    finally:
        faults.clear(VM, paths=lab_paths)
        reset_guest(lab_paths, VM)


def _news() -> dict[str, Any]:
    vm = next(v for v in LAB.fleet.vms if v.name == VM)
    props = guest_inputs(LAB.fleet, vm, LAB.vcenter)
    assert props is not None
    return with_provider(GuestPreparationProvider(), props)


def test_check_names_the_bad_field_and_an_unpaired_driver() -> None:
    provider = GuestPreparationProvider()
    props = _news()
    bad = provider.check({}, props | {"guest": {**props["guest"], "dockerRuntime": "podman"}}).failures
    assert [f.property for f in bad] == ["guest.dockerRuntime"] and "'nvidia' or 'none'" in bad[0].reason, bad
    unpaired = provider.check({}, props | {"driverVersion": "570.124.06"}).failures
    assert [f.property for f in unpaired] == ["driverVersion"], unpaired
    assert "570.124.06" in unpaired[0].reason and "550.90.05" in unpaired[0].reason, unpaired
    assert provider.check({}, props).failures == []


def test_guest_preparation_lifecycle(lab_server: DynamicProviderServer, bare_guest: None) -> None:
    u = urn("GuestPreparation", VM)
    news = _news()
    assert lab_server.check(u, {}, news)[1] == []

    created = lab_server.create(u, news)
    outs = created.outs
    assert outs["state"] == "converged" and outs["reboots"] == 1 and outs["changed"] is True, outs
    done = {s["name"]: s["state"] for s in outs["steps"]}
    assert {k: done[k] for k in ("nouveau", "driver", "toolkit", "docker")} == dict.fromkeys(
        ("nouveau", "driver", "toolkit", "docker"), "done"
    ), outs["steps"]
    assert done["assert"] == "ok" and outs["driverLoaded"] == "550.90.07" and outs["toolkit"] == "1.16.2", outs
    assert "nvidia" in outs["dockerRuntimes"], outs

    read = lab_server.read(u, created.id, outs)
    assert read.outs["state"] == "converged" and read.outs["pending"] == [], read.outs
    assert read.outs["steps"] == outs["steps"]  # a refresh of a converged guest changes nothing
    assert lab_server.diff(u, created.id, read.outs, news).changes == DIFF_NONE

    guest = resolve_connections(LAB).guest(VM)
    with closing(GuestSshRunner(guest)) as runner:  # drift: someone drops the nvidia runtime from Docker
        runner.run_input(["sh", "-c", "cat > /etc/docker/daemon.json"], b"{}\n").check(VM)
        runner.run(["systemctl", "restart", "docker"]).check(VM)
    drifted = lab_server.read(u, created.id, outs)
    assert drifted.outs["state"] == "changes-pending" and drifted.outs["pending"] == ["docker"], drifted.outs
    assert lab_server.diff(u, created.id, drifted.outs, news).changes == DIFF_SOME
    repaired = lab_server.update(u, created.id, drifted.outs, news)
    assert repaired["state"] == "converged" and repaired["changed"] is True and repaired["reboots"] == 0, repaired
    assert {s["name"]: s["state"] for s in repaired["steps"]}["docker"] == "done", repaired["steps"]
    assert lab_server.read(u, created.id, repaired).outs["state"] == "converged"
    lab_server.delete(u, created.id, repaired)  # the guest keeps its software
    with closing(GuestSshRunner(guest)) as runner:
        assert runner.run(["cat", "/proc/driver/nvidia/version"]).rc == 0


def test_a_fault_fails_the_resource_naming_state_and_step(
    lab_server: DynamicProviderServer, bare_guest: None, lab_paths: Any
) -> None:
    from lab.guest import faults

    faults.inject(VM, "package-conflict", paths=lab_paths)
    u = urn("GuestPreparation", VM)
    with pytest.raises(grpc.RpcError) as failed:
        lab_server.create(u, _news())
    message = failed.value.details()  # type: ignore[attr-defined]
    assert f"guest {VM}: failed at step toolkit" in message, message
    assert "Conflicts: nvidia-container-runtime" in message, message
    # Pulumi's dynamic provider server wraps every raised error in its traceback; the error itself comes last.
    assert "GpufleetError: guest vm-ts-01: failed at step toolkit" in message, message
