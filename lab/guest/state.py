"""Per-guest persistent state of a guest persona: one JSON file and one directory that stands for the guest's
filesystem (``/etc/nvidia/...`` lives under ``<guest dir>/root/etc/nvidia/...``).

Every SSH command is a fresh process, so state changes (a restarted nvidia-gridd, a licence acquired) go through
``update()``, which holds an exclusive lock on the state file while it reads, changes and rewrites it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"
ROOT_DIR = "root"

# The vGPU guest driver paired with the lab's host driver 550.90.05 (NVIDIA vGPU 17.3: host 550.90.05,
# Linux guest 550.90.07), and the data-center driver of the passthrough persona (as in h100_baremetal).
VGPU_GUEST_DRIVER = "550.90.07"
DATACENTER_DRIVER = "580.159.04"
CONTAINER_TOOLKIT_VERSION = "1.16.2"

GRIDD_CONF_TEMPLATE = """\
# /etc/nvidia/gridd.conf.template - Configuration file for NVIDIA Grid Daemon

# This is a template for the configuration file for NVIDIA Grid Daemon.
# For details on the file format, please refer to the nvidia-gridd(1)
# man page.

# Description: Set Feature to be enabled
# Data type: integer
# Possible values:
#    0 => for unlicensed state
#    1 => for NVIDIA vGPU (Optional, autodetected as per vGPU type)
#    2 => for NVIDIA RTX Virtual Workstation
#    4 => for NVIDIA Virtual Compute Server
# All other values reserved
FeatureType=0

# Description: Parameter to enable or disable Grid Licensing tab in nvidia-settings
# Data type: boolean
# Possible values: TRUE or FALSE, default is FALSE
#EnableUI=TRUE

