"""What host preparation asks vCenter, behind a small interface (``HostApi``) so the rollout can be tested
with an in-memory fake and run against the real thing (``VsphereHostApi``, over ``gpufleet.vsphere``)."""

from __future__ import annotations

import threading
from typing import Protocol

from pyVmomi import vim

from gpufleet.vsphere import fields, hosts
from gpufleet.vsphere.hosts import HostState
from gpufleet.vsphere.inventory import collect


class HostApi(Protocol):
    def host_names(self) -> list[str]:
        """Every HostSystem name vCenter knows (to refuse unknown hosts before touching any)."""
        ...

    def state(self, name: str) -> HostState: ...

    def in_maintenance(self) -> list[HostState]:
        """Every host vCenter shows in maintenance mode (ours or not: all count against the bound)."""
        ...

    def enter_maintenance(
        self, name: str, *, timeout: float, allow_vgpu_vmotion: bool, may_power_off: frozenset[str] = frozenset()
    ) -> list[str]:
        """Evacuate (or refuse) and enter maintenance; returns 'vm -> host' / 'vm powered off' lines."""
        ...

    def exit_maintenance(self, name: str, *, timeout: float) -> bool: ...

    def wait_connected(self, name: str, *, timeout: float) -> None: ...

    def marker(self, name: str) -> str | None:
        """gpufleet's note that it put this host in maintenance (None: it did not)."""
        ...

    def set_marker(self, name: str, value: str) -> None: ...


# Evacuations are serialised in the process (the CLI's rollout threads, a Pulumi dynamic provider serving several
# host steps at once): two hosts planning their moves at once could both count on the same free memory elsewhere,
# and a host entering maintenance must be out of the other's target list. Where each VM goes back to is noted in
# vCenter (``gpufleet.home``, gpufleet.vsphere.hosts), not here, so any process taking a host out returns them.
_EVACUATION = threading.Lock()


class VsphereHostApi:
    """HostApi over a pyvmomi ServiceInstance (share one across the rollout's threads)."""

    def __init__(self, si: vim.ServiceInstance) -> None:
        self.si = si
        self._hosts: dict[str, vim.HostSystem] = {}
        self._lock = threading.Lock()

    def host_names(self) -> list[str]:
        rows = collect(self.si, vim.HostSystem, ["name"])
        with self._lock:
            for row in rows:
                self._hosts[row["name"]] = row["obj"]
        return sorted(r["name"] for r in rows)

    def _host(self, name: str) -> vim.HostSystem:
        with self._lock:
            found = self._hosts.get(name)
        if found is None:
            found = hosts.find_host(self.si, name)
            with self._lock:
                self._hosts[name] = found
        return found

    def state(self, name: str) -> HostState:
        return hosts.host_state(self.si, self._host(name))

    def in_maintenance(self) -> list[HostState]:
        return [s for s in hosts.all_host_states(self.si) if s.in_maintenance]

    def enter_maintenance(
        self, name: str, *, timeout: float, allow_vgpu_vmotion: bool, may_power_off: frozenset[str] = frozenset()
    ) -> list[str]:
        host = self._host(name)
        with _EVACUATION:
            moves = hosts.enter_maintenance(
                self.si, host, timeout=timeout, allow_vgpu_vmotion=allow_vgpu_vmotion, may_power_off=may_power_off
            )
        return [m.describe() for m in moves]

    def exit_maintenance(self, name: str, *, timeout: float) -> bool:
        host = self._host(name)
        exited = hosts.exit_maintenance(self.si, host, timeout=timeout)
        with _EVACUATION:
            if not hosts.host_state(self.si, host).in_maintenance:
                hosts.return_home(self.si, host, timeout=timeout)
        return exited

    def wait_connected(self, name: str, *, timeout: float) -> None:
        hosts.wait_until_connected(self.si, self._host(name), timeout=timeout)

    def marker(self, name: str) -> str | None:
        return fields.get_field(self.si, self._host(name), fields.MAINTENANCE_FIELD)

    def set_marker(self, name: str, value: str) -> None:
        fields.set_field(self.si, self._host(name), fields.MAINTENANCE_FIELD, value)
