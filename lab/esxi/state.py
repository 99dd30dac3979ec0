"""Per-host persistent state of a simulated ESXi host: one JSON file, guarded by an flock.

What lives here is what the host itself knows (its software image, which driver module is loaded, MIG modes,
kernel settings, NIC firmware settings, injected faults, whether it is up). What vCenter knows (maintenance mode,
graphics configuration, connection state) lives in vcsim and is read/written through lab.esxi.vcface, so that
both faces of the lab always agree.

"Pending until reboot" is modelled the way mig-parted's fakes do: a current and a pending/next value; the
supervisor's reboot applies pending onto current (:func:`apply_reboot`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lab.paths import LabPaths

ESXI_VERSION = "8.0.3"
ESXI_BUILD = "24414501"
ESXI_UPDATE = "Update 3"
ESXI_INSTALL_DATE = "2024-11-12"

# A small, realistic ESXi 8.0 U3 image (name, version, vendor, acceptance, summary, component, component display).
_BASE_VIBS: list[tuple[str, str, str, str, str, str, str]] = [
    (
        "esx-base",
        f"{ESXI_VERSION}-0.55.{ESXI_BUILD}",
        "VMware",
        "VMwareCertified",
        "esx-base: ESXi base system",
        "ESXi",
        "ESXi",
    ),
    (
        "esx-ui",
        "2.16.0-24186544",
        "VMware",
        "VMwareCertified",
        "VMware Host Client",
        "VMware-Host-Client",
        "VMware Host Client",
    ),
    (
        "esxio-combiner",
        f"{ESXI_VERSION}-0.55.{ESXI_BUILD}",
        "VMware",
        "VMwareCertified",
        "esxio-combiner: ESXi io combiner",
        "ESXi",
        "ESXi",
    ),
    (
        "native-misc-drivers",
        f"{ESXI_VERSION}-0.55.{ESXI_BUILD}",
        "VMware",
        "VMwareCertified",
        "native-misc-drivers: Miscellaneous drivers",
        "ESXi",
        "ESXi",
    ),
    (
        "nmlx5-core",
        "4.23.0.66-1vmw.800.1.0.20513097",
        "VMW",
        "VMwareCertified",
        "Mellanox ConnectX-4/5/6 Ethernet driver",
        "Mellanox-nmlx5",
        "Mellanox 5th generation NIC Driver",
    ),
    (
        "nmlx5-rdma",
        "4.23.0.66-1vmw.800.1.0.20513097",
        "VMW",
        "VMwareCertified",
        "Mellanox ConnectX-4/5/6 RDMA driver",
        "Mellanox-nmlx5",
        "Mellanox 5th generation NIC Driver",
    ),
    (
        "vmkusb",
        "0.1-26vmw.803.0.55.24414501",
        "VMW",
        "VMwareCertified",
        "USB Native Driver for VMware",
        "VMware-vmkusb",
        "USB Native Driver for VMware",
    ),
    ("vsan", f"{ESXI_VERSION}-0.55.{ESXI_BUILD}", "VMware", "VMwareCertified", "vSAN for ESXi", "ESXi", "ESXi"),
    (
        "tools-light",
        "12.4.5.23787635-24262298",
        "VMware",
        "VMwareCertified",
        "VMware Tools",
        "VMware-VM-Tools",
        "VMware Tools Async Release",
    ),
    (
        "cpu-microcode",
        f"{ESXI_VERSION}-0.55.{ESXI_BUILD}",
        "VMware",
        "VMwareCertified",
        "Processor microcode for ESXi",
        "ESXi",
        "ESXi",
    ),
]

# Kernel (boot) settings shown by `esxcli system settings kernel list` (ESXi 8.0U3c defaults, esxi_kernel_settings_ats_acs.txt).
_KERNEL_SETTINGS: list[tuple[str, str, str, str]] = [
    ("atsSupport", "Bool", "TRUE", "Enable Support for PCIe ATS."),
    ("disableACSCheck", "Bool", "FALSE", "Bypass ACS capability checks on all PCIE devices"),
    ("disablePciPassthrough", "Bool", "FALSE", "Disable PCI Passthrough"),
    ("enableACSCheckForRP", "Bool", "FALSE", "Enable ACS capability checks for Root Port"),
    (
        "iommuMapReservedMem",
        "uint32",
        "3",
        "Controls mapping of reserved memory for identity-mapped IOMMU domains; 0 = Honor ACPI RMRR; 1 = Map all reserved memory; 2 = Don't map any reserved memory;3 = Auto, ESXi kernel makes the decision.",
    ),
    ("iovDisableIR", "Bool", "FALSE", "Disable Interrupt Remapping in the IOMMU."),
    ("iovEnablePostedIntr", "Bool", "TRUE", "Enable support for posted interrupts in the IOMMU."),
    ("iovPasidMode", "Bool", "TRUE", "Enable PASID support in IOV"),
]


def _vib_record(
    name: str, version: str, vendor: str, acceptance: str, summary: str, comp: str, comp_display: str
) -> dict:
    vib_type = "bootbank"
    return {
        "name": name,
        "version": version,
        "vendor": vendor,
        "acceptance": acceptance,
        "summary": summary,
        "description": summary,
        "release_date": "2024-09-10",
        "install_date": ESXI_INSTALL_DATE,
        "vib_type": vib_type,
        "maintenance_mode": True,
        "live_install": False,
        "live_remove": False,
        "stateless_ready": True,
        "overlay": False,
        "depends": [],
        "tags": [],
        "payloads": [name[:8]],
        "component": comp,
        "component_display": comp_display,
        "component_version": version,
        "component_display_version": version.split("-")[0],
        "id": f"{vendor}_{vib_type}_{name}_{version}",
    }


def initial_state(host: dict[str, Any]) -> dict[str, Any]:
    """A freshly installed host from its topology entry (lab.topology JSON): no NVIDIA driver, MIG off."""
    gpus = [
        {
            **{
                k: g[k]
                for k in ("pci_id", "model", "device_id", "device_name", "numa_node", "architecture", "mig_capable")
            },
            "index": i,
            "mig_current": False,
            "mig_pending": False,
        }
        for i, g in enumerate(host["gpus"])
    ]
    nics = [
        {
            **{k: n[k] for k in ("pci_id", "device_id", "device_name", "numa_node", "vmnic", "vmrdma")},
            "ats_current": False,
            "ats_next": False,
        }
        for n in host["nics"]
    ]
    return {
        "name": host["name"],
        "address": host["address"],
        "boot": {"count": 1, "booted_at": time.time()},
        "power": "on",  # on | rebooting | down (a no-return fault keeps it down)
        "vibs": [_vib_record(*v) for v in _BASE_VIBS],
        "driver_loaded": None,  # VIB version of the loaded nvidia module (set at boot from the image)
        "gpus": gpus,
        "nics": nics,
        "kernel": {
            name: {"type": typ, "default": default, "configured": default, "runtime": default, "description": desc}
            for name, typ, default, desc in _KERNEL_SETTINGS
        },
        "faults": {},
    }


def apply_reboot(state: dict[str, Any]) -> dict[str, Any]:
    """What a reboot makes effective: the image's NVIDIA driver loads, pending MIG / kernel / NIC firmware apply."""
    nvidia = next((v for v in state["vibs"] if v["vendor"] == "NVIDIA"), None)
    state["driver_loaded"] = nvidia["version"] if nvidia else None
    for gpu in state["gpus"]:
        gpu["mig_current"] = gpu["mig_pending"]
    for setting in state["kernel"].values():
        setting["runtime"] = setting["configured"].upper() if setting["type"] == "Bool" else setting["configured"]
    for nic in state["nics"]:
        nic["ats_current"] = nic["ats_next"]
    state["boot"] = {"count": state["boot"]["count"] + 1, "booted_at": time.time()}
    state["power"] = "on"
    return state


