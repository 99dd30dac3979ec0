"""The guest's ``nvidia-smi``: default table, -L, -q, -q -x, -q -d LICENSE, --query-gpu, topo -m, vgpu.

Passthrough GPUs are rendered from the real H100 captures in data/ (shared/reference/h100_baremetal) with the
identity fields replaced; vGPUs follow the real vGPU guest captures (shared/reference/guest_*).
"""

from __future__ import annotations

import copy
import time
import xml.etree.ElementTree as ET
from datetime import datetime
from functools import cache
from importlib import resources

from lab.guest.gpus import GuestGpu, GuestView

NO_DRIVER = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running.\n"
)
BAD_ARGS = "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n"
CUDA_BY_BRANCH = {"550": "12.4", "580": "13.0", "535": "12.2"}
REF_PRODUCT = "NVIDIA H100 80GB HBM3"
REF_BUS_ID = "00000000:00:06.0"
REF_UUID = "GPU-10e66e4a-f3df-e289-b538-9bac36c1c24c"


@cache
def _data(name: str) -> str:
    text = resources.files("lab.guest").joinpath("data", name).read_text()
    return "\n".join(line for line in text.split("\n") if not line.startswith("# Provenance:"))


def _cuda(driver: str) -> str:
    return CUDA_BY_BRANCH.get(driver.split(".")[0], "12.4")


def _stamp(now: float) -> str:
    return datetime.fromtimestamp(now).strftime("%a %b %d %H:%M:%S %Y")


def _mig_mode(gpu: GuestGpu) -> str:
    if gpu.kind == "vgpu":
        return "Enabled" if gpu.mig_profile else "Disabled"
    return "Disabled"


def _bus_parts(bus_id: str) -> tuple[str, str, str]:
    domain, bus, devfn = bus_id.split(":")
    return domain[-4:], bus, devfn.split(".")[0]


def _mig_uuid(gpu: GuestGpu) -> str:
    return "MIG-" + gpu.uuid.removeprefix("GPU-")


def _mig_sms(profile: str) -> int:
    return {"1g": 14, "2g": 28, "3g": 42, "4g": 56, "7g": 98}.get(profile.split(".")[0], 14)


# ---------------------------------------------------------------- -L
def render_list(view: GuestView) -> str:
    lines = []
    for gpu in view.gpus:
        lines.append(f"GPU {gpu.index}: {gpu.product_name} (UUID: {gpu.uuid})")
        if gpu.mig_profile:
            lines.append(f"  MIG {gpu.mig_profile:<12} Device  0: (UUID: {_mig_uuid(gpu)})")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- default table
def render_table(view: GuestView, now: float) -> str:
    driver = view.driver_version or ""
    width = 91
    out = [
        f"{_stamp(now)}       ",
        "+" + "-" * (width - 2) + "+",
        f"| NVIDIA-SMI {driver:<22} Driver Version: {driver:<14} CUDA Version: {_cuda(driver):<9}|",
        "+-----------------------------------------+------------------------+----------------------+",
        "| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |",
        "| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |",
        "|                                         |                        |               MIG M. |",
        "|=========================================+========================+======================|",
    ]
    for gpu in view.gpus:
        name = gpu.product_name[:29]
        temp, power = ("N/A", "N/A /  N/A") if gpu.kind == "vgpu" else ("35C", "120W /  700W")
        mem = f"0MiB / {gpu.framebuffer_mib:>6}MiB"
        out += [
            f"| {gpu.index:>3}  {name:<29}  On  |   {gpu.bus_id} Off |                    0 |",
            f"| N/A   {temp:<3}    P0{power:>24} | {mem:>22} |      0%      Default |",
            f"|                                         |                        | {_mig_mode(gpu):>20} |",
            "+-----------------------------------------+------------------------+----------------------+",
        ]
    mig = [g for g in view.gpus if g.mig_profile]
    if mig:
        out += [
            "",
            "+-----------------------------------------------------------------------------------------+",
            "| MIG devices:                                                                            |",
            "+------------------+----------------------------------+-----------+-----------------------+",
            "| GPU  GI  CI  MIG |                     Memory-Usage |        Vol|        Shared         |",
            "|      ID  ID  Dev |                       BAR1-Usage | SM     Unc| CE ENC  DEC  OFA  JPG |",
            "|                  |                                  |        ECC|                       |",
            "|==================+==================================+===========+=======================|",
        ]
        for gpu in mig:
            mem = f"0MiB / {gpu.framebuffer_mib - 512:>5}MiB"
            out += [
                f"| {gpu.index:>3}    0   0   0  | {mem:>32} | {_mig_sms(gpu.mig_profile or ''):>2}      0 |  3   0    2    0    3 |",
                "|                  |                 0MiB / 65535MiB  |           |                       |",
                "+------------------+----------------------------------+-----------+-----------------------+",
            ]
    out += [
        "",
        "+-----------------------------------------------------------------------------------------+",
        "| Processes:                                                                              |",
        "|  GPU   GI   CI              PID   Type   Process name                        GPU Memory |",
        "|        ID   ID                                                               Usage      |",
        "|=========================================================================================|",
        "|  No running processes found                                                             |",
        "+-----------------------------------------------------------------------------------------+",
    ]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- -q (text)
