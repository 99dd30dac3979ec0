"""Typed readers for ``nvidia-smi`` on an ESXi host: XML (``-q -x``) and CSV (``--query-gpu``), never the table.

    report = query(runner)          # SmiReport(driver_version, gpus) or None when the driver does not answer
    report.gpu("0000:3b:00.0").mig_current        # "Enabled" | "Disabled" | "N/A"
    set_mig(runner, "0000:3b:00.0", True)         # MigChange(pending=True) on Ampere until the host reboots

PCI addresses are normalised to the spec's form ``0000:3b:00.0`` (nvidia-smi prints ``00000000:3B:00.0``).
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from gpufleet.errors import TaskError
from gpufleet.remote.ssh import CommandResult, Runner

QUERY_FIELDS = ("pci.bus_id", "name", "driver_version", "mig.mode.current", "mig.mode.pending")


class SmiParseError(TaskError):
    """nvidia-smi printed something we cannot read."""


def normalise_pci(address: str) -> str:
    """``00000000:3B:00.0`` / ``0000:3b:00.0`` / ``3b:00.0`` -> ``0000:3b:00.0``."""
    address = address.strip().lower()
    m = re.fullmatch(r"(?:([0-9a-f]{4,8}):)?([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])", address)
    if not m:
        raise SmiParseError(f"{address!r} is not a PCI bus id")
    domain = int(m.group(1) or "0", 16)
    return f"{domain:04x}:{m.group(2)}:{m.group(3)}.{m.group(4)}"


def smi_bus_id(pci: str) -> str:
    """``0000:3b:00.0`` -> ``00000000:3B:00.0``: the form nvidia-smi prints, and accepts for ``-i``."""
    domain, rest = normalise_pci(pci).split(":", 1)
    return f"{int(domain, 16):08X}:{rest.upper()}"


@dataclass(frozen=True)
class SmiGpu:
    pci: str
    name: str
    architecture: str  # "Ampere", "Hopper"... ("" when nvidia-smi does not say)
    mig_current: str  # Enabled | Disabled | N/A
    mig_pending: str
    virtualization_mode: str = ""

    @property
    def mig_change_pending(self) -> bool:
        """MIG mode was set but waits for a reboot (or GPU reset)."""
        return self.mig_pending not in ("", "N/A") and self.mig_pending != self.mig_current


@dataclass(frozen=True)
class SmiReport:
    driver_version: str
    gpus: tuple[SmiGpu, ...]

    def gpu(self, pci: str) -> SmiGpu | None:
        pci = normalise_pci(pci)
        return next((g for g in self.gpus if g.pci == pci), None)


def xml_text(node: ET.Element | None, path: str) -> str:
    """The stripped text of ``path`` under ``node``; "" when either is missing."""
    found = node.find(path) if node is not None else None
    return (found.text or "").strip() if found is not None else ""


def parse_smi_xml(text: str) -> ET.Element:
    """The ``<nvidia_smi_log>`` root of ``nvidia-smi -q -x`` output (on an ESXi host or in a guest), with what a
    shell printed around it dropped; SmiParseError quoting the start of the text when it is not well formed."""
    start = text.find("<?xml")
    body = text[start:] if start >= 0 else text
    end = body.rfind("</nvidia_smi_log>")
    body = body[: end + len("</nvidia_smi_log>")] if end >= 0 else body  # drop anything printed after it
    # The DOCTYPE names a DTD file we neither have nor need.
    body = re.sub(r"<!DOCTYPE[^>]*>", "", body)
    try:
        return ET.fromstring(body.strip())
    except ET.ParseError as exc:
        raise SmiParseError(f"nvidia-smi XML is not well formed: {exc}: {text[:300]!r}") from exc


def parse_query_xml(text: str) -> SmiReport:
    """``nvidia-smi -q -x`` -> SmiReport."""
    root = parse_smi_xml(text)
    gpus = []
    for node in root.findall("gpu"):
        pci = node.get("id") or xml_text(node, "pci/pci_bus_id")
        gpus.append(
            SmiGpu(
                pci=normalise_pci(pci),
                name=xml_text(node, "product_name"),
                architecture=xml_text(node, "product_architecture"),
                mig_current=xml_text(node, "mig_mode/current_mig") or "N/A",
                mig_pending=xml_text(node, "mig_mode/pending_mig") or "N/A",
                virtualization_mode=xml_text(node, "gpu_virtualization_mode/virtualization_mode"),
            )
        )
    return SmiReport(driver_version=xml_text(root, "driver_version"), gpus=tuple(gpus))


def parse_query_csv(text: str) -> list[dict[str, str]]:
    """``nvidia-smi --query-gpu=A,B --format=csv`` (with its header line) -> [{"A": ..., "B": ...}]; the
    header's unit suffixes (``memory.total [MiB]``) are dropped from the keys."""
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("$")]
    if not lines:
        return []
    reader = csv.reader(io.StringIO("\n".join(lines)), skipinitialspace=True)
    header = [re.sub(r"\s*\[.*\]$", "", h.strip()) for h in next(reader)]
    # Rows of another width are not data (a shell's trailer, a warning line).
    return [dict(zip(header, (c.strip() for c in row), strict=True)) for row in reader if len(row) == len(header)]


