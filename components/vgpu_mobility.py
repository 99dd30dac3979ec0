"""``VgpuMobility``: lets vCenter vMotion and suspend/resume-migrate VMs with vGPUs, so training runs at night and
interactive work by day on the same GPUs. Child: gpufleet's ``VcenterAdvancedSetting`` for
``vgpu.hotmigrate.enabled``, set and read back through the vSphere API (pulumi-vsphere has no such resource).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.providers.base import vcenter_input
from components.providers.vcenter_setting import VcenterAdvancedSetting
from gpufleet.spec.models import VcenterSpec
from gpufleet.vsphere.settings import VGPU_HOTMIGRATE

TYPE = "gpufleet:vsphere:VgpuMobility"


@dataclass
class VgpuMobilityArgs:
    """Inputs of ``VgpuMobility``."""

    vcenter: VcenterSpec
    """The vCenter connection (non-secret part; the password comes from the stack config or the environment)."""
    enabled: bool = True
    """Value of vCenter's ``vgpu.hotmigrate.enabled`` (the fleet's ``rollout.vgpuVmotion``)."""


class VgpuMobility(pulumi.ComponentResource):
    """vGPU vMotion on or off for the whole vCenter: ``setting`` is the advanced setting resource."""

    setting: VcenterAdvancedSetting

    def __init__(self, name: str, args: VgpuMobilityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        self.setting = VcenterAdvancedSetting(
            f"{name}-hotmigrate",
            {"vcenter": vcenter_input(args.vcenter), "key": VGPU_HOTMIGRATE, "value": args.enabled},
            pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"key": VGPU_HOTMIGRATE, "value": self.setting.actual})