# Description: Set path to client configuration token
# Data type: string
# Format: "<path>"
#ClientConfigTokenPath=
"""

OS_RELEASE = """\
PRETTY_NAME="Ubuntu 22.04.4 LTS"
NAME="Ubuntu"
VERSION_ID="22.04"
VERSION="22.04.4 LTS (Jammy Jellyfish)"
VERSION_CODENAME=jammy
ID=ubuntu
ID_LIKE=debian
HOME_URL="https://www.ubuntu.com/"
SUPPORT_URL="https://help.ubuntu.com/"
BUG_REPORT_URL="https://bugs.launchpad.net/ubuntu/"
PRIVACY_POLICY_URL="https://www.ubuntu.com/legal/terms-and-policies/privacy-policy"
UBUNTU_CODENAME=jammy
"""

# What each persona starts with. GPU devices come from vCenter (what `gpufleet vms apply` attached); the
# ``static_gpus`` / ``static_rdma`` lists are used instead when ``gpu_source`` is "static" (unit tests, no vcsim).
PERSONA_DEFAULTS: dict[str, dict[str, Any]] = {
    "vgpu-timesliced": {"static_gpus": [{"kind": "vgpu", "profile": "nvidia_l40s-24c"}], "static_rdma": []},
    "vgpu-mig": {"static_gpus": [{"kind": "vgpu", "profile": "grid_a100d-3-40c"}], "static_rdma": []},
    "passthrough-h100": {"static_gpus": [{"kind": "passthrough", "model": "H100-80GB-PCIe"}], "static_rdma": []},
    "rdma": {
        "static_gpus": [{"kind": "vgpu", "profile": "nvidia_h100-3-40c"}],
        "static_rdma": [{"type": "pvrdma", "roce": "v2"}],
    },
    # vSphere Bitfusion (lab/guest/bitfusion.py): a server exports its passthrough GPUs, a client has none.
    "bitfusion-server": {
        "static_gpus": [{"kind": "passthrough", "model": "T4"}, {"kind": "passthrough", "model": "T4"}],
        "static_rdma": [{"type": "pvrdma", "roce": "v2"}],
    },
    "bitfusion-client": {"static_gpus": [], "static_rdma": [{"type": "pvrdma", "roce": "v2"}]},
}


# The dpkg database of every persona (Docker CE from Docker's apt repository), and what a prepared guest adds.
BASE_PACKAGES = {
    "docker-ce": "5:27.2.0-1~ubuntu.22.04~jammy",
    "docker-ce-cli": "5:27.2.0-1~ubuntu.22.04~jammy",
    "containerd.io": "1.7.21-1",
    "build-essential": "12.9ubuntu3",
}
PREPARED_PACKAGES = {
    "dkms": "2.8.7-2ubuntu2.2",
    **{
        name: f"{CONTAINER_TOOLKIT_VERSION}-1"
        for name in (
            "nvidia-container-toolkit",
            "nvidia-container-toolkit-base",
            "libnvidia-container-tools",
            "libnvidia-container1",
        )
    },
}
BLACKLIST_NOUVEAU = "blacklist nouveau\noptions nouveau modeset=0\n"
DAEMON_JSON_NVIDIA = '{\n    "runtimes": {\n        "nvidia": {\n            "args": [],\n            "path": "nvidia-container-runtime"\n        }\n    }\n}\n'
GRUB_DEFAULT = 'GRUB_DEFAULT=0\nGRUB_TIMEOUT=0\nGRUB_CMDLINE_LINUX_DEFAULT=""\nGRUB_CMDLINE_LINUX=""\n'


def initial_state(
    name: str,
    persona: str,
    host: str | None,
    token_sha256: str | None,
    gpu_source: str,
    bare: bool = False,
    address: str | None = None,
    bitfusion: dict | None = None,
) -> dict:
    """The state a persona starts with: driver installed, toolkit and docker ready, gridd running unlicensed (a
    deployed guest). ``bare``: a fresh Ubuntu with Docker only: no NVIDIA driver (nouveau loaded), no toolkit,
    no nvidia runtime (what ``gpufleet guests prepare`` starts from)."""
    if persona not in PERSONA_DEFAULTS:
        raise ValueError(f"unknown guest persona {persona!r} (known: {', '.join(PERSONA_DEFAULTS)})")
    return {
        "name": name,
        "vm": name,
        "persona": persona,
        "host": host,
        "gpu_source": gpu_source,
        **PERSONA_DEFAULTS[persona],
        "arch": "x86_64",
        "kernel": "5.15.0-119-generic",
        "driver": (
            {"installed": False, "version": None, "loaded": False, "method": None, "dkms": False}
            if bare
            else {"installed": True, "version": None, "loaded": True, "method": "run", "dkms": True}
        ),
        "packages": dict(BASE_PACKAGES) if bare else {**BASE_PACKAGES, **PREPARED_PACKAGES},
        "nouveau": {"present": True, "loaded": bare},
        "boot": {"id": "6d1f9a52-3c1e-4b8e-9a57-1f0c2f1e0a01", "down_until": 0.0, "count": 0, "cmdline": []},
        "reboot_seconds": 1.0,
        "bare": bare,
        "container": {
            "toolkit": None if bare else CONTAINER_TOOLKIT_VERSION,
            "docker": True,
            "nvidia_runtime": not bare,
        },
        "gridd": {"active": True, "enabled": True, "started_at": 0.0, "license": None, "log": []},
        "license_delay_s": 1.0,
        "license_token_sha256": token_sha256,
        "nvlink": True,
        "faults": {"license_server_down": False},
        "address": address,  # the persona's SSH address (Bitfusion servers listen on it)
        "bitfusion": bitfusion or {},  # SHA-256 of the lab pool's CA and client token (what servers accept)
    }


class GuestState:
    """A guest's state directory: ``state.json`` plus ``root/`` (its filesystem)."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.file = self.dir / STATE_FILE
        self.root = self.dir / ROOT_DIR

    @classmethod
    def create(cls, directory: Path, state: dict) -> GuestState:
        """Write a fresh state and the guest's base filesystem (idempotent: an existing state is kept)."""
        guest = cls(directory)
        guest.dir.mkdir(parents=True, exist_ok=True)
        if not guest.file.exists():
            guest._write(state)
        nvidia = guest.root / "etc" / "nvidia"
        (nvidia / "ClientConfigToken").mkdir(parents=True, exist_ok=True)
        template = nvidia / "gridd.conf.template"
        if not template.exists():
            template.write_text(GRIDD_CONF_TEMPLATE)
        os_release = guest.root / "etc" / "os-release"
        if not os_release.exists():
            os_release.write_text(OS_RELEASE)
        (guest.root / "tmp").mkdir(exist_ok=True)
        (guest.root / "run" / "systemd" / "system").mkdir(parents=True, exist_ok=True)  # testinfra: systemd host
        (guest.root / "root").mkdir(exist_ok=True)
        (guest.root / "var" / "lib" / "nvidia" / "GridLicensing").mkdir(parents=True, exist_ok=True)
        etc = guest.root / "etc"
        for sub in ("modprobe.d", "docker", "default"):
            (etc / sub).mkdir(parents=True, exist_ok=True)
        current = guest.read()
        if not (etc / "default" / "grub").exists():
            (etc / "default" / "grub").write_text(GRUB_DEFAULT)
        if not current.get("bare") and current.get("packages"):
            # A deployed guest: nouveau blacklisted, Docker configured with the nvidia runtime.
            for path, text in (
                (etc / "modprobe.d" / "blacklist-nouveau.conf", BLACKLIST_NOUVEAU),
                (etc / "docker" / "daemon.json", DAEMON_JSON_NVIDIA),
            ):
                if not path.exists():
                    path.write_text(text)
        return guest

    def read(self) -> dict:
        with open(self.file) as fh:
            fcntl.flock(fh, fcntl.LOCK_SH)
            return json.load(fh)

    @contextlib.contextmanager
    def update(self) -> Iterator[dict]:
        """Read-modify-write under an exclusive lock; the change is written when the block ends without error."""
        with open(self.file, "r+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            state = json.load(fh)
            yield state
            fh.seek(0)
            fh.truncate()
            json.dump(state, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())

    def _write(self, state: dict) -> None:
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.file)
