"""vSphere licence keys: add a key to vCenter's LicenseManager and assign it to an ESXi host.

Keys are secrets: they never appear in a message; ``key_fingerprint`` (the last group, as the vSphere Client shows
``*****-*****-*****-*****-ABCDE``) is what errors and outputs name.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyVmomi import vim, vmodl

from gpufleet.errors import TaskError
from gpufleet.vsphere.tasks import fault_message

EVALUATION_KEY = "00000-00000-00000-00000-00000"


def key_fingerprint(key: str | None) -> str:
    """``*****-*****-*****-*****-ABCDE``: enough to tell keys apart, never the key."""
    if not key:
        return "(none)"
    return "*****-*****-*****-*****-" + key.rsplit("-", 1)[-1]


@dataclass(frozen=True)
class Assignment:
    entity: str  # host moid
    key: str  # the licence key (a secret: do not print)
    edition: str | None
    name: str | None

    @property
    def evaluation(self) -> bool:
        return self.key == EVALUATION_KEY


def _manager(si: vim.ServiceInstance) -> vim.LicenseAssignmentManager:
    return si.RetrieveContent().licenseManager.licenseAssignmentManager


def assigned_license(si: vim.ServiceInstance, host: vim.HostSystem) -> Assignment | None:
    """The licence vCenter shows assigned to ``host`` (None when it reports none)."""
    for row in _manager(si).QueryAssignedLicenses(entityId=host._moId) or []:
        lic = row.assignedLicense
        return Assignment(host._moId, lic.licenseKey or "", lic.editionKey or None, lic.name or None)
    return None


def add_license(si: vim.ServiceInstance, key: str) -> None:
    """Add ``key`` to vCenter's licences (idempotent); a refused key becomes ``TaskError`` naming its fingerprint."""
    try:
        si.RetrieveContent().licenseManager.AddLicense(licenseKey=key)
    except vmodl.MethodFault as exc:
        raise TaskError(
            f"vCenter refused licence {key_fingerprint(key)}: {fault_message(exc)}", type(exc).__name__
        ) from exc


def assign_license(si: vim.ServiceInstance, host: vim.HostSystem, key: str) -> Assignment:
    """Add ``key`` if needed and assign it to ``host``; returns what vCenter then shows."""
    if key != EVALUATION_KEY:
        add_license(si, key)
    try:
        _manager(si).UpdateAssignedLicense(entity=host._moId, licenseKey=key, entityDisplayName=host.name)
    except vmodl.MethodFault as exc:
        raise TaskError(
            f"vCenter refused to assign licence {key_fingerprint(key)} to {host.name}: {fault_message(exc)}",
            type(exc).__name__,
        ) from exc
    found = assigned_license(si, host)
    if found is None or found.key != key:
        raise TaskError(
            f"{host.name}: licence {key_fingerprint(key)} assigned but vCenter shows {key_fingerprint(found.key if found else None)}"
        )
    return found
