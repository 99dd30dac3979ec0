"""The MIG GPU instances vSphere has created on this host: one per MIG-backed vGPU of each running VM.

On ESXi the admin only enables MIG mode; vSphere creates a GPU instance when a VM with a MIG-backed vGPU powers on
and destroys it at power-off. vcsim does not record which physical GPU a vGPU runs on, so each vGPU goes to the
first GPU in MIG mode (PCI order) that still takes it, and the instances of one GPU are placed with
gpufleet.placement.mig (the catalog's MIG geometry: the same start slots the driver picks, e.g. 3g.40gb at 4:4
beside 4g.40gb at 0:4 as in mig_a100_sxm4_80gb_lgip_lgi_lcip.txt). GPU-instance ids count up from 1 in creation
order (VMs by name), as the real captures of a freshly enabled GPU show.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpufleet.catalog import CatalogError, lookup_gpu
from gpufleet.placement import mig
from lab.esxi.context import Ctx


@dataclass(frozen=True)
class GpuInstance:
    gpu_index: int
    name: str  # "MIG 3g.40gb"
    profile_id: int
    gi_id: int
    start: int
    size: int
    owner: str  # VM name


def _running_vgpus(ctx: Ctx) -> list[tuple[str, str]]:
    """(vm, vGPU profile) of every poweredOn VM on this host, VMs by name; [] when vCenter cannot be asked."""
    from lab.esxi.vcface import VcenterClient, VcenterUnavailable

    try:
        client = VcenterClient(ctx.paths)
        try:
            vms = client.vms()
        finally:
            client.close()
    except VcenterUnavailable:
        return []
    on = sorted(
        (v for v in vms if v.get("host") == ctx.host and v.get("powerState") == "poweredOn" and not v.get("template")),
        key=lambda v: v["name"],
    )
    return [(v["name"], p) for v in on for p in v.get("vgpus") or []]


def gpu_instances(ctx: Ctx, gpus: list[dict[str, Any]]) -> list[GpuInstance]:
    """The GPU instances of the host's GPUs in MIG mode (``gpus``: the host state's GPU records)."""
    mig_gpus = sorted((g for g in gpus if g.get("mig_capable") and g.get("mig_current")), key=lambda g: g["pci_id"])
    if not mig_gpus:
        return []
    taken: dict[str, list[tuple[str, str]]] = {g["pci_id"]: [] for g in mig_gpus}
    for vm, profile in _running_vgpus(ctx):
        for g in mig_gpus:
            model = lookup_gpu(g["model"])
            if model is None:
                continue
            try:
                fits = mig.fit(model, [p for _, p in taken[g["pci_id"]]] + [profile]).fits
            except CatalogError:  # time-sliced, or a profile of another board: no GPU instance here
                continue
            if fits:
                taken[g["pci_id"]].append((vm, profile))
                break
    out: list[GpuInstance] = []
    for g in mig_gpus:
        uses = taken[g["pci_id"]]
        model = lookup_gpu(g["model"])
        if not uses or model is None:
            continue
        found = mig.fit(model, [p for _, p in uses])
        for gi_id, ((vm, _), place) in enumerate(zip(uses, found.placements, strict=True), start=1):
            profile = model.mig_profile(place.instance)
            assert profile is not None
            out.append(
                GpuInstance(g["index"], f"MIG {place.instance}", profile.profile_id, gi_id, place.start, place.size, vm)
            )
    return out


def render_lgi(instances: list[GpuInstance]) -> str:
    """The R550 ``nvidia-smi mig -lgi`` table (mig_a100_sxm4_80gb_lgip_lgi_lcip.txt), GPUs in order, then GI ids."""
    rule = "+-------------------------------------------------------+"
    out = [
        rule,
        "| GPU instances:                                        |",
        "| GPU   Name             Profile  Instance   Placement  |",
        "|                          ID       ID       Start:Size |",
        "|=======================================================|",
    ]
    for i in sorted(instances, key=lambda i: (i.gpu_index, i.gi_id)):
        out.append(f"|{i.gpu_index:>4}  {i.name:<19}{i.profile_id:>3}{i.gi_id:>9}{f'{i.start}:{i.size}':>13}     |")
        out.append(rule)
    return "\n".join(out) + "\n"
