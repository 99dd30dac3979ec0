"""``esxcli hardware pci``: ``list`` (the host's GPUs and ConnectX NICs, esxcli's full PCIDevice field set) and
``pcipassthru list``."""

from __future__ import annotations

from typing import Any

from lab.esxi.context import Ctx
from lab.esxi.esxcli.registry import COMMANDS, EsxcliError, Opt, Output, esxcli
from lab.esxi.esxfmt import Field, Struct, render_table


def _pci_struct(
    addr: str,
    vmk: str,
    vendor: str,
    device: str,
    vid: int,
    did: int,
    svid: int,
    sdid: int,
    cls: int,
    cls_name: str,
    module: str,
    slot: int,
    passthru_capable: bool,
) -> Struct:
    seg, bus, rest = addr.split(":")
    dev, fn = rest.split(".")
    return Struct(
        "PCIDevice",
        [
            Field("Address", addr),
            Field("Segment", int(seg, 16), printf="0x%04x"),
            Field("Bus", int(bus, 16), printf="0x%02x"),
            Field("Slot", int(dev, 16), printf="0x%02x"),
            Field("Function", int(fn, 16), printf="0x%01x"),
            Field("VMkernelName", vmk, label="VMkernel Name"),
            Field("VendorName", vendor),
            Field("DeviceName", device),
            Field("ConfiguredOwner", "VMkernel"),
            Field("CurrentOwner", "VMkernel"),
            Field("VendorID", vid, label="Vendor ID", printf="0x%04x"),
            Field("DeviceID", did, label="Device ID", printf="0x%04x"),
            Field("SubVendorID", svid, label="SubVendor ID", printf="0x%04x"),
            Field("SubDeviceID", sdid, label="SubDevice ID", printf="0x%04x"),
            Field("DeviceClass", cls, printf="0x%04x"),
            Field("DeviceClassName", cls_name),
            Field("ProgrammingInterface", 0, printf="0x%02x"),
            Field("RevisionID", 0xA1, label="Revision ID", printf="0x%02x"),
            Field("InterruptLine", 0xFF, printf="0x%02x"),
            Field("IRQ", 255, label="IRQ"),
            Field("InterruptVector", 0, printf="0x%02x"),
            Field("PCIPin", 0, label="PCI Pin", printf="0x%02x"),
            Field("SpawnedBus", 0, printf="0x%02x"),
            Field("Flags", 0x3001, printf="0x%04x"),
            Field("ModuleID", 0 if module == "None" else 40 + slot, label="Module ID"),
            Field("ModuleName", module),
            Field("Chassis", 0),
            Field("PhysicalSlot", slot),
            Field("SlotDescription", f"PCIe Slot {slot}"),
            Field("PassthruCapable", passthru_capable),
            Field("ParentDevice", f"PCI 0:{int(bus, 16) - 1}:0:0"),
            Field("DependentDevice", f"PCI 0:{int(bus, 16)}:{int(dev, 16)}:{int(fn, 16)}"),
            Field("ResetMethod", "Bridge reset" if cls == 0x0302 else "Function reset"),
            Field("FPTSharable", True, label="FPT Sharable"),
        ],
        header=addr,
    )


def pci_devices(state: dict[str, Any]) -> list[Struct]:
    from lab.esxi.gpu_models import SMI_MODELS

    loaded = state.get("driver_loaded") is not None
    rows = []
    for i, g in enumerate(state["gpus"]):
        sub = SMI_MODELS[g["model"]].subsystem_id
        rows.append(
            _pci_struct(
                g["pci_id"],
                "",
                "NVIDIA Corporation",
                g["device_name"],
                0x10DE,
                g["device_id"],
                0x10DE,
                sub,
                0x0302,
                "3D controller",
                "nvidia" if loaded else "None",
                i + 1,
                True,
            )
        )
    for j, n in enumerate(state["nics"]):
        rows.append(
            _pci_struct(
                n["pci_id"],
                n["vmnic"],
                "Mellanox Technologies",
                n["device_name"],
                0x15B3,
                n["device_id"],
                0x15B3,
                0x0016,
                0x0200,
                "Ethernet controller",
                "nmlx5_core",
                10 + j,
                True,
            )
        )
    return sorted(rows, key=lambda s: s.header or "")


@esxcli(
    "hardware pci list",
    "List all of the PCI devices on this host.",
    Opt("class", ("-c", "--class"), help="Filter the PCI devices by their class-code."),
    Opt("mask", ("-m", "--mask"), help="The mask to apply to the class-code filter."),
)
def pci_list(ctx: Ctx, opts: dict[str, Any]) -> Output:
    rows = pci_devices(ctx.store.read())
    if "class" in opts:
        try:
            cls = int(opts["class"], 16)
            mask = int(opts.get("mask", "0xffff"), 16)
        except ValueError as exc:
            raise EsxcliError(f"Invalid class or mask: {opts['class']}", usage=COMMANDS["hardware pci list"]) from exc
        rows = [r for r in rows if (r.get("DeviceClass") & mask) == (cls & mask)]
    return Output(rows)


@esxcli("hardware pci pcipassthru list", "Display PCI device passthru configuration.")
def pcipassthru_list(ctx: Ctx, opts: dict[str, Any]) -> Output:
    state = ctx.store.read()
    rows = [
        Struct("PcipassthruDevice", [Field("DeviceID", a, label="Device ID"), Field("Enabled", False)])
        for a in sorted([g["pci_id"] for g in state["gpus"]] + [n["pci_id"] for n in state["nics"]])
    ]
    return Output(rows, render_table)
