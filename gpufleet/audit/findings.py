"""Findings and audited objects: what the diff produces and every report shows.

A finding has a stable id (a hash of its kind and path: the same drift at the same place has the same id on every
run), the path of what drifted, desired, actual, a severity and a hint of the gpufleet verb or Pulumi resource that
converges it.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"  # the spec is not met: a workload misses its GPU, a host is not prepared
    WARNING = "warning"  # drift that does not break the spec yet (undeclared keys, pending reboot, unknown GPU)
    INFO = "info"  # worth knowing, not drift (does not change the exit code)


HINT_HOSTS = "gpufleet hosts prepare STACK (Pulumi: gpufleet:vsphere:GpuHost)"
HINT_VMS = "gpufleet vms apply STACK (Pulumi: gpufleet:vsphere:VmGpuDevices)"
HINT_LICENSE = "pulumi up (gpufleet:vsphere:HostLicenseAssignment assigns the key), or fix licensing.hostLicense"
HINT_VM_CREATE = "pulumi up (gpufleet:vsphere:GpuVm clones it from its template)"
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
class Collector:
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


_SEVERITY_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


def order(f: Finding) -> tuple[int, str, str]:
    """Errors first, then by path."""
    return (_SEVERITY_ORDER[f.severity], f.path, f.kind)


def counts(findings: Iterable[Finding]) -> dict[str, int]:
    """Findings per severity (every severity present, zeros included)."""
    tally = Counter(str(f.severity) for f in findings)
    return {str(s): tally.get(str(s), 0) for s in Severity}
