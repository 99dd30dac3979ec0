"""vSphere guest OS identifiers: which are 64-bit, which are Linux (GPU VMs and PVRDMA depend on it)."""

from __future__ import annotations

_NOT_LINUX = (
    "windows",
    "win",
    "darwin",
    "freebsd",
    "solaris",
    "netware",
    "os2",
    "dos",
    "sco",
    "unixware",
    "ecomstation",
    "vmkernel",
    "otherguest",
)
_LINUX = (
    "ubuntu",
    "rhel",
    "centos",
    "debian",
    "sles",
    "oraclelinux",
    "rockylinux",
    "almalinux",
    "vmwarephoton",
    "amazonlinux",
    "fedora",
    "opensuse",
    "coreos",
    "asianux",
    "mandriva",
    "turbolinux",
    "redhat",
    "suse",
    "mandrake",
    "novell",
    "miraclelinux",
    "pardus",
    "kylinlinux",
    "fusionos",
    "prolinux",
)


def is_64bit_guest(guest_id: str) -> bool:
    """``ubuntu64Guest``, ``rhel9_64Guest``, ``otherGuest64`` ... are 64-bit; ``ubuntuGuest`` is not."""
    return "64" in guest_id


def is_linux_guest(guest_id: str) -> bool:
    g = guest_id.lower()
    if g.startswith(_NOT_LINUX):
        return False
    return "linux" in g or g.startswith(_LINUX)
