"""VM and template findings: a VM's devices are compared with the change set ``vms apply`` computes
(``compute_change_set``), so the audit and the converger agree on "in sync"; on top of that the host it runs on,
its firmware and hardware version, and every undeclared ``pciPassthru*`` / ``numa.*`` key."""

from __future__ import annotations

import re
from collections.abc import Iterable

from gpufleet.audit.desired import DesiredVm
from gpufleet.audit.findings import HINT_SPEC, HINT_TEMPLATE, HINT_VM_CREATE, HINT_VMS, Collector, Severity
from gpufleet.audit.state import VmVcState
from gpufleet.vms.changes import Change, compute_change_set
from gpufleet.vsphere.vm_devices import MANAGED_EXTRA_CONFIG

# Per-device keys vSphere writes itself from a device's backing (never set by hand): not drift.
_DEVICE_KEY = re.compile(
    r"^pciPassthru\d+\.(present|id|deviceId|vendorId|systemId|vgpu|allowedDevices|customLabel|pciSlotNumber)$",
    re.IGNORECASE,
)


def _vm_changes(c: Collector, obj: str, name: str, changes: Iterable[Change], hint: str = HINT_VMS) -> None:
    changes = list(changes)
    vgpu_adds = [ch for ch in changes if ch.kind == "vgpu" and ch.action == "add"]
    vgpu_removes = [ch for ch in changes if ch.kind == "vgpu" and ch.action == "remove"]
    # A removed profile and an added one on the same VM read as "changed" (a person sees one vGPU, swapped).
    for add, remove in zip(vgpu_adds, vgpu_removes, strict=False):
        c.add(
            obj,
            "vm.vgpu.changed",
            f"{obj}/vgpu/{add.target}",
            add.target,
            remove.target,
            Severity.ERROR,
            hint,
            f"{name} has vGPU {remove.target} where the spec wants {add.target}",
        )
    for add in vgpu_adds[len(vgpu_removes) :]:
        c.add(
            obj,
            "vm.vgpu.missing",
            f"{obj}/vgpu/{add.target}",
            add.target,
            None,
            Severity.ERROR,
            hint,
            f"{name} lacks its vGPU {add.target}",
        )
    for remove in vgpu_removes[len(vgpu_adds) :]:
        c.add(
            obj,
            "vm.vgpu.unexpected",
            f"{obj}/vgpu/{remove.target}",
            None,
            remove.target,
            Severity.ERROR,
            hint,
            f"{name} has a vGPU {remove.target} the spec does not give it",
        )
    for ch in changes:
        if ch.kind == "vgpu":
            continue
        if ch.kind in ("directpath", "dynamic-directpath"):
            label = "DirectPath I/O" if ch.kind == "directpath" else "Dynamic DirectPath I/O"
            if ch.action == "add":
                c.add(
                    obj,
                    "vm.passthrough.missing",
                    f"{obj}/passthrough/{ch.target}",
                    ch.target,
                    None,
                    Severity.ERROR,
                    hint,
                    f"{name} lacks its {label} device {ch.target}",
                )
            else:
                c.add(
                    obj,
                    "vm.passthrough.unexpected",
                    f"{obj}/passthrough/{ch.target}",
                    None,
                    ch.target,
                    Severity.ERROR,
                    hint,
                    f"{name} has a {label} device {ch.target} the spec does not give it",
                )
        elif ch.kind == "pvrdma":
            target = ch.target or "(no network)"
            if ch.action == "add":
                c.add(
                    obj,
                    "vm.rdma.missing",
                    f"{obj}/rdma/{target}",
                    f"PVRDMA {ch.after or ''}".strip(),
                    None,
                    Severity.ERROR,
                    hint,
                    f"{name} lacks its PVRDMA adapter on {target}",
                )
            elif ch.action == "remove":
                c.add(
                    obj,
                    "vm.rdma.unexpected",
                    f"{obj}/rdma/{target}",
                    None,
                    f"PVRDMA {ch.before or ''}".strip(),
                    Severity.ERROR,
                    hint,
                    f"{name} has a PVRDMA adapter on {target} the spec does not give it",
                )
            else:
                c.add(
                    obj,
                    "vm.rdma.roce",
                    f"{obj}/rdma/{target}/protocol",
                    ch.after,
                    ch.before,
                    Severity.ERROR,
                    hint,
                    f"{name} PVRDMA adapter on {target} speaks {ch.before}, not {ch.after}",
                )
        elif ch.kind == "extra-config":
            if ch.action == "unset":
                c.add(
                    obj,
                    "vm.extra_config.added",
                    f"{obj}/extraConfig/{ch.target}",
                    None,
                    ch.before,
                    Severity.ERROR,
                    hint,
                    f"{name} has {ch.target}={ch.before} that the spec does not set",
                )
            elif ch.before is None:
                c.add(
                    obj,
                    "vm.extra_config.missing",
                    f"{obj}/extraConfig/{ch.target}",
                    ch.after,
                    None,
                    Severity.ERROR,
                    hint,
                    f"{name} lacks {ch.target}={ch.after}",
                )
            else:
                c.add(
                    obj,
                    "vm.extra_config.changed",
                    f"{obj}/extraConfig/{ch.target}",
                    ch.after,
                    ch.before,
                    Severity.ERROR,
                    hint,
                    f"{name} has {ch.target}={ch.before}, the spec says {ch.after}",
                )
        elif ch.kind == "memory-reservation":
            c.add(
                obj,
                "vm.memory_reservation",
                f"{obj}/memoryReservationLockedToMax",
                "true",
                "false",
                Severity.ERROR,
                hint,
                f"{name} does not reserve all its memory (GPUs need it)",
            )