def _kv(indent: int, key: str, value: str, total: int = 42) -> str:
    pad = total - 4 * indent
    return f"{'    ' * indent}{key:<{pad}}: {value}"


def _vgpu_q_section(gpu: GuestGpu, license_status: str, display: str | None) -> list[str]:
    domain, bus, dev = _bus_parts(gpu.bus_id)
    lines = [f"GPU {gpu.bus_id}"]
    licensing = [
        "    vGPU Software Licensed Product",
        _kv(2, "Product Name", gpu.licensed_product or ""),
        _kv(2, "License Status", license_status),
    ]
    if display == "LICENSE":
        return lines + licensing
    mig = _mig_mode(gpu)
    lines += [
        _kv(1, "Product Name", gpu.product_name),
        _kv(1, "Product Brand", gpu.product_brand),
        _kv(1, "Product Architecture", gpu.architecture),
        _kv(1, "Display Mode", "Enabled"),
        _kv(1, "Display Active", "Disabled"),
        _kv(1, "Persistence Mode", "Enabled"),
        "    MIG Mode",
        _kv(2, "Current", mig),
        _kv(2, "Pending", mig),
    ]
    if gpu.mig_profile:
        lines += [
            "    MIG Device",
            _kv(2, "Index", "0"),
            _kv(2, "GPU Instance ID", "0"),
            _kv(2, "Compute Instance ID", "0"),
            _kv(2, "Profile", gpu.mig_profile),
        ]
    lines += [
        _kv(1, "Accounting Mode", "Disabled"),
        _kv(1, "Accounting Mode Buffer Size", "4000"),
        "    Driver Model",
        _kv(2, "Current", "N/A"),
        _kv(2, "Pending", "N/A"),
        _kv(1, "Serial Number", "N/A"),
        _kv(1, "GPU UUID", gpu.uuid),
        _kv(1, "Minor Number", str(gpu.index)),
        _kv(1, "VBIOS Version", "00.00.00.00.00"),
        _kv(1, "MultiGPU Board", "No"),
        _kv(1, "Board ID", f"0x{0x201 + 0x100 * gpu.index:x}"),
        _kv(1, "GPU Part Number", "N/A"),
        _kv(1, "Module ID", "N/A"),
        "    Inforom Version",
        _kv(2, "Image Version", "N/A"),
        _kv(2, "OEM Object", "N/A"),
        _kv(2, "ECC Object", "N/A"),
        _kv(2, "Power Management Object", "N/A"),
        "    GPU Operation Mode",
        _kv(2, "Current", "N/A"),
        _kv(2, "Pending", "N/A"),
        _kv(1, "GSP Firmware Version", "N/A"),
        "    GPU Virtualization Mode",
        _kv(2, "Virtualization Mode", "VGPU"),
        _kv(2, "Host VGPU Mode", "N/A"),
        *licensing,
        "    PCI",
        _kv(2, "Bus", f"0x{bus}"),
        _kv(2, "Device", f"0x{dev}"),
        _kv(2, "Domain", f"0x{domain}"),
        _kv(2, "Device Id", f"0x{gpu.device_id:04X}10DE"),
        _kv(2, "Bus Id", gpu.bus_id),
        "    FB Memory Usage",
        _kv(2, "Total", f"{gpu.framebuffer_mib} MiB"),
        _kv(2, "Reserved", "0 MiB"),
        _kv(2, "Used", "0 MiB"),
        _kv(2, "Free", f"{gpu.framebuffer_mib} MiB"),
        _kv(1, "Compute Mode", "Default"),
        _kv(1, "Processes", "None"),
    ]
    return lines


