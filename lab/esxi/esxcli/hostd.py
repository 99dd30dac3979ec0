"""What esxcli asks the host agent: this host's view in vCenter (maintenance mode, graphics config), and its
updates. Lazy imports keep ``esxcli software vib list`` free of the vCenter client."""

from __future__ import annotations

from typing import Any

from lab.esxi.context import Ctx
from lab.esxi.esxcli.registry import EsxcliError


def vcenter(ctx: Ctx):  # noqa: ANN202 - lazy import keeps `esxcli software vib list` free of it
    from lab.esxi.vcface import VcenterClient, VcenterUnavailable

    try:
        return VcenterClient(ctx.paths)
    except VcenterUnavailable as exc:
        raise EsxcliError(f"Unable to reach hostd: {exc}") from exc


def host_view(ctx: Ctx) -> dict[str, Any]:
    from lab.esxi.vcface import VcenterUnavailable

    try:
        return vcenter(ctx).host_view(ctx.host)
    except VcenterUnavailable as exc:
        raise EsxcliError(f"Unable to reach hostd: {exc}") from exc


def update_host(ctx: Ctx, **fields: Any) -> dict[str, Any]:
    from lab.esxi.vcface import VcenterUnavailable

    try:
        return vcenter(ctx).update_host(ctx.host, **fields)
    except VcenterUnavailable as exc:
        raise EsxcliError(f"Unable to reach hostd: {exc}") from exc
