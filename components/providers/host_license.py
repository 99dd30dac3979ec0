"""``HostLicenseAssignment``: the vSphere licence assigned to one ESXi host (pulumi-vsphere's ``Host`` would have
to own the host's whole registration to do it).

- ``check``: ``host`` named, ``licenseKey`` shaped like a vSphere key (five groups of five).
- ``diff``: another host is a replace; another key, or a key changed behind its back, an update.
- ``create``: adds the key to vCenter and assigns it; remembers the key that was assigned before (``previous``).
- ``read``: the key vCenter shows now (``assignedFingerprint``), so ``pulumi refresh`` sees drift.
- ``delete``: assigns ``previous`` back (a host always carries a licence: at worst, evaluation mode).

The key is a secret input; ``licenseKey`` and ``previous`` are declared secret outputs, and only the fingerprint
(``*****-...-ABCDE``) is a plain output. Inputs: ``vcenter``, ``datacenter``, ``host``, ``licenseKey``.
"""

from __future__ import annotations

from typing import Any

from pulumi import Input, ResourceOptions
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, Resource, UpdateResult
from pyVmomi import vim

from components.providers.base import GpufleetProvider, is_unknown
from gpufleet.vms.apply import datacenter_of
from gpufleet.vsphere.inventory import find_by_name
from gpufleet.vsphere.licenses import EVALUATION_KEY, assign_license, assigned_license, is_license_key, key_fingerprint

INPUT_KEYS = ("vcenter", "datacenter", "host", "licenseKey")
SECRET_OUTPUTS = ["licenseKey", "previous"]


def _host(si: vim.ServiceInstance, props: dict[str, Any]) -> vim.HostSystem:
    return find_by_name(si, vim.HostSystem, props["host"], root=datacenter_of(si, props["datacenter"]))


class HostLicenseAssignmentProvider(GpufleetProvider):
    """The provider of ``HostLicenseAssignment`` (module path fixed: stacks' state refers to it)."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = [CheckFailure(k, "required") for k in ("vcenter", "datacenter", "host") if not news.get(k)]
        key = news.get("licenseKey")
        if not is_unknown(key) and not is_license_key(key):
            # Never echo the value: it is a secret.
            failures.append(
                CheckFailure("licenseKey", "not a vSphere licence key (five groups of five letters/digits)")
            )
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [k for k in ("host", "datacenter") if olds.get(k) != news.get(k)]
        drifted = olds.get("assignedFingerprint") not in (None, key_fingerprint(news.get("licenseKey")))
        changed = bool(replaces) or drifted or any(olds.get(k) != news.get(k) for k in INPUT_KEYS)
        return DiffResult(changes=changed, replaces=replaces, delete_before_replace=True if replaces else None)

    def _assign(self, props: dict[str, Any], previous: str | None, first: bool) -> tuple[str, dict[str, Any]]:
        with self.session(props["vcenter"]) as si:
            host = _host(si, props)
            before = assigned_license(si, host)
            found = assign_license(si, host, props["licenseKey"])
            moid = host._moId
        return moid, {k: props.get(k) for k in INPUT_KEYS} | {
            "previous": (before.key if before else EVALUATION_KEY) if first else previous,
            "assignedFingerprint": key_fingerprint(found.key),
            "edition": found.edition,
        }

    def create(self, props: dict[str, Any]) -> CreateResult:
        moid, outs = self._assign(props, None, first=True)
        return CreateResult(moid, outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._assign(news, olds.get("previous"), first=False)[1])

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with self.session(props["vcenter"]) as si:
            found = assigned_license(si, _host(si, props))
        return ReadResult(id_, {**props, "assignedFingerprint": key_fingerprint(found.key if found else None)})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        previous = props.get("previous") or EVALUATION_KEY
        with self.session(props["vcenter"]) as si:
            host = _host(si, props)
            found = assigned_license(si, host)
            if found is not None and found.key == props.get("licenseKey"):  # only undo what is still ours
                assign_license(si, host, previous)


class HostLicenseAssignment(Resource, module="vsphere", name="HostLicenseAssignment"):
    """The vSphere licence of one ESXi host (the key is a secret)."""

    assignedFingerprint: Any
    edition: Any

    def __init__(self, name: str, props: dict[str, Input[Any]], opts: ResourceOptions | None = None) -> None:
        secret = ResourceOptions(additional_secret_outputs=SECRET_OUTPUTS)
        outputs = {"previous": None, "assignedFingerprint": None, "edition": None}
        super().__init__(
            HostLicenseAssignmentProvider(), name, {**props, **outputs}, ResourceOptions.merge(opts, secret)
        )
