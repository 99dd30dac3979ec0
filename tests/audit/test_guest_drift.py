"""``gpufleet.guest.facts.guest_drift``: what the audit reports of a guest's NVIDIA stack, from facts alone."""

from __future__ import annotations

from gpufleet.guest.facts import GuestFacts, guest_drift
from gpufleet.spec.guest_desired import GuestDesired
from gpufleet.spec.guest_models import GuestSpec

SPEC = GuestSpec.model_validate(
    {
        "driver": {"source": "run", "path": "/depot/NVIDIA-Linux-x86_64-550.90.07-grid.run"},
        "containerToolkit": {"version": "1.16.2"},
    }
)
WANT = GuestDesired("vm-a", SPEC, "vms[0].guest", "550.90.05", "550.90.07", vgpu=True)


def _facts(**kw: object) -> GuestFacts:
    base = dict(
        family="deb",
        packages={"nvidia-container-toolkit": "1.16.2-1"},
        driver_loaded="550.90.07",
        daemon_runtimes={"nvidia"},
        docker_runtimes={"io.containerd.runc.v2", "nvidia", "runc"},
    )
    return GuestFacts(**(base | kw))  # type: ignore[arg-type]


def test_a_guest_as_wanted_has_no_drift() -> None:
    assert guest_drift(WANT, _facts()) == []


def test_each_part_of_the_stack_is_named() -> None:
    drift = {
        d.field: d for d in guest_drift(WANT, _facts(driver_loaded="535.183.06", packages={}, daemon_runtimes=set()))
    }
    assert set(drift) == {"driver", "toolkit", "docker_runtime"}  # 535 is 550's previous branch: it pairs
    assert (drift["driver"].desired, drift["driver"].actual) == ("550.90.07", "535.183.06")
    assert (drift["toolkit"].desired, drift["toolkit"].actual) == ("1.16.2", "not installed")
    assert "not in daemon.json" in drift["docker_runtime"].message


def test_a_driver_of_a_branch_the_host_cannot_pair_with_names_both_versions() -> None:
    drift = {d.field: d for d in guest_drift(WANT, _facts(driver_loaded="570.124.06"))}
    assert set(drift) == {"driver", "driver_branch"}
    assert "570.124.06" in drift["driver_branch"].message and "550.90.05" in drift["driver_branch"].message


def test_docker_down_and_runtime_none() -> None:
    down = guest_drift(WANT, _facts(docker_runtimes=None))
    assert [(d.field, d.actual) for d in down] == [("docker_runtime", "docker not answering")]
    none = GuestDesired("vm-a", SPEC.model_copy(update={"docker_runtime": "none"}), "g", "550.90.05", "550.90.07", True)
    assert guest_drift(none, _facts(docker_runtimes=None, daemon_runtimes=set())) == []
