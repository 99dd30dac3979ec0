"""RDMA tools (rdma-core, Mellanox OFED): ibv_devices, ibv_devinfo, rdma link / dev, show_gids, cma_roce_mode."""

from __future__ import annotations

from lab.guest.commands.base import Guest, Input, Result, ok
from lab.guest.commands.registry import command


@command("ibv_devices")
def cmd_ibv_devices(g: Guest, argv: list[str], stdin: Input) -> Result:
    lines = ["    device          \t   node GUID", "    ------          \t----------------"]
    lines += [f"    {d.name:<16}\t{d.node_guid}" for d in g.view.rdma]
    return ok("\n".join(lines) + "\n")


@command("rdma")
def cmd_rdma(g: Guest, argv: list[str], stdin: Input) -> Result:
    args = [a for a in argv[1:] if not a.startswith("-")]
    if args[:1] == ["link"] and args[1:2] in ([], ["show"]):
        return ok(
            "".join(
                f"link {d.name}/1 state {d.state} physical_state {'LINK_UP' if d.state == 'ACTIVE' else 'DISABLED'} netdev {d.netdev} \n"
                for d in g.view.rdma
            )
        )
    if args[:1] in (["dev"], ["device"]):
        return ok(
            "".join(
                f"{i}: {d.name}: node_type ca fw 3.0.000 node_guid {d.node_guid[:4]}:{d.node_guid[4:8]}:{d.node_guid[8:12]}:{d.node_guid[12:]} sys_image_guid {d.node_guid[:4]}:{d.node_guid[4:8]}:{d.node_guid[8:12]}:{d.node_guid[12:]} \n"
                for i, d in enumerate(g.view.rdma)
            )
        )
    return ok(err=f'Object "{args[0] if args else ""}" is unknown, try "rdma help".\n', rc=1)


@command("ibv_devinfo")
def cmd_ibv_devinfo(g: Guest, argv: list[str], stdin: Input) -> Result:
    """``ibv_devinfo [-d DEV]`` (rdma-core's layout; docs/reference/bitfusion_formats.txt)."""
    want = argv[argv.index("-d") + 1] if "-d" in argv[:-1] else None
    devices = [d for d in g.view.rdma if want in (None, d.name)]
    if not devices:
        return ok(err="No IB devices found\n" if want is None else f"IB device '{want}' wasn't found\n", rc=255)
    out = []
    for d in devices:
        guid = f"{d.node_guid[:4]}:{d.node_guid[4:8]}:{d.node_guid[8:12]}:{d.node_guid[12:]}"
        port_state = "PORT_ACTIVE (4)" if d.state == "ACTIVE" else "PORT_DOWN (1)"
        out.append(
            f"hca_id:\t{d.name}\n\ttransport:\t\t\tInfiniBand (0)\n\tfw_ver:\t\t\t\t3.0.000\n"
            f"\tnode_guid:\t\t\t{guid}\n\tsys_image_guid:\t\t\t{guid}\n\tphys_port_cnt:\t\t\t1\n"
            f"\t\tport:\t1\n\t\t\tstate:\t\t\t{port_state}\n\t\t\tmax_mtu:\t\t4096 (5)\n"
            f"\t\t\tactive_mtu:\t\t1024 (3)\n\t\t\tlink_layer:\t\tEthernet\n\n"
        )
    return ok("".join(out))


@command("show_gids")
def cmd_show_gids(g: Guest, argv: list[str], stdin: Input) -> Result:
    """Mellanox's ``show_gids``: one row per GID with its RoCE version (v1 / v2)."""
    rows = [
        "DEV\tPORT\tINDEX\tGID\t\t\t\t\tIPv4  \t\tVER\tDEV",
        "---\t----\t-----\t---\t\t\t\t\t------------  \t---\t---",
    ]
    for i, d in enumerate(g.view.rdma):
        ip = f"192.168.{100 + i}.{11 + i}"
        v4 = (
            "0000:0000:0000:0000:0000:ffff:"
            + "".join(f"{int(o):02x}" for o in ip.split(".")[:2])
            + ":"
            + "".join(f"{int(o):02x}" for o in ip.split(".")[2:])
        )
        for index, ver in ((0, "v1"), (1, "v2")):
            if d.roce == "v2" or ver == "v1":
                rows.append(f"{d.name}\t1\t{index}\t{v4}\t{ip}  \t{ver}\t{d.netdev}")
    return ok("\n".join(rows) + f"\nn_gids_found={len(rows) - 2}\n")


@command("cma_roce_mode")
def cmd_cma_roce_mode(g: Guest, argv: list[str], stdin: Input) -> Result:
    """``cma_roce_mode -d DEV -p 1``: the RoCE mode rdma_cm uses on that port."""
    want = argv[argv.index("-d") + 1] if "-d" in argv[:-1] else None
    device = next((d for d in g.view.rdma if d.name == want), None)
    if device is None:
        return ok(err=f"Device {want} not found\n", rc=1)
    return ok("RoCE v2\n" if device.roce == "v2" else "IB/RoCE v1\n")
