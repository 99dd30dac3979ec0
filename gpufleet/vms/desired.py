"""The devices and GPU settings a VM of the fleet spec should have (``DesiredDevices``), from the spec alone.

The extraConfig values and profile spellings come from ``gpufleet.spec.derive`` (computed there, nowhere else);
``vm_preconditions.resolve_desired`` later puts them in the host's terms.
"""

from __future__ import annotations

from gpufleet.catalog import lookup_gpu
from gpufleet.errors import SpecError, SpecIssue
from gpufleet.spec.derive import vm_extra_config, vm_has_gpu_devices, vsphere_profile_name
from gpufleet.spec.models import Fleet, VmSpec
from gpufleet.vms.changes import DesiredDevices
from gpufleet.vms.preconditions import dynamic_slot_for_model
from gpufleet.vsphere.vm_devices import PvrdmaNic

ROCE_PROTOCOL = {"v1": "rocev1", "v2": "rocev2"}


def desired_devices(fleet: Fleet, vm: VmSpec, *, own_pvrdma: bool = True) -> DesiredDevices:
    """What ``vm`` should carry. ``own_pvrdma=False`` when another tool (pulumi-vsphere) creates the PVRDMA
    adapters and gpufleet only sets their RoCE protocol."""
    index = next((i for i, v in enumerate(fleet.vms) if v.name == vm.name), 0)
    issues: list[SpecIssue] = []
    dynamic = []
    for j, request in enumerate(vm.passthrough):
        if request.model is None:
            continue
        model = lookup_gpu(request.model)
        if model is None:
            issues.append(SpecIssue(f"vms[{index}].passthrough[{j}].model", f"unknown GPU model {request.model!r}"))
        else:
            dynamic.append(dynamic_slot_for_model(model))
    template = fleet.template(vm.template)
    pvrdma = []
    for j, nic in enumerate(vm.rdma):
        if nic.type != "pvrdma":
            continue
        network = nic.network or (template.network if template else None)
        if not network:
            issues.append(
                SpecIssue(
                    f"vms[{index}].rdma[{j}].network", "a PVRDMA adapter needs a port group (or the template's network)"
                )
            )
        pvrdma.append(PvrdmaNic(network=network, protocol=ROCE_PROTOCOL[nic.roce]))
    if issues:
        raise SpecError(issues)
    return DesiredDevices(
        vgpus=tuple(vsphere_profile_name(r.profile) for r in vm.vgpu),
        directpath=tuple(p.gpu for p in vm.passthrough if p.gpu)
        + tuple(r.nic for r in vm.rdma if r.type == "passthrough" and r.nic),
        dynamic=tuple(dynamic),
        pvrdma=tuple(pvrdma),
        own_pvrdma=own_pvrdma,
        extra_config=vm_extra_config(fleet, vm),
        lock_memory=vm_has_gpu_devices(vm),
    )


def allow_power_cycle(fleet: Fleet, vm: VmSpec) -> bool:
    """May gpufleet power this VM off to change its devices? The VM's own setting, else the rollout's."""
    return fleet.rollout.allow_power_cycle if vm.allow_power_cycle is None else vm.allow_power_cycle
