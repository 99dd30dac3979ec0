"""Rules on hosts and their GPUs/NICs: known boards, modes the board supports, NVLink peers, graphics type."""

from __future__ import annotations

from gpufleet.catalog import model_names
from gpufleet.spec.derive import host_needs_vgpu_driver
from gpufleet.spec.graphics import SHARED_DIRECT
from gpufleet.spec.models import GpuMode
from gpufleet.spec.rules.context import Context, few

_MODES = tuple(m.value for m in GpuMode)


def check_names(ctx: Context) -> None:
    """Host, template and VM names are unique."""
    for kind, items in (("hosts", ctx.fleet.hosts), ("templates", ctx.fleet.templates), ("vms", ctx.fleet.vms)):
        seen: dict[str, int] = {}
        for i, item in enumerate(items):
            if item.name in seen:
                ctx.add(f"{kind}[{i}].name", f"duplicate name {item.name!r} (also {kind}[{seen[item.name]}])")
            else:
                seen[item.name] = i


def check_hosts(ctx: Context) -> None:
    for hi, host in enumerate(ctx.fleet.hosts):
        base = f"hosts[{hi}]"
        pcis: set[str] = set()
        for gi, gpu in enumerate(host.gpus):
            path = f"{base}.gpus[{gi}]"
            if gpu.pci in pcis:
                ctx.add(f"{path}.pci", f"GPU {gpu.pci} is listed twice on {host.name}")
                continue
            pcis.add(gpu.pci)
            model = ctx.gpus[(host.name, gpu.pci)].model
            if model is None:
                ctx.add(f"{path}.model", f"unknown GPU model {gpu.model!r}", model_names())
                continue
            if gpu.mode == GpuMode.MIG and not model.mig_capable:
                ctx.add(f"{path}.mode", f"{model.name} has no MIG mode", [m for m in _MODES if m != "mig"])
            if gpu.mixed_size:
                if gpu.mode != GpuMode.VGPU:
                    ctx.add(f"{path}.mixedSize", "mixed-size mode applies to time-sliced vGPU (mode vgpu) only")
                elif not model.supports_mixed_size:
                    ctx.add(f"{path}.mixedSize", f"{model.name} has no mixed-size vGPU mode (set mixedSize: false)")
            _check_nvlink(ctx, hi, gi)
        nic_pcis: set[str] = set()
        for ni, nic in enumerate(host.nics):
            if nic.pci in pcis:
                ctx.add(f"{base}.nics[{ni}].pci", f"{nic.pci} is already a GPU of {host.name}")
            elif nic.pci in nic_pcis:
                ctx.add(f"{base}.nics[{ni}].pci", f"NIC {nic.pci} is listed twice on {host.name}")
            nic_pcis.add(nic.pci)
        if host_needs_vgpu_driver(host):
            if host.graphics_type != SHARED_DIRECT:
                ctx.add(
                    f"{base}.graphicsType",
                    "hosts with vGPU or MIG GPUs need the Shared Direct default graphics type",
                    [SHARED_DIRECT],
                )
            if ctx.fleet.driver_for(host) is None:
                ctx.add(
                    f"{base}.driver",
                    "GPUs in vgpu/mig mode need the NVIDIA vGPU host driver: set `driver` here or at the fleet level",
                )


def _check_nvlink(ctx: Context, hi: int, gi: int) -> None:
    host = ctx.fleet.hosts[hi]
    gpu = host.gpus[gi]
    path = f"hosts[{hi}].gpus[{gi}].nvlinkPeers"
    this = ctx.gpus[(host.name, gpu.pci)]
    others = [g.pci for g in host.gpus if g.pci != gpu.pci]
    for pi, peer in enumerate(gpu.nvlink_peers):
        if not this.model or not this.model.nvlink:
            ctx.add(path, f"{gpu.model} has no NVLink")
            return
        if peer == gpu.pci:
            ctx.add(f"{path}[{pi}]", "a GPU cannot be its own NVLink peer", few(others))
            continue
        other = ctx.gpus.get((host.name, peer))
        if other is None:
            ctx.add(f"{path}[{pi}]", f"{host.name} has no GPU {peer}", few(others))
        elif other.model is not None and other.model.name != this.model.name:
            ctx.add(f"{path}[{pi}]", f"NVLink joins GPUs of the same board; {peer} is {other.model.name}")
