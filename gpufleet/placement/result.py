"""What ``plan`` answers: where each VM's devices go, what each GPU holds, what could not be placed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DevicePlacement:
    kind: str  # vgpu | passthrough
    index: int
    gpu: str  # PCI address on the host
    profile: str | None = None  # canonical vSphere profile name
    instance: str | None = None  # MIG instance, e.g. 3g.40gb
    start: int | None = None
    size: int | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"kind": self.kind, "index": self.index, "gpu": self.gpu}
        if self.profile:
            doc["profile"] = self.profile
        if self.instance:
            doc.update(instance=self.instance, start=self.start, size=self.size)
        return doc


@dataclass(frozen=True)
class VmPlacement:
    vm: str
    host: str
    devices: tuple[DevicePlacement, ...]

    def to_json(self) -> dict[str, Any]:
        return {"vm": self.vm, "host": self.host, "devices": [d.to_json() for d in self.devices]}


@dataclass(frozen=True)
class Unplaced:
    vm: str
    path: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"vm": self.vm, "path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class GpuReport:
    host: str
    pci: str
    model: str
    mode: str
    mixed_size: bool
    assignments: tuple[dict[str, Any], ...]
    free: str
    density: float

    def to_json(self) -> dict[str, Any]:
        return {
            "pci": self.pci,
            "model": self.model,
            "mode": self.mode,
            "mixedSize": self.mixed_size,
            "used": bool(self.assignments),
            "assignments": list(self.assignments),
            "free": self.free,
            "density": round(self.density, 4),
        }


@dataclass
class Plan:
    strategy: str
    placements: dict[str, VmPlacement] = field(default_factory=dict)
    unplaced: list[Unplaced] = field(default_factory=list)
    gpus: list[GpuReport] = field(default_factory=list)
    lower_bound: int = 0

    @property
    def feasible(self) -> bool:
        return not self.unplaced

    @property
    def gpus_used(self) -> int:
        return sum(1 for g in self.gpus if g.assignments)

    def to_json(self) -> dict[str, Any]:
        hosts: dict[str, list[dict[str, Any]]] = {}
        for g in self.gpus:
            hosts.setdefault(g.host, []).append(g.to_json())
        return {
            "feasible": self.feasible,
            "strategy": self.strategy,
            "summary": {
                "gpusTotal": len(self.gpus),
                "gpusUsed": self.gpus_used,
                "lowerBound": self.lower_bound,
                "vmsPlaced": len(self.placements),
                "vmsUnplaced": len(self.unplaced),
                "density": round(sum(g.density for g in self.gpus if g.assignments) / max(1, self.gpus_used), 4),
            },
            "hosts": [{"name": name, "gpus": gpus} for name, gpus in hosts.items()],
            "vms": [p.to_json() for p in self.placements.values()],
            "unplaced": [u.to_json() for u in self.unplaced],
        }
