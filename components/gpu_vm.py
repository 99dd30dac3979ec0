"""``GpuVm``: a VM with its GPUs and RDMA NICs.

Children: a ``pulumi_vsphere.VirtualMachine`` cloned from a template (CPUs, memory with its reservation locked,
its vmxnet3 / PVRDMA (``vrdma``) / SR-IOV NICs), and gpufleet's ``VmGpuDevices``, which owns every GPU device of
the VM — time-sliced or MIG-backed vGPUs, DirectPath and Dynamic DirectPath GPUs, passthrough ConnectX NICs —, its
GPU extraConfig keys, the RoCE protocol of the PVRDMA NICs pulumi-vsphere cannot set, and the VM's power cycle
when a change needs it; for a VM with a ``guest:`` block (its own or its template's), ``GuestPreparation``
after the devices: the guest's NVIDIA driver, Container Toolkit and Docker runtime (``guests prepare``'s run).
pulumi-vsphere's ``pci_device_ids`` never manages a GpuVm (it is ignored on the
VirtualMachine), so the two never fight over one device.

With ``existing=True`` (brownfield, and the embedded lab, whose VMs exist already) no VirtualMachine is created:
``VmGpuDevices`` finds the VM by name and also owns its PVRDMA adapters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_vsphere as vsphere

from components.gpu_vm_template import NicArgs
from components.inventory import VsphereRefs
from components.providers.base import vcenter_input
from components.providers.guest_prepare import GuestPreparation, guest_inputs
from components.providers.vm_gpu_devices import VmGpuDevices
from gpufleet.spec.dump import stack_form
from gpufleet.spec.models import Fleet, HostSpec, TemplateSpec, VcenterSpec, VmSpec
from gpufleet.vms.desired import allow_power_cycle

TYPE = "gpufleet:vsphere:GpuVm"


@dataclass
class GpuVmArgs:
    """Inputs of ``GpuVm``."""

    spec: VmSpec
    """The VM in the fleet spec (``vms[]``): template, host, vGPUs, passthrough GPUs, RDMA NICs, CPU/memory
    overrides, ``allowPowerCycle``."""
    fleet: Fleet
    """The whole fleet: the VM's template and host specs, the default driver, ``rollout.allowPowerCycle``."""
    vcenter: VcenterSpec
    """The vCenter connection (non-secret part; the password comes from the stack config or the environment)."""
    refs: VsphereRefs | None = None
    """vSphere ids for the clone; required unless ``existing``."""
    template_uuid: pulumi.Input[str] | None = None
    """UUID of the VM or template to clone (e.g. ``GpuVmTemplate.uuid``); required unless ``existing``."""
    existing: bool = False
    """The VM exists already (brownfield): gpufleet manages only its GPU/RDMA devices and GPU settings."""
    network: str | None = None
    """Port group of the first (vmxnet3) NIC; default: the template's ``network``."""
    sriov_nics: list[NicArgs] = field(default_factory=list)
    """SR-IOV NICs (adapter_type ``sriov`` with ``physical_function``); need a pinned ``host``."""


def _host_with_driver(fleet: Fleet, host: HostSpec | None) -> HostSpec | None:
    if host is None:
        return None
    return host.model_copy(update={"driver": fleet.driver_for(host)})


