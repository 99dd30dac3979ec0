"""The fleet rollout against fakes: the maintenance bound per cluster, the failure threshold, bad input refused
before any host is touched, dry run, resumption, and the JSON document."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from host_setup_fakes import FakeApi, FakeHost, t4_host
from test_prepare import BUNDLE, WANTED, fleet

from gpufleet.errors import SpecError
from gpufleet.hosts.model import Desired
from gpufleet.hosts.rollout import Rollout, RolloutOptions, RolloutReport


def make_fleet(n: int, clusters: int = 1) -> tuple[list[FakeHost], FakeApi, list[Desired], object]:
    names = [f"t4-{i + 1:02d}.lab" for i in range(n)]
    fl = fleet(names)
    hosts = [t4_host(name) for name in names]
    for h in hosts:
        h.reboot_seconds = 0.05
    desired = [Desired.of(fl, h) for h in fl.hosts]
    if clusters > 1:
        desired = [Desired(**{**d.__dict__, "cluster": f"C{i % clusters}"}) for i, d in enumerate(desired)]
    api = FakeApi({d.name: d.cluster for d in desired})
    return hosts, api, desired, fl


def make_rollout(hosts, api, desired, fl, bundle: Path | None, events: list | None = None, **options) -> Rollout:
    """A Rollout over the fake hosts; ``events``: where its progress events go, as (host, message)."""
    by_name = {h.name: h for h in hosts}
    opts = RolloutOptions(
        max_unavailable=options.pop("max_unavailable", 2),
        failure_threshold=options.pop("failure_threshold", 2),
        **options,
    )
    return Rollout(
        desired,
        fl.rollout,
        opts,
        api,
        runner_for=lambda d: by_name[d.name],
        local_bundles={d.name: bundle for d in desired},
        on_event=(lambda host, message: events.append((host, message))) if events is not None else None,
    )


def rollout(hosts, api, desired, fl, bundle: Path | None, **options) -> RolloutReport:
    return make_rollout(hosts, api, desired, fl, bundle, **options).run()


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    path = tmp_path / "NVD-AIE-800_550.90.05-1OEM.800.1.0.20613240_23471011.zip"
    path.write_bytes(b"PK" + b"\0" * 20)
    return path


def test_never_more_than_max_unavailable_per_cluster(bundle: Path) -> None:
    hosts, api, desired, fl = make_fleet(8)
    report = rollout(hosts, api, desired, fl, bundle, max_unavailable=3)
    assert report.exit_code == 0, report.to_json()
    assert all(h.driver_loaded == WANTED for h in hosts)
    assert api.peak() == {"GPU-Cluster": 3}  # bounded, and the bound was used (parallel)
    assert report.peak_in_maintenance == {"GPU-Cluster": 3}


def test_the_bound_is_per_cluster(bundle: Path) -> None:
    hosts, api, desired, fl = make_fleet(8, clusters=2)
    report = rollout(hosts, api, desired, fl, bundle, max_unavailable=2)
    assert report.exit_code == 0
    assert api.peak() == {"C0": 2, "C1": 2}


def test_hosts_in_maintenance_of_someone_else_count_against_the_bound(bundle: Path) -> None:
    hosts, api, desired, fl = make_fleet(4)
    api.clusters["other-99.lab"] = "GPU-Cluster"
    api.maintenance["other-99.lab"] = True  # not in the stack, in maintenance for other work
    report = rollout(hosts, api, desired, fl, bundle, max_unavailable=2)
    assert report.exit_code == 0
    assert api.peak(already={"other-99.lab"}) == {"GPU-Cluster": 2}
    assert api.maintenance["other-99.lab"]  # untouched


def test_no_room_at_all_skips_hosts_without_touching_them(bundle: Path) -> None:
    hosts, api, desired, fl = make_fleet(2)
    api.clusters["other-99.lab"] = "GPU-Cluster"
    api.maintenance["other-99.lab"] = True
    report = rollout(hosts, api, desired, fl, bundle, max_unavailable=1)
    assert report.exit_code == 1
    assert all(h.error["step"] == "skipped" and "other-99.lab" in h.error["message"] for h in report.hosts)
    # Only the pre-staging copied the bundle to the datastores (outside maintenance, changing nothing on the host).
    assert api.calls == [] and all(h.changing_commands == [f"<upload {BUNDLE}>"] for h in hosts)
    assert all(h.steps[0].name == "stage" and h.steps[0].state == "done" for h in report.hosts)


def test_failure_threshold_stops_the_rollout(bundle: Path) -> None:
    hosts, api, desired, fl = make_fleet(6)
    for h in hosts[:2]:
        h.faults.add("install-error")
    report = rollout(hosts, api, desired, fl, bundle, max_unavailable=2, failure_threshold=2)
    document = report.to_json()
    assert report.exit_code == 1
    assert report.stopped and "2 failed host(s)" in report.stopped
    failed = {h["name"]: h for h in document["hosts"] if h["error"]}
    assert failed["t4-01.lab"]["error"]["step"] == "driver"
    assert failed["t4-01.lab"]["inMaintenance"] is True  # left in maintenance, reported
    skipped = [h for h in document["hosts"] if h["error"] and h["error"]["step"] == "skipped"]
    assert skipped, "hosts after the threshold must not start"
    for entry in skipped:
        host = next(h for h in hosts if h.name == entry["name"])
        # Never started: no maintenance, install or reboot (its bundle was pre-staged, like every host's).
        assert [c for c in host.changing_commands if not c.startswith("<upload")] == []
        assert f"enter {host.name}" not in api.calls
    assert document["summary"]["failed"] == 2 and document["summary"]["skipped"] == len(skipped)
    # Failed hosts keep their maintenance slots: never more than 2 in maintenance at once.
    assert api.peak()["GPU-Cluster"] <= 2


def test_rerun_resumes_and_converges_failed_hosts_first(bundle: Path) -> None:
    hosts, api, desired, fl = make_fleet(4)
    hosts[0].faults.add("install-error")
    first = rollout(hosts, api, desired, fl, bundle, max_unavailable=1, failure_threshold=1)
    assert first.exit_code == 1 and api.maintenance["t4-01.lab"]
    hosts[0].faults.clear()
    api.log.clear()
    second = rollout(hosts, api, desired, fl, bundle, max_unavailable=1, failure_threshold=1)
    assert second.exit_code == 0, second.to_json()
    assert not any(api.maintenance.values())
    assert all(h.driver_loaded == WANTED for h in hosts)
    # esxi-01 (left in maintenance, holding the only slot) went first.
    assert api.log[0][1] == "t4-01.lab" and api.log[0][2] == "exit"
    assert api.peak(already={"t4-01.lab"}) == {"GPU-Cluster": 1}
    third = rollout(hosts, api, desired, fl, bundle, max_unavailable=1)
    assert third.exit_code == 0
    assert not any(h["changed"] for h in third.to_json()["hosts"])


def test_unknown_host_fails_before_any_host_is_touched(bundle: Path) -> None:
    hosts, api, desired, fl = make_fleet(3)
    del api.clusters["t4-03.lab"]  # vCenter does not know it
    with pytest.raises(SpecError, match="t4-03.lab.*no such host in vCenter"):
        rollout(hosts, api, desired, fl, bundle)
    assert all(h.commands == [] for h in hosts) and api.calls == []


def test_missing_local_bundle_fails_before_any_host_is_touched(tmp_path: Path) -> None:
    hosts, api, desired, fl = make_fleet(2)
    fl2 = fleet([h.name for h in hosts], localPath="lab-depot://missing.zip")
    desired = [Desired.of(fl2, h) for h in fl2.hosts]
    with pytest.raises(SpecError, match=r"driver.localPath.*missing.zip"):
        rollout(hosts, api, desired, fl2, tmp_path / "missing.zip")
    assert all(h.commands == [] for h in hosts) and api.calls == []


def test_bundle_neither_on_host_nor_local_fails_after_read_only_planning() -> None:
    hosts, api, desired, fl = make_fleet(2)
    hosts[1].files[BUNDLE] = 10  # only the second host has it
    with pytest.raises(SpecError, match=r"t4-01.lab: driver.bundle.*not on the host"):
        rollout(hosts, api, desired, fl, None)
    assert api.calls == [] and all(h.changing_commands == [] for h in hosts)


def test_dry_run_reports_pending_changes_with_exit_2_and_changes_nothing(bundle: Path) -> None:
    hosts, api, desired, fl = make_fleet(2)
    hosts[1].driver_boot = hosts[1].driver_loaded = WANTED
    hosts[1].graphics[:] = ["SharedPassthru", "Performance"]
    report = rollout(hosts, api, desired, fl, bundle, dry_run=True)
    assert report.exit_code == 2
    document = json.loads(json.dumps(report.to_json()))
    one = document["hosts"][0]
    assert {s["name"]: s["state"] for s in one["steps"]} == {
        "stage": "needed",  # a dry run uploads nothing: it says it would
        "maintenance": "needed",
        "driver": "needed",
        "graphics": "needed",
        "mig": "ok",
        "ats": "ok",
        "reboot": "needed",
    }
    assert document["hosts"][1]["changed"] is False and all(s["state"] == "ok" for s in document["hosts"][1]["steps"])
    assert api.calls == [] and all(h.changing_commands == [] for h in hosts)
    assert document["summary"]["pending"] == 1


def test_json_document_shape(bundle: Path) -> None:
    hosts, api, desired, fl = make_fleet(1)
    document = rollout(hosts, api, desired, fl, bundle).to_json()
    assert set(document) >= {"hosts", "summary", "stopped", "dryRun", "maxUnavailable", "exitCode"}
    host = document["hosts"][0]
    assert set(host) >= {"name", "changed", "steps", "error"}
    assert host["changed"] is True and host["error"] is None
    assert [s["name"] for s in host["steps"]] == [
        "stage",
        "driver",
        "graphics",
        "mig",
        "ats",
        "maintenance",
        "reboot",
        "verify",
    ]


def test_every_bundle_is_staged_and_proven_before_the_first_host_enters_maintenance(bundle: Path) -> None:
    hosts, api, desired, fl = make_fleet(6)
    events: list[tuple[str, str]] = []
    report = make_rollout(hosts, api, desired, fl, bundle, events).run()
    assert report.exit_code == 0, report.to_json()
    first_start = next(i for i, (_, m) in enumerate(events) if m == "started")
    staged = {h for h, m in events[:first_start] if m.startswith("staged:")}
    assert staged == {h.name for h in hosts}
    for h in report.hosts:
        stage = h.steps[0]
        assert stage.name == "stage" and "sha256" in stage.detail and "--dry-run: would install" in stage.detail
        driver = next(s for s in h.steps if s.name == "driver")
        assert "uploaded" not in driver.detail  # the window held the install only, not the copy
    for host in hosts:  # the esxcli dry run came before the install, on every host
        dry = [i for i, c in enumerate(host.commands) if "--dry-run" in c]
        real = [i for i, c in enumerate(host.commands) if "component apply" in c and "--dry-run" not in c]
        assert dry and real and dry[0] < real[0]


@pytest.mark.parametrize("dry_run", [False, True])
def test_the_lease_is_confirmed_after_the_read_only_plan_and_before_any_change(bundle: Path, dry_run: bool) -> None:
    """hosts prepare plans while its lease settles: ``before_changes`` comes after every host was read and before
    the first upload or maintenance; a dry run changes nothing and confirms nothing."""
    hosts, api, desired, fl = make_fleet(4)
    events: list[tuple[str, str]] = []
    rollout = make_rollout(hosts, api, desired, fl, bundle, events, dry_run=dry_run)
    rollout.before_changes = lambda: events.append(("-", "confirm"))
    rollout.run()
    messages = [m for _, m in events]
    if dry_run:
        assert "confirm" not in messages
        return
    confirm = messages.index("confirm")
    assert messages.count("confirm") == 1
    assert max(i for i, m in enumerate(messages) if m.startswith("plan:")) < confirm
    first_change = min(i for i, m in enumerate(messages) if m.startswith(("staging", "started")))
    assert confirm < first_change


def test_a_damaged_copy_fails_its_host_untouched_and_counts_toward_the_threshold(bundle: Path) -> None:
    hosts, api, desired, fl = make_fleet(4)
    hosts[1].faults.add("corrupt-upload")
    report = rollout(hosts, api, desired, fl, bundle, max_unavailable=2, failure_threshold=1)
    bad = next(h for h in report.hosts if h.name == hosts[1].name)
    assert bad.error["step"] == "stage" and "SHA-256" in bad.error["message"]
    assert f"enter {hosts[1].name}" not in api.calls and not hosts[1].reboots
    # Threshold 1: the failure was known before any maintenance, so no host entered it.
    assert report.exit_code == 1 and "1 failed host(s)" in (report.stopped or "")
    assert not any(c.startswith("enter") for c in api.calls)


def test_a_stale_file_of_the_same_name_is_replaced(bundle: Path) -> None:
    hosts, api, desired, fl = make_fleet(1)
    hosts[0].files[BUNDLE] = bundle.stat().st_size  # same size, other bytes (another build of the same name)
    hosts[0].file_sha256[BUNDLE] = "a" * 64
    report = rollout(hosts, api, desired, fl, bundle)
    assert report.exit_code == 0, report.to_json()
    assert f"rm -f {BUNDLE}" in hosts[0].commands and f"<upload {BUNDLE}>" in hosts[0].commands
    second = rollout(hosts, api, desired, fl, bundle)  # converged: nothing staged or done again
    assert not any(h.changed for h in second.hosts)
    assert hosts[0].commands.count(f"<upload {BUNDLE}>") == 1


def test_stop_request_lets_started_hosts_finish_and_skips_the_rest(bundle: Path) -> None:
    hosts, api, desired, fl = make_fleet(4)
    for h in hosts:
        h.reboot_seconds = 0.3
    events: list[tuple[str, str]] = []
    run = make_rollout(hosts, api, desired, fl, bundle, events, max_unavailable=2)
    original = run.on_event

    def on_event(host: str, message: str) -> None:
        original(host, message)
        if message == "started":
            run.request_stop()  # SIGINT while the first hosts are in their window

    run.on_event = on_event
    report = run.run()
    assert report.exit_code == 130 and report.interrupted
    finished = [h for h in report.hosts if not h.error]
    skipped = [h for h in report.hosts if h.error and h.error["step"] == "skipped"]
    assert finished and skipped and len(finished) + len(skipped) == 4
    assert all("interrupted" in h.error["message"] for h in skipped)
    assert not any(api.maintenance.values())  # the started hosts finished their window and left maintenance
    for h in finished:
        assert next(x for x in hosts if x.name == h.name).driver_loaded == WANTED
    for h in skipped:
        host = next(x for x in hosts if x.name == h.name)
        assert host.reboots == 0 and f"enter {host.name}" not in api.calls
