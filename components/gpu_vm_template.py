"""``GpuVmTemplate``: a GPU-ready VM template, built by pulumi-vsphere and marked as a template by gpufleet.

Children: a ``pulumi_vsphere.VirtualMachine`` (EFI, guest OS, CPUs, memory with its reservation locked, hardware
version, the extraConfig gpufleet derives — 64-bit MMIO sized from the GPUs of the VMs cloned from it, P2P /
RelaxACS for GPUDirect RDMA, NUMA affinity — and its NICs: vmxnet3, PVRDMA (pulumi-vsphere adapter type
``vrdma``, a ``VirtualVmxnet3Vrdma``), SR-IOV) and a gpufleet ``VmTemplateMark`` that turns it into a template.

With ``existing=True`` (brownfield, and the embedded lab, whose template exists already) nothing is built: a
gpufleet ``TemplateGpuSettings`` converges the template's GPU settings (as ``gpufleet vms apply`` does) and gives
them back on destroy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pulumi
import pulumi_vsphere as vsphere

from components.inventory import VsphereRefs
from components.providers.base import vcenter_input
from components.providers.template_mark import VmTemplateMark
from components.providers.template_settings import TemplateGpuSettings
from gpufleet.spec.derive import MIN_HW_VERSION_PVRDMA, template_extra_config
from gpufleet.spec.dump import stack_form
from gpufleet.spec.models import Fleet, TemplateSpec, VcenterSpec

TYPE = "gpufleet:vsphere:GpuVmTemplate"
ADAPTER_TYPES = ("vmxnet3", "vrdma", "sriov", "e1000e")


@dataclass
class NicArgs:
    """One NIC of a template or VM."""

    network: str
    """Port group name (looked up in the fleet's datacenter)."""
    adapter_type: Literal["vmxnet3", "vrdma", "sriov", "e1000e"] = "vmxnet3"
    """pulumi-vsphere adapter type: ``vrdma`` is a PVRDMA adapter (``VirtualVmxnet3Vrdma``; hardware version >= 13,
    64-bit Linux guest; its RoCE protocol is set by gpufleet's ``VmGpuDevices``), ``sriov`` an SR-IOV virtual
    function (needs ``physical_function`` and a pinned host)."""
    physical_function: str | None = None
    """SR-IOV only: the host NIC's PCI address (physical function), e.g. ``0000:31:00.0``."""


@dataclass
class GpuVmTemplateArgs:
    """Inputs of ``GpuVmTemplate``."""

    spec: TemplateSpec
    """The template in the fleet spec (``templates[]``): guest OS, firmware, secure boot, CPUs, cores per socket,
    memory (reservation locked), hardware version, NUMA node, P2P / RelaxACS, network, disk size."""
    fleet: Fleet
    """The whole fleet: the template's 64-bit MMIO is the largest need among the VMs cloned from it
    (``gpufleet.spec.derive.template_extra_config``), unless ``spec.mmioSizeGb`` overrides it."""
    refs: VsphereRefs | None
    """vSphere ids (datacenter, cluster pool, datastore, networks, hosts) looked up by name; None when ``existing``."""
    vcenter: VcenterSpec
    """The vCenter connection (non-secret part) for gpufleet's template mark."""
    existing: bool = False
    """The template exists in vCenter already: only its GPU settings are converged (``TemplateGpuSettings``)."""
    host: str | None = None
    """Build the template on this host (required with SR-IOV NICs); None: vSphere places it in the cluster."""
    nics: list[NicArgs] = field(default_factory=list)
    """The template's NICs; empty: one vmxnet3 on ``spec.network`` (none if that is unset too)."""
    mark_as_template: bool = True
    """Mark the VM as a vSphere template once built (powered off first). False: leave it a VM."""


def template_nics(args: GpuVmTemplateArgs) -> list[NicArgs]:
    """The NICs to build, checked: a bad combination is a ``pulumi.RunError`` naming the template."""
    nics = list(args.nics) or ([NicArgs(args.spec.network)] if args.spec.network else [])
    where = f"template {args.spec.name}"
    for i, nic in enumerate(nics):
        if nic.adapter_type not in ADAPTER_TYPES:
            raise pulumi.RunError(f"{where}: nics[{i}].adapter_type {nic.adapter_type!r} is not one of {ADAPTER_TYPES}")
        if nic.adapter_type == "vrdma" and args.spec.hardware_version < MIN_HW_VERSION_PVRDMA:
            raise pulumi.RunError(
                f"{where}: a PVRDMA NIC needs hardware version >= {MIN_HW_VERSION_PVRDMA} "
                f"(hardwareVersion is {args.spec.hardware_version})"
            )
        if nic.adapter_type == "sriov" and (not nic.physical_function or not args.host):
            raise pulumi.RunError(f"{where}: an SR-IOV NIC needs physical_function and a pinned host")
        if nic.adapter_type != "sriov" and nic.physical_function:
            raise pulumi.RunError(f"{where}: nics[{i}].physical_function applies to adapter_type sriov only")
    return nics


class GpuVmTemplate(pulumi.ComponentResource):
    """A GPU VM template: ``vm`` (pulumi-vsphere VirtualMachine) and ``mark`` (gpufleet VmTemplateMark)."""

    vm: vsphere.VirtualMachine | None
    mark: VmTemplateMark | None
    settings: TemplateGpuSettings | None
    uuid: pulumi.Output[str] | None
    extra_config: dict[str, str]

    def __init__(self, name: str, args: GpuVmTemplateArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        spec = args.spec
        if spec.firmware != "efi" and template_extra_config(args.fleet, spec).get("pciPassthru.64bitMMIOSizeGB"):
            raise pulumi.RunError(f"template {spec.name}: 64-bit MMIO for its GPUs needs firmware efi")
        self.extra_config = template_extra_config(args.fleet, spec)
        child = pulumi.ResourceOptions(parent=self)
        self.vm = self.mark = self.settings = self.uuid = None
        if args.existing:
            self.settings = TemplateGpuSettings(
                f"{name}-settings",
                {
                    "vcenter": vcenter_input(args.vcenter),
                    "template": spec.name,
                    "fleet": stack_form(args.fleet),
                },
                child,
            )
            self.register_outputs({"extraConfig": self.extra_config, "changes": self.settings.changes})
            return
        if args.refs is None:
            raise pulumi.RunError(f"template {spec.name}: refs are needed to build it (or existing=True)")
        refs = args.refs
        nics = [
            vsphere.VirtualMachineNetworkInterfaceArgs(
                network_id=refs.network_id(nic.network),
                adapter_type=nic.adapter_type,
                physical_function=nic.physical_function,
            )
            for nic in template_nics(args)
        ]
        self.vm = vsphere.VirtualMachine(
            f"{name}-vm",
            vsphere.VirtualMachineArgs(
                name=spec.name,
                resource_pool_id=refs.resource_pool_id,
                datastore_id=refs.datastore_id,
                host_system_id=refs.host_id(args.host) if args.host else None,
                guest_id=spec.guest_id,
                firmware=spec.firmware,
                efi_secure_boot_enabled=spec.secure_boot if spec.firmware == "efi" else None,
                num_cpus=spec.cpus,
                num_cores_per_socket=spec.cores_per_socket,
                memory=spec.memory_mb,
                memory_reservation=spec.memory_mb if spec.memory_reservation_locked else None,
                memory_reservation_locked_to_max=spec.memory_reservation_locked,
                hardware_version=spec.hardware_version,
                extra_config=self.extra_config,
                network_interfaces=nics,
                disks=[vsphere.VirtualMachineDiskArgs(label="disk0", size=spec.disk_gb)],
                wait_for_guest_net_timeout=0,
                wait_for_guest_ip_timeout=0,
            ),
            # gpufleet owns GPU devices: pulumi-vsphere's pci_device_ids never manages this VM.
            pulumi.ResourceOptions(parent=self, ignore_changes=["pciDeviceIds"]),
        )
        self.uuid = self.vm.uuid
        self.mark = None
        if args.mark_as_template:
            self.mark = VmTemplateMark(
                f"{name}-mark",
                {
                    "vcenter": vcenter_input(args.vcenter),
                    "datacenter": args.fleet.datacenter,
                    "vmName": spec.name,
                    "vmUuid": self.vm.uuid,
                },
                pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[self.vm])),
            )
        self.register_outputs(
            {
                "uuid": self.vm.uuid,
                "extraConfig": self.extra_config,
                "isTemplate": self.mark.isTemplate if self.mark else False,
            }
        )
