"""One rollout per cluster at a time: a lease kept in vCenter (custom attribute ``gpufleet.lease`` on the cluster).

    with cluster_leases(si, ["GPU-Cluster"], take_over=False):   # LeaseHeld naming the holder, else held
        ...                                                       # renewed in the background, released after

The value is JSON: who holds it (``user@machine pid N``), the run's id and when it expires (``LEASE_SECONDS`` after
the last renewal). A lease whose holder is provably gone - a process of this machine that no longer runs - or whose
time is up is taken over; any other needs ``--take-over``. vCenter custom attributes have no compare-and-swap, so
a taker writes, waits ``SETTLE_SECONDS`` and reads back: a run that finds another's id there lost the race and
stops (nothing touched yet).
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from pyVmomi import vim

from gpufleet.errors import GpufleetError
from gpufleet.vsphere import fields
from gpufleet.vsphere.inventory import find_by_name

LEASE_FIELD = "gpufleet.lease"
LEASE_SECONDS = 900.0
SETTLE_SECONDS = 0.5


class LeaseHeld(GpufleetError):
    """Another run holds the cluster's rollout lease; nothing was changed."""


@dataclass(frozen=True)
class Lease:
    holder: str
    run: str
    machine: str
    pid: int
    expires: float

    def to_value(self) -> str:
        return json.dumps(
            {"holder": self.holder, "run": self.run, "machine": self.machine, "pid": self.pid, "expires": self.expires}
        )

    @classmethod
    def parse(cls, value: str) -> Lease | None:
        try:
            data = json.loads(value)
            return cls(
                str(data["holder"]), str(data["run"]), str(data["machine"]), int(data["pid"]), float(data["expires"])
            )
        except (ValueError, KeyError, TypeError):
            return None

    def gone(self) -> bool:
        """Provably not running any more: its time is up, or it was a process of this machine that has ended."""
        if self.expires <= time.time():
            return True
        if self.machine != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def _describe(cluster: str, lease: Lease | None, raw: str) -> str:
    if lease is None:
        return f"cluster {cluster}: its rollout lease holds an unreadable value (`gpufleet.lease`); use --take-over"
    until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(lease.expires))
    return (
        f"cluster {cluster} is being rolled out by {lease.holder} (run {lease.run[:8]}, lease until {until}): "
        "wait for it to finish, or use --take-over if that run is gone"
    )


class LeaseClaim:
    """The leases this run wrote, not yet proven its own: ``confirm`` waits out ``SETTLE_SECONDS`` from the writes
    and reads them back (``LeaseHeld`` when another run wrote over one meanwhile). Work that only reads may run
    before ``confirm``; nothing may change before it returns."""

    def __init__(self, si: vim.ServiceInstance, run: str, mine: Callable[[], Lease]) -> None:
        self.si = si
        self.run = run
        self._mine = mine
        self._written: list[vim.ClusterComputeResource] = []
        self._written_at = 0.0
        self._confirmed = False
        self._stop = threading.Event()

    def _claim(self, objects: list[vim.ClusterComputeResource], take_over: bool) -> None:
        for cluster in objects:
            raw = fields.get_field(self.si, cluster, LEASE_FIELD) or ""
            current = Lease.parse(raw) if raw else None
            if raw and not take_over and (current is None or not current.gone()):
                raise LeaseHeld(_describe(cluster.name, current, raw))
            fields.set_field(self.si, cluster, LEASE_FIELD, self._mine().to_value())
            self._written.append(cluster)
        self._written_at = time.monotonic()

    def confirm(self) -> None:
        """Prove every written lease is still this run's (once; later calls return at once), then keep them
        renewed while the run lasts."""
        if self._confirmed:
            return
        time.sleep(max(0.0, self._written_at + SETTLE_SECONDS - time.monotonic()))
        for cluster in self._written:
            after = Lease.parse(fields.get_field(self.si, cluster, LEASE_FIELD) or "")
            if after is None or after.run != self.run:
                raise LeaseHeld(_describe(cluster.name, after, "") + " (it took the lease at the same moment)")
        self._confirmed = True
        threading.Thread(target=self._renew, name="gpufleet-lease", daemon=True).start()

    def _renew(self) -> None:
        while not self._stop.wait(LEASE_SECONDS / 3):
            for cluster in self._written:
                fields.set_field(self.si, cluster, LEASE_FIELD, self._mine().to_value())

    def _release(self) -> None:
        self._stop.set()
        for cluster in self._written:
            now = Lease.parse(fields.get_field(self.si, cluster, LEASE_FIELD) or "")
            if now is not None and now.run == self.run:  # never clear a lease someone took over from us
                fields.set_field(self.si, cluster, LEASE_FIELD, "")


