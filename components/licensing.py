"""``Licensing``: vSphere licence keys in vCenter (pulumi-vsphere ``License``) and the NVIDIA client configuration
token handed, as a Pulumi secret, to the guest licensing step (gpufleet ``GuestNvidiaLicensing`` per vGPU guest).

Host licence *assignment* is ``GpuHost``'s job (``HostLicenseAssignment``); this component adds the keys to
vCenter. Every key and the token stay Pulumi secrets end to end: inputs wrapped with ``Output.secret``, the
token a declared secret output of the guest resources, ``client_token`` a secret output of this component.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_vsphere as vsphere

from components.providers.base import vcenter_input
from components.providers.guest_licensing import GuestNvidiaLicensing
from gpufleet.spec.dump import stack_form
from gpufleet.spec.models import VcenterSpec, VmSpec

TYPE = "gpufleet:vsphere:Licensing"


@dataclass
class LicensingArgs:
    """Inputs of ``Licensing``."""

    vcenter: VcenterSpec
    """The vCenter connection (non-secret part) for the guests' SSH settings in the lab."""
    vcenter_license: pulumi.Input[str] | None = None
    """vCenter Server licence key (a Pulumi secret), added to vCenter's licences."""
    host_license: pulumi.Input[str] | None = None
    """ESXi licence key (a Pulumi secret), added to vCenter's licences (GpuHost assigns it to each host)."""
    nvidia_client_token: pulumi.Input[str] | None = None
    """NVIDIA License System client configuration token (a Pulumi secret) placed in every guest of ``guests``."""
    feature_type: int = 1
    """gridd.conf FeatureType: 1 vGPU (auto), 2 RTX vWS, 4 vCS / NVIDIA AI Enterprise."""
    guests: list[VmSpec] = field(default_factory=list)
    """The VMs whose guests get the token (vGPU VMs with ``nvidiaLicensing``); their ``ssh`` is how to reach them
    (taken from the lab when ``vcenter.lab`` is true)."""
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    """Resources the guests need first (their GpuVm components: a guest is licensed once it has its vGPU and,
    with a ``guest:`` block, its driver from ``GuestPreparation``)."""


class Licensing(pulumi.ComponentResource):
    """Licences: ``vcenter_license`` / ``host_license`` (pulumi-vsphere License), ``guests`` (name -> resource)."""

    vcenter_license: vsphere.License | None
    host_license: vsphere.License | None
    guests: dict[str, GuestNvidiaLicensing]
    client_token: pulumi.Output[str] | None

    def __init__(self, name: str, args: LicensingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.vcenter_license = self.host_license = None
        if args.vcenter_license is not None:
            self.vcenter_license = vsphere.License(
                f"{name}-vcenter",
                license_key=pulumi.Output.secret(args.vcenter_license),
                labels={"gpufleet": "vcenter"},
                opts=child,
            )
        if args.host_license is not None:
            self.host_license = vsphere.License(
                f"{name}-hosts",
                license_key=pulumi.Output.secret(args.host_license),
                labels={"gpufleet": "esxi"},
                opts=child,
            )
        self.client_token = None
        self.guests = {}
        if args.guests and args.nvidia_client_token is None:
            raise pulumi.RunError(
                "licensing.nvidiaClientToken is not set but these VMs want NVIDIA licensing: "
                + ", ".join(vm.name for vm in args.guests)
                + " (pulumi config set --secret gpufleet:nvidiaClientToken ...)"
            )
        if args.nvidia_client_token is not None:
            self.client_token = pulumi.Output.secret(args.nvidia_client_token)
            for vm in args.guests:
                self.guests[vm.name] = GuestNvidiaLicensing(
                    f"{name}-{vm.name}",
                    {
                        "vcenter": vcenter_input(args.vcenter),
                        "vmName": vm.name,
                        "ssh": stack_form(vm.ssh) if vm.ssh else None,
                        "featureType": args.feature_type,
                        "token": self.client_token,
                    },
                    pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
                )
        self.register_outputs(
            {
                "vcenterLicense": self.vcenter_license.edition_key if self.vcenter_license else None,
                "hostLicense": self.host_license.edition_key if self.host_license else None,
                "licensedGuests": {n: g.licensed for n, g in self.guests.items()},
                "nvidiaClientToken": self.client_token,
            }
        )
