"""Rules on GPU pools (vSphere Bitfusion): servers are VMs of the fleet exporting passthrough GPUs of their host,
clients are VMs without GPUs of their own, every member's data path (vmxnet3, passthrough ConnectX, PVRDMA with
RoCE v2) is declared on its VM and runs on one of the pool's routable networks.

"Routable" is what the stack declares: ``gpuPools[].networks`` lists the port groups / fabrics routed to each
other for the pool's traffic; a member's data path is on its ``network``, else the one its VM already names (the
template's ``network`` for vmxnet3, the VM's PVRDMA adapter's ``network`` for pvrdma). Whether the shares of all
clients fit at once is the fractional planner's answer (``gpufleet.placement.pool``), not a rule here.
"""

from __future__ import annotations

from gpufleet.spec.models import GpuMode, GpuPool, PoolClient, PoolServer, VmSpec
from gpufleet.spec.rules.context import Context, few

# Bitfusion's PVRDMA data path needs RoCE v2 (vm_advanced_settings_gpu_rdma_pvrdma.txt: RoCE v1/v2 adapters).
POOL_PVRDMA_ROCE = "v2"


def member_network(ctx: Context, member: PoolServer | PoolClient, vm: VmSpec) -> str | None:
    """The network a member's pool traffic runs on: its own ``network``, else what its VM names for that path."""
    if member.network:
        return member.network
    if member.nic == "pvrdma":
        return next((r.network for r in vm.rdma if r.type == "pvrdma" and r.network), None)
    if member.nic == "vmxnet3":
        template = ctx.template_of(vm)
        return template.network if template else None
    return None


