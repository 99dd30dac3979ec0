"""The fractional planner of a GPU pool (vSphere Bitfusion): can every client hold its share at once?

A client's share is a fraction of one GPU (``bitfusion run -n 1 -p 0.25``: a quarter of one GPU's memory) or whole
GPUs (``-n 2``), and Bitfusion allocates the GPUs of one request from one server. Declaring a share in the stack
reserves it: the pool fits when all clients' shares can be held at the same time. Fractions are exact
(``fractions.Fraction`` of the decimal the stack writes: 0.1 + 0.2 + 0.7 is 1, not 1.0000000000000002).

Strategy: largest share first, best fit (the GPU left with the least free share; whole GPUs on the server with
the fewest free whole GPUs that suffice). When best fit leaves a client out, an exact search over the distinct
GPU states decides (bounded; the answer of best fit stands when the bound is reached).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from gpufleet.spec.models import Fleet, GpuPool, PoolClient

ONE = Fraction(1)
SEARCH_NODES = 200_000  # bound of the exact search (a pool has tens of GPUs, not thousands)


def share_of(client: PoolClient) -> tuple[int, Fraction]:
    """(GPUs, fraction of each): 0.25 -> (1, 1/4); 2 -> (2, 1)."""
    if client.share > 1:
        return int(client.share), ONE
    return 1, Fraction(str(client.share))


def share_text(value: Fraction) -> str:
    """A share as people write it: 0.25, 1, 2.5 (exact decimals; else the fraction)."""
    as_float = float(value)
    return f"{as_float:g}" if Fraction(str(as_float)) == value else f"{value.numerator}/{value.denominator}"


@dataclass
class PoolGpu:
    server: str  # server VM
    host: str
    pci: str
    model: str
    used: Fraction = Fraction(0)
    clients: list[tuple[str, Fraction]] = field(default_factory=list)

    @property
    def free(self) -> Fraction:
        return ONE - self.used

    def to_json(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "host": self.host,
            "pci": self.pci,
            "model": self.model,
            "allocated": share_text(self.used),
            "free": share_text(self.free),
            "clients": [{"vm": vm, "share": share_text(s)} for vm, s in self.clients],
        }


@dataclass(frozen=True)
class PoolUnplaced:
    client: str
    path: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"vm": self.client, "path": self.path, "reason": self.reason}


@dataclass
class PoolPlan:
    pool: str
    gpus: list[PoolGpu]
    placements: dict[str, list[str]]  # client -> ["<server>/<pci>", ...]
    unplaced: list[PoolUnplaced]

    @property
    def feasible(self) -> bool:
        return not self.unplaced

    @property
    def allocated(self) -> Fraction:
        return sum((g.used for g in self.gpus), Fraction(0))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.pool,
            "feasible": self.feasible,
            "gpusTotal": len(self.gpus),
            "allocated": share_text(self.allocated),
            "occupancy": round(float(self.allocated) / max(1, len(self.gpus)), 4),
            "gpus": [g.to_json() for g in self.gpus],
            "clients": [{"vm": vm, "gpus": where} for vm, where in self.placements.items()],
            "unplaced": [u.to_json() for u in self.unplaced],
        }


def _gpus_of(fleet: Fleet, pool: GpuPool) -> list[PoolGpu]:
    gpus: list[PoolGpu] = []
    for server in pool.servers:
        host = fleet.host(server.host)
        models = {g.pci: g.model for g in host.gpus} if host else {}
        gpus += [PoolGpu(server.vm, server.host, pci, models.get(pci, "?")) for pci in dict.fromkeys(server.gpus)]
    return gpus


def _choose(gpus: list[PoolGpu], n: int, frac: Fraction) -> list[int] | None:
    """Best fit for one request: indices of the GPUs it takes, or None."""
    if n == 1 and frac < ONE:
        fits = [(g.free - frac, i) for i, g in enumerate(gpus) if g.free >= frac]
        return [min(fits)[1]] if fits else None
    by_server: dict[str, list[int]] = {}
    for i, g in enumerate(gpus):
        if g.used == 0:
            by_server.setdefault(g.server, []).append(i)
    options = [(len(idx), idx[:n]) for idx in by_server.values() if len(idx) >= n]
    return min(options)[1] if options else None


def _exact(gpus: list[PoolGpu], requests: list[tuple[int, Fraction]]) -> list[list[int]] | None:
    """Every request placed, by search over distinct GPU states; None: impossible or the bound was reached."""
    free = [g.free for g in gpus]
    server = [g.server for g in gpus]
    nodes = 0
    chosen: list[list[int]] = []

    def dfs(k: int) -> bool:
        nonlocal nodes
        nodes += 1
        if nodes > SEARCH_NODES:
            return False
        if k == len(requests):
            return True
        n, frac = requests[k]
        tried: set[tuple[str, Fraction]] = set()
        if n == 1 and frac < ONE:
            for i in range(len(free)):
                key = (server[i], free[i])
                if free[i] < frac or key in tried:
                    continue
                tried.add(key)
                free[i] -= frac
                chosen.append([i])
                if dfs(k + 1):
                    return True
                chosen.pop()
                free[i] += frac
            return False
        for s in dict.fromkeys(server):
            idx = [i for i in range(len(free)) if server[i] == s and free[i] == ONE][:n]
            if len(idx) < n:
                continue
            for i in idx:
                free[i] = Fraction(0)
            chosen.append(idx)
            if dfs(k + 1):
                return True
            chosen.pop()
            for i in idx:
                free[i] = ONE
        return False

    return [list(c) for c in chosen] if dfs(0) else None


def plan_pool(fleet: Fleet, pool: GpuPool, pool_index: int = 0) -> PoolPlan:
    """Where each client's share goes on the pool's server GPUs, and which clients cannot have theirs."""
    gpus = _gpus_of(fleet, pool)
    order = sorted(
        range(len(pool.clients)),
        key=lambda j: (-share_of(pool.clients[j])[0], -share_of(pool.clients[j])[1], j),
    )
    requests = [share_of(pool.clients[j]) for j in order]
    picks: dict[int, list[int]] = {}
    for j, (n, frac) in zip(order, requests, strict=True):
        idx = _choose(gpus, n, frac)
        if idx is not None:
            picks[j] = idx
            for i in idx:
                gpus[i].used += frac
    if len(picks) < len(order):
        exact = _exact([PoolGpu(g.server, g.host, g.pci, g.model) for g in gpus], requests)
        if exact is not None:
            for g in gpus:
                g.used = Fraction(0)
            picks = dict(zip(order, exact, strict=True))
            for j, idx in picks.items():
                for i in idx:
                    gpus[i].used += share_of(pool.clients[j])[1]
    placements: dict[str, list[str]] = {}
    unplaced: list[PoolUnplaced] = []
    for j, client in enumerate(pool.clients):
        n, frac = share_of(client)
        if j in picks:
            placements[client.vm] = [f"{gpus[i].server}/{gpus[i].pci}" for i in picks[j]]
            for i in picks[j]:
                gpus[i].clients.append((client.vm, frac))
            continue
        largest = max((g.free for g in gpus), default=Fraction(0))
        whole = max(
            (sum(1 for g in gpus if g.server == s and g.used == 0) for s in {g.server for g in gpus}), default=0
        )
        want = f"{n} whole GPUs of one server" if frac == ONE else f"{share_text(frac)} of one GPU"
        have = (
            f"the most whole GPUs free on one server is {whole}"
            if frac == ONE
            else (f"the largest free share of a GPU is {share_text(largest)}")
        )
        unplaced.append(
            PoolUnplaced(
                client.vm,
                f"gpuPools[{pool_index}].clients[{j}].share",
                f"{client.vm} needs {want} of pool {pool.name} while the other clients hold theirs; {have}",
            )
        )
    return PoolPlan(pool.name, gpus, placements, unplaced)


def plan_pools(fleet: Fleet) -> list[PoolPlan]:
    return [plan_pool(fleet, pool, i) for i, pool in enumerate(fleet.gpu_pools)]
