"""Stateful fakes for host preparation tests (mig-parted style: they model "pending until reboot").

``FakeHost`` is a ``Runner`` that answers the commands host_setup sends with the formats real ESXi prints
(esxcli ``--formatter=xml``, ``nvidia-smi -q -x``, ``mlxconfig -e q``), keeps per-host state and applies the
pending state at a reboot. ``FakeApi`` is a ``HostApi`` (maintenance, markers, connection) that records when
hosts enter and leave maintenance, to check the concurrency bound.
"""

from __future__ import annotations

import hashlib
import shlex
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpufleet.errors import ConnectError
from gpufleet.remote.ssh import CommandResult, ConnectionLost
from gpufleet.vsphere.hosts import EvacuationRefused, HostState

# -- esxcli XML, as esxcli --formatter=xml prints it ------------------------------------------------------------


def _xml_value(value: Any, pad: str) -> list[str]:
    if isinstance(value, dict):
        out = [f'{pad}<structure typeName="{value.get("__type__", "Struct")}">']
        for key in sorted(k for k in value if k != "__type__"):
            out.append(f'{pad}   <field name="{key}">')
            out += _xml_value(value[key], pad + "      ")
            out.append(f"{pad}   </field>")
        return [*out, f"{pad}</structure>"]
    if isinstance(value, list):
        kind = "structure" if value and isinstance(value[0], dict) else "string"
        out = [f'{pad}<list type="{kind}">']
        for item in value:
            out += _xml_value(item, pad + "   ")
        return [*out, f"{pad}</list>"]
    if isinstance(value, bool):
        return [f"{pad}<boolean>{'true' if value else 'false'}</boolean>"]
    if isinstance(value, int):
        return [f"{pad}<integer>{value}</integer>"]
    return [f"{pad}<string>{value}</string>"]


def esxcli_xml(value: Any) -> str:
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<output xmlns="http://www.vmware.com/Products/ESX/5.0/esxcli">',
        "<root>",
    ]
    if value is not None:
        lines += _xml_value(value, "   ")
    return "\n".join([*lines, "</root>", "</output>"]) + "\n"


@dataclass
class FakeGpu:
    pci: str
    name: str
    architecture: str  # Ampere | Hopper | Ada Lovelace | Turing
    mig_capable: bool
    mig_current: bool = False
    mig_pending: bool = False


