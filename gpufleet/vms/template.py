"""Converge the GPU settings of the stack's VM templates that already exist in vCenter (``gpufleet vms apply``).

What ``GpuVmTemplate`` sets when ``pulumi up`` builds a template, brought to a brownfield one: the extraConfig keys
``gpufleet.spec.derive.template_extra_config`` derives (64-bit MMIO sized from the GPUs of the VMs cloned from it,
P2P / RelaxACS, NUMA affinity), all memory reserved (``memoryReservationLockedToMax``) and EFI firmware. The change
set is E's ``compute_change_set`` restricted to those settings, applied with ``build_config_spec``.

vSphere refuses to reconfigure a template, so a template with changes is marked as a VM (on its host, in that
host's root resource pool), reconfigured with one ReconfigVM_Task, and marked as a template again — also when the
reconfigure fails, before the error is reported. Reported only ("skipped", with the reason), never changed: the
hardware version (upgrading compatibility is one-way and changes every future clone), a switch from EFI to BIOS,
and GPU devices on the template (VMs get theirs from ``vms apply``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pyVmomi import vim, vmodl

from gpufleet.errors import GpufleetError, TaskError
from gpufleet.spec.derive import template_extra_config
from gpufleet.spec.models import Fleet, TemplateSpec
from gpufleet.vms.changes import ChangeSet, DesiredDevices, compute_change_set
from gpufleet.vms.reconfigure import build_config_spec
from gpufleet.vsphere.inventory import collect, find_by_name
from gpufleet.vsphere.tasks import fault_message, fault_name, wait_for_task
from gpufleet.vsphere.vm_devices import VmDeviceState, read_vm_devices

# The parts of E's change set a template takes; device changes are reported, not made.
SETTING_KINDS: frozenset[str] = frozenset({"extra-config", "memory-reservation"})
EFI = "efi"


@dataclass(frozen=True)
class Skipped:
    """A difference gpufleet reports on a template but does not change, and why."""

    setting: str
    desired: str | None
    actual: str | None
    reason: str

    def describe(self) -> str:
        return f"{self.setting}: {self.actual} (spec: {self.desired}) not changed: {self.reason}"

    def to_json(self) -> dict[str, Any]:
        return {"setting": self.setting, "desired": self.desired, "actual": self.actual, "reason": self.reason}


@dataclass(frozen=True)
class TemplateChangeSet:
    """What converging one template changes (``settings``: extraConfig keys and memory reservation, as E's
    ``ChangeSet``; ``firmware``: (before, after) or None) and what it only reports (``skipped``)."""

    settings: ChangeSet
    firmware: tuple[str, str] | None = None
    skipped: tuple[Skipped, ...] = ()

    @property
    def changed(self) -> bool:
        return self.settings.changed or self.firmware is not None

    def summaries(self) -> list[str]:
        out = self.settings.summaries()
        if self.firmware:
            out.append(f"set firmware: {self.firmware[0]} -> {self.firmware[1]}")
        return out


def desired_template(fleet: Fleet, template: TemplateSpec) -> DesiredDevices:
    """The GPU settings ``template`` should carry (no devices; NICs such as PVRDMA are not gpufleet's here)."""
    return DesiredDevices(
        extra_config=template_extra_config(fleet, template),
        lock_memory=template.memory_reservation_locked,
        own_pvrdma=False,
    )


def _hardware_version_skip(want: int, have: int) -> Skipped | None:
    if not have or have == want:
        return None
    if have < want:
        reason = (
            "gpufleet never upgrades a template's hardware version (one-way, changes every clone): "
            f"upgrade its compatibility in vSphere to vmx-{want}, or lower hardwareVersion in the spec"
        )
    else:
        reason = f"newer than the spec and vSphere cannot downgrade it: set hardwareVersion: {have} in the spec"
    return Skipped("hardwareVersion", f"vmx-{want}", f"vmx-{have}", reason)


def compute_template_change_set(
    state: VmDeviceState, firmware: str | None, fleet: Fleet, template: TemplateSpec
) -> TemplateChangeSet:
    """Pure: the changes that bring a template read as ``state`` (and ``firmware``) to ``template``."""
    full = compute_change_set(state, desired_template(fleet, template))
    settings = tuple(c for c in full.changes if c.kind in SETTING_KINDS)
    skipped = [
        Skipped(
            "devices",
            None,
            c.describe(),
            "gpufleet leaves a template's devices alone (VMs get theirs from `vms apply`); "
            "change it by hand if clones must not inherit it",
        )
        for c in full.changes
        if c.kind not in SETTING_KINDS
    ]
    firmware_change = None
    if template.firmware == EFI and firmware != EFI:
        firmware_change = (firmware or "unset", EFI)
    elif template.firmware != EFI and firmware == EFI:
        skipped.append(
            Skipped(
                "firmware",
                template.firmware,
                firmware,
                "gpufleet only switches templates to EFI (GPUs with 64-bit MMIO need it); switch it by hand",
            )
        )
    hw = _hardware_version_skip(template.hardware_version, state.hardware_version)
    if hw:
        skipped.append(hw)
    return TemplateChangeSet(
        settings=ChangeSet(vm=full.vm, power_state=full.power_state, changes=settings),
        firmware=firmware_change,
        skipped=tuple(skipped),
    )


def read_template(vm: vim.VirtualMachine) -> tuple[VmDeviceState, str | None]:
    """The template's GPU settings (E's ``VmDeviceState``) and its firmware."""
    return read_vm_devices(vm), (vm.config.firmware if vm.config else None)


def _usable(host: vim.HostSystem) -> bool:
    runtime = host.runtime
    return str(runtime.connectionState) == "connected" and not runtime.inMaintenanceMode


def placement(si: vim.ServiceInstance, vm: vim.VirtualMachine, fleet: Fleet) -> tuple[vim.ResourcePool, vim.HostSystem]:
    """Where to mark the template as a VM: its own host when connected and out of maintenance, else another
    host of that cluster (the fleet's cluster when the template has no host); the cluster's root pool."""
    host = vm.runtime.host
    compute = host.parent if host is not None else find_by_name(si, vim.ClusterComputeResource, fleet.cluster)
    candidates = ([host] if host is not None else []) + [h for h in compute.host or [] if h != host]
    for candidate in candidates:
        if _usable(candidate):
            return compute.resourcePool, candidate
    raise GpufleetError(
        f"template {vm.name}: no host of {compute.name} is connected and out of maintenance to mark it as a VM on "
        f"(hosts: {', '.join(sorted(h.name for h in candidates)) or 'none'})"
    )


def _mark_as_template(vm: vim.VirtualMachine, after: BaseException | None = None) -> None:
    try:
        vm.MarkAsTemplate()
    except vmodl.MethodFault as exc:
        cause = f" after: {after};" if after else ""
        raise TaskError(
            f"{vm.name} was left a VM:{cause} marking it as a template again failed: {fault_message(exc)} "
            "(mark it as a template in vSphere)",
            fault=fault_name(exc),
        ) from exc


def apply_template_change_set(
    change_set: TemplateChangeSet,
    vm: vim.VirtualMachine,
    pool: vim.ResourcePool,
    host: vim.HostSystem,
    *,
    task_timeout: float = 600.0,
) -> None:
    """Mark ``vm`` (a template) as a VM, reconfigure it with one ReconfigVM_Task, mark it as a template again.
    Transactional as far as vSphere allows: whatever the reconfigure does, the template is marked back before
    its error is raised."""
    if not change_set.changed:
        return
    spec = build_config_spec(change_set.settings, vm, host)  # built first: a bad change fails before any change
    if change_set.firmware:
        spec.firmware = change_set.firmware[1]
    try:
        vm.MarkAsVirtualMachine(pool=pool, host=host)
    except vmodl.MethodFault as exc:
        raise TaskError(
            f"mark template {vm.name} as a VM on {host.name} failed: {fault_message(exc)}", fault=fault_name(exc)
        ) from exc
    try:
        wait_for_task(vm.ReconfigVM_Task(spec=spec), what=f"reconfigure template {vm.name}", timeout=task_timeout)
    except Exception as exc:
        _mark_as_template(vm, after=exc)
        raise
    _mark_as_template(vm)


@dataclass(frozen=True)
class TemplateConverged:
    """What converging one template found (and did, unless a dry run), and the host it was reconfigured on."""

    change_set: TemplateChangeSet
    host: str | None


def converge_template(
    si: vim.ServiceInstance, vm: vim.VirtualMachine, fleet: Fleet, template: TemplateSpec, *, dry_run: bool = False
) -> TemplateConverged:
    """Bring the template ``vm`` to ``template``'s GPU settings; read back and check it converged."""
    state, firmware = read_template(vm)
    change_set = compute_template_change_set(state, firmware, fleet, template)
    if dry_run or not change_set.changed:
        return TemplateConverged(change_set, state.host)
    pool, host = placement(si, vm, fleet)
    apply_template_change_set(change_set, vm, pool, host)
    left = compute_template_change_set(*read_template(vm), fleet, template)
    if left.changed:
        raise TaskError(f"template {vm.name} still differs after its reconfigure: {'; '.join(left.summaries())}")
    return TemplateConverged(change_set, host.name)


@dataclass
class TemplateReport:
    """One entry of ``vms apply --json``'s ``templates``."""

    name: str
    exists: bool = True
    changed: bool = False
    changes: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    error: str | None = None
    host: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "exists": self.exists,
            "changed": self.changed,
            "changes": self.changes,
            "skipped": [s.to_json() for s in self.skipped],
            "error": self.error,
            "host": self.host,
        }


