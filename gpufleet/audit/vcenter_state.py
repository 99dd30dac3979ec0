"""Read the actual GPU state of a datacenter from vCenter in a handful of SOAP round trips.

One ContainerView over the datacenter and one PropertyCollector retrieval (``RetrievePropertiesEx``, paged with
``ContinueRetrievePropertiesEx``) fetch exactly the properties the audit compares, for every host, VM and cluster at
once — never one round trip per object or per attribute, as a naive pyVmomi traversal does. Host licences come from
one ``QueryAssignedLicenses`` call for all hosts.

Round trips of ``read_vcenter_state``: FindByInventoryPath, CreateContainerView, RetrievePropertiesEx (+1 per extra
page), DestroyView, the licenseAssignmentManager property, QueryAssignedLicenses: 6 for a whole fleet.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from pyVmomi import vim, vmodl

from gpufleet.audit.state import (
    MELLANOX_VENDOR_ID,
    NVIDIA_VENDOR_ID,
    HostVcState,
    LicenseState,
    NicDevice,
    PciDevice,
    VcenterState,
    VmVcState,
    normalize_pci,
)
from gpufleet.errors import ConnectError
from gpufleet.vsphere.licenses import EVALUATION_KEY, key_fingerprint
from gpufleet.vsphere.vm_devices import read_vm_devices

# Exactly the properties the audit compares (and the report draws); nothing else travels.
HOST_PROPERTIES = (
    "name",
    "parent",
    "runtime.connectionState",
    "runtime.inMaintenanceMode",
    "runtime.powerState",
    "hardware.pciDevice",
    "config.graphicsConfig",
    "config.graphicsInfo",
    "config.sharedPassthruGpuTypes",
    "config.pciPassthruInfo",
)
VM_PROPERTIES = (
    "name",
    "runtime.host",
    "runtime.powerState",
    "config.template",
    "config.firmware",
    "config.version",
    "config.memoryReservationLockedToMax",
    "config.hardware.device",
    "config.extraConfig",
)
CLUSTER_PROPERTIES = ("name",)
# Each object type the audit reads (through one ContainerView of the datacenter) with its properties.
PROPERTY_SETS: tuple[tuple[type, tuple[str, ...]], ...] = (
    (vim.HostSystem, HOST_PROPERTIES),
    (vim.VirtualMachine, VM_PROPERTIES),
    (vim.ClusterComputeResource, CLUSTER_PROPERTIES),
)

# extraConfig keys the GPU audit owns: every pciPassthru* and numa.* key, declared or not.
EXTRA_CONFIG_PREFIXES = ("pciPassthru", "numa.")
DEFAULT_PAGE_SIZE = 1000

PC = vmodl.query.PropertyCollector


@dataclass
class _Counter:
    """Round trips this reader made (it counts its own calls; the benchmark cross-checks at the SOAP stub)."""

    calls: int = 0
    pages: int = 0
    names: list[str] = field(default_factory=list)

    def tick(self, name: str) -> None:
        self.calls += 1
        self.names.append(name)


def retrieve_paged(
    collector: Any, spec: Any, page_size: int = DEFAULT_PAGE_SIZE, counter: _Counter | None = None
) -> Iterator[Any]:
    """Yield every ObjectContent of one retrieval, page by page (RetrievePropertiesEx, then
    ContinueRetrievePropertiesEx while vCenter hands back a token). An abandoned retrieval is cancelled."""
    counter = counter or _Counter()
    counter.tick("RetrievePropertiesEx")
    result = collector.RetrievePropertiesEx([spec], PC.RetrieveOptions(maxObjects=page_size))
    while result is not None:
        counter.pages += 1
        token = result.token
        try:
            yield from result.objects
        except GeneratorExit:
            if token:
                collector.CancelRetrievePropertiesEx(token)
            raise
        if not token:
            return
        counter.tick("ContinueRetrievePropertiesEx")
        result = collector.ContinueRetrievePropertiesEx(token)


def view_filter_spec(view: Any, property_sets: Iterable[tuple[type, Iterable[str]]]) -> Any:
    """A FilterSpec that walks a ContainerView and collects the given properties per managed object type."""
    traverse = PC.TraversalSpec(name="traverseView", path="view", skip=False, type=vim.view.ContainerView)
    return PC.FilterSpec(
        objectSet=[PC.ObjectSpec(obj=view, skip=True, selectSet=[traverse])],
        propSet=[PC.PropertySpec(type=t, pathSet=list(paths), all=False) for t, paths in property_sets],
    )


def _props(content: Any) -> dict[str, Any]:
    return {p.name: p.val for p in (content.propSet or [])}


def _short(value: int | None) -> int:
    # HostPciDevice ids are xsd:short: 0x8000 and above arrive negative.
    return (value or 0) & 0xFFFF


def key_digest(key: str) -> str:
    """A one-way digest of a licence key, to tell whether two keys are the same without keeping either."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:12]


