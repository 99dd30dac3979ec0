"""``VmTemplateMark``: turns the VM pulumi-vsphere built into a vSphere template (pulumi-vsphere cannot).

- ``create``: powers the VM off if it runs (a template never runs), then ``MarkAsTemplate``.
- ``read``: whether the VM is (still) a template (``isTemplate``); a deleted VM reads as gone.
- ``diff``: another VM (``vmUuid`` / ``vmName`` / ``datacenter``) is a replace, deleting the old mark first.
- ``delete``: ``MarkAsVirtualMachine`` back into its host's cluster pool, so that whoever owns the VM
  (pulumi-vsphere) finds a VM again; removes only the template flag this resource set.

Inputs: ``vcenter`` (non-secret part of ``gpufleet:vcenter``), ``datacenter``, ``vmName``, ``vmUuid``.
"""

from __future__ import annotations

from typing import Any

from pulumi import Input, ResourceOptions
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, Resource, UpdateResult
from pyVmomi import vim

from components.providers.base import GpufleetProvider, is_unknown
from gpufleet.errors import SpecError, SpecIssue
from gpufleet.vms.apply import datacenter_of, find_vm
from gpufleet.vsphere.tasks import wait_for_task

INPUT_KEYS = ("vcenter", "datacenter", "vmName", "vmUuid")


def _find(si: vim.ServiceInstance, props: dict[str, Any], uuid: str | None) -> vim.VirtualMachine | None:
    if uuid and not is_unknown(uuid):
        dc = datacenter_of(si, props["datacenter"])
        return si.RetrieveContent().searchIndex.FindByUuid(datacenter=dc, uuid=uuid, vmSearch=True)
    try:
        return find_vm(si, props["datacenter"], props["vmName"])
    except SpecError:
        return None


class VmTemplateMarkProvider(GpufleetProvider):
    """The provider of ``VmTemplateMark`` (module path fixed: stacks' state refers to it)."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = [CheckFailure(k, "required") for k in ("vcenter", "datacenter", "vmName") if not news.get(k)]
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [
            k for k in ("vmUuid", "vmName", "datacenter") if is_unknown(news.get(k)) or olds.get(k) != news.get(k)
        ]
        drifted = olds.get("isTemplate") is False
        return DiffResult(
            changes=bool(replaces) or drifted or olds.get("vcenter") != news.get("vcenter"),
            replaces=replaces,
            delete_before_replace=True if replaces else None,
        )

    def _mark(self, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        with self.session(props["vcenter"]) as si:
            vm = _find(si, props, props.get("vmUuid"))
            if vm is None:
                raise SpecError([SpecIssue("vmName", f"no VM {props['vmName']} in datacenter {props['datacenter']}")])
            if not vm.config.template:
                if str(vm.runtime.powerState) != "poweredOff":
                    wait_for_task(vm.PowerOffVM_Task(), what=f"power off {vm.name}", timeout=600)
                vm.MarkAsTemplate()
            uuid, is_template = vm.config.uuid, bool(vm.config.template)
        return uuid, {k: props.get(k) for k in INPUT_KEYS} | {"isTemplate": is_template}

    def create(self, props: dict[str, Any]) -> CreateResult:
        uuid, outs = self._mark(props)
        return CreateResult(uuid, outs)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._mark(news)[1])

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with self.session(props["vcenter"]) as si:
            vm = _find(si, props, id_)
            if vm is None:
                return ReadResult("", {})
            return ReadResult(id_, {**props, "isTemplate": bool(vm.config.template)})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        with self.session(props["vcenter"]) as si:
            vm = _find(si, props, id_)
            if vm is None or not vm.config.template:
                return
            host = vm.runtime.host
            vm.MarkAsVirtualMachine(pool=host.parent.resourcePool, host=host)


class VmTemplateMark(Resource, module="vsphere", name="VmTemplateMark"):
    """Marks a VM as a vSphere template."""

    isTemplate: Any

    def __init__(self, name: str, props: dict[str, Input[Any]], opts: ResourceOptions | None = None) -> None:
        super().__init__(VmTemplateMarkProvider(), name, {**props, "isTemplate": None}, opts)
