"""The change set between a VM's GPU/RDMA devices as read and as desired, computed before touching the VM.

Pure (no vCenter call): ``compute_change_set(current, desired)`` lists adds, removes and edits and knows whether
they need the VM powered off (like vmware.vmware's ``_change_set.py``): vSphere cannot hot-plug a PCI passthrough
device (vGPU, DirectPath, Dynamic DirectPath), and the PVRDMA protocol and the 64-bit MMIO / P2P / NUMA keys are
read at power-on only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from gpufleet.catalog import gpu_by_pci_device_id, profile_key
from gpufleet.errors import GpufleetError
from gpufleet.spec.models import VmSpec
from gpufleet.vsphere.vm_devices import (
    MANAGED_EXTRA_CONFIG,
    POWERED_OFF,
    DynamicDirectPathDevice,
    PvrdmaNic,
    VmDeviceState,
)

Action = Literal["add", "remove", "edit", "set", "unset"]
Kind = Literal["vgpu", "directpath", "dynamic-directpath", "pvrdma", "extra-config", "memory-reservation"]

# Changes vSphere only takes (or only honours) with the VM powered off.
_NEEDS_POWER_OFF: frozenset[str] = frozenset({"vgpu", "directpath", "dynamic-directpath", "pvrdma", "extra-config"})


class PowerCycleRequiredError(GpufleetError):
    """The VM is powered on (or suspended) and the change needs it off, and the stack does not let gpufleet
    power it off. Nothing was changed."""

    def __init__(self, vm: str, power_state: str, changes: list[str]) -> None:
        self.vm = vm
        super().__init__(
            f"{vm} is {power_state} and these changes need it powered off: {'; '.join(changes)}. "
            "Power it off first, or let gpufleet do it: rollout.allowPowerCycle: true (or the VM's allowPowerCycle)."
        )


def stack_spelling(vm: VmSpec) -> dict[str, str]:
    """The VM's vGPU profiles as its stack writes them, by key (``catalog.profile_key``): what change summaries
    show people (``ChangeSet.summaries``), whatever the host calls them."""
    return {r.profile: r.profile.spelled for r in vm.vgpu}


def _norm_value(value: str | None) -> str | None:
    if value is None:
        return None
    value = str(value).strip()
    return value.lower() if value.lower() in ("true", "false") else value


@dataclass(frozen=True)
class DesiredDevices:
    """The GPU/RDMA devices and GPU settings a VM should have.

    ``vgpus``: vGPU profiles (host spelling once preconditions resolved them); ``directpath``: host PCI addresses
    (GPUs and passthrough NICs); ``dynamic``: Dynamic DirectPath slots; ``pvrdma``: PVRDMA adapters (network and
    protocol ``rocev1``/``rocev2``); ``own_pvrdma``: gpufleet adds/removes PVRDMA adapters (``vms apply``) or only
    sets the protocol of those someone else made (pulumi-vsphere, adapter type ``vrdma``); ``extra_config``: every
    managed key that should be set (managed keys absent here are removed); ``lock_memory``: reserve all memory.
    """

    vgpus: tuple[str, ...] = ()
    directpath: tuple[str, ...] = ()
    dynamic: tuple[DynamicDirectPathDevice, ...] = ()
    pvrdma: tuple[PvrdmaNic, ...] = ()
    own_pvrdma: bool = True
    extra_config: dict[str, str] = field(default_factory=dict)
    lock_memory: bool = False

    def __post_init__(self) -> None:
        unknown = sorted(set(self.extra_config) - set(MANAGED_EXTRA_CONFIG))
        if unknown:
            raise ValueError(f"extraConfig keys not managed by gpufleet: {unknown} (managed: {MANAGED_EXTRA_CONFIG})")

    @property
    def has_gpu(self) -> bool:
        return bool(self.vgpus or self.directpath or self.dynamic)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DesiredDevices:
        """Inverse of ``to_dict`` (numbers may come back as floats from Pulumi's wire format)."""

        def ints(d: dict[str, Any]) -> dict[str, Any]:
            return {k: int(v) if isinstance(v, float) else v for k, v in d.items()}

        return cls(
            vgpus=tuple(data.get("vgpus") or ()),
            directpath=tuple(data.get("directpath") or ()),
            dynamic=tuple(DynamicDirectPathDevice(**ints(d)) for d in data.get("dynamic") or ()),
            pvrdma=tuple(PvrdmaNic(**ints(d)) for d in data.get("pvrdma") or ()),
            own_pvrdma=bool(data.get("own_pvrdma", True)),
            extra_config={str(k): str(v) for k, v in (data.get("extra_config") or {}).items()},
            lock_memory=bool(data.get("lock_memory")),
        )


@dataclass(frozen=True)
class Change:
    """One change to a VM. ``key`` is the device key for removes and edits."""

    action: Action
    kind: Kind
    target: str
    before: str | None = None
    after: str | None = None
    key: int | None = None

    @property
    def needs_power_off(self) -> bool:
        return self.kind in _NEEDS_POWER_OFF

    def describe(self, spelled: Mapping[str, str] | None = None) -> str:
        """One line for people. ``spelled``: the stack's spelling of vGPU profiles by key (``profile_key``), so a
        profile reads as the stack writes it, with the host's spelling beside it when the two differ."""
        if self.kind == "vgpu" and spelled and self.target:
            own = spelled.get(profile_key(self.target), self.target)
            if own != self.target:
                return f"{self.action} vgpu {own} (the host's name: {self.target})"
        if self.action == "edit" or (self.action == "set" and self.before is not None):
            return f"{self.action} {self.kind} {self.target}: {self.before} -> {self.after}"
        if self.action == "set":
            return f"set {self.kind} {self.target}={self.after}"
        return f"{self.action} {self.kind} {self.target}"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None} | {"summary": self.describe()}


