"""``VmGpuDevices``: every GPU and RDMA device and GPU extraConfig key of one VM, owned by gpufleet.

pulumi-vsphere 4.18 cannot attach a vGPU, does not see vGPU devices on refresh and reads back only the
extraConfig keys it declared; this resource does all three, through the same code as ``gpufleet vms apply``
(``gpufleet.vms.apply.converge_vm``):

- ``check`` re-validates the VM, its template and its host through the fleet spec (shape and hardware rules) and
  returns one ``CheckFailure`` per bad field (``vm.vgpu[0].profile``...).
- ``diff`` compares the desired devices with the devices last observed (``observed``, refreshed by ``read``):
  a different VM (``vmUuid``, ``vmName``, ``datacenter``) is a replace, deleting first (a GPU can only be attached
  once); anything else is an update. ``GpuDevicesDiff.power_cycle_required`` says whether the update powers the
  VM off and on (also written to the provider's log).
- ``create`` / ``update`` check the preconditions (host offers the profile, VM off or allowed to be power-cycled,
  MIG room) and apply one ReconfigVM_Task: it fails leaving the VM as it was.
- ``read`` reports the VM's real devices, so ``pulumi refresh`` sees drift; a deleted VM reads as gone.
- ``delete`` removes only the devices and keys this resource put there (``owned``).

Inputs: ``vcenter`` (non-secret part of ``gpufleet:vcenter``), ``datacenter``, ``cluster``, ``vmName``,
``vmUuid`` (optional: pulumi-vsphere's VM id), ``vm`` / ``template`` / ``host`` (their fleet spec, camelCase),
``allowPowerCycle`` (``rollout.allowPowerCycle``; the VM's own setting wins), ``allowPowerCycleOnCreate`` (may
power-cycle at create: the VM was just cloned), ``ownPvrdma`` (False when
pulumi-vsphere creates the PVRDMA adapters and gpufleet only sets their RoCE protocol).
"""

from __future__ import annotations

import sys
from typing import Any

from pulumi import Input, ResourceOptions
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, Resource, UpdateResult
from pydantic import ValidationError
from pyVmomi import vim

from components.providers.base import GpufleetProvider, failures_from_issues, is_unknown
from gpufleet.errors import SpecError, SpecIssue
from gpufleet.spec.dump import stack_form
from gpufleet.spec.models import Fleet, RolloutPolicy, VmSpec
from gpufleet.spec.stack import issues_from_validation
from gpufleet.spec.validate import validate_fleet
from gpufleet.vms.apply import converge_vm, datacenter_of, find_vm
from gpufleet.vms.changes import DesiredDevices, compute_change_set, removal_change_set, stack_spelling
from gpufleet.vms.desired import allow_power_cycle, desired_devices
from gpufleet.vms.reconfigure import apply_change_set
from gpufleet.vsphere.vm_devices import VmDeviceState, read_vm_devices

INPUT_KEYS = (
    "vcenter",
    "datacenter",
    "cluster",
    "vmName",
    "vmUuid",
    "vm",
    "template",
    "host",
    "allowPowerCycle",
    "allowPowerCycleOnCreate",
    "ownPvrdma",
)
REPLACE_KEYS = ("vmUuid", "vmName", "datacenter")
RENAME = {"vms[0]": "vm", "templates[0]": "template", "hosts[0]": "host"}


