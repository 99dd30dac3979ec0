"""The way off vSphere Bitfusion: what a GPU pool's clients would need as vGPUs (time-sliced or MIG-backed) on the
pool's own GPUs, as a proposed fleet.

Each client gets the smallest C-series (compute) profile of the board its share sits on (the fractional plan)
whose framebuffer holds its share (a share is a fraction of GPU memory, ``bitfusion run -p``); whole GPUs become one
full-framebuffer vGPU each. The servers' GPUs leave passthrough for the target mode, the server VMs and the pool
go, and the clients are unpinned so that the existing planner places them; the proposal pins them where it put
them. The proposed fleet goes through the same rules (``validate_fleet``) and planner as any stack, so "does not
fit" is their answer, not a second implementation.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from typing import Any

from pydantic import ValidationError

from gpufleet.catalog import GpuModel, VgpuProfile, lookup_gpu
from gpufleet.errors import SpecIssue
from gpufleet.placement.planner import plan
from gpufleet.placement.pool import plan_pool, share_of, share_text
from gpufleet.spec.issues import issues_from_validation
from gpufleet.spec.models import Fleet
from gpufleet.spec.validate import validate_fleet


class MigrationTarget(StrEnum):
    VGPU = "vgpu"  # time-sliced vGPU
    MIG = "mig"  # MIG-backed vGPU


@dataclass
class ClientMove:
    vm: str
    share: str
    board: str
    profiles: list[str]
    host: str | None = None
    gpus: list[str] = field(default_factory=list)
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "vm": self.vm,
            "share": self.share,
            "board": self.board,
            "profiles": self.profiles,
            "host": self.host,
            "gpus": self.gpus,
            "reason": self.reason,
        }


@dataclass
class Migration:
    pool: str
    target: MigrationTarget
    clients: list[ClientMove]
    gpu_modes: list[dict[str, str]]  # [{"host", "pci", "model", "from", "to"}]
    removed_vms: list[str]
    document: dict[str, Any] | None  # the proposed `gpufleet:fleet` document (None: no proposal could be made)
    issues: list[SpecIssue]

    @property
    def feasible(self) -> bool:
        return self.document is not None and not self.issues and all(c.reason is None for c in self.clients)

    def to_json(self) -> dict[str, Any]:
        return {
            "pool": self.pool,
            "target": self.target.value,
            "feasible": self.feasible,
            "clients": [c.to_json() for c in self.clients],
            "gpus": self.gpu_modes,
            "removedVms": self.removed_vms,
            "issues": [{"path": i.path, "message": i.message, "valid": list(i.valid)} for i in self.issues],
        }


def profile_for(board: GpuModel, fraction: Fraction, target: MigrationTarget) -> VgpuProfile | None:
    """The smallest C-series profile of ``board`` in the target mode whose framebuffer holds ``fraction`` of the
    GPU's memory (a whole GPU: the full-framebuffer one)."""
    pool = board.mig_backed_profiles if target == MigrationTarget.MIG else board.time_sliced_profiles
    need = fraction * board.framebuffer_mb
    fits = [p for p in pool if p.series == "C" and p.framebuffer_mb >= need]
    return min(fits, key=lambda p: (p.framebuffer_mb, p.vsphere_name)) if fits else None


def migrate_pool(fleet: Fleet, document: dict[str, Any], name: str, target: MigrationTarget) -> Migration:
    """The proposal for pool ``name`` (which must exist: ``fleet.pool(name)``); ``document`` is the stack's raw
    ``gpufleet:fleet`` mapping, edited in a copy so the proposal keeps the stack's own keys."""
    pi, pool = next((i, p) for i, p in enumerate(fleet.gpu_pools) if p.name == name)
    occupancy = plan_pool(fleet, pool, pi)
    board_at = {f"{g.server}/{g.pci}": g.model for g in occupancy.gpus}
    doc = copy.deepcopy(document)
    issues: list[SpecIssue] = []
    moves: list[ClientMove] = []
    for client in pool.clients:
        n, frac = share_of(client)
        where = occupancy.placements.get(client.vm) or [f"{pool.servers[0].vm}/{pool.servers[0].gpus[0]}"]
        board = lookup_gpu(board_at.get(where[0], ""))
        move = ClientMove(client.vm, share_text(frac * n), board.name if board else "?", [])
        profile = profile_for(board, frac, target) if board else None
        if board is not None and target == MigrationTarget.MIG and not board.mig_capable:
            move.reason = f"{board.name} has no MIG mode (try --to vgpu)"
        elif profile is None:
            mode = "MIG-backed" if target == MigrationTarget.MIG else "time-sliced"
            move.reason = f"{move.board} has no {mode} C-series profile for {share_text(frac)} of a GPU"
        else:
            move.profiles = [profile.vsphere_name] * n
        moves.append(move)
    exported = {(s.host, pci) for s in pool.servers for pci in s.gpus}
    modes: list[dict[str, str]] = []
    for host in doc.get("hosts", []):
        for gpu in host.get("gpus", []):
            key = (host.get("name"), str(gpu.get("pci", "")).lower())
            if key in exported:
                modes.append(
                    {
                        "host": key[0],
                        "pci": key[1],
                        "model": gpu.get("model", ""),
                        "from": gpu.get("mode", "vgpu"),
                        "to": target.value,
                    }
                )
                gpu["mode"] = target.value
    servers = {s.vm for s in pool.servers}
    doc["vms"] = [vm for vm in doc.get("vms", []) if vm.get("name") not in servers]
    by_vm = {m.vm: m for m in moves}
    for vm in doc["vms"]:
        move = by_vm.get(vm.get("name"))
        if move is not None and move.profiles:
            vm["host"] = None  # unpinned (in place, so the diff shows the key change): the planner places it
            vm["vgpu"] = [{"profile": p} for p in move.profiles]
    doc["gpuPools"] = [p for p in doc.get("gpuPools", []) if p.get("name") != name]
    if not doc["gpuPools"]:
        doc.pop("gpuPools")
    removed = sorted(servers)
    if any(m.reason for m in moves):
        return Migration(name, target, moves, modes, removed, None, issues)
    try:
        proposed = Fleet.model_validate(doc)
    except ValidationError as exc:
        return Migration(name, target, moves, modes, removed, None, issues_from_validation(exc))
    issues = validate_fleet(proposed)
    if issues:
        return Migration(name, target, moves, modes, removed, None, issues)
    result = plan(proposed)
    for move in moves:
        placed = result.placements.get(move.vm)
        if placed is None:
            why = next((u.reason for u in result.unplaced if u.vm == move.vm), "not placed")
            move.reason = f"no room for {', '.join(move.profiles)}: {why}"
            continue
        move.host = placed.host
        move.gpus = [d.gpu for d in placed.devices]
    for vm in doc["vms"]:
        move = by_vm.get(vm.get("name"))
        if move is not None and move.host:
            vm["host"] = move.host
    return Migration(name, target, moves, modes, removed, doc, [])