@contextmanager
def claimed_leases(
    si: vim.ServiceInstance, clusters: Sequence[str], *, take_over: bool = False
) -> Iterator[LeaseClaim]:
    """Write this run's rollout lease on every cluster in ``clusters`` (sorted: two runs never deadlock) and yield
    the claim; the caller calls ``confirm()`` before changing anything (``hosts prepare`` plans the hosts, which
    only reads, during the settle time). Released at the end of the block."""
    run = uuid.uuid4().hex
    holder = f"{getpass.getuser()}@{socket.gethostname()} pid {os.getpid()}"
    objects = [find_by_name(si, vim.ClusterComputeResource, name) for name in sorted(set(clusters))]

    def mine() -> Lease:
        return Lease(holder, run, socket.gethostname(), os.getpid(), time.time() + LEASE_SECONDS)

    claim = LeaseClaim(si, run, mine)
    try:
        claim._claim(objects, take_over)
        yield claim
    finally:
        claim._release()


@contextmanager
def cluster_leases(si: vim.ServiceInstance, clusters: Sequence[str], *, take_over: bool = False) -> Iterator[str]:
    """Hold the rollout lease of every cluster in ``clusters`` for the block (confirmed on entry); yields this
    run's id."""
    with claimed_leases(si, clusters, take_over=take_over) as claim:
        claim.confirm()
        yield claim.run


# -- the failure threshold across processes ----------------------------------------------------------------------
# Under `pulumi up` every host is its own resource, prepared by the engine in parallel lanes: what counts the failed
# hosts of this run is kept beside the lease (``gpufleet.failed`` on the cluster: the lease's run id and the hosts),
# so each host resource can refuse to start once the run has reached ``rollout.failureThreshold``.
FAILED_FIELD = "gpufleet.failed"
_FAILED_LOCK = threading.Lock()


def _cluster(si: vim.ServiceInstance, name: str) -> vim.ClusterComputeResource:
    return find_by_name(si, vim.ClusterComputeResource, name)


def current_run(si: vim.ServiceInstance, cluster: str) -> str | None:
    """The id of the run holding ``cluster``'s lease now (None: no lease, or an unreadable one)."""
    lease = Lease.parse(fields.get_field(si, _cluster(si, cluster), LEASE_FIELD) or "")
    return lease.run if lease is not None and not lease.gone() else None


def failed_hosts(si: vim.ServiceInstance, cluster: str) -> list[str]:
    """The hosts that failed in the run holding ``cluster``'s lease (another run's list does not count)."""
    run = current_run(si, cluster)
    try:
        data = json.loads(fields.get_field(si, _cluster(si, cluster), FAILED_FIELD) or "{}")
    except ValueError:
        return []
    if run is None or not isinstance(data, dict) or data.get("run") != run:
        return []
    return [str(h) for h in data.get("hosts") or []]


def record_failure(si: vim.ServiceInstance, cluster: str, host: str) -> list[str]:
    """Add ``host`` to the failed hosts of the run holding ``cluster``'s lease; returns them all (nothing is
    recorded without a lease: then there is no run to count for)."""
    with _FAILED_LOCK:
        run = current_run(si, cluster)
        if run is None:
            return []
        hosts = failed_hosts(si, cluster)
        if host not in hosts:
            hosts.append(host)
            fields.set_field(si, _cluster(si, cluster), FAILED_FIELD, json.dumps({"run": run, "hosts": hosts}))
        return hosts