@dataclass
class FakeHost:
    """A simulated ESXi host behind the Runner interface."""

    name: str
    gpus: list[FakeGpu] = field(default_factory=list)
    nics: dict[str, list[bool]] = field(default_factory=dict)  # pci -> [current, next_boot]
    driver_boot: str | None = None  # version in the boot bank ("550.90.05-1OEM.800.1.0.20613240")
    driver_loaded: str | None = None
    graphics: list[str] = field(default_factory=lambda: ["Shared", "Performance"])
    ats_kernel: list[str] = field(default_factory=lambda: ["FALSE", "FALSE"])  # configured, runtime
    files: dict[str, int] = field(default_factory=dict)
    file_sha256: dict[str, str] = field(default_factory=dict)  # datastore path -> content hash (uploaded files)
    bundle_versions: dict[str, str] = field(default_factory=dict)  # datastore path -> driver version in it
    reboot_seconds: float = 0.0
    install_seconds: float = 0.0
    faults: set[str] = field(
        default_factory=set
    )  # install-error, drop-install, no-return, mig-stuck, mig-refused, mig-ignored, reboot-ignored
    commands: list[str] = field(default_factory=list)
    reboots: int = 0
    booted_at: float = field(default_factory=time.monotonic)
    _down: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # Runner interface ------------------------------------------------------------------------------------
    def run(self, argv: list[str], *, timeout: float | None = None) -> CommandResult:
        command = shlex.join(argv)
        if self._down:
            if "no-return" in self.faults:
                raise ConnectError(f"{self.name}: down")
            self._boot()  # it came back (the fault was cleared: someone powered it on)
        with self._lock:
            self.commands.append(command)
        rc, out = self._dispatch(list(argv))
        return CommandResult(command, rc, out)

    def run_many(self, argvs: list[list[str]], *, timeout: float | None = None) -> list[CommandResult]:
        results = [self.run(a, timeout=timeout) for a in argvs]
        return [CommandResult(r.command, 0 if r.rc == 0 else 1, r.output) for r in results]

    def remote_size(self, path: str) -> int | None:
        return self.files.get(path)

    def upload(self, local: Path, remote: str) -> bool:
        if self.files.get(remote) == local.stat().st_size:
            return False
        self.files[remote] = local.stat().st_size
        self.file_sha256[remote] = hashlib.sha256(local.read_bytes()).hexdigest()
        if "corrupt-upload" in self.faults:
            self.file_sha256[remote] = "0" * 64
        self.bundle_versions.setdefault(remote, local.name.split("_")[1].split("-")[0])
        self.commands.append(f"<upload {remote}>")
        return True

    def wait_until_down(self, timeout: float, poll: float = 0.1) -> bool:
        return self._down

    def reconnect(self, timeout: float, poll: float = 0.2) -> None:
        if "no-return" in self.faults:
            raise ConnectError(f"{self.name} did not answer SSH within {timeout:.0f} s")
        if self._down:
            time.sleep(self.reboot_seconds)
            self._boot()

    def close(self) -> None:
        pass

    # the host ----------------------------------------------------------------------------------------------
    @property
    def changing_commands(self) -> list[str]:
        """Commands that change something (what an untouched host must never see)."""
        words = ("apply", "install", " set", "-mig", "reboot", "xorg", "<upload", "rm ")
        return [c for c in self.commands if any(w in c for w in words) and "--dry-run" not in c]

    def _boot(self) -> None:
        self._down = False
        self.reboots += 1
        self.booted_at = time.monotonic()
        self.driver_loaded = self.driver_boot
        for gpu in self.gpus:
            if "mig-stuck" not in self.faults:
                gpu.mig_current = gpu.mig_pending
        self.ats_kernel[1] = self.ats_kernel[0].upper()
        for state in self.nics.values():
            state[0] = state[1]

    def _dispatch(self, argv: list[str]) -> tuple[int, str]:
        if argv[:2] == ["esxcli", "--formatter=xml"]:
            return self._esxcli(argv[2:])
        if argv[:2] == ["esxcli", "system"] and argv[2:] == ["stats", "uptime", "get"]:
            return 0, f"{int((time.monotonic() - self.booted_at) * 1e6)}\n"
        if argv[0] == "nvidia-smi":
            return self._smi(argv[1:])
        if argv[0] == "mlxconfig":
            return self._mlx(argv[1:])
        if argv[:2] == ["test", "-f"]:
            return (0 if argv[2] in self.files else 1), ""
        if argv[0] == "sha256sum":
            path = argv[1]
            if path not in self.files:
                return 1, f"sha256sum: can't open '{path}': No such file or directory\n"
            return 0, f"{self.file_sha256.get(path, 'f' * 64)}  {path}\n"
        if argv[:2] == ["rm", "-f"]:
            self.files.pop(argv[2], None)
            self.file_sha256.pop(argv[2], None)
            return 0, ""
        if argv == ["reboot"]:
            if "reboot-ignored" not in self.faults:
                self._down = True
            return 0, ""
        if argv == ["/etc/init.d/xorg", "restart"]:
            return 0, "Getting Exclusive access, please wait...\nExclusive access granted.\n"
        return 127, f"sh: {argv[0]}: not found\n"

    def _esxcli(self, args: list[str]) -> tuple[int, str]:
        nvidia = []
        if self.driver_boot:
            nvidia = [
                {
                    "Name": "NVD-AIE-800",
                    "DisplayName": "NVIDIA AI Enterprise vGPU driver for VMWare ESX-8.0.0",
                    "Version": self.driver_boot,
                    "DisplayVersion": self.driver_boot.split("-")[0],
                    "Vendor": "NVIDIA",
                }
            ]
        base = [
            {
                "Name": "ESXi",
                "DisplayName": "ESXi",
                "Version": "8.0.3-0.55.24414501",
                "DisplayVersion": "8.0 Update 3",
                "Vendor": "VMware",
            }
        ]
        if args == ["software", "component", "list"]:
            return 0, esxcli_xml(base + nvidia)
        if args == ["software", "vib", "list"]:
            vibs = (
                [{"Name": "NVD-AIE_ESXi_8.0.0_Driver", "Version": self.driver_boot, "Vendor": "NVIDIA", "ID": "x"}]
                if self.driver_boot
                else []
            )
            return 0, esxcli_xml([{"Name": "esx-base", "Version": "8.0.3", "Vendor": "VMware", "ID": "y"}, *vibs])
        if args[:3] == ["software", "component", "apply"] or args[:3] == ["software", "vib", "install"]:
            path = args[args.index("-d") + 1]
            if path not in self.files:
                return 1, f"[MetadataDownloadError]\nCould not download from depot at zip:{path}?index.xml, skipping\n"
            if "--dry-run" in args:
                version = self.bundle_versions.get(path, "550.90.05")
                return 0, esxcli_xml(
                    {
                        "__type__": "InstallationResult",
                        "Message": "Dryrun only, host not changed. The following installers will be applied: "
                        "[BootBankInstaller]",
                        "RebootRequired": True,
                        "ComponentsInstalled": [f"NVD-AIE-800_{version}-1OEM.800.1.0.20613240"],
                        "ComponentsRemoved": [],
                        "ComponentsSkipped": [],
                    }
                )
            if "install-error" in self.faults:
                return 1, "[InstallationError]\nFailed to setup upgrade using esx-update VIB: simulated failure\n"
            time.sleep(self.install_seconds)
            if "drop-install" in self.faults:
                self.faults.discard("drop-install")
                raise ConnectionLost(f"{self.name}: connection lost while running esxcli software component apply")
            version = self.bundle_versions.get(path, "550.90.05")
            self.driver_boot = f"{version}-1OEM.800.1.0.20613240"
            return 0, esxcli_xml(
                {
                    "__type__": "InstallationResult",
                    "Message": "Operation finished successfully.",
                    "RebootRequired": False,
                    "ComponentsInstalled": [f"NVD-AIE-800_{self.driver_boot}"],
                    "ComponentsRemoved": [],
                    "ComponentsSkipped": [],
                }
            )
        if args == ["graphics", "host", "get"]:
            return 0, esxcli_xml(
                {"DefaultGraphicsType": self.graphics[0], "SharedPassthruAssignmentPolicy": self.graphics[1]}
            )
        if args[:3] == ["graphics", "host", "set"]:
            self.graphics[0] = args[args.index("--default-type") + 1]
            if "--shared-passthru-assignment-policy" in args:
                self.graphics[1] = args[args.index("--shared-passthru-assignment-policy") + 1]
            return 0, esxcli_xml(None)
        if args == ["system", "settings", "kernel", "list", "-o", "atsSupport"]:
            c, r = self.ats_kernel
            return 0, esxcli_xml(
                [
                    {
                        "Name": "atsSupport",
                        "Type": "Bool",
                        "Configured": c,
                        "Runtime": r,
                        "Default": "TRUE",
                        "Description": "Enable Support for PCIe ATS.",
                    }
                ]
            )
        if args[:4] == ["system", "settings", "kernel", "set"]:
            self.ats_kernel[0] = args[args.index("-v") + 1]
            return 0, esxcli_xml(None)
        return 1, f"Error: Unknown command or namespace {' '.join(args)}\n"

    def _smi(self, args: list[str]) -> tuple[int, str]:
        if not self.driver_loaded:
            return 127, "sh: nvidia-smi: not found\n"
        if args == ["-q", "-x"]:
            gpus = "".join(
                f'<gpu id="0000{g.pci.upper()}"><product_name>{g.name}</product_name>'
                f"<product_architecture>{g.architecture}</product_architecture>"
                "<mig_mode>"
                + (
                    f"<current_mig>{'Enabled' if g.mig_current else 'Disabled'}</current_mig>"
                    f"<pending_mig>{'Enabled' if g.mig_pending else 'Disabled'}</pending_mig>"
                    if g.mig_capable
                    else "<current_mig>N/A</current_mig><pending_mig>N/A</pending_mig>"
                )
                + "</mig_mode></gpu>"
                for g in self.gpus
            )
            version = self.driver_loaded.split("-")[0]
            return 0, (
                '<?xml version="1.0" ?>\n<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_v12.dtd">\n'
                f"<nvidia_smi_log><driver_version>{version}</driver_version>{gpus}</nvidia_smi_log>\n"
            )
        if len(args) == 4 and args[0] == "-i" and args[2] == "-mig":
            gpu = next((g for g in self.gpus if "0000" + g.pci.upper() == args[1]), None)
            if gpu is None:
                return 6, f"No devices were found matching {args[1]}\n"
            on = args[3] == "1"
            bus = "0000" + gpu.pci.upper()
            if "mig-refused" in self.faults or not gpu.mig_capable:
                # the real refusal (tests/data/real/mig_change_refused_*.txt): a warning, "All done.", exit 0
                verb = "enable" if on else "disable"
                return 0, (
                    f"Unable to {verb} MIG Mode for GPU {bus}: Not Supported\n"
                    "Treating as warning and moving on.\nAll done.\n"
                )
            if "mig-ignored" in self.faults:  # says it is done, changes nothing (what a read-back catches)
                return 0, f"{'Enabled' if on else 'Disabled'} MIG Mode for GPU {bus}\nAll done.\n"
            gpu.mig_pending = on
            if gpu.architecture == "Ampere":
                state = "enable" if on else "disable"
                return 0, (
                    f"Warning: MIG mode is in pending {state} state for GPU {bus}:Not Supported\n"
                    f"Reboot the system or try nvidia-smi --gpu-reset to make MIG mode effective on GPU {bus}\nAll done.\n"
                )
            gpu.mig_current = on
            return 0, f"{'Enabled' if on else 'Disabled'} MIG Mode for GPU {bus}\nAll done.\n"
        return 2, "Invalid combination of input arguments.\n"

    def _mlx(self, args: list[str]) -> tuple[int, str]:
        pci = args[args.index("-d") + 1]
        if pci not in self.nics:
            return 1, f"-E- Failed to open device: {pci}. No such file or directory\n"
        current, nxt = self.nics[pci]
        if "q" in args:
            fmt = lambda v: "True(1)" if v else "False(0)"  # noqa: E731
            return 0, (
                "\nDevice #1:\n----------\n\nDevice type:        ConnectX6DX\nName:               MCX623106AN-CDA_Ax\n"
                f"Device:             {pci}\n\n"
                "Configurations:                                      Default             Current             Next Boot\n"
                f"*        ATS_ENABLED                                 False(0)            {fmt(current):<20}{fmt(nxt)}\n"
            )
        if "set" in args:
            self.nics[pci][1] = args[-1].split("=")[1].lower() == "true"
            return (
                0,
                "Apply new Configuration? (y/n) [n] : y\nApplying... Done!\n-I- Please reboot machine to load new configurations.\n",
            )
        return 1, "-E- unknown\n"