def _passthrough_q_section(gpu: GuestGpu, display: str | None) -> list[str]:
    text = _data("h100_q.txt")
    section = text[text.index(f"GPU {REF_BUS_ID}") :].rstrip("\n")
    return _substitute(section, gpu).split("\n")


def _substitute(text: str, gpu: GuestGpu) -> str:
    domain, bus, dev = _bus_parts(gpu.bus_id)
    text = text.replace(REF_PRODUCT, gpu.product_name).replace(REF_BUS_ID, gpu.bus_id).replace(REF_UUID, gpu.uuid)
    text = text.replace("0x233010DE", f"0x{gpu.device_id:04X}10DE").replace("233010DE", f"{gpu.device_id:04X}10DE")
    text = text.replace("81559 MiB", f"{gpu.framebuffer_mib} MiB").replace(
        "81079 MiB", f"{gpu.framebuffer_mib - 480} MiB"
    )
    return text.replace(": Hopper", f": {gpu.architecture}").replace(">Hopper<", f">{gpu.architecture}<")


def render_query(view: GuestView, license_status: str, now: float, display: str | None = None) -> tuple[int, str]:
    """``nvidia-smi -q [-d LICENSE]``; a data-center driver has no LICENSE display (as captured on the H100)."""
    driver = view.driver_version or ""
    if display and display != "LICENSE":
        return 2, "Failed to parse --display/-d flags\n"
    if display == "LICENSE" and all(g.kind == "passthrough" for g in view.gpus):
        return 2, "Failed to parse --display/-d flags\n"
    width = 42 if any(g.kind == "vgpu" for g in view.gpus) else 55
    out = [
        "",
        "==============NVSMI LOG==============",
        "",
        _kv(0, "Timestamp", _stamp(now), width),
        _kv(0, "Driver Version", driver, width),
        _kv(0, "CUDA Version", _cuda(driver), width),
        "",
        _kv(0, "Attached GPUs", str(len(view.gpus)), width),
    ]
    for gpu in view.gpus:
        if gpu.kind == "vgpu":
            out += _vgpu_q_section(gpu, license_status, display)
        else:
            out += _passthrough_q_section(gpu, display)
        out.append("")
    return 0, "\n".join(out) + "\n"


# ---------------------------------------------------------------- -q -x
def _sub(parent: ET.Element, tag: str, text: str | None = None, indent: int = 2) -> ET.Element:
    el = ET.SubElement(parent, tag)
    if text is not None:
        el.text = text
    return el