class PoolRules:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.vm_index = {vm.name: (i, vm) for i, vm in reversed(list(enumerate(ctx.fleet.vms)))}
        self.roles: dict[str, str] = {}  # vm -> "gpuPools[i].servers[j]" (first role seen)
        self.exported: dict[tuple[str, str], str] = {}  # (host, pci) -> member path

    def run(self) -> None:
        seen: dict[str, int] = {}
        for pi, pool in enumerate(self.ctx.fleet.gpu_pools):
            if pool.name in seen:
                self.ctx.add(
                    f"gpuPools[{pi}].name", f"duplicate pool name {pool.name!r} (also gpuPools[{seen[pool.name]}])"
                )
            seen.setdefault(pool.name, pi)
            for sj, server in enumerate(pool.servers):
                self._server(pi, pool, sj, server)
            for cj, client in enumerate(pool.clients):
                self._client(pi, pool, cj, client)

    def _vm(self, path: str, name: str) -> tuple[int, VmSpec] | None:
        found = self.vm_index.get(name)
        if found is None:
            self.ctx.add(f"{path}.vm", f"no VM named {name!r}", few([v.name for v in self.ctx.fleet.vms]))
        return found

    def _role(self, path: str, vm: str) -> bool:
        """A VM is one member of one pool: a server is not a client, and no VM serves or uses two pools."""
        other = self.roles.setdefault(vm, path)
        if other != path:
            self.ctx.add(f"{path}.vm", f"{vm} is already a pool member at {other} (one role in one pool per VM)")
            return False
        return True

    def _server(self, pi: int, pool: GpuPool, sj: int, server: PoolServer) -> None:
        ctx, path = self.ctx, f"gpuPools[{pi}].servers[{sj}]"
        found = self._vm(path, server.vm)
        host_found = ctx.hosts.get(server.host)
        if host_found is None:
            ctx.add(f"{path}.host", f"no host named {server.host!r}", few([h.name for h in ctx.fleet.hosts]))
        if found is None:
            return
        vi, vm = found
        self._role(path, vm.name)
        if vm.host != server.host:
            where = (
                f"runs on {vm.host} (vms[{vi}].host)" if vm.host else f"is not pinned to a host (set vms[{vi}].host)"
            )
            ctx.add(
                f"{path}.host",
                f"server VM {vm.name} {where}; a Bitfusion server exports GPUs of the host it runs on",
                [vm.host] if vm.host else (),
            )
        if vm.vgpu:
            ctx.add(
                f"{path}.vm",
                f"{vm.name} has vGPUs (vms[{vi}].vgpu); a Bitfusion server exports whole GPUs passed through to it",
            )
        passed = {pt.gpu for pt in vm.passthrough if pt.gpu}
        host_gpus = ctx.host_gpus(server.host)
        free = [g.spec.pci for g in host_gpus if g.spec.mode == GpuMode.PASSTHROUGH]
        for m, pci in enumerate(server.gpus):
            gpath = f"{path}.gpus[{m}]"
            if host_found is None:
                break
            target = ctx.gpus.get((server.host, pci))
            if target is None:
                ctx.add(gpath, f"{server.host} has no GPU {pci}", few(free))
                continue
            if target.spec.mode != GpuMode.PASSTHROUGH:
                ctx.add(
                    gpath,
                    f"{target.label} is in mode {target.spec.mode.value}; a Bitfusion server exports passthrough GPUs "
                    f"(set mode: passthrough at {target.path})",
                    few(free),
                )
                continue
            owner = self.exported.setdefault((server.host, pci), gpath)
            if owner != gpath:
                ctx.add(gpath, f"{target.label} is already exported by {owner}")
                continue
            if pci not in passed:
                ctx.add(
                    gpath,
                    f'{target.label} is not passed through to {vm.name}: add {{gpu: "{pci}"}} to vms[{vi}].passthrough',
                )
        for k, pt in enumerate(vm.passthrough):
            if pt.model is not None:
                ctx.add(
                    f"vms[{vi}].passthrough[{k}]",
                    f"{vm.name} is a Bitfusion server ({path}): its GPUs are DirectPath I/O by PCI address, not Dynamic "
                    "DirectPath by model",
                )
            elif pt.gpu not in server.gpus:
                ctx.add(
                    f"vms[{vi}].passthrough[{k}].gpu",
                    f"{pt.gpu} is passed through to Bitfusion server {vm.name} but not exported: list it in {path}.gpus",
                )
        self._data_path(pool, path, server, vi, vm)

    def _client(self, pi: int, pool: GpuPool, cj: int, client: PoolClient) -> None:
        ctx, path = self.ctx, f"gpuPools[{pi}].clients[{cj}]"
        found = self._vm(path, client.vm)
        if found is None:
            return
        vi, vm = found
        self._role(path, vm.name)
        if vm.vgpu or vm.passthrough:
            ctx.add(
                f"{path}.vm",
                f"{vm.name} has GPU devices of its own (vms[{vi}]); a Bitfusion client takes its GPUs from the pool",
            )
        if client.share > 1:
            largest = max(len(s.gpus) for s in pool.servers)
            if client.share > largest:
                ctx.add(
                    f"{path}.share",
                    f"{int(client.share)} GPUs: Bitfusion allocates a client's GPUs from one server, and the largest "
                    f"server of pool {pool.name} exports {largest}",
                    [str(n) for n in range(1, largest + 1)] + ["a fraction 0 < share <= 1"],
                )
        self._data_path(pool, path, client, vi, vm)

    def _data_path(self, pool: GpuPool, path: str, member: PoolServer | PoolClient, vi: int, vm: VmSpec) -> None:
        ctx = self.ctx
        if member.nic == "pvrdma":
            adapters = [(k, r) for k, r in enumerate(vm.rdma) if r.type == "pvrdma"]
            if not adapters:
                ctx.add(
                    f"{path}.nic",
                    f"nic pvrdma needs a PVRDMA adapter on {vm.name}: add {{type: pvrdma, roce: v2, network: ...}} to "
                    f"vms[{vi}].rdma",
                    ["vmxnet3"] + (["passthrough"] if any(r.type == "passthrough" for r in vm.rdma) else []),
                )
                return
            for k, r in adapters:
                if r.roce != POOL_PVRDMA_ROCE:
                    ctx.add(
                        f"vms[{vi}].rdma[{k}].roce",
                        f"{vm.name} is a pool member over PVRDMA ({path}): Bitfusion's PVRDMA path needs RoCE "
                        f"{POOL_PVRDMA_ROCE}, not {r.roce}",
                        [POOL_PVRDMA_ROCE],
                    )
            networks = [r.network for _, r in adapters if r.network]
            if member.network and networks and member.network not in networks:
                ctx.add(
                    f"{path}.network",
                    f"{member.network!r} is not the network of {vm.name}'s PVRDMA adapter",
                    few(networks),
                )
        elif member.nic == "passthrough" and not any(r.type == "passthrough" for r in vm.rdma):
            ctx.add(
                f"{path}.nic",
                f"nic passthrough needs a passthrough ConnectX on {vm.name}: add {{type: passthrough, nic: ...}} to "
                f"vms[{vi}].rdma",
            )
        elif member.nic == "vmxnet3" and member.network:
            template = ctx.template_of(vm)
            if template is not None and template.network and template.network != member.network:
                ctx.add(
                    f"{path}.network",
                    f"{vm.name}'s vmxnet3 NIC is on {template.network!r} (template {template.name})",
                    [template.network],
                )
        network = member_network(ctx, member, vm)
        if network is None:
            what = {
                "vmxnet3": f"set `network` here or on template {vm.template}",
                "pvrdma": "set the PVRDMA adapter's network",
                "passthrough": "name the fabric the ConnectX is cabled to",
            }[member.nic]
            ctx.add(f"{path}.network", f"which network carries {vm.name}'s pool traffic? {what}", few(pool.networks))
        elif network not in pool.networks:
            ctx.add(
                f"{path}.network",
                f"{vm.name}'s pool traffic is on {network!r}, not one of pool {pool.name}'s routable networks",
                few(pool.networks),
            )


def check_pools(ctx: Context) -> None:
    PoolRules(ctx).run()
