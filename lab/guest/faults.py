"""Fault injection for the lab's guest personas (``gpufleet lab fault GUEST KIND`` routes here by name).

Kinds (stored in the guest's state until cleared):

``package-conflict``
    apt refuses every NVIDIA package: an installed package (nvidia-container-runtime 3.5) conflicts.
``depot-unreachable``
    the guest cannot reach its package mirror (apt: "Temporary failure resolving"); SFTP uploads still work.
``reboot-needed``
    after a driver install the NVIDIA module does not load until the guest reboots.
"""

from __future__ import annotations

from lab.guest.state import GuestState
from lab.paths import LabPaths

GUEST_FAULT_KINDS: dict[str, str] = {
    "package-conflict": "apt refuses NVIDIA packages (an installed package conflicts)",
    "depot-unreachable": "the guest cannot reach its package mirror",
    "reboot-needed": "the NVIDIA module loads only after a reboot",
}


class GuestFaultError(ValueError):
    """Bad fault request: names the field and what would be valid."""


def is_guest(name: str, paths: LabPaths | None = None) -> bool:
    paths = paths or LabPaths.resolve()
    return (paths.guests_dir / name / "state.json").exists()


def _store(name: str, paths: LabPaths | None) -> GuestState:
    paths = paths or LabPaths.resolve()
    if not is_guest(name, paths):
        known = (
            sorted(p.name for p in paths.guests_dir.iterdir() if (p / "state.json").exists())
            if paths.guests_dir.is_dir()
            else []
        )
        raise GuestFaultError(f"{name!r} is not a lab guest; valid guests: {', '.join(known) or '(none)'}")
    return GuestState(paths.guests_dir / name)


def inject(name: str, kind: str, *, paths: LabPaths | None = None) -> dict:
    if kind not in GUEST_FAULT_KINDS:
        raise GuestFaultError(f"guest fault kind {kind!r} is not known; valid kinds: {', '.join(GUEST_FAULT_KINDS)}")
    store = _store(name, paths)
    with store.update() as state:
        state.setdefault("faults", {})[kind] = True
    return {"armed": True}


def clear(name: str, kind: str | None = None, *, paths: LabPaths | None = None) -> list[str]:
    if kind is not None and kind not in GUEST_FAULT_KINDS:
        raise GuestFaultError(f"guest fault kind {kind!r} is not known; valid kinds: {', '.join(GUEST_FAULT_KINDS)}")
    store = _store(name, paths)
    with store.update() as state:
        faults = state.setdefault("faults", {})
        cleared = [k for k in GUEST_FAULT_KINDS if faults.get(k) and (kind is None or k == kind)]
        for k in cleared:
            faults[k] = False
    return cleared
