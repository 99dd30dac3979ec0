"""Find managed objects by name and read many properties in one round trip (the PropertyCollector).

    host = find_by_name(si, vim.HostSystem, "esxi-01.lab")            # SpecError listing the names if absent
    rows = collect(si, vim.VirtualMachine, ["name", "runtime.host"])  # [{"obj": vm, "name": ..., ...}]

Reading ``vm.runtime.host`` attribute by attribute costs one HTTP round trip each; ``collect`` asks once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyVmomi import vim, vmodl

from gpufleet.errors import SpecError, SpecIssue


def _content(si: vim.ServiceInstance) -> vim.ServiceInstanceContent:
    return si.RetrieveContent()


def collect(
    si: vim.ServiceInstance,
    vimtype: type,
    properties: Sequence[str],
    root: vim.ManagedEntity | None = None,
) -> list[dict[str, Any]]:
    """Every object of ``vimtype`` under ``root`` (default: the whole inventory) with ``properties``, one dict
    each (``"obj"`` is the managed object; properties vCenter leaves unset are ``None``)."""
    content = _content(si)
    view = content.viewManager.CreateContainerView(root or content.rootFolder, [vimtype], True)
    try:
        traversal = vmodl.query.PropertyCollector.TraversalSpec(
            name="view", path="view", skip=False, type=vim.view.ContainerView
        )
        spec = vmodl.query.PropertyCollector.FilterSpec(
            objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=view, skip=True, selectSet=[traversal])],
            propSet=[vmodl.query.PropertyCollector.PropertySpec(type=vimtype, pathSet=list(properties))],
        )
        options = vmodl.query.PropertyCollector.RetrieveOptions()
        result = content.propertyCollector.RetrievePropertiesEx([spec], options)
        rows: list[dict[str, Any]] = []
        while result:
            for obj in result.objects:
                row: dict[str, Any] = dict.fromkeys(properties)
                row["obj"] = obj.obj
                for prop in obj.propSet or []:
                    row[prop.name] = prop.val
                rows.append(row)
            if not result.token:
                break
            result = content.propertyCollector.ContinueRetrievePropertiesEx(result.token)
        return rows
    finally:
        view.Destroy()


def collect_one(si: vim.ServiceInstance, obj: vim.ManagedObject, properties: Sequence[str]) -> dict[str, Any]:
    """``properties`` of one managed object, in one round trip (unset ones are ``None``)."""
    content = _content(si)
    spec = vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=obj, skip=False)],
        propSet=[vmodl.query.PropertyCollector.PropertySpec(type=type(obj), pathSet=list(properties))],
    )
    row: dict[str, Any] = dict.fromkeys(properties)
    row["obj"] = obj
    for item in content.propertyCollector.RetrieveContents([spec]) or []:
        for prop in item.propSet or []:
            row[prop.name] = prop.val
    return row


def find_by_name(si: vim.ServiceInstance, vimtype: type, name: str, root: vim.ManagedEntity | None = None) -> Any:
    """The one object of ``vimtype`` called ``name``; a SpecError naming the valid names when there is none."""
    rows = collect(si, vimtype, ["name"], root)
    for row in rows:
        if row["name"] == name:
            return row["obj"]
    kind = vimtype.__name__.rsplit(".", 1)[-1]
    raise SpecError(
        [SpecIssue(name, f"no {kind} of this name in vCenter", valid=tuple(sorted(r["name"] for r in rows)))]
    )
