"""Readers for what a Linux guest prints: nvidia-smi (``-q -x``, ``-q`` licence block, ``-L``, ``topo -m``), the
vGPU licence status strings, ``lsmod``, ``/proc/driver/nvidia/version``, ``ibv_devices``, ``rdma link`` and
``docker info``. Pure functions over text; the host-side nvidia-smi reader is ``gpufleet.readers.nvidia_smi`` (the
XML envelope, PCI normalisation and the parse error are shared with it).

Licence status forms (shared/reference/guest_nvidia_smi_xml_and_license_strings.txt, tests/data/real), all parsed:
``Licensed (Expiry: 2026-7-7 16:1:44 GMT)`` (not zero-padded), ``Unlicensed (Unrestricted)``,
``Unlicensed (Restricted)``, ``N/A (Expiry: N/A)`` (host view before the guest driver loads), bare ``Licensed``
and bare ``Unlicensed`` (GRID drivers before NLS). The block that holds it is headed ``vGPU Software Licensed
Product`` (vGPU 10 and later) or ``GRID Licensed Product`` (older GRID drivers): ``LICENSE_HEADERS``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gpufleet.readers.guest import (  # noqa: F401 - the checks' readers, one implementation with guests prepare
    driver_branch,
    parse_ctk_version,
    parse_docker_runtimes,
    parse_driver_version_file,
    parse_lsmod,
    parse_proc_modules,
)
from gpufleet.readers.nvidia_smi import SmiParseError, normalise_pci, parse_smi_xml, xml_text

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


# ---------------------------------------------------------------- licence status
@dataclass(frozen=True)
class LicenseStatus:
    """One "License Status" value."""

    state: str  # "Licensed" | "Unlicensed" | "N/A"
    detail: str | None  # "Unrestricted" | "Restricted" | None
    expiry: datetime | None  # UTC; None when not licensed or not given
    raw: str

    @property
    def licensed(self) -> bool:
        return self.state == "Licensed"


_STATUS = re.compile(r"^(?P<state>Licensed|Unlicensed|N/A)\s*(?:\((?P<inner>[^)]*)\))?\s*$", re.IGNORECASE)
_EXPIRY = re.compile(r"^Expiry:\s*(?P<when>.+?)\s*$", re.IGNORECASE)


def parse_license_status(text: str) -> LicenseStatus:
    """Parse a "License Status" value in any of its real forms; SmiParseError quotes anything else."""
    raw = text.strip()
    m = _STATUS.match(raw)
    if not m:
        raise SmiParseError(f"not a vGPU licence status: {raw!r}")
    state = {"licensed": "Licensed", "unlicensed": "Unlicensed", "n/a": "N/A"}[m.group("state").lower()]
    inner = (m.group("inner") or "").strip()
    detail: str | None = None
    expiry: datetime | None = None
    exp = _EXPIRY.match(inner)
    if exp:
        when = exp.group("when")
        if when.upper() != "N/A":
            stamp = re.sub(r"\s*(GMT|UTC)$", "", when, flags=re.IGNORECASE)
            try:
                expiry = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
            except ValueError as exc:
                raise SmiParseError(f"cannot read the licence expiry {when!r} in {raw!r}") from exc
    elif inner:
        detail = inner
    return LicenseStatus(state=state, detail=detail, expiry=expiry, raw=raw)


# The headers NVIDIA has printed over the licence block of ``nvidia-smi -q``, newest first (tests/data/real).
LICENSE_HEADERS = ("vGPU Software Licensed Product", "GRID Licensed Product")


def _is_license_element(tag: str) -> bool:
    """The XML element of the licence block: ``vgpu_software_licensed_product`` (what ``LICENSE_HEADERS[0]`` is
    in ``-q -x``), and the same block under an older driver's name (``grid_licensed_product``)."""
    return tag.endswith("_licensed_product")


def parse_license_block(text: str) -> list[tuple[str, LicenseStatus]]:
    """``nvidia-smi -q`` (text, or ``-q -d LICENSE``): one (licensed product name, status) per GPU that has a
    licence block under any of ``LICENSE_HEADERS``."""
    found: list[tuple[str, LicenseStatus]] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() not in LICENSE_HEADERS:
            continue
        product, status = "", None
        for follow in lines[i + 1 : i + 4]:
            key, _, value = follow.partition(":")
            if key.strip() == "Product Name":
                product = value.strip()
            elif key.strip() == "License Status":
                status = parse_license_status(value)
        if status is not None:
            found.append((product, status))
    return found


# ---------------------------------------------------------------- nvidia-smi -q -x
@dataclass(frozen=True)
class GuestGpu:
    """One GPU of ``nvidia-smi -q -x`` in a guest."""

    pci: str  # 0000:02:01.0
    product_name: str  # "NVIDIA L40S-24C", "GRID A100D-3-40C", "NVIDIA H100 80GB HBM3"
    product_brand: str
    architecture: str
    virtualization_mode: str  # "VGPU" | "Pass-Through" | "None"
    device_id: int | None  # PCI device id (0x2330), from pci_device_id 233010DE
    uuid: str
    mig_current: str
    mig_devices: int
    framebuffer_mib: int | None
    licensed_product: str | None  # None: no vGPU licensing block (passthrough)
    license: LicenseStatus | None

    @property
    def is_vgpu(self) -> bool:
        return self.virtualization_mode.upper() == "VGPU"

    @property
    def vgpu_type(self) -> str:
        """``GRID A100D-3-40C`` -> ``A100D-3-40C`` (the vGPU type name without its GRID/NVIDIA brand)."""
        return re.sub(r"^(GRID|NVIDIA)\s+", "", self.product_name, flags=re.IGNORECASE).upper()


