"""ESXi hosts through vCenter: find one, read its state, enter/exit maintenance mode safely.

    host = find_host(si, "esxi-01.lab")
    state = host_state(si, host)                      # HostState(in_maintenance, connection_state, cluster, ...)
    moves = evacuation_plan(si, host)                 # refuses (EvacuationRefused) when the cluster cannot take them
    enter_maintenance(si, host, timeout=1800)         # moves the powered-on VMs away, then enters
    exit_maintenance(si, host, timeout=600)
    wait_until_connected(si, host, timeout=600)       # after a reboot: vCenter sees the host again

Evacuation is done here, VM by VM, rather than left to DRS: a cluster without fully automated DRS would leave
``EnterMaintenanceMode`` waiting forever, and GPU VMs need rules DRS does not check the way we want:

- a VM with a DirectPath I/O (or Dynamic DirectPath) GPU cannot move while powered on: refused, naming the VM;
- a VM with a vGPU moves only when vGPU vMotion is allowed (``rollout.vgpuVmotion``) and the target host offers
  its vGPU profile;
- memory is the binding constraint (GPU VMs reserve all their memory): each VM goes to the connected host outside
  maintenance with the most free memory (host memory minus the memory of its powered-on VMs);
- a VM that cannot move is powered off instead when the caller names it in ``may_power_off`` (the spec's
  ``allowPowerCycle`` for that VM), and powered on again when its host leaves maintenance.

What evacuation did is noted on each VM in vCenter before it is done (``gpufleet.home``: moved away from that host;
``gpufleet.stopped``: powered off for that host), so whichever process takes the host out of maintenance - the
CLI's rollout, a Pulumi host step, a rerun after a crash - puts the VMs back (``return_home``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pyVmomi import vim

from gpufleet.errors import GpufleetError, TaskError
from gpufleet.vsphere import fields
from gpufleet.vsphere.inventory import collect, collect_one, find_by_name
from gpufleet.vsphere.tasks import wait_for_task

_MIB = 1024 * 1024


class EvacuationRefused(GpufleetError):
    """The host's powered-on VMs cannot all move elsewhere in the cluster; nothing was changed."""


@dataclass(frozen=True)
class HostState:
    name: str
    cluster: str | None
    in_maintenance: bool
    connection_state: str  # connected | disconnected | notResponding
    power_state: str  # poweredOn | poweredOff | standBy | unknown


@dataclass(frozen=True)
class Move:
    """One VM to relocate (``target``) or, when it cannot move and may be powered off, to stop (``target`` None)
    before maintenance."""

    vm: vim.VirtualMachine
    vm_name: str
    target: vim.HostSystem | None
    target_name: str | None
    memory_mb: int

    def describe(self) -> str:
        return f"{self.vm_name} -> {self.target_name}" if self.target is not None else f"{self.vm_name} powered off"


def find_host(si: vim.ServiceInstance, name: str) -> vim.HostSystem:
    """The HostSystem called ``name``; SpecError listing vCenter's hosts when there is none."""
    return find_by_name(si, vim.HostSystem, name)


def host_state(si: vim.ServiceInstance, host: vim.HostSystem) -> HostState:
    return _state_of(collect_one(si, host, _HOST_PROPS[:5]))


_HOST_PROPS = [
    "name",
    "parent",
    "runtime.inMaintenanceMode",
    "runtime.connectionState",
    "runtime.powerState",
    "hardware.memorySize",
    "config.sharedPassthruGpuTypes",
]
_VM_PROPS = [
    "name",
    "runtime.host",
    "runtime.powerState",
    "config.hardware.memoryMB",
    "config.hardware.device",
    "config.template",
]


def all_host_states(si: vim.ServiceInstance) -> list[HostState]:
    """The state of every host vCenter knows, in one round trip."""
    return [_state_of(row) for row in collect(si, vim.HostSystem, _HOST_PROPS[:5])]


def _state_of(row: dict[str, Any]) -> HostState:
    parent = row["parent"]
    cluster = parent.name if isinstance(parent, vim.ClusterComputeResource) else None
    return HostState(
        name=row["name"],
        cluster=cluster,
        in_maintenance=bool(row["runtime.inMaintenanceMode"]),
        connection_state=str(row["runtime.connectionState"]),
        power_state=str(row["runtime.powerState"]),
    )


def _gpu_kind(devices: list[Any] | None) -> tuple[str, str | None]:
    """('none'|'vgpu'|'passthrough', vGPU profile) of a VM's devices."""
    for dev in devices or []:
        if isinstance(dev, vim.vm.device.VirtualPCIPassthrough):
            backing = dev.backing
            if isinstance(backing, vim.vm.device.VirtualPCIPassthrough.VmiopBackingInfo):
                return "vgpu", backing.vgpu
            return "passthrough", None
    return "none", None


