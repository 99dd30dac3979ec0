"""``esxcli system``: ``maintenanceMode get|set`` (vCenter's view of the host), ``version get``, ``stats uptime
get``, ``hostname get``, ``settings kernel list|set`` (Configured now, Runtime at the next boot)."""

from __future__ import annotations

from typing import Any

from lab.esxi import events
from lab.esxi.context import Ctx
from lab.esxi.esxcli.hostd import host_view, update_host
from lab.esxi.esxcli.registry import FALSE, TRUE, EsxcliError, Opt, Output, esxcli
from lab.esxi.esxfmt import Field, Struct, render_table


@esxcli("system maintenanceMode get", "Get the maintenance mode state of the system.")
def mm_get(ctx: Ctx, opts: dict[str, Any]) -> Output:
    return Output("Enabled" if host_view(ctx)["inMaintenanceMode"] else "Disabled")


@esxcli(
    "system maintenanceMode set",
    "Enable or disable the maintenance mode of the system.",
    Opt("enable", ("-e", "--enable"), "boolean", required=True, help="enable maintenance mode"),
    Opt("timeout", ("-t", "--timeout"), "long", help="Time to perform operation in seconds (default 0 seconds)"),
    Opt(
        "vsanmode",
        ("-m", "--vsanmode"),
        help="Action the VSAN service must take before the host can enter maintenance mode (default ensureObjectAccessibility).",
    ),
)
def mm_set(ctx: Ctx, opts: dict[str, Any]) -> None:
    enable = opts["enable"]
    if host_view(ctx)["inMaintenanceMode"] == enable:
        raise EsxcliError(f"Maintenance mode is already {'enabled' if enable else 'disabled'}.")
    update_host(ctx, inMaintenanceMode=enable)
    events.record(ctx.paths, ctx.host, "maintenance_enter" if enable else "maintenance_exit", via="esxcli")
    return None


@esxcli("system version get", "Display the product name, version and build information.")
def version_get(ctx: Ctx, opts: dict[str, Any]) -> Output:
    from lab.esxi.state import ESXI_BUILD, ESXI_VERSION

    return Output(
        Struct(
            "VersionGet",
            [
                Field("Product", "VMware ESXi"),
                Field("Version", ESXI_VERSION),
                Field("Build", f"Releasebuild-{ESXI_BUILD}"),
                Field("Update", "3"),
                Field("Patch", "55"),
            ],
        )
    )


@esxcli("system stats uptime get", "Display the number of microseconds the system has been running.")
def uptime_get(ctx: Ctx, opts: dict[str, Any]) -> Output:
    import time

    return Output(int((time.time() - ctx.store.read()["boot"]["booted_at"]) * 1_000_000))


@esxcli("system hostname get", "Get the host, domain or fully qualified name of the ESX host.")
def hostname_get(ctx: Ctx, opts: dict[str, Any]) -> Output:
    short, _, domain = ctx.host.partition(".")
    return Output(
        Struct(
            "FullHostname",
            [
                Field("DomainName", domain or "localdomain", label="Domain Name"),
                Field("FullyQualifiedDomainName", ctx.host, label="Fully Qualified Domain Name"),
                Field("HostName", short, label="Host Name"),
            ],
        )
    )


def _kernel_rows(settings: dict[str, Any], only: str | None) -> list[Struct]:
    rows = []
    for name in sorted(settings, key=str.lower):
        if only is not None and name != only:
            continue
        s = settings[name]
        rows.append(
            Struct(
                "KernelSetting",
                [
                    Field("Name", name),
                    Field("Type", s["type"]),
                    Field("Configured", s["configured"]),
                    Field("Runtime", s["runtime"]),
                    Field("Default", s["default"]),
                    Field("Description", s["description"]),
                ],
            )
        )
    return rows


@esxcli(
    "system settings kernel list",
    "List VMkernel kernel settings.",
    Opt("delta", ("-d", "--delta"), "flag", help="Only display options whose values differ from their default."),
    Opt("option", ("-o", "--option"), help="The name of the VMKernel kernel setting to get."),
)
def kernel_list(ctx: Ctx, opts: dict[str, Any]) -> Output:
    settings = ctx.store.read()["kernel"]
    only = opts.get("option")
    if only is not None and only not in settings:
        raise EsxcliError(f"Invalid Key Name: {only}")
    rows = _kernel_rows(settings, only)
    if opts.get("delta"):
        rows = [r for r in rows if str(r.get("Configured")).upper() != str(r.get("Default")).upper()]
    return Output(rows, render_table)


@esxcli(
    "system settings kernel set",
    "Set a VMKernel setting.",
    Opt("setting", ("-s", "--setting"), required=True, help="The name of the VMKernel setting to set."),
    Opt("value", ("-v", "--value"), required=True, help="The value to set the VMKernel setting to."),
)
def kernel_set(ctx: Ctx, opts: dict[str, Any]) -> None:
    name, value = opts["setting"], opts["value"]
    with ctx.store.edit() as state:
        setting = state["kernel"].get(name)
        if setting is None:
            raise EsxcliError(f"Invalid Key Name: {name}")
        if setting["type"] == "Bool" and value.lower() not in TRUE | FALSE:
            raise EsxcliError(f"Invalid value {value} for setting {name}: expected TRUE or FALSE")
        if setting["type"] != "Bool" and not value.isdigit():
            raise EsxcliError(f"Invalid value {value} for setting {name}: expected an integer")
        setting["configured"] = value  # echoes the user's spelling, as ESXi does; Runtime changes at boot
    events.record(ctx.paths, ctx.host, "kernel_set", setting=name, value=value)
    return None
