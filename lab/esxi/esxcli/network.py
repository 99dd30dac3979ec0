"""``esxcli network nic list``: the management NIC and the host's ConnectX uplinks."""

from __future__ import annotations

from typing import Any

from lab.esxi.context import Ctx
from lab.esxi.esxcli.registry import Output, esxcli
from lab.esxi.esxfmt import Field, Struct, render_table


def _mac(host: str, idx: int) -> str:
    import hashlib

    h = hashlib.sha256(f"{host}/{idx}".encode()).digest()
    return "b8:ce:f6:" + ":".join(f"{b:02x}" for b in h[:3])


@esxcli("network nic list", "This command will list the Physical NICs currently installed and loaded on the system.")
def nic_list(ctx: Ctx, opts: dict[str, Any]) -> Output:
    state = ctx.store.read()
    nics = [("vmnic0", "0000:18:00.0", "i40en", 10000, "Intel(R) Ethernet Controller X710 for 10GbE SFP+")]
    nics += [
        (n["vmnic"], n["pci_id"], "nmlx5_core", 100000, f"Mellanox Technologies {n['device_name']}")
        for n in state["nics"]
    ]
    rows = [
        Struct(
            "PhysicalNic",
            [
                Field("Name", name),
                Field("PCIDevice", pci, label="PCI Device"),
                Field("Driver", drv),
                Field("AdminStatus", "Up"),
                Field("LinkStatus", "Up"),
                Field("Speed", speed),
                Field("Duplex", "Full"),
                Field("MACAddress", _mac(ctx.host, i), label="MAC Address"),
                Field("MTU", 9000 if drv.startswith("nmlx") else 1500, label="MTU"),
                Field("Description", desc),
            ],
        )
        for i, (name, pci, drv, speed, desc) in enumerate(nics)
    ]
    return Output(rows, render_table)
