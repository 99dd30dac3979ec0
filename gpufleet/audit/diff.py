"""Desired vs actual GPU state: a list of findings, each with a stable id, the path of what drifted, desired,
actual, a severity and a hint of the gpufleet verb or Pulumi resource that converges it.

Pure: ``diff(desired, vcenter, ssh)`` reads dataclasses only. A VM's devices are compared with the same change set
``vms apply`` computes (``gpufleet.vsphere.vm_changes.compute_change_set``), so the audit and the converger never
disagree about what "in sync" means. Hosts the audit could not read over SSH get no SSH findings (they are listed
as unreachable instead); everything else is still compared.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from gpufleet.audit.desired import DesiredGpu, DesiredHost, DesiredState, DesiredVm
from gpufleet.audit.state import HostSshState, HostVcState, VcenterState, VmVcState
from gpufleet.vsphere.vm_changes import Change, compute_change_set, profile_key
from gpufleet.vsphere.vm_devices import MANAGED_EXTRA_CONFIG

# Per-device keys vSphere writes itself from a device's backing (never set by hand): not drift.
_DEVICE_KEY = re.compile(
    r"^pciPassthru\d+\.(present|id|deviceId|vendorId|systemId|vgpu|allowedDevices|customLabel|pciSlotNumber)$",
    re.IGNORECASE,
)


class Severity(StrEnum):
    ERROR = "error"  # the spec is not met: a workload misses its GPU, a host is not prepared
    WARNING = "warning"  # drift that does not break the spec yet (undeclared keys, pending reboot, unknown GPU)
    INFO = "info"  # worth knowing, not drift (does not change the exit code)


HINT_HOSTS = "gpufleet hosts prepare STACK (Pulumi: gpufleet:vsphere:GpuHost)"
HINT_VMS = "gpufleet vms apply STACK (Pulumi: gpufleet:vsphere:VmGpuDevices)"
HINT_LICENSE = (
    "assign the licence the spec names (Pulumi: gpufleet:vsphere:GpuHost licence) or fix licensing.hostLicense"
)
HINT_VM_CREATE = "pulumi up (creates the VM from its template)"
HINT_TEMPLATE = "pulumi up (gpufleet:vsphere:GpuVmTemplate)"
HINT_SPEC = "declare it in the stack, or remove it from vCenter"


@dataclass(frozen=True)
class Finding:
    """One difference between desired and actual state."""

    kind: str  # e.g. "vm.vgpu.missing", "gpu.mig_mode", "host.maintenance"
    path: str  # "hosts/esxi-01.lab/gpus/0000:3b:00.0/mig_mode", "vms/vm-ts-01/extraConfig/numa.nodeAffinity"
    desired: str | None
    actual: str | None
    severity: Severity
    hint: str
    message: str
    object: str = ""  # the audited object it belongs to ("hosts/esxi-01.lab", "vms/vm-ts-01", ".../gpus/<pci>")

    @property
    def id(self) -> str:
        """Stable across runs: the same drift at the same place always has the same id."""
        return "GF-" + hashlib.sha256(f"{self.kind}|{self.path}".encode()).hexdigest()[:10]

    @property
    def drift(self) -> bool:
        return self.severity != Severity.INFO

    def to_dict(self) -> dict[str, str | None]:
        return {
            "id": self.id,
            "kind": self.kind,
            "severity": str(self.severity),
            "object": self.object,
            "path": self.path,
            "desired": self.desired,
            "actual": self.actual,
            "message": self.message,
            "hint": self.hint,
        }


@dataclass(frozen=True)
class AuditedObject:
    """Something the audit compared (a host, one of its GPUs, a VM, a template): one JUnit test case each."""

    kind: str  # host | gpu | vm | template
    path: str  # "hosts/esxi-01.lab"
    name: str


@dataclass
class _Collector:
    findings: list[Finding] = field(default_factory=list)
    objects: list[AuditedObject] = field(default_factory=list)

    def add(
        self,
        obj: str,
        kind: str,
        path: str,
        desired: object,
        actual: object,
        severity: Severity,
        hint: str,
        message: str,
    ) -> None:
        self.findings.append(
            Finding(
                kind=kind,
                path=path,
                desired=None if desired is None else str(desired),
                actual=None if actual is None else str(actual),
                severity=severity,
                hint=hint,
                message=message,
                object=obj,
            )
        )


def _yes_no(value: bool | None) -> str | None:
    return None if value is None else ("enabled" if value else "disabled")


# ---------------------------------------------------------------------------------------------------- hosts


def _host_vc(c: _Collector, want: DesiredHost, have: HostVcState) -> None:
    obj = f"hosts/{want.name}"
    if have.connection_state != "connected":
        c.add(
            obj,
            "host.connection",
            f"{obj}/connectionState",
            "connected",
            have.connection_state,
            Severity.ERROR,
            "reconnect the host in vCenter",
            f"{want.name} is {have.connection_state} in vCenter",
        )
    if have.cluster != want.cluster:
        c.add(
            obj,
            "host.cluster",
            f"{obj}/cluster",
            want.cluster,
            have.cluster,
            Severity.WARNING,
            "move the host into its cluster in vCenter",
            f"{want.name} is not in cluster {want.cluster}",
        )
    if have.in_maintenance:
        c.add(
            obj,
            "host.maintenance",
            f"{obj}/maintenanceMode",
            "off",
            "on",
            Severity.ERROR,
            HINT_HOSTS + " (exits maintenance mode when the host is prepared)",
            f"{want.name} is in maintenance mode: its GPU VMs cannot run",
        )
    if want.license_digest is not None:
        actual = have.license.key_digest if have.license else None
        if actual != want.license_digest:
            name = f"{have.license.name} ({have.license.key_fingerprint})" if have.license else "none"
            c.add(
                obj,
                "host.license",
                f"{obj}/license",
                f"{want.license_fingerprint} (from {want.license_source})",
                name,
                Severity.ERROR,
                HINT_LICENSE,
                f"{want.name} does not carry the licence the spec names",
            )
    elif have.license is not None and have.license.evaluation:
        c.add(
            obj,
            "host.license",
            f"{obj}/license",
            "a licence (not evaluation mode)",
            have.license.name,
            Severity.WARNING,
            HINT_LICENSE,
            f"{want.name} runs in evaluation mode",
        )
    if have.default_graphics_type != want.graphics_type:
        c.add(
            obj,
            "host.graphics_type",
            f"{obj}/graphics/defaultType",
            want.graphics_type,
            have.default_graphics_type,
            Severity.ERROR,
            HINT_HOSTS,
            f"{want.name} default graphics type is not {want.graphics_type}",
        )
    if have.assignment_policy is not None and have.assignment_policy != want.assignment_policy:
        c.add(
            obj,
            "host.assignment_policy",
            f"{obj}/graphics/assignmentPolicy",
            want.assignment_policy,
            have.assignment_policy,
            Severity.WARNING,
            HINT_HOSTS,
            f"{want.name} places vGPUs by {have.assignment_policy}, not {want.assignment_policy}",
        )
    offered = {profile_key(p) for p in have.profiles_offered}
    for profile in want.profiles_needed:
        if profile_key(profile) not in offered:
            c.add(
                obj,
                "host.profile_unavailable",
                f"{obj}/profiles/{profile}",
                "offered",
                "not offered",
                Severity.ERROR,
                HINT_HOSTS + " (installs the driver that offers it)",
                f"{want.name} does not offer vGPU profile {profile} that its VMs need",
            )
    for gpu in want.gpus:
        _gpu_vc(c, want, gpu, have)
    wanted = {g.pci for g in want.gpus}
    for dev in have.gpus:
        if dev.pci not in wanted:
            path = f"{obj}/gpus/{dev.pci}"
            c.objects.append(AuditedObject("gpu", path, f"{want.name} {dev.pci}"))
            c.add(
                path,
                "gpu.unknown",
                path,
                "not in the spec",
                dev.name or f"0x{dev.device_id:04x}",
                Severity.WARNING,
                "add it to hosts[].gpus in the stack",
                f"{want.name} has a GPU at {dev.pci} that the spec does not mention",
            )


def _gpu_vc(c: _Collector, host: DesiredHost, want: DesiredGpu, have: HostVcState) -> None:
    path = f"hosts/{host.name}/gpus/{want.pci}"
    c.objects.append(AuditedObject("gpu", path, f"{host.name} {want.pci}"))
    dev = have.device(want.pci)
    if dev is None or not dev.is_gpu:
        c.add(
            path,
            "gpu.missing",
            path,
            want.model,
            "absent",
            Severity.ERROR,
            "fix hosts[].gpus[].pci in the stack or the hardware",
            f"{host.name} has no NVIDIA GPU at {want.pci}",
        )
        return
    if want.device_ids and dev.device_id not in want.device_ids:
        c.add(
            path,
            "gpu.model",
            f"{path}/model",
            want.model,
            dev.name or f"0x{dev.device_id:04x}",
            Severity.ERROR,
            "fix hosts[].gpus[].model in the stack",
            f"{host.name} {want.pci} is not a {want.model}",
        )
    # A vGPU GPU's passthrough state shows in its graphics type (vSphere reports "direct" for a GPU in
    # passthrough), checked below; a passthrough GPU must be enabled for passthrough.
    passthrough = want.mode in ("passthrough", "dynamic-passthrough")
    if passthrough and dev.passthrough_enabled is False:
        c.add(
            path,
            "gpu.passthrough",
            f"{path}/passthrough",
            "enabled",
            "disabled",
            Severity.ERROR,
            "enable passthrough on this GPU (vSphere Client: Host > Configure > PCI Devices), then reboot",
            f"{host.name} {want.pci} is not enabled for passthrough: its VM cannot power on",
        )
    if not passthrough and dev.graphics_type is not None and dev.graphics_type != "sharedDirect":
        c.add(
            path,
            "gpu.graphics_type",
            f"{path}/graphicsType",
            "sharedDirect",
            dev.graphics_type,
            Severity.ERROR,
            HINT_HOSTS,
            f"{host.name} {want.pci} is not in Shared Direct mode: no vGPU can use it",
        )


def _host_ssh(c: _Collector, want: DesiredHost, have: HostSshState) -> None:
    obj = f"hosts/{want.name}"
    if want.driver_version is not None and have.driver_version != want.driver_version:
        c.add(
            obj,
            "host.driver",
            f"{obj}/driver",
            want.driver_version,
            have.driver_version or "not installed",
            Severity.ERROR,
            HINT_HOSTS,
            f"{want.name} NVIDIA host driver is not {want.driver_version}",
        )
    if have.reboot_pending:
        c.add(
            obj,
            "host.reboot_pending",
            f"{obj}/rebootPending",
            "no",
            "yes: " + "; ".join(have.reboot_reasons) if have.reboot_reasons else "yes",
            Severity.WARNING,
            HINT_HOSTS + " (reboots the host in a rolling window)",
            f"{want.name} waits for a reboot",
        )
    if want.ats and have.ats_enabled is False:
        c.add(
            obj,
            "host.ats",
            f"{obj}/ats",
            "enabled",
            "disabled",
            Severity.ERROR,
            HINT_HOSTS,
            f"{want.name} has ATS off: GPUDirect RDMA needs it",
        )
    if not have.nvidia_smi_ok:
        c.add(
            obj,
            "host.nvidia_smi",
            f"{obj}/nvidia-smi",
            "answers",
            "fails",
            Severity.ERROR,
            HINT_HOSTS,
            f"nvidia-smi fails on {want.name}: the host driver is not loaded",
        )
        return
    for gpu in want.gpus:
        path = f"{obj}/gpus/{gpu.pci}"
        seen = have.gpu(gpu.pci)
        if gpu.mode in ("passthrough", "dynamic-passthrough"):
            continue  # a passthrough GPU is not bound to the host driver: nvidia-smi does not list it
        if seen is None:
            c.add(
                path,
                "gpu.not_visible",
                f"{path}/nvidia-smi",
                "listed",
                "not listed",
                Severity.ERROR,
                HINT_HOSTS,
                f"nvidia-smi on {want.name} does not list {gpu.pci}",
            )
            continue
        if not seen.healthy:
            c.add(
                path,
                "gpu.health",
                f"{path}/health",
                "healthy",
                seen.detail or "unhealthy",
                Severity.ERROR,
                "check the GPU (nvidia-smi -q) and reset or replace it",
                f"{want.name} {gpu.pci} is unhealthy",
            )
        if not gpu.mig_capable or seen.mig_current is None:
            continue
        if seen.mig_current != gpu.mig_enabled:
            pending = seen.mig_pending == gpu.mig_enabled and seen.mig_pending != seen.mig_current
            c.add(
                path,
                "gpu.mig_mode",
                f"{path}/migMode",
                _yes_no(gpu.mig_enabled),
                _yes_no(seen.mig_current) + (f" (pending {_yes_no(seen.mig_pending)})" if pending else ""),
                Severity.ERROR,
                HINT_HOSTS + (" (reboots the host to apply the pending mode)" if pending else ""),
                f"{want.name} {gpu.pci} MIG mode is {_yes_no(seen.mig_current)}, the spec wants "
                f"{_yes_no(gpu.mig_enabled)}",
            )
        elif seen.mig_pending is not None and seen.mig_pending != seen.mig_current:
            c.add(
                path,
                "gpu.mig_pending",
                f"{path}/migModePending",
                _yes_no(gpu.mig_enabled),
                _yes_no(seen.mig_pending),
                Severity.WARNING,
                HINT_HOSTS,
                f"{want.name} {gpu.pci} MIG mode will change to {_yes_no(seen.mig_pending)} at the next reboot",
            )


# ---------------------------------------------------------------------------------------------------- VMs


def _vm_changes(c: _Collector, obj: str, name: str, changes: Iterable[Change]) -> None:
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
            HINT_VMS,
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
            HINT_VMS,
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
            HINT_VMS,
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
                    HINT_VMS,
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
                    HINT_VMS,
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
                    HINT_VMS,
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
                    HINT_VMS,
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
                    HINT_VMS,
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
                    HINT_VMS,
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
                    HINT_VMS,
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
                    HINT_VMS,
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
                HINT_VMS,
                f"{name} does not reserve all its memory (GPUs need it)",
            )


def _vm(c: _Collector, want: DesiredVm, have: VmVcState) -> None:
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
    _vm_changes(c, obj, want.name, compute_change_set(have.devices, want.devices).changes)
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


# ---------------------------------------------------------------------------------------------------- all


def diff(
    desired: DesiredState,
    vcenter: VcenterState | None,
    ssh: Mapping[str, HostSshState] | None = None,
) -> tuple[list[Finding], list[AuditedObject]]:
    """Every finding and every audited object. ``vcenter`` None: vCenter was unreachable (SSH findings only);
    a host missing from ``ssh``: not read over SSH (reported as unreachable by the caller)."""
    c = _Collector()
    ssh = ssh or {}
    for want in desired.hosts.values():
        obj = f"hosts/{want.name}"
        c.objects.append(AuditedObject("host", obj, want.name))
        if vcenter is not None:
            have = vcenter.hosts.get(want.name)
            if have is None:
                c.add(
                    obj,
                    "host.missing",
                    obj,
                    "in vCenter",
                    "absent",
                    Severity.ERROR,
                    "add the host to vCenter, or fix hosts[].name",
                    f"{want.name} is not a host of vCenter",
                )
                for gpu in want.gpus:
                    c.objects.append(AuditedObject("gpu", f"{obj}/gpus/{gpu.pci}", f"{want.name} {gpu.pci}"))
            else:
                _host_vc(c, want, have)
        else:
            for gpu in want.gpus:
                c.objects.append(AuditedObject("gpu", f"{obj}/gpus/{gpu.pci}", f"{want.name} {gpu.pci}"))
        if want.name in ssh:
            _host_ssh(c, want, ssh[want.name])
    if vcenter is not None:
        for want_vm in desired.vms.values():
            kind = "template" if want_vm.template else "vm"
            obj = f"{kind}s/{want_vm.name}"
            c.objects.append(AuditedObject(kind, obj, want_vm.name))
            have_vm = vcenter.vms.get(want_vm.name)
            if have_vm is None:
                c.add(
                    obj,
                    f"{kind}.missing",
                    obj,
                    "in vCenter",
                    "absent",
                    Severity.ERROR,
                    HINT_TEMPLATE if want_vm.template else HINT_VM_CREATE,
                    f"{want_vm.name} is not in vCenter",
                )
                continue
            _vm(c, want_vm, have_vm)
        for name, vm in vcenter.vms.items():
            if name in desired.vms or not vm.has_gpu:
                continue
            obj = f"vms/{name}"
            c.objects.append(AuditedObject("vm", obj, name))
            gpus = (
                [v.profile for v in vm.devices.vgpus]
                + [d.id for d in vm.devices.directpath]
                + [d.allowed for d in vm.devices.dynamic]
            )
            c.add(
                obj,
                "vm.unknown",
                obj,
                "not in the spec",
                ", ".join(gpus),
                Severity.WARNING,
                HINT_SPEC,
                f"{name} has GPUs ({', '.join(gpus)}) but the spec does not mention it",
            )
    return sorted(c.findings, key=_order), c.objects


_SEVERITY_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


def _order(f: Finding) -> tuple[int, str, str]:
    return (_SEVERITY_ORDER[f.severity], f.path, f.kind)


def counts(findings: Iterable[Finding]) -> dict[str, int]:
    """Findings per severity (every severity present, zeros included)."""
    tally = Counter(str(f.severity) for f in findings)
    return {str(s): tally.get(str(s), 0) for s in Severity}
