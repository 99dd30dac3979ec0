"""Desired vs actual GPU state: a list of findings, each with a stable id, the path of what drifted, desired,
actual, a severity and a hint of the gpufleet verb or Pulumi resource that converges it.

Pure: ``diff(desired, vcenter, ssh)`` reads dataclasses only. A VM's devices are compared with the same change set
``vms apply`` computes (``gpufleet.vms.changes.compute_change_set``), so the audit and the converger never
disagree about what "in sync" means. Hosts the audit could not read over SSH get no SSH findings (they are listed
as unreachable instead); everything else is still compared.
"""

from __future__ import annotations

from collections.abc import Mapping

from gpufleet.audit.desired import DesiredState
from gpufleet.audit.diff_hosts import host_ssh, host_vc
from gpufleet.audit.diff_vms import vm_findings
from gpufleet.audit.findings import (
    HINT_SPEC,
    HINT_TEMPLATE,
    HINT_VM_CREATE,
    AuditedObject,
    Collector,
    Finding,
    Severity,
    order,
)
from gpufleet.audit.state import HostSshState, VcenterState


def diff(
    desired: DesiredState,
    vcenter: VcenterState | None,
    ssh: Mapping[str, HostSshState] | None = None,
) -> tuple[list[Finding], list[AuditedObject]]:
    """Every finding and every audited object. ``vcenter`` None: vCenter was unreachable (SSH findings only);
    a host missing from ``ssh``: not read over SSH (reported as unreachable by the caller)."""
    c = Collector()
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
                host_vc(c, want, have)
        else:
            for gpu in want.gpus:
                c.objects.append(AuditedObject("gpu", f"{obj}/gpus/{gpu.pci}", f"{want.name} {gpu.pci}"))
        if want.name in ssh:
            host_ssh(c, want, ssh[want.name])
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
            vm_findings(c, want_vm, have_vm)
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
    return sorted(c.findings, key=order), c.objects
