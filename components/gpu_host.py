"""``GpuHost``: an ESXi host prepared for NVIDIA GPUs, as resources.

Children: ``HostPreparation``, the whole per-host run of ``gpufleet hosts prepare`` (NVIDIA vGPU host driver when
the host has vGPU or MIG GPUs, default graphics type and assignment policy, MIG on exactly the GPUs in mode ``mig``,
ATS for GPUDirect RDMA when a NIC asks for it) in one maintenance window with one reboot for everything pending;
and ``HostLicenseAssignment`` when a licence key is given (the key stays a Pulumi secret).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from components.providers.base import vcenter_input
from components.providers.bundle_staging import BundleStaging
from components.providers.host_license import HostLicenseAssignment
from components.providers.host_prepare import HostPreparation
from gpufleet.hosts.model import Desired
from gpufleet.spec.derive import host_needs_vgpu_driver
from gpufleet.spec.dump import stack_form
from gpufleet.spec.models import Fleet, HostSpec, VcenterSpec

TYPE = "gpufleet:vsphere:GpuHost"


@dataclass
class GpuHostArgs:
    """Inputs of ``GpuHost``."""

    spec: HostSpec
    """The host in the fleet spec (``hosts[]``): name, GPUs (model, mode), NICs (ATS), graphics type, assignment
    policy, SSH access (taken from the lab when ``vcenter.lab`` is true), driver override."""
    fleet: Fleet
    """The whole fleet: the default driver, the cluster, the rollout policy (timeouts, vGPU vMotion)."""
    vcenter: VcenterSpec
    """The vCenter connection (non-secret part; the password comes from the stack config or the environment)."""
    license_key: pulumi.Input[str] | None = None
    """vSphere licence key to assign to the host (a Pulumi secret); None: the licence is left as it is."""


def host_inputs(spec: HostSpec, fleet: Fleet, vcenter: VcenterSpec) -> dict[str, Any]:
    """The inputs a host's resources share: vCenter, cluster, the host spec with its driver resolved, rollout."""
    return {
        "vcenter": vcenter_input(vcenter),
        "cluster": spec.cluster or fleet.cluster,
        "host": stack_form(spec.model_copy(update={"driver": fleet.driver_for(spec)})),
        "rollout": stack_form(fleet.rollout),
    }


def bundle_staging(
    spec: HostSpec, fleet: Fleet, vcenter: VcenterSpec, opts: pulumi.ResourceOptions | None = None
) -> BundleStaging | None:
    """The host's ``BundleStaging`` (None when it needs no driver, or its bundle has no local copy to stage: then
    the bundle must be on the datastore already, which the staging would only check)."""
    driver = fleet.driver_for(spec)
    if not host_needs_vgpu_driver(spec) or driver is None:
        return None
    return BundleStaging(f"{spec.name}-stage", host_inputs(spec, fleet, vcenter), opts)


class GpuHost(pulumi.ComponentResource):
    """A GPU host: ``prepare`` (HostPreparation) and ``license`` (None when no key is given)."""

    prepare: HostPreparation
    license: HostLicenseAssignment | None

    def __init__(self, name: str, args: GpuHostArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        spec, fleet = args.spec, args.fleet
        driver = fleet.driver_for(spec)
        if host_needs_vgpu_driver(spec) and driver is None:
            raise pulumi.RunError(f"host {spec.name}: its vGPU/MIG GPUs need the NVIDIA driver: set `driver`")
        props: dict[str, Any] = host_inputs(spec, fleet, args.vcenter) | {
            "mayPowerOff": sorted(Desired.of(fleet, spec).may_power_off)
        }
        self.prepare = HostPreparation(f"{name}-prepare", props, pulumi.ResourceOptions(parent=self))
        self.license = None
        if args.license_key is not None:
            self.license = HostLicenseAssignment(
                f"{name}-license",
                {
                    "vcenter": props["vcenter"],
                    "datacenter": fleet.datacenter,
                    "host": spec.name,
                    "licenseKey": pulumi.Output.secret(args.license_key),
                },
                pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs(
            {
                "steps": self.prepare.steps,
                "reboots": self.prepare.reboots,
                "license": self.license.assignedFingerprint if self.license else None,
            }
        )

    def step_detail(self, step: str) -> pulumi.Output[Any]:
        """What the host shows for one step (driver, graphics, mig, ats), for the stack's exports."""
        return pulumi.Output.from_input(self.prepare.steps).apply(
            lambda steps: ((steps or {}).get(step) or {}).get("detail")
        )
