"""Guest driver rules: a vGPU VM's guest driver pairs with its host's vGPU Manager (NVIDIA's branch rule, from
the catalog's branch table), and a driver block without a version has a default to fall back on."""

from __future__ import annotations

from gpufleet.catalog.guest_drivers import branches
from gpufleet.spec.guest_desired import guest_desired
from gpufleet.spec.rules.context import Context


def check_guest_drivers(ctx: Context) -> None:
    for index, vm in enumerate(ctx.fleet.vms):
        desired = guest_desired(ctx.fleet, vm)
        if desired is None or desired.spec.driver is None:
            continue
        field = "version" if desired.spec.driver.version or desired.spec.driver.source != "run" else "path"
        path = f"{desired.where}.driver.{field}"
        label = f"vms[{index}] ({vm.name})" if desired.where.startswith("templates") else vm.name
        problem = desired.pairing_problem
        if problem:
            ctx.add(path, f"{label}: {problem}")
        elif desired.driver_version is None:
            why = (
                f"the catalog knows no guest driver for host driver {desired.host_driver}"
                if desired.host_driver
                else "no host vGPU Manager to pair a default with (no vGPU, or no driver for the host)"
            )
            ctx.add(path, f"{label}: give the guest driver's version: {why}", [f"{b}.x" for b in branches()])
