"""What each node of a stack should show, derived from the fleet spec (never written twice): ESXi hosts use
gpufleet.hosts' ``Desired`` (the same expectations host preparation converges to); guests get a ``GuestExpect``."""

from __future__ import annotations

from dataclasses import dataclass

from gpufleet.catalog import lookup_gpu, lookup_profile
from gpufleet.catalog.licensing import FEATURE_PRODUCTS, licensed_product
from gpufleet.hosts.model import Desired
from gpufleet.spec.guest_desired import GuestDesired, guest_desired
from gpufleet.spec.models import Fleet, RdmaNicRequest, VmSpec


@dataclass(frozen=True)
class ExpectedVgpu:
    profile: str  # as written in the spec, e.g. nvidia_l40s-24c
    vgpu_type: str  # the type name the guest driver shows, e.g. L40S-24C
    board: str  # catalog model of the physical GPU
    series: str  # C / Q / B / A
    mig_instance: str | None  # 3g.40gb for a MIG-backed vGPU
    framebuffer_mib: int


@dataclass(frozen=True)
class ExpectedPassthrough:
    model: str  # catalog model
    device_ids: tuple[int, ...]  # PCI device ids of that board
    source: str  # "0000:5e:00.0 on esxi-02.lab" or "Dynamic DirectPath (any H100-80GB-SXM)"


@dataclass(frozen=True)
class PoolClientExpect:
    """What a GPU pool client (vSphere Bitfusion) should see: the pool's servers and GPUs, its share, its path."""

    pool: str
    servers: int
    gpus: int
    num_gpus: int  # bitfusion run -n
    partial: float  # bitfusion run -p
    nic: str  # vmxnet3 | passthrough | pvrdma


@dataclass(frozen=True)
class GuestExpect:
    vm: str
    host: str | None
    vgpus: tuple[ExpectedVgpu, ...]
    passthrough: tuple[ExpectedPassthrough, ...]
    rdma: tuple[RdmaNicRequest, ...]
    host_driver: str | None  # the vGPU manager version on the VM's host (guest driver must be the same branch)
    licensing: bool  # vGPU licence expected (vGPUs present and vms[].nvidiaLicensing)
    feature_type: int
    nvlink: bool  # several GPUs that the spec bridges with NVLink
    problems: tuple[str, ...] = ()  # spec entries the checks cannot turn into expectations
    guest: GuestDesired | None = None  # the VM's guest: block (driver version, toolkit, docker runtime)
    pool_client: PoolClientExpect | None = None  # a client of a GPU pool (Bitfusion)

    @property
    def gpu_count(self) -> int:
        return len(self.vgpus) + len(self.passthrough)

    def expected_products(self) -> set[str]:
        """Licensed product names acceptable for this VM's vGPUs under its FeatureType."""
        if self.feature_type in FEATURE_PRODUCTS:
            return {FEATURE_PRODUCTS[self.feature_type]}
        return {licensed_product(v.series) for v in self.vgpus}


def host_expect(fleet: Fleet, name: str) -> Desired:
    host = fleet.host(name)
    if host is None:
        raise KeyError(name)
    return Desired.of(fleet, host)


def guest_expect(fleet: Fleet, vm: VmSpec) -> GuestExpect:
    problems: list[str] = []
    vgpus: list[ExpectedVgpu] = []
    for request in vm.vgpu:
        found = lookup_profile(request.profile)
        if found is None:
            problems.append(f"vGPU profile {request.profile.spelled!r} is not in the catalog")
            continue
        model, profile = found
        vgpus.append(
            ExpectedVgpu(
                profile=request.profile.spelled,
                vgpu_type=profile.vgpu_type.upper(),
                board=model.name,
                series=profile.series,
                mig_instance=profile.mig_instance if profile.mig_backed else None,
                framebuffer_mib=profile.framebuffer_mb,
            )
        )
    host = fleet.host(vm.host) if vm.host else None
    passthrough: list[ExpectedPassthrough] = []
    for pt in vm.passthrough:
        if pt.model:
            gpu = lookup_gpu(pt.model)
            source = f"Dynamic DirectPath (any {pt.model})"
        else:
            spec = next((g for g in host.gpus if g.pci == pt.gpu), None) if host else None
            gpu = lookup_gpu(spec.model) if spec else None
            source = f"{pt.gpu} on {vm.host}"
            if spec is None:
                problems.append(f"passthrough GPU {pt.gpu} is not a GPU of host {vm.host!r} in the spec")
                continue
        if gpu is None:
            problems.append(f"passthrough model of {source} is not in the catalog")
            continue
        passthrough.append(ExpectedPassthrough(model=gpu.name, device_ids=gpu.pci_device_ids, source=source))
    host_driver = None
    if host is not None and vgpus:
        driver = fleet.driver_for(host)
        host_driver = driver.version if driver else None
    nvlink = False
    if host is not None and len(vgpus) + len(passthrough) > 1:
        boards = {v.board for v in vgpus} | {p.model for p in passthrough}
        nvlink = any(g.nvlink_peers for g in host.gpus if (lookup_gpu(g.model) and lookup_gpu(g.model).name in boards))
    return GuestExpect(
        vm=vm.name,
        host=vm.host,
        vgpus=tuple(vgpus),
        passthrough=tuple(passthrough),
        rdma=tuple(vm.rdma),
        host_driver=host_driver,
        licensing=bool(vgpus) and vm.nvidia_licensing,
        feature_type=fleet.licensing.feature_type,
        nvlink=nvlink,
        problems=tuple(problems),
        guest=guest_desired(fleet, vm),
        pool_client=_pool_client(fleet, vm.name),
    )


def _pool_client(fleet: Fleet, vm: str) -> PoolClientExpect | None:
    for pool in fleet.gpu_pools:
        for client in pool.clients:
            if client.vm == vm:
                n, partial = (int(client.share), 1.0) if client.share > 1 else (1, float(client.share))
                gpus = sum(len(dict.fromkeys(s.gpus)) for s in pool.servers)
                return PoolClientExpect(pool.name, len(pool.servers), gpus, n, partial, client.nic)
    return None