def parse_query_csv_report(text: str) -> SmiReport:
    """SmiReport from ``--query-gpu=pci.bus_id,name,driver_version,mig.mode.current,mig.mode.pending``."""
    rows = parse_query_csv(text)
    gpus = tuple(
        SmiGpu(
            pci=normalise_pci(r["pci.bus_id"]),
            name=r.get("name", ""),
            architecture="",
            mig_current=r.get("mig.mode.current", "N/A") or "N/A",
            mig_pending=r.get("mig.mode.pending", "N/A") or "N/A",
        )
        for r in rows
    )
    return SmiReport(driver_version=rows[0].get("driver_version", "") if rows else "", gpus=gpus)


def query(runner: Runner, timeout: float = 60.0) -> SmiReport | None:
    """The running driver's view (``nvidia-smi -q -x``); None when nvidia-smi is missing or the driver is not
    loaded (what a host shows after a driver install, before the reboot)."""
    return report_from(runner.run(QUERY_ARGV, timeout=timeout))


QUERY_ARGV = ["nvidia-smi", "-q", "-x"]


def report_from(result: CommandResult) -> SmiReport | None:
    """SmiReport from a ``nvidia-smi -q -x`` result; None when it failed (not installed / driver not loaded)."""
    if result.rc != 0 or "<nvidia_smi_log" not in result.output:
        return None
    return parse_query_xml(result.output)


@dataclass(frozen=True)
class GpuInstance:
    """A MIG GPU instance as ``nvidia-smi mig -lgi`` shows it: profile name, GPU instance profile ID, instance id,
    placement."""

    profile: str  # "3g.40gb"
    start: int
    size: int
    gi_id: int | None = None
    profile_id: int | None = None  # the GPU instance profile ID (9 for 3g.40gb on A100-80GB: the catalog's profile_id)


# `nvidia-smi mig -lgi` rows: "|   0  MIG 3g.40gb          9        1          4:4     |"
_LGI_ROW = re.compile(r"^\|\s*(\d+)\s+MIG\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+):(\d+)\s*\|")


def parse_lgi(output: str) -> dict[int, list[GpuInstance]]:
    """``nvidia-smi mig -lgi`` -> GPU index -> its GPU instances (profile, placement start:size, GI id, GPU instance
    profile ID). "No GPU instances found" -> {}."""
    out: dict[int, list[GpuInstance]] = {}
    for line in output.splitlines():
        m = _LGI_ROW.match(line.strip())
        if m:
            gpu, profile, profile_id, gi, start, size = m.groups()
            out.setdefault(int(gpu), []).append(
                GpuInstance(
                    profile=profile, start=int(start), size=int(size), gi_id=int(gi), profile_id=int(profile_id)
                )
            )
    return out