def _vgpu_xml(gpu: GuestGpu, license_status: str) -> ET.Element:
    domain, bus, dev = _bus_parts(gpu.bus_id)
    g = ET.Element("gpu", id=gpu.bus_id)
    _sub(g, "product_name", gpu.product_name)
    _sub(g, "product_brand", gpu.product_brand)
    _sub(g, "product_architecture", gpu.architecture)
    _sub(g, "display_mode", "Enabled")
    _sub(g, "display_active", "Disabled")
    _sub(g, "persistence_mode", "Enabled")
    mig = _sub(g, "mig_mode")
    _sub(mig, "current_mig", _mig_mode(gpu))
    _sub(mig, "pending_mig", _mig_mode(gpu))
    devices = _sub(g, "mig_devices")
    if gpu.mig_profile:
        d = _sub(devices, "mig_device")
        _sub(d, "index", "0")
        _sub(d, "gpu_instance_id", "0")
        _sub(d, "compute_instance_id", "0")
        attrs = _sub(_sub(d, "device_attributes"), "shared")
        _sub(attrs, "multiprocessor_count", str(_mig_sms(gpu.mig_profile)))
        fb = _sub(d, "fb_memory_usage")
        _sub(fb, "total", f"{gpu.framebuffer_mib - 512} MiB")
        _sub(fb, "reserved", "0 MiB")
        _sub(fb, "used", "0 MiB")
        _sub(fb, "free", f"{gpu.framebuffer_mib - 512} MiB")
    else:
        devices.text = "None"
    _sub(g, "accounting_mode", "Disabled")
    _sub(g, "serial", "N/A")
    _sub(g, "uuid", gpu.uuid)
    _sub(g, "minor_number", str(gpu.index))
    _sub(g, "vbios_version", "00.00.00.00.00")
    virt = _sub(g, "gpu_virtualization_mode")
    _sub(virt, "virtualization_mode", "VGPU")
    _sub(virt, "host_vgpu_mode", "N/A")
    lic = _sub(g, "vgpu_software_licensed_product")
    _sub(lic, "licensed_product_name", gpu.licensed_product)
    _sub(lic, "license_status", license_status)
    pci = _sub(g, "pci")
    _sub(pci, "pci_bus", bus)
    _sub(pci, "pci_device", dev)
    _sub(pci, "pci_domain", domain)
    _sub(pci, "pci_device_id", f"{gpu.device_id:04X}10DE")
    _sub(pci, "pci_bus_id", gpu.bus_id)
    fb = _sub(g, "fb_memory_usage")
    _sub(fb, "total", f"{gpu.framebuffer_mib} MiB")
    _sub(fb, "reserved", "0 MiB")
    _sub(fb, "used", "0 MiB")
    _sub(fb, "free", f"{gpu.framebuffer_mib} MiB")
    _sub(g, "compute_mode", "Default")
    _sub(g, "processes")
    ET.indent(g, space="\t", level=1)
    return g


@cache
def _h100_gpu_template() -> ET.Element:
    text = _data("h100_q_x.xml")
    body = text[text.index("<nvidia_smi_log>") :]
    return ET.fromstring(body).find("gpu")  # type: ignore[return-value]


def _passthrough_xml(gpu: GuestGpu) -> ET.Element:
    g = copy.deepcopy(_h100_gpu_template())
    g.set("id", gpu.bus_id)
    domain, bus, dev = _bus_parts(gpu.bus_id)
    for path, value in {
        "product_name": gpu.product_name,
        "product_architecture": gpu.architecture,
        "uuid": gpu.uuid,
        "minor_number": str(gpu.index),
        "pci/pci_bus": bus,
        "pci/pci_device": dev,
        "pci/pci_domain": domain,
        "pci/pci_device_id": f"{gpu.device_id:04X}10DE",
        "pci/pci_bus_id": gpu.bus_id,
        "fb_memory_usage/total": f"{gpu.framebuffer_mib} MiB",
        "fb_memory_usage/free": f"{gpu.framebuffer_mib - 480} MiB",
    }.items():
        el = g.find(path)
        if el is not None:
            el.text = value
    return g


def render_xml(view: GuestView, license_status: str, now: float) -> str:
    driver = view.driver_version or ""
    root = ET.Element("nvidia_smi_log")
    _sub(root, "timestamp", _stamp(now))
    _sub(root, "driver_version", driver)
    _sub(root, "cuda_version", _cuda(driver))
    _sub(root, "attached_gpus", str(len(view.gpus)))
    for gpu in view.gpus:
        root.append(_vgpu_xml(gpu, license_status) if gpu.kind == "vgpu" else _passthrough_xml(gpu))
    for child in root:
        if child.tag != "gpu":
            child.tail = "\n\t"
    root.text = "\n\t"
    for gpu_el in root.findall("gpu"):
        gpu_el.tail = "\n\n"
    if len(root):
        root[-1].tail = "\n\n"
    body = ET.tostring(root, encoding="unicode")
    return '<?xml version="1.0" ?>\n<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_v13.dtd">\n' + body + "\n"