def _host_devices(props: dict[str, Any], vm_names: dict[str, str]) -> tuple[PciDevice, ...]:
    graphics = {normalize_pci(g.pciId): g for g in (props.get("config.graphicsInfo") or []) if g.pciId}
    passthru = {normalize_pci(p.id): p for p in (props.get("config.pciPassthruInfo") or []) if p.id}
    config = props.get("config.graphicsConfig")
    device_types = {normalize_pci(d.deviceId): d.graphicsType for d in (getattr(config, "deviceType", None) or [])}
    devices = []
    for dev in props.get("hardware.pciDevice") or []:
        vendor = _short(dev.vendorId)
        if vendor not in (NVIDIA_VENDOR_ID, MELLANOX_VENDOR_ID):
            continue
        pci = normalize_pci(dev.id)
        info = graphics.get(pci)
        pt = passthru.get(pci)
        devices.append(
            PciDevice(
                pci=pci,
                vendor_id=vendor,
                device_id=_short(dev.deviceId),
                name=dev.deviceName or "",
                graphics_type=(info.graphicsType if info else None) or device_types.get(pci),
                passthrough_enabled=bool(pt.passthruEnabled) if pt is not None else None,
                vms=tuple(sorted(vm_names.get(vm._moId, vm._moId) for vm in (info.vm if info else None) or [])),
            )
        )
    return tuple(sorted(devices, key=lambda d: d.pci))


def _nics(devices: Iterable[Any]) -> tuple[NicDevice, ...]:
    nics = []
    for dev in devices or []:
        if isinstance(dev, vim.vm.device.VirtualEthernetCard):
            backing = dev.backing
            network = None
            if isinstance(backing, vim.vm.device.VirtualEthernetCard.NetworkBackingInfo):
                network = backing.deviceName
            elif isinstance(backing, vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo):
                network = backing.port.portgroupKey if backing.port else None
            nics.append(NicDevice(key=dev.key, type=_nic_type(dev), network=network))
    return tuple(nics)


class _RetrievedVm:
    """The retrieved properties of one VM in the attribute shape ``read_vm_devices`` reads (``vm.config...``,
    ``vm.runtime...``), so the one parser of a VM's GPU devices is reused without a single extra round trip."""

    def __init__(self, props: dict[str, Any], host_name: str | None) -> None:
        self.name = props.get("name")
        self.network: list[Any] = []  # DVS port groups are then named by their key
        self.config = SimpleNamespace(
            hardware=SimpleNamespace(device=props.get("config.hardware.device") or []),
            extraConfig=props.get("config.extraConfig") or [],
            version=props.get("config.version"),
            memoryReservationLockedToMax=props.get("config.memoryReservationLockedToMax"),
        )
        self.runtime = SimpleNamespace(
            powerState=props.get("runtime.powerState") or "poweredOff",
            host=SimpleNamespace(name=host_name) if host_name else None,
        )


def _nic_type(dev: Any) -> str:
    # Most specific first: VirtualVmxnet3Vrdma is a VirtualVmxnet3.
    for cls, name in (
        (vim.vm.device.VirtualVmxnet3Vrdma, "vmxnet3vrdma"),
        (vim.vm.device.VirtualSriovEthernetCard, "sriov"),
        (vim.vm.device.VirtualVmxnet3, "vmxnet3"),
        (vim.vm.device.VirtualE1000e, "e1000e"),
        (vim.vm.device.VirtualE1000, "e1000"),
    ):
        if isinstance(dev, cls):
            return name
    return type(dev).__name__


def _extra_config(options: Iterable[Any]) -> dict[str, str]:
    # A later entry wins and "" means unset (vSphere removes a key set to ""; vcsim appends instead).
    out: dict[str, str] = {}
    for opt in options or []:
        if opt.key.startswith(EXTRA_CONFIG_PREFIXES):
            out[opt.key] = "" if opt.value is None else str(opt.value)
    return dict(sorted((k, v) for k, v in out.items() if v != ""))


