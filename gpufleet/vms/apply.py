"""Converge the fleet's VMs' GPU/RDMA devices and GPU settings on an existing inventory (``gpufleet vms apply``).

Per VM: read its devices, compute the change set against the spec, check the preconditions on its host, apply
with one ReconfigVM_Task (power-cycling when needed and allowed), read back. Idempotent: a converged VM gives an
empty change set and is not touched. One VM's failure is reported in its entry; the others still run.
The same ``converge_vm`` is what the ``VmGpuDevices`` Pulumi resource calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pyVmomi import vim, vmodl

from gpufleet.errors import GpufleetError, SpecError, SpecIssue
from gpufleet.spec.models import Fleet, VmSpec
from gpufleet.vms.changes import ChangeSet, DesiredDevices, compute_change_set, stack_spelling
from gpufleet.vms.desired import allow_power_cycle, desired_devices
from gpufleet.vms.preconditions import check_preconditions, read_host_facts, resolve_desired
from gpufleet.vms.reconfigure import apply_change_set
from gpufleet.vms.template import TemplateReport, apply_templates, error_text
from gpufleet.vsphere.inventory import find_by_name
from gpufleet.vsphere.settings import VGPU_HOTMIGRATE, SettingChange, ensure_setting
from gpufleet.vsphere.vm_devices import VmDeviceState, read_vm_devices


@dataclass(frozen=True)
class Converged:
    """One VM before and after: the change set computed, and whether the VM was power-cycled."""

    before: VmDeviceState
    desired: DesiredDevices
    change_set: ChangeSet
    after: VmDeviceState
    power_cycled: bool


@dataclass
class VmReport:
    """One entry of ``vms apply --json``."""

    name: str
    changed: bool = False
    changes: list[str] = field(default_factory=list)
    error: str | None = None
    host: str | None = None
    power_cycled: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "changed": self.changed,
            "changes": self.changes,
            "error": self.error,
            "host": self.host,
            "powerCycled": self.power_cycled,
        }


@dataclass
class ApplyReport:
    """The whole ``vms apply`` answer."""

    vms: list[VmReport]
    templates: list[TemplateReport] = field(default_factory=list)
    settings: list[SettingChange] = field(default_factory=list)
    setting_errors: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def failed(self) -> bool:
        return any(v.error for v in [*self.vms, *self.templates]) or bool(self.setting_errors)

    @property
    def pending(self) -> bool:
        return any(v.changed for v in [*self.vms, *self.templates]) or any(s.changed for s in self.settings)

    def to_json(self) -> dict[str, Any]:
        return {
            "vms": [v.to_json() for v in self.vms],
            "templates": [t.to_json() for t in self.templates],
            "settings": [
                {"key": s.key, "changed": s.changed, "before": s.before, "after": s.after} for s in self.settings
            ]
            + [{"error": e} for e in self.setting_errors],
            "dryRun": self.dry_run,
        }


def datacenter_of(si: vim.ServiceInstance, name: str) -> vim.Datacenter:
    return find_by_name(si, vim.Datacenter, name)


def find_vm(si: vim.ServiceInstance, datacenter: str, name: str) -> vim.VirtualMachine:
    """The VM called ``name`` in ``datacenter``; SpecError listing the VMs there if there is none."""
    return find_by_name(si, vim.VirtualMachine, name, root=datacenter_of(si, datacenter))


def converge_vm(
    si: vim.ServiceInstance,
    vm: vim.VirtualMachine,
    fleet: Fleet,
    spec: VmSpec,
    *,
    own_pvrdma: bool = True,
    dry_run: bool = False,
    desired: DesiredDevices | None = None,
    allow_power_cycle_override: bool | None = None,
) -> Converged:
    """Bring ``vm`` to the devices ``spec`` asks for (or ``desired``, when given). Preconditions fail before
    anything changes; in a dry run nothing is changed and ``after`` is ``before``. Whether gpufleet may power
    the VM off comes from the spec (the VM's ``allowPowerCycle``, else the rollout's) unless overridden."""
    before = read_vm_devices(vm)
    host = vm.runtime.host
    if host is None:
        raise GpufleetError(f"{spec.name} has no host (is it registered and connected?)")
    if spec.host and host.name != spec.host:
        raise SpecError(
            [
                SpecIssue(
                    f"vms[{fleet.vms.index(spec) if spec in fleet.vms else 0}].host",
                    f"{spec.name} runs on {host.name}, the spec pins it to {spec.host}; gpufleet does not move VMs: "
                    "migrate it first or change `host`",
                )
            ]
        )
    facts = read_host_facts(si, host, vm)
    wanted = resolve_desired(desired or desired_devices(fleet, spec, own_pvrdma=own_pvrdma), facts)
    change_set = compute_change_set(before, wanted)
    allowed = allow_power_cycle(fleet, spec) if allow_power_cycle_override is None else allow_power_cycle_override
    if change_set.changed:
        check_preconditions(
            before, wanted, change_set, facts, allow_power_cycle=allowed, host_spec=fleet.host(host.name)
        )
    if dry_run or not change_set.changed:
        return Converged(before, wanted, change_set, before, power_cycled=False)
    outcome = apply_change_set(change_set, vm, host, allow_power_cycle=allowed)
    return Converged(before, wanted, change_set, read_vm_devices(vm), power_cycled=outcome.power_cycled)


def apply_vms(
    si: vim.ServiceInstance, fleet: Fleet, *, dry_run: bool = False, names: Sequence[str] | None = None
) -> ApplyReport:
    """Converge every VM of ``fleet`` (or those in ``names``), the GPU settings of its templates that exist in
    vCenter and the vGPU vMotion setting when the rollout sets it (templates and setting: not with ``names``).
    Errors are per VM / template; nothing is retried."""
    unknown = sorted(set(names or ()) - {v.name for v in fleet.vms})
    if unknown:
        raise SpecError([SpecIssue(n, "not a VM of the stack", tuple(v.name for v in fleet.vms)) for n in unknown])
    report = ApplyReport(vms=[], dry_run=dry_run)
    if fleet.rollout.vgpu_vmotion is not None and not names:
        try:
            report.settings.append(ensure_setting(si, VGPU_HOTMIGRATE, fleet.rollout.vgpu_vmotion, dry_run=dry_run))
        except (GpufleetError, vmodl.MethodFault) as exc:
            report.setting_errors.append(f"{VGPU_HOTMIGRATE}: {error_text(exc)}")
    if not names:
        report.templates = apply_templates(si, fleet, dry_run=dry_run)
    for spec in fleet.vms:
        if names and spec.name not in names:
            continue
        entry = VmReport(name=spec.name)
        report.vms.append(entry)
        try:
            vm = find_vm(si, fleet.datacenter, spec.name)
            entry.host = vm.runtime.host.name if vm.runtime.host else None
            done = converge_vm(si, vm, fleet, spec, dry_run=dry_run)
        except (GpufleetError, vmodl.MethodFault) as exc:
            entry.error = error_text(exc)
            continue
        entry.changed = done.change_set.changed
        entry.changes = done.change_set.summaries(stack_spelling(spec))
        entry.power_cycled = done.power_cycled
    return report