# ---------------------------------------------------------------- --query-gpu
# Fields nvidia-smi accepts (a subset); anything else fails as the real one does (580.159.04 on the device machine:
# 'Field "virtualization_mode" is not a valid field to query.', exit 2).
_FIELDS = {
    "index": lambda g, v: str(g.index),
    "count": lambda g, v: str(len(v.gpus)),
    "name": lambda g, v: g.product_name,
    "gpu_name": lambda g, v: g.product_name,
    "pci.bus_id": lambda g, v: g.bus_id,
    "gpu_bus_id": lambda g, v: g.bus_id,
    "pci.device_id": lambda g, v: f"0x{g.device_id:04X}10DE",
    "driver_version": lambda g, v: v.driver_version or "",
    "memory.total": lambda g, v: f"{g.framebuffer_mib} MiB",
    "memory.used": lambda g, v: "0 MiB",
    "memory.free": lambda g, v: f"{g.framebuffer_mib} MiB",
    "mig.mode.current": lambda g, v: _mig_mode(g),
    "mig.mode.pending": lambda g, v: _mig_mode(g),
    "vbios_version": lambda g, v: "00.00.00.00.00" if g.kind == "vgpu" else "96.00.DA.00.0C",
    "serial": lambda g, v: "N/A" if g.kind == "vgpu" else "1652824025750",
    "uuid": lambda g, v: g.uuid,
    "gpu_uuid": lambda g, v: g.uuid,
    "compute_mode": lambda g, v: "Default",
    "persistence_mode": lambda g, v: "Enabled",
    "pstate": lambda g, v: "P0",
}


def render_query_gpu(view: GuestView, fields_arg: str, format_arg: str | None) -> tuple[int, str, str]:
    if not format_arg:
        return 2, "", 'Option "--format" must be specified with "--query-gpu".\n'
    fields = [f.strip() for f in fields_arg.split(",") if f.strip()]
    for f in fields:
        if f not in _FIELDS:
            return 2, f'Field "{f}" is not a valid field to query.\n\n', ""
    opts = {o.strip() for o in format_arg.split(",")}
    if "csv" not in opts:
        return 2, "", f'"{format_arg}" is not a valid format.\n'
    rows = []
    if "noheader" not in opts:
        rows.append(
            ", ".join(f + (" [MiB]" if f.startswith("memory.") and "nounits" not in opts else "") for f in fields)
        )
    for gpu in view.gpus:
        values = [_FIELDS[f](gpu, view) for f in fields]
        if "nounits" in opts:
            values = [v.removesuffix(" MiB") for v in values]
        rows.append(", ".join(values))
    return 0, "\n".join(rows) + "\n", ""


# ---------------------------------------------------------------- topo -m
def render_topo(view: GuestView, nvlink: bool) -> str:
    n = len(view.gpus)
    head = "".join(f"GPU{i}\t" for i in range(n)) + "CPU Affinity\tNUMA Affinity\tGPU NUMA ID"
    out = [f"\t\x1b[4m{head}\x1b[0m"]
    for i in range(n):
        links = []
        for j in range(n):
            if i == j:
                links.append(" X ")
            elif nvlink and view.gpus[i].kind == view.gpus[j].kind:
                links.append("NV12")
            else:
                links.append("PHB")
        out.append(f"GPU{i}\t" + "\t".join(links) + "\t0-7\t0\t\tN/A")
    legend = _data("h100_topo_m.txt").split("\n")
    start = legend.index("Legend:")
    return "\n".join(out + [""] + legend[start:]).rstrip("\n") + "\n"


def now() -> float:
    return time.time()