def error_text(exc: BaseException) -> str:
    """One line for a per-object error of ``vms apply``."""
    if isinstance(exc, vmodl.MethodFault):
        return f"vCenter: {fault_message(exc)} ({fault_name(exc)})"
    return str(exc)


def apply_templates(si: vim.ServiceInstance, fleet: Fleet, *, dry_run: bool = False) -> list[TemplateReport]:
    """Converge every template of ``fleet`` that exists in its datacenter (one found missing is reported with
    ``exists: false``: ``pulumi up`` creates templates). Errors are per template."""
    reports = [TemplateReport(name=t.name) for t in fleet.templates]
    if not reports:
        return reports
    try:
        datacenter = find_by_name(si, vim.Datacenter, fleet.datacenter)
        rows = {r["name"]: r for r in collect(si, vim.VirtualMachine, ["name", "config.template"], root=datacenter)}
    except (GpufleetError, vmodl.MethodFault) as exc:
        for entry in reports:
            entry.error = error_text(exc)
        return reports
    for entry, template in zip(reports, fleet.templates, strict=True):
        row = rows.get(template.name)
        if row is None:
            entry.exists = False
            continue
        try:
            if not row["config.template"]:
                raise GpufleetError(
                    f"{template.name} is a VM in vCenter, not a template: gpufleet does not turn VMs into templates "
                    "(mark it as a template in vSphere, or rename templates[] in the spec)"
                )
            done = converge_template(si, row["obj"], fleet, template, dry_run=dry_run)
        except (GpufleetError, vmodl.MethodFault) as exc:
            entry.error = error_text(exc)
            continue
        entry.host = done.host
        entry.changed = done.change_set.changed
        entry.changes = done.change_set.summaries()
        entry.skipped = list(done.change_set.skipped)
    return reports


