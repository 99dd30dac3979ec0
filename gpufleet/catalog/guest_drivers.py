"""Which NVIDIA guest driver pairs with a host's vGPU Manager (data/vgpu_guest_driver_branches.csv, with its
sources: NVIDIA's vGPU release notes for VMware vSphere).

NVIDIA's rule (release notes, "Compatibility Requirements for the NVIDIA vGPU Manager and Guest VM Driver"): a vGPU
Manager works with guest drivers of its own major branch, and with those of the previous branch (a later Manager
with older guests, for upgrades). Any other pairing makes the vGPU fail to load in the guest. The default guest
driver of a host driver is the Linux driver NVIDIA ships in the same vGPU release (550.90.05 -> 550.90.07), else
the newest Linux driver of the same branch the table knows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from gpufleet.catalog.loader import read_rows

DATA_FILE = "vgpu_guest_driver_branches.csv"


@dataclass(frozen=True)
class VgpuRelease:
    release: str  # NVIDIA vGPU software release, e.g. "17.3"
    branch: str  # "550"
    branch_type: str  # "production" | "long-term-support"
    manager: str  # vGPU Manager (host driver) version, e.g. "550.90.05"
    guest: str  # Linux guest driver of the same release, e.g. "550.90.07"
    source: str  # the NVIDIA page the row comes from


def branch_of(version: str) -> str:
    """``550.90.07`` -> ``550``: NVIDIA's major release branch of a driver version."""
    return version.strip().split(".", 1)[0]


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


@cache
def releases() -> tuple[VgpuRelease, ...]:
    rows = read_rows(DATA_FILE)
    return tuple(
        VgpuRelease(
            r["vgpu_release"],
            r["branch"],
            r["branch_type"],
            r["vgpu_manager_version"],
            r["linux_guest_driver"],
            r["source"],
        )
        for r in rows
    )


def branches() -> list[str]:
    """The major branches the table knows, oldest first."""
    return sorted({r.branch for r in releases()}, key=int)


def compatible_guest_branches(host_version: str) -> list[str]:
    """Guest driver branches a vGPU Manager of ``host_version`` accepts: its own and the previous known branch."""
    own = branch_of(host_version)
    known = branches()
    older = [b for b in known if int(b) < int(own)]
    return [own, *older[-1:]]


def default_guest_driver(host_version: str) -> str | None:
    """The Linux guest driver to install for a host running ``host_version``: the one of the same vGPU release,
    else the newest of the same branch the table knows; None when the table knows no release of that branch."""
    same = [r for r in releases() if r.manager == host_version]
    if same:
        return same[0].guest
    branch = [r.guest for r in releases() if r.branch == branch_of(host_version)]
    return max(branch, key=_key) if branch else None


def release_of_manager(host_version: str) -> VgpuRelease | None:
    return next((r for r in releases() if r.manager == host_version), None)


def pairing_problem(host_version: str, guest_version: str) -> str | None:
    """Why a guest driver cannot pair with the host's vGPU Manager (None: it can). Names both versions."""
    allowed = compatible_guest_branches(host_version)
    if branch_of(guest_version) in allowed:
        return None
    return (
        f"guest driver {guest_version} (branch {branch_of(guest_version)}) cannot pair with the host's vGPU Manager "
        f"{host_version} (branch {branch_of(host_version)}): NVIDIA pairs a vGPU Manager with guest drivers of its "
        f"own branch or the previous one ({', '.join(allowed)})"
    )
