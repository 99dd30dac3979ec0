"""Fault injection for the lab's ESXi hosts (tests call these; ``gpufleet lab fault`` wraps them).

Kinds (stored in the host's state; each firing is recorded as a ``fault_fired`` event):

``vib-install-error``
    ``esxcli software vib install|update`` and ``software component apply`` fail after reading the package,
    with esxcli's ``[InstallationError]`` block and exit status 1; nothing is installed. Until cleared
    (or ``times=N`` firings).
``ssh-drop``
    The next install command (same three commands) loses its SSH connection. ``when="after"`` (default): the
    install IS committed to the host's image first, then the connection is killed before any output - the
    caller cannot know it succeeded and a retry must find the VIB already installed. ``when="before"``: the
    connection drops before anything changes. Fires once by default (``times``).
``no-return``
    A rebooted host does not come back: sshd stays down, vCenter keeps showing ``notResponding``. Clearing the
    fault lets the host finish booting (as if someone power-cycled it). Until cleared.
``slow-reboot``
    Reboots keep the host away ``seconds`` (default 30) instead of the lab's reboot time. Until cleared.
"""

from __future__ import annotations

from typing import Any

from lab.esxi import events
from lab.esxi.state import HostNotFound, HostStore, host_names
from lab.paths import LabPaths

FAULT_KINDS: dict[str, str] = {
    "vib-install-error": "software installs fail with [InstallationError]",
    "ssh-drop": "the SSH connection drops during the next install (when=after: work done; before: not done)",
    "no-return": "the host does not come back after a reboot",
    "slow-reboot": "reboots keep the host away SECONDS",
}


class FaultError(ValueError):
    """Bad fault request: names the field and what would be valid."""


def _store(host: str, paths: LabPaths | None) -> tuple[LabPaths, HostStore]:
    paths = paths or LabPaths.resolve()
    store = HostStore(paths, host)
    if not store.exists():
        valid = host_names(paths)
        raise FaultError(
            f"host {host!r} is not a lab host; valid hosts: {', '.join(valid) or '(no lab running at ' + str(paths.root) + ')'}"
        )
    return paths, store


def inject(
    host: str,
    kind: str,
    *,
    paths: LabPaths | None = None,
    times: int | None = None,
    seconds: float | None = None,
    when: str | None = None,
) -> dict[str, Any]:
    """Arm ``kind`` on ``host``; returns the stored fault parameters. Validation happens before any change."""
    if kind not in FAULT_KINDS:
        raise FaultError(f"fault kind {kind!r} is not known; valid kinds: {', '.join(FAULT_KINDS)}")
    if times is not None and times < 1:
        raise FaultError(f"times must be at least 1 (got {times})")
    if seconds is not None and kind != "slow-reboot":
        raise FaultError("seconds applies only to the slow-reboot fault")
    if seconds is not None and not 0 < seconds <= 3600:
        raise FaultError(f"seconds must be in (0, 3600] (got {seconds})")
    if when is not None and (kind != "ssh-drop" or when not in ("before", "after")):
        raise FaultError("when applies only to ssh-drop and must be 'before' or 'after'")
    paths, store = _store(host, paths)
    fault: dict[str, Any] = {"remaining": times if times is not None else (1 if kind == "ssh-drop" else None)}
    if kind == "slow-reboot":
        fault["seconds"] = seconds if seconds is not None else 30.0
    if kind == "ssh-drop":
        fault["when"] = when or "after"
    try:
        with store.edit() as state:
            state.setdefault("faults", {})[kind] = fault
    except HostNotFound as exc:
        raise FaultError(f"host {host!r} has no state under {paths.root}") from exc
    events.record(paths, host, "fault_injected", kind=kind, **{k: v for k, v in fault.items() if v is not None})
    return fault


def clear(host: str, kind: str | None = None, *, paths: LabPaths | None = None) -> list[str]:
    """Disarm ``kind`` (or every fault) on ``host``; returns the kinds that were armed."""
    if kind is not None and kind not in FAULT_KINDS:
        raise FaultError(f"fault kind {kind!r} is not known; valid kinds: {', '.join(FAULT_KINDS)}")
    paths, store = _store(host, paths)
    with store.edit() as state:
        faults = state.setdefault("faults", {})
        cleared = [k for k in list(faults) if kind is None or k == kind]
        for k in cleared:
            del faults[k]
    for k in cleared:
        events.record(paths, host, "fault_cleared", kind=k)
    return cleared


def active(host: str, *, paths: LabPaths | None = None) -> dict[str, Any]:
    """The faults armed on ``host`` (kind -> parameters)."""
    _, store = _store(host, paths)
    return dict(store.read().get("faults", {}))