def driver_version(state: dict[str, Any]) -> str | None:
    """The loaded NVIDIA driver's version (``550.90.05``), or None when nvidia-smi is absent."""
    loaded = state.get("driver_loaded")
    return loaded.split("-")[0] if loaded else None


class HostNotFound(Exception):
    pass


class HostStore:
    """Read or edit one host's state under its lock (an flock on ``state.json.lock``)."""

    def __init__(self, paths: LabPaths, name: str) -> None:
        self.paths = paths
        self.name = name
        self.path = paths.host_state(name)
        self.lock_path = self.path.with_name("state.json.lock")

    def exists(self) -> bool:
        return self.path.exists()

    @contextlib.contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        if not self.path.parent.exists():
            raise HostNotFound(self.name)
        with open(self.lock_path, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _load(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError as exc:
            raise HostNotFound(self.name) from exc

    def _save(self, state: dict[str, Any]) -> None:
        tmp = self.path.with_name(f".state.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, self.path)

    def read(self) -> dict[str, Any]:
        with self._locked(exclusive=False):
            return self._load()

    @contextlib.contextmanager
    def edit(self) -> Iterator[dict[str, Any]]:
        """Yield the state for modification; it is saved when the block exits without an exception."""
        with self._locked(exclusive=True):
            state = self._load()
            yield state
            self._save(state)

    def write(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                self._save(state)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def host_names(paths: LabPaths) -> list[str]:
    if not paths.hosts_dir.exists():
        return []
    return sorted(p.name for p in paths.hosts_dir.iterdir() if (p / "state.json").exists())


def host_fs_path(paths: LabPaths, host: str, esx_path: str) -> Path:
    """Map an absolute ESXi path (``/vmfs/volumes/datastore1/x.zip``) into the host's fake file system.

    Raises ValueError for relative paths or paths escaping the root (``..``)."""
    if not esx_path.startswith("/"):
        raise ValueError(f"not an absolute path: {esx_path}")
    root = paths.host_fs(host).resolve()
    candidate = (root / esx_path.lstrip("/")).resolve()
    if candidate != root and root not in candidate.parents:
        raise ValueError(f"path escapes the host file system: {esx_path}")
    return candidate


def prepare_host_fs(paths: LabPaths, host: str, datastore: str) -> None:
    """Create the fake file system: /vmfs/volumes/datastore1 (+ an alias named like the vCenter datastore), /tmp."""
    fs = paths.host_fs(host)
    ds = fs / "vmfs" / "volumes" / "datastore1"
    ds.mkdir(parents=True, exist_ok=True)
    (fs / "tmp").mkdir(exist_ok=True)
    (fs / "var" / "log" / "vmware").mkdir(parents=True, exist_ok=True)
    alias = fs / "vmfs" / "volumes" / datastore
    if datastore != "datastore1" and not alias.exists():
        alias.symlink_to("datastore1")


def reset_fs(fs: Path) -> None:
    """Empty the host's uploads (used by the per-test reset)."""
    import shutil

    for sub in ("vmfs/volumes/datastore1", "tmp"):
        d = fs / sub
        if d.exists():
            for child in d.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()


__all__ = [
    "ESXI_BUILD",
    "ESXI_UPDATE",
    "ESXI_VERSION",
    "HostNotFound",
    "HostStore",
    "apply_reboot",
    "driver_version",
    "host_fs_path",
    "host_names",
    "initial_state",
    "prepare_host_fs",
]