@dataclass(frozen=True)
class GuestSmiReport:
    driver_version: str
    cuda_version: str
    gpus: tuple[GuestGpu, ...] = field(default_factory=tuple)


def _mib(value: str) -> int | None:
    m = re.match(r"^\s*(\d+)\s*MiB", value)
    return int(m.group(1)) if m else None


def parse_guest_xml(text: str) -> GuestSmiReport:
    """``nvidia-smi -q -x`` of a guest (vGPU or passthrough) -> GuestSmiReport."""
    root = parse_smi_xml(text)
    gpus = []
    for node in root.findall("gpu"):
        device_hex = xml_text(node, "pci/pci_device_id")
        device_id = int(device_hex[:4], 16) if re.fullmatch(r"[0-9A-Fa-f]{8}", device_hex) else None
        lic_node = next((child for child in node if _is_license_element(child.tag)), None)
        status = xml_text(lic_node, "license_status") if lic_node is not None else ""
        mig_node = node.find("mig_devices")
        gpus.append(
            GuestGpu(
                pci=normalise_pci(node.get("id") or xml_text(node, "pci/pci_bus_id")),
                product_name=xml_text(node, "product_name"),
                product_brand=xml_text(node, "product_brand"),
                architecture=xml_text(node, "product_architecture"),
                virtualization_mode=xml_text(node, "gpu_virtualization_mode/virtualization_mode") or "None",
                device_id=device_id,
                uuid=xml_text(node, "uuid"),
                mig_current=xml_text(node, "mig_mode/current_mig") or "N/A",
                mig_devices=len(mig_node.findall("mig_device")) if mig_node is not None else 0,
                framebuffer_mib=_mib(xml_text(node, "fb_memory_usage/total")),
                licensed_product=xml_text(lic_node, "licensed_product_name") if lic_node is not None else None,
                license=parse_license_status(status) if status else None,
            )
        )
    return GuestSmiReport(xml_text(root, "driver_version"), xml_text(root, "cuda_version"), tuple(gpus))


# ---------------------------------------------------------------- nvidia-smi -L
@dataclass(frozen=True)
class ListedGpu:
    index: int
    name: str
    uuid: str
    mig_devices: tuple[str, ...]  # MIG profiles of the MIG devices under this GPU ("3g.40gb")


_L_GPU = re.compile(r"^GPU (\d+): (.+?) \(UUID: ([^)]+)\)\s*$")
_L_MIG = re.compile(r"^\s+MIG (\S+)\s+Device\s+(\d+): \(UUID: ([^)]+)\)\s*$")


def parse_list(text: str) -> list[ListedGpu]:
    """``nvidia-smi -L``: GPUs and the MIG devices listed under them."""
    gpus: list[ListedGpu] = []
    for line in text.splitlines():
        if m := _L_GPU.match(line):
            gpus.append(ListedGpu(int(m.group(1)), m.group(2), m.group(3), ()))
        elif (m := _L_MIG.match(line)) and gpus:
            last = gpus[-1]
            gpus[-1] = ListedGpu(last.index, last.name, last.uuid, (*last.mig_devices, m.group(1)))
    return gpus


# ---------------------------------------------------------------- nvidia-smi topo -m
def parse_topology(text: str) -> dict[tuple[int, int], str]:
    """``nvidia-smi topo -m`` -> {(i, j): "NV12" | "PHB" | "SYS" | ...} for every pair of GPUs i != j."""
    lines = [_ANSI.sub("", line) for line in text.splitlines()]
    header = next(
        (line.split() for line in lines if line.strip().startswith("GPU0") and "\t" in line and line.startswith("\t")),
        None,
    )
    if header is None:
        raise SmiParseError(f"no GPU header in `nvidia-smi topo -m` output: {text[:300]!r}")
    gpu_cols = [h for h in header if re.fullmatch(r"GPU\d+", h)]
    links: dict[tuple[int, int], str] = {}
    for line in lines:
        cells = line.split("\t")
        if not cells or not re.fullmatch(r"GPU\d+", cells[0].strip()):
            continue
        i = int(cells[0].strip()[3:])
        for col, value in zip(gpu_cols, cells[1:], strict=False):
            j = int(col[3:])
            if i != j:
                links[(i, j)] = value.strip()
    return links


# ---------------------------------------------------------------- kernel, RDMA, containers


def parse_ibv_devices(text: str) -> dict[str, str]:
    """``ibv_devices`` -> {device: node GUID}."""
    devices: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] not in ("device", "------") and re.fullmatch(r"[0-9a-fA-F]{16}", parts[1]):
            devices[parts[0]] = parts[1].lower()
    return devices


@dataclass(frozen=True)
class RdmaLink:
    device: str
    port: int
    state: str
    physical_state: str
    netdev: str | None


_RDMA_LINK = re.compile(
    r"^link (?P<dev>[^/\s]+)/(?P<port>\d+) state (?P<state>\S+) physical_state (?P<phys>\S+)(?: netdev (?P<netdev>\S+))?"
)


def parse_rdma_links(text: str) -> list[RdmaLink]:
    """``rdma link show``."""
    links = []
    for line in text.splitlines():
        if m := _RDMA_LINK.match(line.strip()):
            links.append(
                RdmaLink(m.group("dev"), int(m.group("port")), m.group("state"), m.group("phys"), m.group("netdev"))
            )
    return links
