"""``esxcli rdma device``: ``list``, ``protocol list`` and ``vmknic list`` for the host's ConnectX NICs."""

from __future__ import annotations

from typing import Any

from lab.esxi.context import Ctx
from lab.esxi.esxcli.registry import Output, esxcli
from lab.esxi.esxfmt import Field, Struct, render_table


@esxcli("rdma device list", "List the logical RDMA devices currently registered on the system.")
def rdma_list(ctx: Ctx, opts: dict[str, Any]) -> Output:
    state = ctx.store.read()
    rows = [
        Struct(
            "RdmaDevice",
            [
                Field("Name", n["vmrdma"]),
                Field("Driver", "nmlx5_rdma"),
                Field("State", "Active"),
                Field("MTU", 4096, label="MTU"),
                Field("Speed", "100 Gbps"),
                Field("PairedUplink", n["vmnic"]),
                Field("Description", n["device_name"]),
            ],
        )
        for n in state["nics"]
    ]
    return Output(rows, render_table)


@esxcli("rdma device protocol list", "List the RDMA protocols supported by the RDMA devices.")
def rdma_protocols(ctx: Ctx, opts: dict[str, Any]) -> Output:
    state = ctx.store.read()
    rows = [
        Struct(
            "RdmaProtocol",
            [
                Field("Device", n["vmrdma"]),
                Field("RoCEv1", True, label="RoCE v1"),
                Field("RoCEv2", True, label="RoCE v2"),
                Field("iWARP", False),
            ],
        )
        for n in state["nics"]
    ]
    return Output(rows, render_table)


@esxcli("rdma device vmknic list", "List the vmknics associated with RDMA devices.")
def rdma_vmknics(ctx: Ctx, opts: dict[str, Any]) -> Output:
    state = ctx.store.read()
    rows = [
        Struct(
            "RdmaVmknic",
            [Field("Device", n["vmrdma"]), Field("Vmknic", f"vmk{i + 1}"), Field("NetStack", "defaultTcpipStack")],
        )
        for i, n in enumerate(state["nics"])
    ]
    return Output(rows, render_table)