@dataclass(frozen=True)
class TemplateSettings:
    """The GPU settings a template carries (the managed extraConfig keys, memory reservation locked): what
    ``converge_template`` found before it changed them, kept to give them back (``restore_template``)."""

    extra_config: dict[str, str]
    lock_memory: bool

    def to_json(self) -> dict[str, Any]:
        return {"extraConfig": dict(self.extra_config), "lockMemory": self.lock_memory}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TemplateSettings:
        return cls(dict(data.get("extraConfig") or {}), bool(data.get("lockMemory")))


def template_settings(vm: vim.VirtualMachine) -> TemplateSettings:
    state, _ = read_template(vm)
    return TemplateSettings(dict(state.extra_config), state.memory_reservation_locked)


def restore_template(
    si: vim.ServiceInstance, vm: vim.VirtualMachine, fleet: Fleet, before: TemplateSettings
) -> list[str]:
    """Give the template back the GPU settings ``before`` (the firmware stays: gpufleet never switches a template
    from EFI back to BIOS); returns what changed."""
    state, _ = read_template(vm)
    full = compute_change_set(
        state, DesiredDevices(extra_config=before.extra_config, lock_memory=before.lock_memory, own_pvrdma=False)
    )
    settings = tuple(c for c in full.changes if c.kind in SETTING_KINDS)
    change_set = TemplateChangeSet(ChangeSet(vm=full.vm, power_state=full.power_state, changes=settings))
    if change_set.changed:
        pool, host = placement(si, vm, fleet)
        apply_template_change_set(change_set, vm, pool, host)
    return change_set.summaries()