def evacuation_plan(
    si: vim.ServiceInstance,
    host: vim.HostSystem,
    allow_vgpu_vmotion: bool = False,
    may_power_off: frozenset[str] = frozenset(),
) -> list[Move]:
    """Where each powered-on VM of ``host`` would go (or that it is powered off, if it cannot move and is named in
    ``may_power_off``). Raises ``EvacuationRefused`` listing every VM that cannot move (and why) before anything
    is changed."""
    if not collect_one(si, host, ["vm"]).get("vm"):  # no VM on it (a fresh host): no need to read the cluster
        return []
    hosts = collect(si, vim.HostSystem, _HOST_PROPS)
    me = next((h for h in hosts if h["obj"] == host), None)
    if me is None:
        raise TaskError(f"host {host} vanished from vCenter", fault="ManagedObjectNotFound")
    vms = [
        v
        for v in collect(si, vim.VirtualMachine, _VM_PROPS)
        if v["runtime.powerState"] == vim.VirtualMachine.PowerState.poweredOn and not v["config.template"]
    ]
    to_move = [v for v in vms if v["runtime.host"] == host]
    if not to_move:
        return []
    targets = [
        h
        for h in hosts
        if h["obj"] != host
        and h["parent"] == me["parent"]
        and isinstance(me["parent"], vim.ClusterComputeResource)
        and h["runtime.connectionState"] == "connected"
        and not h["runtime.inMaintenanceMode"]
    ]
    free_mb = {
        h["obj"]: (h["hardware.memorySize"] or 0) // _MIB
        - sum(v["config.hardware.memoryMB"] or 0 for v in vms if v["runtime.host"] == h["obj"])
        for h in targets
    }
    problems: list[str] = []
    moves: list[Move] = []
    for vm in sorted(to_move, key=lambda v: -(v["config.hardware.memoryMB"] or 0)):
        need = vm["config.hardware.memoryMB"] or 0
        problem, target = _refuge(vm, targets, free_mb, allow_vgpu_vmotion)
        if target is not None:
            free_mb[target["obj"]] -= need
            moves.append(Move(vm["obj"], vm["name"], target["obj"], target["name"], need))
        elif vm["name"] in may_power_off:
            moves.append(Move(vm["obj"], vm["name"], None, None, need))
        else:
            problems.append(problem)
    if problems:
        raise EvacuationRefused(
            f"{me['name']}: the cluster cannot absorb its powered-on VMs, not entering maintenance: "
            + "; ".join(problems)
            + " (or allow gpufleet to power them off: allowPowerCycle)"
        )
    return moves


def _refuge(
    vm: dict[str, Any], targets: list[dict[str, Any]], free_mb: dict[Any, int], allow_vgpu_vmotion: bool
) -> tuple[str, dict[str, Any] | None]:
    """Where one powered-on VM can go: ("", host row), or (why it cannot move, None)."""
    need = vm["config.hardware.memoryMB"] or 0
    kind, profile = _gpu_kind(vm["config.hardware.device"])
    if kind == "passthrough":
        return f"{vm['name']} has a DirectPath I/O GPU and cannot move while powered on", None
    candidates = targets
    if kind == "vgpu":
        if not allow_vgpu_vmotion:
            return f"{vm['name']} has vGPU {profile} and vGPU vMotion is off (rollout.vgpuVmotion)", None
        candidates = [h for h in targets if profile in (h["config.sharedPassthruGpuTypes"] or [])]
        if not candidates:
            return f"{vm['name']} has vGPU {profile} and no other host outside maintenance offers it", None
    fitting = [h for h in candidates if free_mb[h["obj"]] >= need]
    if not fitting:
        where = "no other connected host of the cluster outside maintenance"
        if candidates:
            where = f"at most {max(free_mb[h['obj']] for h in candidates)} MB free on the other hosts"
        return f"{vm['name']} needs {need} MB ({where})", None
    return "", max(fitting, key=lambda h: free_mb[h["obj"]])


