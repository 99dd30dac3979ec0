"""The lab's events log: what happened to which host and when, one JSON object per line in ``events.jsonl``.

Events (``event`` field): ``maintenance_enter`` / ``maintenance_exit`` (``via``: esxcli | vim-cmd | vcenter),
``reboot_start`` / ``reboot_done`` / ``reboot_no_return``, ``vib_install`` / ``vib_remove`` / ``component_apply``,
``mig_mode`` (``gpu``, ``enabled``, ``pending``), ``graphics_host_set``, ``kernel_set``, ``mlxconfig_set``,
``fault_injected`` / ``fault_cleared`` / ``fault_fired`` (``kind``), ``host_reset``.
Every event has ``ts`` (UNIX time, float) and ``host``. Tests read them with :func:`read_events` and check
rollout properties with :func:`max_concurrent` (e.g. "at most one host in maintenance at a time").
"""

from __future__ import annotations

import fcntl
import json
import time
from pathlib import Path
from typing import Any

from lab.paths import LabPaths


def record(paths: LabPaths, host: str, event: str, **data: Any) -> dict[str, Any]:
    entry = {"ts": time.time(), "host": host, "event": event, **data}
    line = json.dumps(entry, sort_keys=False) + "\n"
    paths.events_file.parent.mkdir(parents=True, exist_ok=True)
    with open(paths.events_file, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            fh.write(line)
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    return entry


def read_events(
    paths: LabPaths | Path | None = None, since: float = 0.0, host: str | None = None
) -> list[dict[str, Any]]:
    """Events at or after ``since`` (UNIX time), optionally for one host, in file order."""
    if paths is None or isinstance(paths, Path):
        paths = LabPaths.resolve(paths)
    try:
        text = paths.events_file.read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        if entry["ts"] >= since and (host is None or entry["host"] == host):
            out.append(entry)
    return out


def max_concurrent(
    events: list[dict[str, Any]], start: str = "maintenance_enter", end: str = "maintenance_exit"
) -> int:
    """Largest number of hosts that were between ``start`` and ``end`` at the same moment."""
    inside: set[str] = set()
    peak = 0
    for entry in sorted(events, key=lambda e: e["ts"]):
        if entry["event"] == start:
            inside.add(entry["host"])
            peak = max(peak, len(inside))
        elif entry["event"] == end:
            inside.discard(entry["host"])
    return peak
