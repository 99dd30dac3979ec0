"""``GpuHost``: an ESXi host prepared for NVIDIA GPUs, as resources.

Children, each a gpufleet dynamic resource running one ``host_setup`` step with its check/apply/assert
(maintenance mode and the reboot handled inside its apply): ``HostDriver`` (NVIDIA vGPU host driver, when the
host has vGPU or MIG GPUs), ``HostGraphics`` (default graphics type, assignment policy), ``HostMigMode`` (MIG on
exactly the GPUs in mode ``mig``), ``HostAts`` (ATS for GPUDirect RDMA, when a NIC asks for it), applied in that
order; and ``HostLicenseAssignment`` when a licence key is given (the key stays a Pulumi secret).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from components.providers.base import vcenter_input
from components.providers.host_license import HostLicenseAssignment
from components.providers.host_step import HostAts, HostDriver, HostGraphics, HostMigMode
from gpufleet.spec.derive import host_needs_vgpu_driver
from gpufleet.spec.models import Fleet, HostSpec, VcenterSpec
from host_setup.model import Desired

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


class GpuHost(pulumi.ComponentResource):
    """A GPU host: ``driver``, ``graphics``, ``mig``, ``ats`` (None where not needed) and ``license``."""

    driver: HostDriver | None
    graphics: HostGraphics
    mig: HostMigMode
    ats: HostAts | None
    license: HostLicenseAssignment | None

    def __init__(self, name: str, args: GpuHostArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        spec, fleet = args.spec, args.fleet
        driver = fleet.driver_for(spec)
        if host_needs_vgpu_driver(spec) and driver is None:
            raise pulumi.RunError(f"host {spec.name}: its vGPU/MIG GPUs need the NVIDIA driver: set `driver`")
        props: dict[str, Any] = {
            "vcenter": vcenter_input(args.vcenter),
            "cluster": spec.cluster or fleet.cluster,
            "host": spec.model_copy(update={"driver": driver}).model_dump(
                mode="json", by_alias=True, exclude_none=True
            ),
            "rollout": fleet.rollout.model_dump(mode="json", by_alias=True, exclude_none=True),
            "mayPowerOff": sorted(Desired.of(fleet, spec).may_power_off),
        }
        previous: list[pulumi.Resource] = []

        def opts_after() -> pulumi.ResourceOptions:
            # Steps run in order (driver, graphics, MIG, ATS), like `gpufleet hosts prepare`.
            return pulumi.ResourceOptions(parent=self, depends_on=list(previous))

        self.driver = None
        if host_needs_vgpu_driver(spec):
            self.driver = HostDriver(f"{name}-driver", props, opts_after())
            previous.append(self.driver)
        self.graphics = HostGraphics(f"{name}-graphics", props, opts_after())
        previous.append(self.graphics)
        self.mig = HostMigMode(f"{name}-mig", props, opts_after())
        previous.append(self.mig)
        self.ats = None
        if any(nic.ats for nic in spec.nics):
            self.ats = HostAts(f"{name}-ats", props, opts_after())
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
                "driver": self.driver.detail if self.driver else None,
                "graphics": self.graphics.detail,
                "mig": self.mig.detail,
                "ats": self.ats.detail if self.ats else None,
                "license": self.license.assignedFingerprint if self.license else None,
            }
        )