def enter_maintenance(
    si: vim.ServiceInstance,
    host: vim.HostSystem,
    *,
    timeout: float,
    allow_vgpu_vmotion: bool = False,
    may_power_off: frozenset[str] = frozenset(),
) -> list[Move]:
    """Move the host's powered-on VMs away (after checking they all fit; powering off those that cannot move and
    are named in ``may_power_off``) and enter maintenance mode. Each VM is noted first (``gpufleet.home`` = this
    host, kept if it has one already: moved again, it still goes back to its first home; ``gpufleet.stopped`` for
    a VM powered off). Returns the moves made; nothing is done when the host is already in maintenance mode."""
    state = host_state(si, host)
    if state.in_maintenance:
        return []
    deadline = time.monotonic() + timeout
    moves = evacuation_plan(si, host, allow_vgpu_vmotion, may_power_off)
    for move in moves:
        left = max(1.0, deadline - time.monotonic())
        if move.target is None:
            fields.set_field(si, move.vm, fields.STOPPED_FIELD, state.name)
            wait_for_task(move.vm.PowerOffVM_Task(), what=f"power off {move.vm_name} on {state.name}", timeout=left)
            continue
        if not fields.get_field(si, move.vm, fields.HOME_FIELD):
            fields.set_field(si, move.vm, fields.HOME_FIELD, state.name)
        task = move.vm.RelocateVM_Task(spec=vim.vm.RelocateSpec(host=move.target, pool=None))
        wait_for_task(task, what=f"move {move.vm_name} from {state.name} to {move.target_name}", timeout=left)
    remaining = max(1.0, deadline - time.monotonic())
    task = host.EnterMaintenanceMode_Task(timeout=int(remaining), evacuatePoweredOffVms=False)
    wait_for_task(task, what=f"enter maintenance mode on {state.name}", timeout=remaining + 5)
    return moves


def return_home(si: vim.ServiceInstance, host: vim.HostSystem, *, timeout: float) -> list[str]:
    """Put back what evacuating ``host`` did: move the VMs whose ``gpufleet.home`` is ``host`` back to it (the
    spec pins VMs to hosts, and ``vms apply`` does not move them) and power on those gpufleet powered off for it
    (``gpufleet.stopped``), clearing the notes. A VM moved away and then powered off on its refuge (that host went
    into maintenance too) goes back cold and is powered on when the refuge leaves maintenance; a VM already back
    only loses its note. Returns what was done, one line per VM."""
    deadline = time.monotonic() + timeout
    name = host_state(si, host).name
    rows = collect(si, vim.VirtualMachine, ["name", "customValue", "runtime.host", "runtime.powerState"])
    homes = fields.field_values(si, rows, fields.HOME_FIELD, vim.VirtualMachine)
    stopped = fields.field_values(si, rows, fields.STOPPED_FIELD, vim.VirtualMachine)
    done: list[str] = []
    on = vim.VirtualMachine.PowerState.poweredOn
    for index in sorted(set(homes) | set(stopped)):
        row = rows[index]
        left = max(1.0, deadline - time.monotonic())
        if homes.get(index) == name:
            if row["runtime.host"] != host:  # powered off meanwhile (by gpufleet on its refuge): a cold migration
                task = row["obj"].RelocateVM_Task(spec=vim.vm.RelocateSpec(host=host, pool=None))
                wait_for_task(task, what=f"move {row['name']} back to {name}", timeout=left)
                done.append(f"{row['name']} back from {row['runtime.host'].name}")
            fields.set_field(si, row["obj"], fields.HOME_FIELD, "")
        if stopped.get(index) == name:
            if row["runtime.powerState"] != on:
                wait_for_task(row["obj"].PowerOnVM_Task(), what=f"power on {row['name']} on {name}", timeout=left)
                done.append(f"{row['name']} powered on")
            fields.set_field(si, row["obj"], fields.STOPPED_FIELD, "")
    return done


def exit_maintenance(si: vim.ServiceInstance, host: vim.HostSystem, *, timeout: float) -> bool:
    """Leave maintenance mode; False when the host was not in it."""
    state = host_state(si, host)
    if not state.in_maintenance:
        return False
    task = host.ExitMaintenanceMode_Task(timeout=int(timeout))
    wait_for_task(task, what=f"exit maintenance mode on {state.name}", timeout=timeout + 5)
    return True


def wait_until_connected(
    si: vim.ServiceInstance, host: vim.HostSystem, *, timeout: float, poll: float = 0.05
) -> HostState:
    """Block until vCenter shows the host connected (after a reboot); TaskError(fault='Timeout') otherwise.
    Polled often: SSH answering is usually noticed first, and vCenter follows within a moment; each poll is one
    light property read, and a slow poll would hold the host's maintenance slot for nothing."""
    deadline = time.monotonic() + timeout
    while True:
        state = host_state(si, host)
        if state.connection_state == "connected":
            return state
        if time.monotonic() >= deadline:
            raise TaskError(
                f"{state.name}: vCenter still shows it {state.connection_state} after {timeout:.0f} s", fault="Timeout"
            )
        time.sleep(poll)
