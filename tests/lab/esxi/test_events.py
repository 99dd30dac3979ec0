"""The events log helpers tests use to check rollouts."""

from __future__ import annotations

from lab.esxi.events import max_concurrent, read_events, record
from lab.paths import LabPaths


def test_max_concurrent_counts_overlapping_maintenance_windows() -> None:
    events = [
        {"ts": 1.0, "host": "a", "event": "maintenance_enter"},
        {"ts": 2.0, "host": "b", "event": "maintenance_enter"},
        {"ts": 3.0, "host": "a", "event": "maintenance_exit"},
        {"ts": 4.0, "host": "c", "event": "maintenance_enter"},
        {"ts": 5.0, "host": "b", "event": "maintenance_exit"},
        {"ts": 6.0, "host": "c", "event": "maintenance_exit"},
        {"ts": 7.0, "host": "d", "event": "maintenance_enter"},
    ]
    assert max_concurrent(events) == 2
    assert max_concurrent(events[:2]) == 2 and max_concurrent(events[:1]) == 1 and max_concurrent([]) == 0


def test_record_and_read_events_filter_by_host_and_time(tmp_path) -> None:
    paths = LabPaths(tmp_path)
    first = record(paths, "esxi-01.lab", "reboot_start", awaySeconds=1.0)
    record(paths, "esxi-02.lab", "maintenance_enter", via="esxcli")
    assert [e["event"] for e in read_events(paths)] == ["reboot_start", "maintenance_enter"]
    assert read_events(paths, host="esxi-02.lab") == [{**read_events(paths)[1]}]
    assert read_events(paths, since=first["ts"] + 3600) == []
    assert read_events(LabPaths(tmp_path / "none")) == []
