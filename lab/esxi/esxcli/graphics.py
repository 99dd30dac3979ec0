"""``esxcli graphics``: ``host get|set|refresh`` (the host graphics default type and shared passthru assignment
policy, kept in vCenter's view of the host), ``device list`` and ``vm list``."""

from __future__ import annotations

from typing import Any

from lab.esxi import events
from lab.esxi.context import Ctx
from lab.esxi.esxcli.hostd import host_view, update_host
from lab.esxi.esxcli.registry import COMMANDS, EsxcliError, Opt, Output, esxcli
from lab.esxi.esxfmt import Field, Struct

_GRAPHICS_TYPES = {"shared": "shared", "sharedpassthru": "sharedDirect"}


_POLICIES = {"performance": "performance", "consolidation": "consolidation"}


@esxcli("graphics host get", "Get host graphics properties.")
def graphics_get(ctx: Ctx, opts: dict[str, Any]) -> Output:
    from lab.esxi.vcface import GRAPHICS_TO_ESXCLI, POLICY_TO_ESXCLI

    view = host_view(ctx)
    return Output(
        Struct(
            "HostGraphicsConfig",
            [
                Field("DefaultGraphicsType", GRAPHICS_TO_ESXCLI.get(view["graphicsType"], view["graphicsType"])),
                Field(
                    "SharedPassthruAssignmentPolicy",
                    POLICY_TO_ESXCLI.get(view["assignmentPolicy"], view["assignmentPolicy"]),
                ),
            ],
        )
    )


@esxcli(
    "graphics host set",
    "Set host graphics properties.",
    Opt(
        "defaulttype",
        ("-d", "--default-type"),
        help="Host default graphics type. Allowed values: Shared, SharedPassthru",
    ),
    Opt(
        "sharedpassthruassignmentpolicy",
        ("-p", "--shared-passthru-assignment-policy"),
        help="Shared passthru GPU assignment policy. Allowed values: Performance, Consolidation",
    ),
)
def graphics_set(ctx: Ctx, opts: dict[str, Any]) -> None:
    fields: dict[str, str] = {}
    if "defaulttype" in opts:
        t = _GRAPHICS_TYPES.get(opts["defaulttype"].lower())
        if t is None:
            raise EsxcliError(
                f"Invalid value for default type: {opts['defaulttype']}. Allowed values: Shared, SharedPassthru"
            )
        fields["graphicsType"] = t
    if "sharedpassthruassignmentpolicy" in opts:
        p = _POLICIES.get(opts["sharedpassthruassignmentpolicy"].lower())
        if p is None:
            raise EsxcliError(
                f"Invalid value for shared passthru assignment policy: {opts['sharedpassthruassignmentpolicy']}. Allowed values: Performance, Consolidation"
            )
        fields["assignmentPolicy"] = p
    if not fields:
        raise EsxcliError("At least one option must be specified.", usage=COMMANDS["graphics host set"])
    update_host(ctx, **fields)
    events.record(ctx.paths, ctx.host, "graphics_host_set", **fields)
    return None


@esxcli("graphics host refresh", "Refresh host graphics properties.")
def graphics_refresh(ctx: Ctx, opts: dict[str, Any]) -> None:
    return None


@esxcli("graphics device list", "List all graphics devices.")
def graphics_devices(ctx: Ctx, opts: dict[str, Any]) -> Output:
    from lab.esxi.gpu_models import SMI_MODELS

    state = ctx.store.read()
    loaded = state.get("driver_loaded") is not None
    default_type = "Basic"
    if loaded:
        from lab.esxi.vcface import GRAPHICS_TO_ESXCLI

        default_type = GRAPHICS_TO_ESXCLI.get(host_view(ctx)["graphicsType"], "Shared")
    rows = []
    for g in state["gpus"]:
        model = SMI_MODELS[g["model"]]
        rows.append(
            Struct(
                "GraphicsDevice",
                [
                    Field("DeviceID", g["pci_id"], hidden=True),
                    Field("VendorName", "NVIDIA Corporation"),
                    Field("DeviceName", g["device_name"]),
                    Field("ModuleName", "nvidia" if loaded else "None"),
                    Field("GraphicsType", default_type),
                    Field("MemorySizeinKB", model.fb_mib * 1024 if loaded else 0, label="Memory Size in KB"),
                    Field("NumberofVMs", 0, label="Number of VMs"),
                ],
                header=g["pci_id"],
            )
        )
    return Output(rows)


@esxcli("graphics vm list", "List active VMs associated with graphics devices.")
def graphics_vms(ctx: Ctx, opts: dict[str, Any]) -> Output:
    return Output([], lambda r: "")