def build_state(
    objects: Iterable[Any], licenses: dict[str, LicenseState], counter: _Counter | None = None
) -> VcenterState:
    """Turn retrieved ObjectContents into the audit's typed state (pure: no SOAP calls)."""
    hosts_raw: list[tuple[str, dict[str, Any]]] = []
    vms_raw: list[tuple[str, dict[str, Any]]] = []
    clusters: dict[str, str] = {}
    for oc in objects:
        kind = oc.obj._wsdlName
        props = _props(oc)
        if kind == "HostSystem":
            hosts_raw.append((oc.obj._moId, props))
        elif kind == "VirtualMachine":
            vms_raw.append((oc.obj._moId, props))
        elif kind == "ClusterComputeResource":
            clusters[oc.obj._moId] = props.get("name", oc.obj._moId)
    host_names = {moid: p.get("name", moid) for moid, p in hosts_raw}
    vm_names = {moid: p.get("name", moid) for moid, p in vms_raw}

    hosts: dict[str, HostVcState] = {}
    for moid, p in hosts_raw:
        config = p.get("config.graphicsConfig")
        parent = p.get("parent")
        hosts[host_names[moid]] = HostVcState(
            name=host_names[moid],
            moid=moid,
            cluster=clusters.get(parent._moId) if parent is not None else None,
            connection_state=str(p.get("runtime.connectionState") or "unknown"),
            in_maintenance=bool(p.get("runtime.inMaintenanceMode")),
            power_state=p.get("runtime.powerState"),
            default_graphics_type=getattr(config, "hostDefaultGraphicsType", None),
            assignment_policy=getattr(config, "sharedPassthruAssignmentPolicy", None),
            devices=_host_devices(p, vm_names),
            profiles_offered=tuple(x.lower() for x in p.get("config.sharedPassthruGpuTypes") or []),
            license=licenses.get(moid),
        )

    vms: dict[str, VmVcState] = {}
    for moid, p in vms_raw:
        host = p.get("runtime.host")
        host_name = host_names.get(host._moId, host._moId) if host is not None else None
        devices = p.get("config.hardware.device") or []
        vms[vm_names[moid]] = VmVcState(
            name=vm_names[moid],
            moid=moid,
            template=bool(p.get("config.template")),
            firmware=p.get("config.firmware"),
            devices=read_vm_devices(_RetrievedVm(p, host_name)),  # type: ignore[arg-type]
            nics=_nics(devices),
            extra_config=_extra_config(p.get("config.extraConfig") or []),
        )
    counter = counter or _Counter()
    return VcenterState(
        hosts=dict(sorted(hosts.items())),
        vms=dict(sorted(vms.items())),
        round_trips=counter.calls,
        pages=counter.pages,
    )


def read_licenses(content: Any, counter: _Counter | None = None) -> dict[str, LicenseState]:
    """Licences of every host in one QueryAssignedLicenses call: host moid -> licence (key fingerprinted)."""
    counter = counter or _Counter()
    counter.tick("licenseAssignmentManager")
    manager = content.licenseManager.licenseAssignmentManager
    if manager is None:
        return {}
    counter.tick("QueryAssignedLicenses")
    out = {}
    for assignment in manager.QueryAssignedLicenses() or []:
        lic = assignment.assignedLicense
        if not assignment.entityId or lic is None:
            continue
        key = lic.licenseKey or ""
        out[assignment.entityId] = LicenseState(
            name=lic.name or lic.editionKey or "",
            key_fingerprint=key_fingerprint(key),
            key_digest=key_digest(key),
            evaluation=key == EVALUATION_KEY or (lic.editionKey or "").startswith("eval"),
        )
    return out


def read_vcenter_state(
    content: Any, datacenter: str, page_size: int = DEFAULT_PAGE_SIZE, licenses: bool = True
) -> VcenterState:
    """Hosts and VMs of ``datacenter`` with exactly the GPU-relevant properties, in one paged retrieval.

    ``content`` is the ServiceContent of a verified connection (``si.RetrieveContent()``, already fetched)."""
    counter = _Counter()
    counter.tick("FindByInventoryPath")
    dc = content.searchIndex.FindByInventoryPath(inventoryPath=datacenter)
    if not isinstance(dc, vim.Datacenter):
        raise ConnectError(f"datacenter {datacenter!r} (fleet.datacenter) not found in vCenter")
    counter.tick("CreateContainerView")
    view = content.viewManager.CreateContainerView(
        container=dc, type=[kind for kind, _ in PROPERTY_SETS], recursive=True
    )
    try:
        spec = view_filter_spec(view, PROPERTY_SETS)
        objects = list(retrieve_paged(content.propertyCollector, spec, page_size, counter))
    finally:
        counter.tick("DestroyView")
        view.DestroyView()
    lic = read_licenses(content, counter) if licenses else {}
    return build_state(objects, lic, counter)
