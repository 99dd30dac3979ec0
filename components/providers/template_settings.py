"""``TemplateGpuSettings``: the GPU settings of a VM template that exists already (brownfield stacks, the lab), the
Pulumi face of what ``gpufleet vms apply`` does to templates (``gpufleet.vms.template``).

- ``check``: the fleet parses and names the template.
- ``create`` / ``update``: ``converge_template`` (64-bit MMIO sized from the VMs cloned from it, P2P / RelaxACS,
  NUMA affinity, all memory reserved, EFI; the template is marked as a VM, reconfigured and marked back); ``create``
  first keeps what the template carried (``previous``).
- ``read``: what converging would change now (``pending``, ``inSync``), so ``pulumi refresh`` sees drift.
- ``diff``: another template is a replace; other derived settings, or drift, an update. Only the settings this
  template derives count: a change elsewhere in the fleet that does not move them is no change.
- ``delete``: gives the template back its ``previous`` settings (``restore_template``).

Inputs: ``vcenter``, ``template`` (its name), ``fleet`` (the fleet spec, camelCase: the VMs cloned from the
template size its MMIO).
"""

from __future__ import annotations

from typing import Any

from pulumi import Input, ResourceOptions
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, Resource, UpdateResult
from pydantic import ValidationError
from pyVmomi import vim

from components.providers.base import GpufleetProvider, failures_from_issues, is_unknown
from gpufleet.errors import GpufleetError
from gpufleet.spec.models import Fleet, TemplateSpec
from gpufleet.spec.stack import issues_from_validation
from gpufleet.vms.apply import find_vm
from gpufleet.vms.template import (
    TemplateSettings,
    compute_template_change_set,
    converge_template,
    desired_template,
    read_template,
    restore_template,
    template_settings,
)

INPUT_KEYS = ("vcenter", "template", "fleet")


def _spec(props: dict[str, Any]) -> tuple[Fleet, TemplateSpec]:
    fleet = Fleet.model_validate(props["fleet"])
    template = next((t for t in fleet.templates if t.name == props["template"]), None)
    if template is None:
        raise GpufleetError(f"template {props['template']!r} is not in the fleet's templates")
    return fleet, template


def _template_vm(si: vim.ServiceInstance, fleet: Fleet, name: str) -> vim.VirtualMachine:
    vm = find_vm(si, fleet.datacenter, name)
    if not vm.config.template:
        raise GpufleetError(
            f"{name} is a VM in vCenter, not a template: gpufleet does not turn VMs into templates "
            "(mark it as a template in vSphere, or rename templates[] in the spec)"
        )
    return vm


def _derived(props: dict[str, Any]) -> Any:
    fleet, template = _spec(props)
    desired = desired_template(fleet, template)
    return (desired.extra_config, desired.lock_memory, template.firmware, fleet.datacenter)


class TemplateGpuSettingsProvider(GpufleetProvider):
    """The provider of ``TemplateGpuSettings`` (module path fixed: stacks' state refers to it)."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        if is_unknown(news.get("fleet")):
            return CheckResult(news, [])
        try:
            _spec(news)
        except ValidationError as exc:
            failures = failures_from_issues(issues_from_validation(exc))
            return CheckResult(news, [CheckFailure(f"fleet.{f.property}", f.reason) for f in failures])
        except GpufleetError as exc:
            return CheckResult(news, [CheckFailure("template", str(exc))])
        return CheckResult(news, [])

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        if olds.get("template") != news.get("template"):
            return DiffResult(changes=True, replaces=["template"], delete_before_replace=True)
        changed = olds.get("inSync") is False or olds.get("vcenter") != news.get("vcenter")
        return DiffResult(changes=changed or _derived(olds) != _derived(news), replaces=[])

    def _converge(self, props: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
        fleet, template = _spec(props)
        with self.session(props["vcenter"]) as si:
            vm = _template_vm(si, fleet, template.name)
            before = previous if previous is not None else template_settings(vm).to_json()
            done = converge_template(si, vm, fleet, template)
        return {k: props.get(k) for k in INPUT_KEYS} | {
            "previous": before,
            "changes": done.change_set.summaries(),
            "skipped": [s.describe() for s in done.change_set.skipped],
            "pending": [],
            "inSync": True,
        }

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(props["template"], self._converge(props, None))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._converge(news, olds.get("previous")))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        fleet, template = _spec(props)
        with self.session(props["vcenter"]) as si:
            left = compute_template_change_set(*read_template(_template_vm(si, fleet, template.name)), fleet, template)
        return ReadResult(id_, {**props, "pending": left.summaries(), "inSync": not left.changed})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        previous = props.get("previous")
        if previous is None:
            return
        fleet, template = _spec(props)
        with self.session(props["vcenter"]) as si:
            restore_template(si, _template_vm(si, fleet, template.name), fleet, TemplateSettings.from_json(previous))


class TemplateGpuSettings(Resource, module="vsphere", name="TemplateGpuSettings"):
    """An existing template's GPU settings, converged (and given back on delete)."""

    previous: Any
    changes: Any
    skipped: Any
    pending: Any
    inSync: Any

    def __init__(self, name: str, props: dict[str, Input[Any]], opts: ResourceOptions | None = None) -> None:
        outputs = {"previous": None, "changes": None, "skipped": None, "pending": None, "inSync": None}
        super().__init__(TemplateGpuSettingsProvider(), name, {**props, **outputs}, opts)
