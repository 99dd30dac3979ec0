"""Custom attributes ("custom fields") on managed entities: small notes vCenter keeps for us and shows people.

gpufleet uses one on hosts, ``gpufleet.maintenance``, to remember that *it* put a host in maintenance mode, so
a rerun takes out only the hosts it put in (never one an operator put in maintenance for other work), and one on
VMs, ``gpufleet.home``, the host an evacuation moved a VM away from, so it goes back there when that host leaves
maintenance - whichever process or run takes the host out (the CLI's rollout, a Pulumi host step, a rerun after a
crash) - and ``gpufleet.stopped``, the host for whose maintenance gpufleet powered a VM off (powered on again then).

    set_field(si, host, MAINTENANCE_FIELD, "entered by gpufleet hosts prepare")
    get_field(si, host, MAINTENANCE_FIELD)   # -> the value, or None when unset or empty
    set_field(si, host, MAINTENANCE_FIELD, "")
"""

from __future__ import annotations

import threading

from pyVmomi import vim

MAINTENANCE_FIELD = "gpufleet.maintenance"
HOME_FIELD = "gpufleet.home"
STOPPED_FIELD = "gpufleet.stopped"

_lock = threading.Lock()


def _field_key(si: vim.ServiceInstance, name: str, mo_type: type, create: bool) -> int | None:
    manager = si.RetrieveContent().customFieldsManager
    for definition in manager.field or []:
        if definition.name == name and definition.managedObjectType in (mo_type, None):
            return int(definition.key)
    if not create:
        return None
    with _lock:  # two threads must not both create the definition
        for definition in manager.field or []:
            if definition.name == name and definition.managedObjectType in (mo_type, None):
                return int(definition.key)
        try:
            return int(manager.AddCustomFieldDef(name=name, moType=mo_type).key)
        except vim.fault.DuplicateName:  # another gpufleet process created it meanwhile
            return _field_key(si, name, mo_type, create=False)


def get_field(si: vim.ServiceInstance, entity: vim.ManagedEntity, name: str) -> str | None:
    """The value of custom attribute ``name`` on ``entity``; None when undefined, unset or empty."""
    key = _field_key(si, name, type(entity), create=False)
    if key is None:
        return None
    value = None
    for item in entity.customValue or []:  # some servers append rather than replace: the last one wins
        if item.key == key:
            value = getattr(item, "value", None)
    return value or None


def field_values(si: vim.ServiceInstance, rows: list[dict], name: str, mo_type: type) -> dict[int, str]:
    """For rows of ``collect(..., ["customValue", ...])``: row index -> the value of ``name`` (set ones only)."""
    key = _field_key(si, name, mo_type, create=False)
    found: dict[int, str] = {}
    if key is None:
        return found
    for index, row in enumerate(rows):
        for item in row.get("customValue") or []:
            if item.key == key:
                value = getattr(item, "value", None)
                if value:
                    found[index] = value
                else:
                    found.pop(index, None)
    return found


def set_field(si: vim.ServiceInstance, entity: vim.ManagedEntity, name: str, value: str) -> None:
    """Set custom attribute ``name`` on ``entity`` (defined on first use); ``""`` clears it."""
    key = _field_key(si, name, type(entity), create=True)
    assert key is not None
    si.RetrieveContent().customFieldsManager.SetField(entity=entity, key=key, value=value)