def vm_findings(c: Collector, want: DesiredVm, have: VmVcState) -> None:
    kind = "template" if want.template else "vm"
    obj = f"{kind}s/{want.name}"
    hint = HINT_TEMPLATE if want.template else HINT_VMS
    if have.template != want.template:
        c.add(
            obj,
            f"{kind}.template",
            f"{obj}/template",
            str(want.template).lower(),
            str(have.template).lower(),
            Severity.ERROR,
            HINT_SPEC,
            f"{want.name} is {'not ' if not have.template else ''}a template in vCenter",
        )
    if want.host and have.host != want.host:
        c.add(
            obj,
            f"{kind}.host",
            f"{obj}/host",
            want.host,
            have.host,
            Severity.WARNING,
            "migrate the VM to its host (vMotion), or fix vms[].host",
            f"{want.name} runs on {have.host}",
        )
    if have.firmware != want.firmware:
        c.add(
            obj,
            f"{kind}.firmware",
            f"{obj}/firmware",
            want.firmware,
            have.firmware,
            Severity.ERROR,
            hint if want.template else HINT_VM_CREATE,
            f"{want.name} boots {have.firmware}: GPUs with 64-bit MMIO need {want.firmware}",
        )
    hw = have.devices.hardware_version
    if hw and hw < want.hardware_version:
        c.add(
            obj,
            f"{kind}.hardware_version",
            f"{obj}/hardwareVersion",
            f"vmx-{want.hardware_version}",
            f"vmx-{hw}",
            Severity.ERROR,
            "upgrade the VM's compatibility (vSphere: Upgrade VM Compatibility)",
            f"{want.name} hardware version vmx-{hw} is older than vmx-{want.hardware_version}",
        )
    elif hw and hw > want.hardware_version:
        c.add(
            obj,
            f"{kind}.hardware_version",
            f"{obj}/hardwareVersion",
            f"vmx-{want.hardware_version}",
            f"vmx-{hw}",
            Severity.INFO,
            "raise hardwareVersion in the template spec to match",
            f"{want.name} hardware version vmx-{hw} is newer than the spec's vmx-{want.hardware_version}",
        )
    _vm_changes(c, obj, want.name, compute_change_set(have.devices, want.devices).changes, hint)
    declared = set(want.devices.extra_config) | set(MANAGED_EXTRA_CONFIG)
    for key, value in have.extra_config.items():
        if key in declared or _DEVICE_KEY.match(key):
            continue
        c.add(
            obj,
            "vm.extra_config.added",
            f"{obj}/extraConfig/{key}",
            None,
            value,
            Severity.WARNING,
            "remove the key from the VM, or ask for it to be managed by the spec",
            f"{want.name} has an undeclared GPU setting {key}={value}",
        )