@dataclass(frozen=True)
class ChangeSet:
    """The changes that bring one VM to its desired devices, and whether they need a power cycle."""

    vm: str
    power_state: str
    changes: tuple[Change, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    @property
    def power_cycle_required(self) -> bool:
        return self.power_state != POWERED_OFF and any(c.needs_power_off for c in self.changes)

    def summaries(self, spelled: Mapping[str, str] | None = None) -> list[str]:
        return [c.describe(spelled) for c in self.changes]

    def require_power(self, allow_power_cycle: bool) -> None:
        """Raise ``PowerCycleRequiredError`` when the changes need the VM off and gpufleet may not power it off."""
        if self.power_cycle_required and not allow_power_cycle:
            raise PowerCycleRequiredError(
                self.vm, self.power_state, [c.describe() for c in self.changes if c.needs_power_off]
            )


def _vgpu_changes(current: VmDeviceState, desired: DesiredDevices) -> list[Change]:
    wanted = Counter(profile_key(p) for p in desired.vgpus)
    spelled = {profile_key(p): p for p in desired.vgpus}
    changes: list[Change] = []
    for device in current.vgpus:
        k = profile_key(device.profile)
        if wanted[k] > 0:
            wanted[k] -= 1
        else:
            changes.append(Change("remove", "vgpu", device.profile, key=device.key))
    for k, count in sorted(wanted.items()):
        changes.extend(Change("add", "vgpu", spelled[k]) for _ in range(count))
    return changes


def _directpath_changes(current: VmDeviceState, desired: DesiredDevices) -> list[Change]:
    wanted = [a.lower() for a in desired.directpath]
    have = {d.id: d for d in current.directpath}
    changes = [Change("remove", "directpath", d.id, key=d.key) for d in current.directpath if d.id not in wanted]
    changes += [Change("add", "directpath", a) for a in dict.fromkeys(wanted) if a not in have]
    return changes


def _dynamic_changes(current: VmDeviceState, desired: DesiredDevices) -> list[Change]:
    ident = _dynamic_ident

    def target(d: DynamicDirectPathDevice) -> str:
        return d.allowed + (f" label={d.label}" if d.label else "")

    wanted = Counter(ident(d) for d in desired.dynamic)
    by_ident = {ident(d): d for d in desired.dynamic}
    changes: list[Change] = []
    for device in current.dynamic:
        if wanted[ident(device)] > 0:
            wanted[ident(device)] -= 1
        else:
            changes.append(Change("remove", "dynamic-directpath", target(device), key=device.key))
    for i, count in sorted(wanted.items()):
        changes.extend(Change("add", "dynamic-directpath", target(by_ident[i])) for _ in range(count))
    return changes


def _dynamic_ident(d: DynamicDirectPathDevice) -> tuple[int, str, str]:
    # A board can have several PCI device ids (A100 80GB: 0x20b5, 0x20b8): compare boards, not ids.
    board = gpu_by_pci_device_id(d.device_id)
    return (d.vendor_id, board.name if board else f"{d.device_id:04x}", d.label or "")


def _pvrdma_changes(current: VmDeviceState, desired: DesiredDevices) -> list[Change]:
    changes: list[Change] = []
    if not desired.own_pvrdma:
        # Someone else owns the adapters: set the protocol of the n-th adapter (by device key) only.
        for nic, want in zip(sorted(current.pvrdma, key=lambda n: n.key or 0), desired.pvrdma, strict=False):
            if want.protocol and nic.protocol != want.protocol:
                changes.append(Change("edit", "pvrdma", nic.network or "", nic.protocol, want.protocol, key=nic.key))
        return changes
    remaining = list(desired.pvrdma)
    unmatched: list[PvrdmaNic] = []
    for nic in current.pvrdma:
        match = next((w for w in remaining if w.network == nic.network), None)
        if match is None:
            unmatched.append(nic)
            continue
        remaining.remove(match)
        if match.protocol and nic.protocol != match.protocol:
            changes.append(Change("edit", "pvrdma", nic.network or "", nic.protocol, match.protocol, key=nic.key))
    changes += [Change("remove", "pvrdma", nic.network or "", before=nic.protocol, key=nic.key) for nic in unmatched]
    changes += [Change("add", "pvrdma", want.network or "", after=want.protocol) for want in remaining]
    return changes


def _extra_config_changes(current: VmDeviceState, desired: DesiredDevices) -> list[Change]:
    changes: list[Change] = []
    for key in MANAGED_EXTRA_CONFIG:
        want, have = desired.extra_config.get(key), current.extra_config.get(key)
        if want is None and have is not None:
            changes.append(Change("unset", "extra-config", key, before=have))
        elif want is not None and _norm_value(want) != _norm_value(have):
            changes.append(Change("set", "extra-config", key, before=have, after=str(want)))
    return changes


def compute_change_set(current: VmDeviceState, desired: DesiredDevices) -> ChangeSet:
    """Everything that differs between ``current`` and ``desired``; empty when the VM is converged."""
    changes = (
        _vgpu_changes(current, desired)
        + _directpath_changes(current, desired)
        + _dynamic_changes(current, desired)
        + _pvrdma_changes(current, desired)
        + _extra_config_changes(current, desired)
    )
    if desired.lock_memory and not current.memory_reservation_locked:
        changes.append(Change("set", "memory-reservation", "memoryReservationLockedToMax", "false", "true"))
    return ChangeSet(vm=current.vm, power_state=current.power_state, changes=tuple(changes))


def removal_change_set(current: VmDeviceState, owned: DesiredDevices) -> ChangeSet:
    """The changes that remove only what ``owned`` lists (the devices and keys a resource put there), leaving
    every other device and key of the VM alone. PVRDMA adapters are removed only when gpufleet owns them."""
    changes: list[Change] = []
    budget = Counter(profile_key(p) for p in owned.vgpus)
    for device in current.vgpus:
        if budget[profile_key(device.profile)] > 0:
            budget[profile_key(device.profile)] -= 1
            changes.append(Change("remove", "vgpu", device.profile, key=device.key))
    ours = {a.lower() for a in owned.directpath}
    changes += [Change("remove", "directpath", d.id, key=d.key) for d in current.directpath if d.id in ours]
    slots = Counter(_dynamic_ident(d) for d in owned.dynamic)
    for device in current.dynamic:
        ident = _dynamic_ident(device)
        if slots[ident] > 0:
            slots[ident] -= 1
            changes.append(Change("remove", "dynamic-directpath", device.allowed, key=device.key))
    if owned.own_pvrdma:
        nets = Counter(n.network for n in owned.pvrdma)
        for nic in current.pvrdma:
            if nets[nic.network] > 0:
                nets[nic.network] -= 1
                changes.append(Change("remove", "pvrdma", nic.network or "", before=nic.protocol, key=nic.key))
    for key in MANAGED_EXTRA_CONFIG:
        if key in owned.extra_config and key in current.extra_config:
            changes.append(Change("unset", "extra-config", key, before=current.extra_config[key]))
    return ChangeSet(vm=current.vm, power_state=current.power_state, changes=tuple(changes))