def ampere_host(name: str = "esxi-01.lab") -> FakeHost:
    """2x A100 80GB (MIG pending until reboot), no driver: the lab's esxi-01."""
    gpus = [FakeGpu(pci, "NVIDIA A100 80GB PCIe", "Ampere", True) for pci in ("0000:3b:00.0", "0000:5e:00.0")]
    return FakeHost(name, gpus=gpus)


def hopper_host(name: str = "esxi-02.lab") -> FakeHost:
    """2x H100 (MIG at once) and a ConnectX-6 Dx with ATS off: the lab's esxi-02."""
    gpus = [FakeGpu(pci, "NVIDIA H100 PCIe", "Hopper", True) for pci in ("0000:3b:00.0", "0000:5e:00.0")]
    return FakeHost(name, gpus=gpus, nics={"0000:31:00.0": [False, False]})


def t4_host(name: str = "esxi-04.lab") -> FakeHost:
    gpus = [FakeGpu(f"0000:{bus}:00.0", "Tesla T4", "Turing", False) for bus in ("3b", "5e", "86", "af")]
    return FakeHost(name, gpus=gpus)


# -- vCenter ---------------------------------------------------------------------------------------------------


@dataclass
class FakeApi:
    """HostApi in memory: maintenance per host, markers, a log of (time, host, event) and the peak per cluster."""

    clusters: dict[str, str]  # host -> cluster
    maintenance: dict[str, bool] = field(default_factory=dict)
    markers: dict[str, str] = field(default_factory=dict)
    refuse: set[str] = field(default_factory=set)  # hosts whose evacuation is refused
    enter_seconds: float = 0.0
    log: list[tuple[float, str, str]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def host_names(self) -> list[str]:
        return sorted(self.clusters)

    def state(self, name: str) -> HostState:
        return HostState(name, self.clusters[name], self.maintenance.get(name, False), "connected", "poweredOn")

    def in_maintenance(self) -> list[HostState]:
        return [self.state(n) for n in self.clusters if self.maintenance.get(n)]

    def enter_maintenance(
        self, name: str, *, timeout: float, allow_vgpu_vmotion: bool, may_power_off: frozenset[str] = frozenset()
    ) -> list[str]:
        self.calls.append(f"enter {name}")
        if name in self.refuse:
            raise EvacuationRefused(f"{name}: the cluster cannot absorb its powered-on VMs: vm-big needs 65536 MB")
        time.sleep(self.enter_seconds)
        with self._lock:
            self.maintenance[name] = True
            self.log.append((time.monotonic(), name, "enter"))
        return []

    def exit_maintenance(self, name: str, *, timeout: float) -> bool:
        self.calls.append(f"exit {name}")
        with self._lock:
            was = self.maintenance.get(name, False)
            self.maintenance[name] = False
            self.log.append((time.monotonic(), name, "exit"))
        return was

    def wait_connected(self, name: str, *, timeout: float) -> None:
        self.calls.append(f"wait-connected {name}")

    def marker(self, name: str) -> str | None:
        return self.markers.get(name) or None

    def set_marker(self, name: str, value: str) -> None:
        self.markers[name] = value

    def peak(self, already: set[str] = frozenset()) -> dict[str, int]:
        """Most hosts of one cluster in maintenance at once, from the log (``already``: in it before the run)."""
        inside: dict[str, set[str]] = {}
        for host in already:
            inside.setdefault(self.clusters[host], set()).add(host)
        peak = {c: len(hosts) for c, hosts in inside.items()}
        for _, host, event in sorted(self.log):
            c = self.clusters[host]
            hosts = inside.setdefault(c, set())
            if event == "enter":
                hosts.add(host)
            else:
                hosts.discard(host)
            peak[c] = max(peak.get(c, 0), len(hosts))
        return peak