def gpu_instances(runner: Runner, timeout: float = 60.0) -> dict[int, list[GpuInstance]]:
    """The MIG GPU instances of every GPU (``nvidia-smi mig -lgi``); {} when the command fails."""
    result = runner.run(["nvidia-smi", "mig", "-lgi"], timeout=timeout)
    return parse_lgi(result.output) if result.rc == 0 else {}


class MigRefused(TaskError):
    """nvidia-smi refused a MIG mode change (or the mode read back is not the one asked for); the message names
    the GPU and the reason."""


@dataclass(frozen=True)
class MigChange:
    pending: bool  # True: takes effect at the next reboot (Ampere on ESXi)
    output: str


# "Unable to enable MIG Mode for GPU 00000000:18:00.0: Not Supported" (then "Treating as warning and moving on.",
# "All done." and exit 0: tests/data/real/SOURCES.md). The pending warning ("... pending enable state for GPU
# 00000000:0F:00.0:Not Supported") is not a refusal.
_BUS_ID = r"(?P<gpu>(?:[0-9A-Fa-f]{4,8}:)?[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7])"
_MIG_REFUSED = re.compile(rf"^Unable to (?:enable|disable) MIG Mode for GPU\s+{_BUS_ID}:\s*(?P<why>.+)$")
_MIG_DONE = re.compile(rf"^(?:Enabled|Disabled) MIG Mode for GPU\s+{_BUS_ID}\s*$", re.IGNORECASE)
_MIG_PENDING = re.compile(rf"pending (?:enable|disable) state for GPU\s+{_BUS_ID}", re.IGNORECASE)


def parse_mig_change(output: str) -> MigChange:
    """Output of ``nvidia-smi -i GPU -mig 0|1``: pending (``Warning: MIG mode is in pending ... state``) or done
    (``Enabled MIG Mode for GPU ...`` / ``Disabled ...``). ``All done.`` alone says nothing: nvidia-smi prints it
    after a refusal too. A refusal (``Unable to enable MIG Mode for GPU X: Not Supported``) is MigRefused naming
    the GPU and the reason; output with neither a per-GPU result nor a refusal is SmiParseError."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    refused = [m for m in (_MIG_REFUSED.match(line) for line in lines) if m]
    if refused:
        raise MigRefused(
            "; ".join(f"nvidia-smi refused the MIG mode change on GPU {m['gpu']}: {m['why'].strip()}" for m in refused)
        )
    if any(_MIG_PENDING.search(line) for line in lines):
        return MigChange(pending=True, output=output)
    if any(_MIG_DONE.match(line) for line in lines):
        return MigChange(pending=False, output=output)
    raise SmiParseError(f"unexpected `nvidia-smi -mig` output (no per-GPU result): {output[:300]!r}")


def set_mig(runner: Runner, pci: str, enable: bool) -> MigChange:
    """Set the MIG mode of one GPU, then read it back (``nvidia-smi -q -x``): MigRefused when nvidia-smi refused
    (it exits 0 on a refusal) or when the mode read back, current or pending, is not the one asked for."""
    result = runner.run(["nvidia-smi", "-i", smi_bus_id(pci), "-mig", "1" if enable else "0"])
    change = parse_mig_change(result.output)  # a refusal is named before the exit status is looked at
    result.check(runner.name)
    want = "Enabled" if enable else "Disabled"
    report = query(runner)
    gpu = report.gpu(pci) if report else None
    if gpu is None:
        raise MigRefused(f"{runner.name}: GPU {pci}: MIG mode set, but nvidia-smi no longer shows the GPU")
    target = gpu.mig_pending if gpu.mig_pending not in ("", "N/A") else gpu.mig_current
    if target != want:
        raise MigRefused(
            f"{runner.name}: GPU {pci}: asked for MIG {want}, nvidia-smi reads back current {gpu.mig_current}, "
            f"pending {gpu.mig_pending}"
        )
    return MigChange(pending=gpu.mig_current != want, output=change.output)
