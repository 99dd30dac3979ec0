"""The outcome of one audit: desired and actual state, findings, audited objects, what could not be read.

``AuditResult.exit_code`` is the CLI's contract: 0 in sync, 2 drift, 1 could not audit (something unreachable;
it wins over drift because the picture is incomplete). ``to_dict`` is the ``--json`` document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from gpufleet.audit.desired import DesiredState
from gpufleet.audit.findings import AuditedObject, Finding, counts
from gpufleet.audit.state import HostSshState, Unreachable, VcenterState
from gpufleet.spec.json_keys import jsonable

EXIT_IN_SYNC = 0
EXIT_INCOMPLETE = 1
EXIT_DRIFT = 2


@dataclass
class AuditResult:
    stack: str
    datacenter: str
    started_at: datetime
    desired: DesiredState
    vcenter: VcenterState | None
    ssh: dict[str, HostSshState]
    unreachable: list[Unreachable]
    findings: list[Finding]
    objects: list[AuditedObject]
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase: vcenter, ssh, guests, diff
    guests: dict[str, dict] = field(default_factory=dict)  # per running VM with a guest: block, its guest's facts

    @property
    def drift(self) -> bool:
        return any(f.drift for f in self.findings)

    @property
    def status(self) -> str:
        """``incomplete`` (something unreachable), ``drift`` or ``in-sync``."""
        if self.unreachable:
            return "incomplete"
        return "drift" if self.drift else "in-sync"

    @property
    def exit_code(self) -> int:
        if self.unreachable:
            return EXIT_INCOMPLETE
        return EXIT_DRIFT if self.drift else EXIT_IN_SYNC

    def findings_of(self, obj: str) -> list[Finding]:
        """Findings of one audited object (``hosts/esxi-01.lab``) and of what lies under it (its GPUs)."""
        return [f for f in self.findings if f.object == obj or f.object.startswith(obj + "/")]

    def unreachable_of(self, name: str) -> Unreachable | None:
        return next((u for u in self.unreachable if u.target == name), None)

    def to_dict(self) -> dict[str, object]:
        return {
            "stack": self.stack,
            "datacenter": self.datacenter,
            "startedAt": self.started_at.isoformat(timespec="seconds"),
            "status": self.status,
            "exitCode": self.exit_code,
            "summary": {
                "findings": counts(self.findings),
                "objects": len(self.objects),
                "hosts": len(self.desired.hosts),
                "vms": sum(1 for v in self.desired.vms.values() if not v.template),
                "unreachable": len(self.unreachable),
            },
            "unreachable": [jsonable(u) for u in self.unreachable],
            "findings": [f.to_dict() for f in self.findings],
            "objects": [
                {
                    "kind": o.kind,
                    "path": o.path,
                    "name": o.name,
                    "findings": [f.id for f in self.findings if f.object == o.path],
                }
                for o in self.objects
            ],
            "read": {
                "vcenterRoundTrips": self.vcenter.round_trips if self.vcenter else None,
                "vcenterPages": self.vcenter.pages if self.vcenter else None,
                "seconds": {k: round(v, 3) for k, v in self.timings.items()},
            },
            "actual": {
                "vcenter": None
                if self.vcenter is None
                else {"hosts": jsonable(self.vcenter.hosts), "vms": jsonable(self.vcenter.vms)},
                "hosts": jsonable(self.ssh),
                "guests": self.guests,
            },
        }
