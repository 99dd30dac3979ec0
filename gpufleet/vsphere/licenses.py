"""vSphere licence keys: add a key to vCenter's LicenseManager and assign it to an ESXi host or to vCenter itself.

Keys are secrets: they never appear in a message; ``key_fingerprint`` (the last group, as the vSphere Client shows
``*****-*****-*****-*****-ABCDE``) is what errors and outputs name.

An entity is what carries a licence: a host (its moid) or vCenter (``about.instanceUuid``, ``vcenter_entity``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from pyVmomi import vim, vmodl

from gpufleet.errors import TaskError
from gpufleet.vsphere.tasks import fault_message

EVALUATION_KEY = "00000-00000-00000-00000-00000"
KEY_FORMAT = re.compile(r"^[0-9A-Z]{5}(-[0-9A-Z]{5}){4}$")  # five groups of five letters/digits
KEY_FORMAT_TEXT = "five groups of five capital letters/digits, XXXXX-XXXXX-XXXXX-XXXXX-XXXXX"


def key_fingerprint(key: str | None) -> str:
    """``*****-*****-*****-*****-ABCDE`` for a well-formed key (its last group, as the vSphere Client shows it):
    enough to tell keys apart, never the key. Anything else is named by a short SHA-256 of it, never by a slice of
    it: a value with no dashes (or one character, or a pasted token) would be printed whole."""
    if not key:
        return "(none)"
    if is_license_key(key):
        return "*****-*****-*****-*****-" + key[-5:]
    return f"(not a licence key; sha256 {hashlib.sha256(key.encode('utf-8', 'surrogatepass')).hexdigest()[:12]})"


def _said(exc: BaseException, key: str) -> str:
    """vCenter's message for a fault, the key masked should vCenter quote it."""
    return fault_message(exc).replace(key, key_fingerprint(key)) if key else fault_message(exc)


def is_license_key(value: object) -> bool:
    """Shaped like a vSphere licence key (the format check vCenter makes first)."""
    return isinstance(value, str) and KEY_FORMAT.match(value) is not None


@dataclass(frozen=True)
class Assignment:
    entity: str  # host moid, or vCenter's instance UUID
    key: str  # the licence key (a secret: do not print)
    edition: str | None
    name: str | None

    @property
    def evaluation(self) -> bool:
        return self.key == EVALUATION_KEY


def _manager(si: vim.ServiceInstance) -> vim.LicenseAssignmentManager:
    return si.RetrieveContent().licenseManager.licenseAssignmentManager


def vcenter_entity(si: vim.ServiceInstance) -> str:
    """The entity id vCenter's own licence is assigned to: its instance UUID."""
    return str(si.RetrieveContent().about.instanceUuid)


def _assignment(row: vim.LicenseAssignmentManager.LicenseAssignment) -> Assignment:
    lic = row.assignedLicense
    return Assignment(row.entityId, lic.licenseKey or "", lic.editionKey or None, lic.name or None)


def assigned_to(si: vim.ServiceInstance, entity: str) -> Assignment | None:
    """The licence vCenter shows assigned to ``entity`` (None when it reports none)."""
    for row in _manager(si).QueryAssignedLicenses(entityId=entity) or []:
        return _assignment(row)
    return None


def assigned_licenses(si: vim.ServiceInstance) -> dict[str, Assignment]:
    """Every assignment vCenter shows (hosts and vCenter), in one call: entity id -> assignment."""
    return {row.entityId: _assignment(row) for row in _manager(si).QueryAssignedLicenses() or []}


def assigned_license(si: vim.ServiceInstance, host: vim.HostSystem) -> Assignment | None:
    """The licence vCenter shows assigned to ``host`` (None when it reports none)."""
    return assigned_to(si, host._moId)


def license_keys(si: vim.ServiceInstance) -> set[str]:
    """The keys vCenter's LicenseManager holds (secrets: compare, do not print)."""
    return {lic.licenseKey for lic in si.RetrieveContent().licenseManager.licenses or [] if lic.licenseKey}


def _diagnostic(info: vim.LicenseManager.LicenseInfo | None) -> str | None:
    """vCenter answers some unusable keys with a ``diagnostic`` property instead of a fault."""
    for prop in (info.properties if info is not None else None) or []:
        if prop.key == "diagnostic" and prop.value:
            return str(prop.value)
    return None


def add_license(si: vim.ServiceInstance, key: str) -> None:
    """Add ``key`` to vCenter's licences (idempotent); a refused key becomes ``TaskError`` naming its fingerprint."""
    try:
        info = si.RetrieveContent().licenseManager.AddLicense(licenseKey=key)
    except vmodl.MethodFault as exc:
        raise TaskError(
            f"vCenter refused licence {key_fingerprint(key)}: {_said(exc, key)}", type(exc).__name__
        ) from exc
    diagnostic = _diagnostic(info)
    if diagnostic:
        masked = diagnostic.replace(key, key_fingerprint(key))
        raise TaskError(f"vCenter refused licence {key_fingerprint(key)}: {masked}", "InvalidLicense")


def remove_license(si: vim.ServiceInstance, key: str) -> None:
    """Remove ``key`` from vCenter's licences (it must be assigned to nothing)."""
    try:
        si.RetrieveContent().licenseManager.RemoveLicense(licenseKey=key)
    except vmodl.MethodFault as exc:
        raise TaskError(
            f"vCenter refused to remove licence {key_fingerprint(key)}: {_said(exc, key)}", type(exc).__name__
        ) from exc


def assign_to(si: vim.ServiceInstance, entity: str, display_name: str, key: str) -> Assignment:
    """Assign ``key`` (already added) to ``entity``; returns what vCenter then shows (checked: it is ``key``)."""
    try:
        _manager(si).UpdateAssignedLicense(entity=entity, licenseKey=key, entityDisplayName=display_name)
    except vmodl.MethodFault as exc:
        raise TaskError(
            f"vCenter refused to assign licence {key_fingerprint(key)} to {display_name}: {_said(exc, key)}",
            type(exc).__name__,
        ) from exc
    found = assigned_to(si, entity)
    if found is None or found.key != key:
        raise TaskError(
            f"{display_name}: licence {key_fingerprint(key)} assigned but vCenter shows "
            f"{key_fingerprint(found.key if found else None)}"
        )
    return found


def assign_license(si: vim.ServiceInstance, host: vim.HostSystem, key: str) -> Assignment:
    """Add ``key`` if needed and assign it to ``host``; returns what vCenter then shows."""
    if key != EVALUATION_KEY:
        add_license(si, key)
    return assign_to(si, host._moId, host.name, key)
