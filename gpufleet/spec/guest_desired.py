"""What a VM's guest should run, derived from the fleet spec once (the rule, ``guests prepare``, the Pulumi
resource, ``verify`` and ``audit`` all read it from here)."""

from __future__ import annotations

from dataclasses import dataclass

from gpufleet.catalog.guest_drivers import default_guest_driver, pairing_problem
from gpufleet.spec.guest_models import GuestSpec
from gpufleet.spec.models import Fleet, VmSpec


@dataclass(frozen=True)
class GuestDesired:
    vm: str
    spec: GuestSpec
    where: str  # "vms[2].guest" or "templates[0].guest" (for messages)
    host_driver: str | None  # the vGPU Manager of the VM's host (None: no vGPU, or no host driver in the spec)
    driver_version: str | None  # the guest driver to install (None: no driver block, or no default known)
    vgpu: bool

    @property
    def pairing_problem(self) -> str | None:
        if not self.vgpu or self.host_driver is None or self.driver_version is None:
            return None
        return pairing_problem(self.host_driver, self.driver_version)


def guest_desired(fleet: Fleet, vm: VmSpec) -> GuestDesired | None:
    spec = fleet.guest_for(vm)
    if spec is None:
        return None
    if vm.guest is not None:
        # By name: a caller may hold a changed copy of the fleet's VM.
        index = next((i for i, v in enumerate(fleet.vms) if v.name == vm.name), None)
        where = f"vms[{index}].guest" if index is not None else f"vms[{vm.name}].guest"
    else:
        template = fleet.template(vm.template)
        where = f"templates[{fleet.templates.index(template)}].guest" if template else "guest"
    host = fleet.host(vm.host) if vm.host else None
    host_driver = None
    if host is not None and vm.vgpu:
        driver = fleet.driver_for(host)
        host_driver = driver.version if driver else None
    version = None
    if spec.driver is not None:
        version = spec.driver.named_version or (default_guest_driver(host_driver) if host_driver else None)
    return GuestDesired(vm.name, spec, where, host_driver, version, bool(vm.vgpu))