class GpuDevicesDiff(DiffResult):
    """A DiffResult that also says whether the update power-cycles the VM, and which changes it makes."""

    def __init__(self, *, power_cycle_required: bool = False, planned: list[str] | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.power_cycle_required = power_cycle_required
        self.planned = planned or []


def fleet_of(props: dict[str, Any]) -> tuple[Fleet, VmSpec]:
    """The one-VM fleet the inputs describe (raises pydantic's ValidationError on a bad shape)."""
    fleet = Fleet.model_validate(
        {
            "version": "v1",
            "datacenter": props.get("datacenter"),
            "cluster": props.get("cluster"),
            "hosts": [props["host"]] if props.get("host") else [],
            "templates": [props["template"]] if props.get("template") else [],
            "vms": [props.get("vm")],
            "rollout": stack_form(RolloutPolicy(allow_power_cycle=bool(props.get("allowPowerCycle")))),
        }
    )
    return fleet, fleet.vms[0]


def _outs(props: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {k: props.get(k) for k in INPUT_KEYS} | extra


class VmGpuDevicesProvider(GpufleetProvider):
    """The provider of ``VmGpuDevices`` (module path fixed: stacks' state refers to it)."""

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        for key in ("vcenter", "datacenter", "cluster", "vmName", "vm", "template"):
            if news.get(key) in (None, ""):
                failures.append(CheckFailure(key, "required"))
        if failures:
            return CheckResult(news, failures)
        if any(is_unknown(news.get(k)) for k in ("vm", "template", "host")):
            return CheckResult(news, [])  # preview with values not known yet: checked again at update
        try:
            fleet, vm = fleet_of(news)
        except ValidationError as exc:
            return CheckResult(news, failures_from_issues(issues_from_validation(exc), RENAME))
        issues = [i for i in validate_fleet(fleet) if i.path.startswith("vms[0]")]  # host/template: their own resources
        if news.get("vmName") != vm.name and not is_unknown(news.get("vmName")):
            issues.append(SpecIssue("vmName", f"must be the VM spec's name {vm.name!r}"))
        return CheckResult(news, failures_from_issues(issues, RENAME))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> GpuDevicesDiff:
        replaces = [k for k in REPLACE_KEYS if is_unknown(news.get(k)) or olds.get(k) != news.get(k)]
        if replaces:
            return GpuDevicesDiff(changes=True, replaces=replaces, delete_before_replace=True)
        inputs_changed = any(olds.get(k) != news.get(k) for k in INPUT_KEYS)
        planned: list[str] = []
        cycle = False
        if olds.get("observed") and not any(is_unknown(news.get(k)) for k in ("vm", "template", "host")):
            fleet, vm = fleet_of(news)
            observed = VmDeviceState.from_dict(olds["observed"])
            change_set = compute_change_set(observed, desired_devices(fleet, vm, own_pvrdma=_own_pvrdma(news)))
            planned, cycle = change_set.summaries(stack_spelling(vm)), change_set.power_cycle_required
            if cycle:
                print(
                    f"gpufleet: {vm.name}: this update powers the VM off and on: {'; '.join(planned)}", file=sys.stderr
                )
        return GpuDevicesDiff(
            changes=inputs_changed or bool(planned), power_cycle_required=cycle, planned=planned, replaces=[]
        )

    def _converge(self, props: dict[str, Any], creating: bool = False) -> tuple[str, dict[str, Any]]:
        fleet, spec = fleet_of(props)
        allowed = allow_power_cycle(fleet, spec) or (creating and bool(props.get("allowPowerCycleOnCreate")))
        with self.session(props["vcenter"]) as si:
            vm = _find(si, props)
            done = converge_vm(si, vm, fleet, spec, own_pvrdma=_own_pvrdma(props), allow_power_cycle_override=allowed)
            uuid = vm.config.uuid
        return uuid, _outs(
            props,
            observed=done.after.to_dict(),
            owned=done.desired.to_dict(),
            lastChanges=done.change_set.summaries(stack_spelling(spec)),
            powerCycled=done.power_cycled,
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        uuid, outs = self._converge(props, creating=True)
        return CreateResult(uuid, outs)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        _uuid, outs = self._converge(news)
        return UpdateResult(outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with self.session(props["vcenter"]) as si:
            vm = _find(si, props | {"vmUuid": id_}, missing_ok=True)
            if vm is None:
                return ReadResult("", {})
            state = read_vm_devices(vm)
        return ReadResult(id_, {**props, "observed": state.to_dict()})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        owned = DesiredDevices.from_dict(props.get("owned") or {})
        fleet, spec = fleet_of(props)
        with self.session(props["vcenter"]) as si:
            vm = _find(si, props | {"vmUuid": id_}, missing_ok=True)
            if vm is None:
                return  # the VM is gone, and its devices with it
            change_set = removal_change_set(read_vm_devices(vm), owned)
            apply_change_set(change_set, vm, vm.runtime.host, allow_power_cycle=allow_power_cycle(fleet, spec))


def _own_pvrdma(props: dict[str, Any]) -> bool:
    value = props.get("ownPvrdma")
    return True if value is None else bool(value)


def _find(si: vim.ServiceInstance, props: dict[str, Any], missing_ok: bool = False) -> vim.VirtualMachine | None:
    """The VM by UUID (pulumi-vsphere's id, or this resource's id) when known, else by name."""
    uuid = props.get("vmUuid")
    if uuid and not is_unknown(uuid):
        dc = datacenter_of(si, props["datacenter"])
        vm = si.RetrieveContent().searchIndex.FindByUuid(datacenter=dc, uuid=uuid, vmSearch=True)
        if vm is None and not missing_ok:
            raise SpecError([SpecIssue("vmUuid", f"no VM with UUID {uuid} in datacenter {props['datacenter']}")])
        return vm
    try:
        return find_vm(si, props["datacenter"], props["vmName"])
    except SpecError:
        if missing_ok:
            return None
        raise


class VmGpuDevices(Resource, module="vsphere", name="VmGpuDevices"):
    """Every GPU/RDMA device and GPU extraConfig key of one VM (see the module docstring for the inputs)."""

    observed: Any
    owned: Any
    lastChanges: Any
    powerCycled: Any

    def __init__(self, name: str, props: dict[str, Input[Any]], opts: ResourceOptions | None = None) -> None:
        outputs = {"observed": None, "owned": None, "lastChanges": None, "powerCycled": None}
        super().__init__(VmGpuDevicesProvider(), name, {**props, **outputs}, opts)