class GpuVm(pulumi.ComponentResource):
    """A GPU VM: ``vm`` (pulumi-vsphere VirtualMachine, absent when ``existing``), ``devices`` and ``guest``
    (``GuestPreparation``, None without a ``guest:`` block)."""

    vm: vsphere.VirtualMachine | None
    devices: VmGpuDevices
    guest: GuestPreparation | None

    def __init__(self, name: str, args: GpuVmArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        spec, fleet = args.spec, args.fleet
        template = fleet.template(spec.template)
        if template is None:
            raise pulumi.RunError(f"vm {spec.name}: template {spec.template!r} is not in the fleet's templates")
        if spec.host and fleet.host(spec.host) is None:
            raise pulumi.RunError(f"vm {spec.name}: host {spec.host!r} is not in the fleet's hosts")
        if args.sriov_nics and not spec.host:
            raise pulumi.RunError(f"vm {spec.name}: SR-IOV NICs need a pinned host")
        self.vm = None
        vm_uuid: pulumi.Input[str] | None = None
        if not args.existing:
            if args.refs is None or args.template_uuid is None:
                raise pulumi.RunError(
                    f"vm {spec.name}: refs and template_uuid are needed to clone it (or existing=True)"
                )
            self.vm = self._clone(name, args, template.network, template.disk_gb, template)
            vm_uuid = self.vm.uuid
        devices_opts = pulumi.ResourceOptions(parent=self, depends_on=[self.vm] if self.vm else [])
        self.devices = VmGpuDevices(
            f"{name}-gpu",
            {
                "vcenter": vcenter_input(args.vcenter),
                "datacenter": fleet.datacenter,
                "cluster": fleet.cluster,
                "vmName": spec.name,
                "vmUuid": vm_uuid,
                "vm": stack_form(spec),
                "template": stack_form(template),
                "host": stack_form(h)
                if (h := _host_with_driver(fleet, fleet.host(spec.host) if spec.host else None))
                else None,
                "allowPowerCycle": allow_power_cycle(fleet, spec),
                # A VM pulumi-vsphere just cloned is powered on: taking it down once to add its GPUs is safe.
                "allowPowerCycleOnCreate": not args.existing,
                "ownPvrdma": args.existing,
            },
            devices_opts,
        )
        self.guest = self._guest(name, args)
        self.register_outputs(
            {
                "uuid": self.vm.uuid if self.vm else self.devices.id,
                "gpuDevices": self.devices.observed,
                "lastChanges": self.devices.lastChanges,
                "powerCycled": self.devices.powerCycled,
                "guest": self.guest.state if self.guest else None,
            }
        )

    def _guest(self, name: str, args: GpuVmArgs) -> GuestPreparation | None:
        props = guest_inputs(args.fleet, args.spec, args.vcenter)
        if props is None:
            return None
        # After the VM has its GPUs (nvidia-smi must see them); licensing waits for the whole GpuVm.
        return GuestPreparation(f"{name}-guest", props, pulumi.ResourceOptions(parent=self, depends_on=[self.devices]))

    def _clone(
        self, name: str, args: GpuVmArgs, network: str | None, disk_gb: int, template: TemplateSpec
    ) -> vsphere.VirtualMachine:
        spec, refs = args.spec, args.refs
        assert refs is not None
        nics = []
        first = args.network or network
        if first:
            nics.append(vsphere.VirtualMachineNetworkInterfaceArgs(network_id=refs.network_id(first)))
        for rdma in spec.rdma:
            if rdma.type == "pvrdma":
                nics.append(
                    vsphere.VirtualMachineNetworkInterfaceArgs(
                        network_id=refs.network_id(rdma.network or first or ""), adapter_type="vrdma"
                    )
                )
        for nic in args.sriov_nics:
            nics.append(
                vsphere.VirtualMachineNetworkInterfaceArgs(
                    network_id=refs.network_id(nic.network),
                    adapter_type="sriov",
                    physical_function=nic.physical_function,
                )
            )
        memory = spec.memory_mb or template.memory_mb
        return vsphere.VirtualMachine(
            f"{name}-vm",
            vsphere.VirtualMachineArgs(
                name=spec.name,
                resource_pool_id=refs.resource_pool_id,
                datastore_id=refs.datastore_id,
                host_system_id=refs.host_id(spec.host) if spec.host else None,
                clone=vsphere.VirtualMachineCloneArgs(template_uuid=args.template_uuid),
                guest_id=template.guest_id,
                firmware=template.firmware,
                num_cpus=spec.cpus or template.cpus,
                memory=memory,
                memory_reservation=memory,
                memory_reservation_locked_to_max=True,
                hardware_version=template.hardware_version,
                network_interfaces=nics,
                disks=[vsphere.VirtualMachineDiskArgs(label="disk0", size=disk_gb)],
                wait_for_guest_net_timeout=0,
                wait_for_guest_ip_timeout=0,
            ),
            # gpufleet owns GPU devices: pulumi-vsphere's pci_device_ids never manages this VM.
            pulumi.ResourceOptions(parent=self, ignore_changes=["pciDeviceIds"]),
        )
