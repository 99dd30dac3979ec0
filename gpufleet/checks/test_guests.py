"""Post-deploy checks of Linux guests: the NVIDIA driver, the GPUs the spec gives the VM (vGPU profile, MIG
instance, passthrough board), the vGPU licence, the container toolkit and a GPU-enabled container runtime, RDMA
devices and RoCE, P2P/NVLink topology, a 64-bit OS; on GPU pool clients (Bitfusion) the pool, a fractional run and
the declared data path. Each failure message carries the command and its output."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from gpufleet.catalog.guest_drivers import pairing_problem
from gpufleet.checks.backend import Sh
from gpufleet.checks.expect import ExpectedPassthrough, ExpectedVgpu, GuestExpect, PoolClientExpect
from gpufleet.checks.nodes import Node
from gpufleet.readers import guest_smi
from gpufleet.spec.models import RdmaNicRequest


def _expect(node: Node) -> GuestExpect:
    if node.expect is None:
        pytest.skip(f"{node.name}: no --stack given: the expected GPUs come from the fleet spec")
    return node.expect


def _needs_gpu(node: Node) -> GuestExpect:
    expect = _expect(node)
    if expect.gpu_count == 0:
        pytest.skip(f"{node.name}: the spec gives this VM no GPU")
    return expect


def _smi(node: Node) -> tuple[guest_smi.GuestSmiReport | None, Sh]:
    def read() -> tuple[guest_smi.GuestSmiReport | None, Sh]:
        sh = node.sh("nvidia-smi", "-q", "-x")
        report = guest_smi.parse_guest_xml(sh.stdout) if sh.ok and "<nvidia_smi_log" in sh.stdout else None
        return report, sh

    return node.cached("smi-xml", read)


def _smi_required(node: Node) -> tuple[guest_smi.GuestSmiReport, Sh]:
    report, sh = _smi(node)
    assert report is not None, f"{node.name}: nvidia-smi does not answer\n{sh.describe()}"
    return report, sh


# ---------------------------------------------------------------- operating system
def test_os_is_64_bit(guest_node: Node) -> None:
    machine = guest_node.sh("uname", "-m")
    assert machine.stdout.strip() in ("x86_64", "aarch64"), (
        f"{guest_node.name}: not a 64-bit machine\n{machine.describe()}"
    )
    bits = guest_node.sh("getconf", "LONG_BIT")
    assert bits.stdout.strip() == "64", f"{guest_node.name}: the OS is not 64-bit\n{bits.describe()}"


# ---------------------------------------------------------------- NVIDIA driver
def test_nvidia_kernel_module_is_loaded(guest_node: Node) -> None:
    _needs_gpu(guest_node)
    # /proc/modules is what lsmod prints, and is there even where kmod is not installed.
    modules = guest_node.sh("cat", "/proc/modules")
    loaded = "nvidia" in guest_smi.parse_proc_modules(modules.stdout) if modules.ok else False
    assert loaded, f"{guest_node.name}: the nvidia kernel module is not loaded\n{modules.describe()}"


def test_nvidia_smi_sees_every_gpu_of_the_vm(guest_node: Node) -> None:
    expect = _needs_gpu(guest_node)
    report, sh = _smi_required(guest_node)
    assert len(report.gpus) == expect.gpu_count, (
        f"{guest_node.name}: nvidia-smi shows {len(report.gpus)} GPU(s); the spec gives the VM {expect.gpu_count}\n{sh.describe()}"
    )


def test_guest_driver_matches_the_host_driver_branch(guest_node: Node) -> None:
    expect = _needs_gpu(guest_node)
    if not expect.vgpus:
        pytest.skip(f"{guest_node.name}: passthrough GPUs run the data-center driver; no vGPU manager to pair with")
    if expect.host_driver is None:
        pytest.skip(f"{guest_node.name}: the spec names no NVIDIA host driver for {expect.host}")
    version_file = guest_node.sh("cat", "/proc/driver/nvidia/version")
    guest_version = guest_smi.parse_driver_version_file(version_file.stdout) if version_file.ok else None
    assert guest_version, f"{guest_node.name}: no NVIDIA kernel module version\n{version_file.describe()}"
    # NVIDIA's pairing rule, from the catalog's branch table (the rule validate and guests prepare use).
    problem = pairing_problem(expect.host_driver, guest_version)
    assert problem is None, f"{guest_node.name}: {problem} ({expect.host})\n{version_file.describe()}"


def test_guest_driver_is_the_version_of_the_guest_block(guest_node: Node) -> None:
    expect = _needs_gpu(guest_node)
    if expect.guest is None or expect.guest.driver_version is None:
        pytest.skip(f"{guest_node.name}: the spec names no guest driver (no guest.driver block)")
    version_file = guest_node.sh("cat", "/proc/driver/nvidia/version")
    loaded = guest_smi.parse_driver_version_file(version_file.stdout) if version_file.ok else None
    assert loaded == expect.guest.driver_version, (
        f"{guest_node.name}: NVIDIA module {loaded or 'not'} loaded; {expect.guest.where}.driver wants "
        f"{expect.guest.driver_version} (run `gpufleet guests prepare`)\n{version_file.describe()}"
    )


# ---------------------------------------------------------------- GPUs of the VM
def test_vgpu_profile_is_visible(guest_vgpu: tuple[Node, int, ExpectedVgpu]) -> None:
    node, index, vgpu = guest_vgpu
    report, sh = _smi_required(node)
    seen = Counter(g.vgpu_type for g in report.gpus if g.is_vgpu)
    wanted = Counter(v.vgpu_type for v in node.expect.vgpus[: index + 1] if node.expect)
    assert seen[vgpu.vgpu_type] >= wanted[vgpu.vgpu_type], (
        f"{node.name}: vGPU {vgpu.profile} ({vgpu.vgpu_type}) is not visible; nvidia-smi shows "
        f"{', '.join(g.product_name for g in report.gpus) or 'no GPU'}\n{sh.describe()}"
    )


def test_mig_instance_is_visible(guest_vgpu: tuple[Node, int, ExpectedVgpu]) -> None:
    node, index, vgpu = guest_vgpu
    if vgpu.mig_instance is None:
        pytest.skip(f"{node.name}: {vgpu.profile} is a time-sliced vGPU, not MIG-backed")
    listing = node.sh("nvidia-smi", "-L")
    gpus = guest_smi.parse_list(listing.stdout) if listing.ok else []
    matching = [g for g in gpus if g.name.upper().endswith(vgpu.vgpu_type)]
    with_instance = [g for g in matching if vgpu.mig_instance in g.mig_devices]
    wanted = sum(1 for v in (node.expect.vgpus[: index + 1] if node.expect else ()) if v.vgpu_type == vgpu.vgpu_type)
    assert len(with_instance) >= wanted, (
        f"{node.name}: MIG instance {vgpu.mig_instance} of vGPU {vgpu.profile} is not visible\n{listing.describe()}"
    )


def test_passthrough_gpu_is_visible(guest_passthrough: tuple[Node, int, ExpectedPassthrough]) -> None:
    node, index, gpu = guest_passthrough
    report, sh = _smi_required(node)
    whole = [g for g in report.gpus if not g.is_vgpu and g.device_id in gpu.device_ids]
    wanted = sum(1 for p in (node.expect.passthrough[: index + 1] if node.expect else ()) if p.model == gpu.model)
    ids = "/".join(f"0x{d:04X}" for d in gpu.device_ids)
    assert len(whole) >= wanted, (
        f"{node.name}: passthrough GPU {gpu.model} (PCI device {ids}, {gpu.source}) is not visible; nvidia-smi shows "
        + (
            ", ".join(f"{g.product_name} [{g.virtualization_mode}, 0x{(g.device_id or 0):04X}]" for g in report.gpus)
            or "no GPU"
        )
        + f"\n{sh.describe()}"
    )


def test_gpus_are_connected_peer_to_peer(guest_node: Node) -> None:
    expect = _needs_gpu(guest_node)
    if expect.gpu_count < 2:
        pytest.skip(
            f"{guest_node.name}: P2P/NVLink topology applies to VMs with several GPUs (this VM has {expect.gpu_count})"
        )
    topo = guest_node.sh("nvidia-smi", "topo", "-m")
    assert topo.ok, f"{guest_node.name}: nvidia-smi topo -m failed\n{topo.describe()}"
    links = guest_smi.parse_topology(topo.stdout)
    pairs = [(i, j) for i in range(expect.gpu_count) for j in range(expect.gpu_count) if i < j]
    missing = [p for p in pairs if p not in links]
    assert not missing, f"{guest_node.name}: GPUs {missing} are not in the topology\n{topo.describe()}"
    if expect.nvlink:
        bad = {p: links[p] for p in pairs if not links[p].startswith("NV")}
        assert not bad, (
            f"{guest_node.name}: the spec bridges these GPUs with NVLink but topo shows {bad}\n{topo.describe()}"
        )
    else:
        bad = {p: links[p] for p in pairs if links[p] == "SYS"}
        assert not bad, f"{guest_node.name}: GPUs on different NUMA nodes cannot do P2P: {bad}\n{topo.describe()}"


# ---------------------------------------------------------------- vGPU licensing
def _licensing(node: Node) -> GuestExpect:
    expect = _needs_gpu(node)
    if not expect.vgpus:
        pytest.skip(f"{node.name}: passthrough GPUs need no vGPU software licence")
    if not expect.licensing:
        pytest.skip(f"{node.name}: NVIDIA licensing is turned off for this VM (vms[].nvidiaLicensing: false)")
    return expect


def test_nvidia_gridd_is_running(guest_node: Node) -> None:
    _licensing(guest_node)
    active = guest_node.sh("systemctl", "is-active", "nvidia-gridd")
    assert active.stdout.strip() == "active", f"{guest_node.name}: nvidia-gridd is not running\n{active.describe()}"


def test_vgpu_licence_is_licensed(guest_node: Node) -> None:
    _licensing(guest_node)
    report, sh = _smi_required(guest_node)
    unlicensed = {
        g.pci: g.license.raw if g.license else "no licence status"
        for g in report.gpus
        if g.is_vgpu and not (g.license and g.license.licensed)
    }
    assert not unlicensed, f"{guest_node.name}: vGPU licence not acquired: {unlicensed}\n{sh.describe()}"


def test_vgpu_licence_has_the_expected_feature(guest_node: Node) -> None:
    expect = _licensing(guest_node)
    report, sh = _smi_required(guest_node)
    wanted = expect.expected_products()
    wrong = {g.pci: g.licensed_product for g in report.gpus if g.is_vgpu and g.licensed_product not in wanted}
    assert not wrong, (
        f"{guest_node.name}: licensed product {wrong}; FeatureType {expect.feature_type} expects "
        f"{' or '.join(sorted(wanted))}\n{sh.describe()}"
    )


# ---------------------------------------------------------------- containers
def test_nvidia_container_toolkit_is_installed(guest_node: Node) -> None:
    _needs_gpu(guest_node)
    ctk = guest_node.sh("nvidia-ctk", "--version")
    version = guest_smi.parse_ctk_version(ctk.stdout) if ctk.ok else None
    assert version, f"{guest_node.name}: the NVIDIA Container Toolkit (nvidia-ctk) is not installed\n{ctk.describe()}"
    toolkit = guest_node.expect.guest.spec.container_toolkit if guest_node.expect and guest_node.expect.guest else None
    if toolkit is not None:
        assert version == toolkit.upstream, (
            f"{guest_node.name}: nvidia-ctk {version}; the guest block wants {toolkit.upstream}\n{ctk.describe()}"
        )


def test_docker_has_the_nvidia_runtime(guest_node: Node) -> None:
    expect = _needs_gpu(guest_node)
    if expect.guest is not None and expect.guest.spec.docker_runtime == "none":
        pytest.skip(f"{guest_node.name}: the guest block says dockerRuntime: none")
    info = guest_node.sh("docker", "info", "--format", "{{json .Runtimes}}")
    runtimes = guest_smi.parse_docker_runtimes(info.stdout) if info.ok else set()
    assert "nvidia" in runtimes, (
        f"{guest_node.name}: docker has no nvidia runtime (run `nvidia-ctk runtime configure --runtime=docker`)\n{info.describe()}"
    )


def test_gpu_container_sees_the_gpus(guest_node: Node, cuda_image: str) -> None:
    expect = _needs_gpu(guest_node)
    run = guest_node.sh("docker", "run", "--rm", "--gpus", "all", cuda_image, "nvidia-smi", "-L")
    listed = guest_smi.parse_list(run.stdout) if run.ok else []
    assert len(listed) == expect.gpu_count, (
        f"{guest_node.name}: a GPU container sees {len(listed)} GPU(s), the VM has {expect.gpu_count}\n{run.describe()}"
    )


# ---------------------------------------------------------------- RDMA
def _rdma_device(node: Node, index: int, nic: RdmaNicRequest) -> tuple[str, Sh]:
    listing = node.cached("ibv_devices", lambda: node.sh("ibv_devices"))
    devices = sorted(guest_smi.parse_ibv_devices(listing.stdout)) if listing.ok else []
    prefix = "vmw_pvrdma" if nic.type == "pvrdma" else "mlx5_"
    kind = [d for d in devices if d.startswith(prefix)]
    position = sum(1 for n in (node.expect.rdma[:index] if node.expect else ()) if n.type == nic.type)
    assert len(kind) > position, (
        f"{node.name}: RDMA NIC {index} ({nic.type}) has no {prefix}* device; ibv_devices lists {devices or 'none'}\n"
        f"{listing.describe()}"
    )
    return kind[position], listing


def test_rdma_device_is_present(guest_rdma: tuple[Node, int, RdmaNicRequest]) -> None:
    node, index, nic = guest_rdma
    _rdma_device(node, index, nic)


def test_rdma_link_is_active(guest_rdma: tuple[Node, int, RdmaNicRequest]) -> None:
    node, index, nic = guest_rdma
    device, _ = _rdma_device(node, index, nic)
    show = node.sh("rdma", "link", "show")
    links = {link.device: link for link in guest_smi.parse_rdma_links(show.stdout)} if show.ok else {}
    link = links.get(device)
    assert link is not None and link.state == "ACTIVE", (
        f"{node.name}: RDMA link of {device} is not ACTIVE\n{show.describe()}"
    )


def test_roce_version_is_as_desired(guest_rdma: tuple[Node, int, RdmaNicRequest]) -> None:
    node, index, nic = guest_rdma
    if nic.type != "pvrdma":
        pytest.skip(f"{node.name}: RoCE version is set on PVRDMA adapters; a passthrough ConnectX follows its firmware")
    device, _ = _rdma_device(node, index, nic)
    gid_type = node.sh("cat", f"/sys/class/infiniband/{device}/ports/1/gid_attrs/types/{1 if nic.roce == 'v2' else 0}")
    want = "RoCE v2" if nic.roce == "v2" else "IB/RoCE v1"
    assert gid_type.stdout.strip() == want, f"{node.name}: {device} does not offer {want} GIDs\n{gid_type.describe()}"


# ---------------------------------------------------------------- GPU pools (vSphere Bitfusion)
_BF_SERVER = re.compile(r"^\s*-\s*server\s+\d+\s+\[([^\]]+)\]")
_BF_GPU = re.compile(r"^\s*\|-\s*GPU\s+\d+:")


def _pool_client(node: Node) -> PoolClientExpect:
    expect = _expect(node)
    if expect.pool_client is None:
        pytest.skip(f"{node.name}: not a GPU pool client")
    return expect.pool_client


def test_bitfusion_client_sees_the_pool(guest_node: Node) -> None:
    pool = _pool_client(guest_node)
    listing = guest_node.sh("bitfusion", "list_gpus")
    lines = listing.stdout.splitlines() if listing.ok else []
    servers = [m.group(1) for line in lines if (m := _BF_SERVER.match(line))]
    gpus = sum(1 for line in lines if _BF_GPU.match(line))
    assert (len(servers), gpus) == (pool.servers, pool.gpus), (
        f"{guest_node.name}: bitfusion list_gpus shows {len(servers)} server(s) and {gpus} GPU(s); pool {pool.pool} "
        f"has {pool.servers} and {pool.gpus}\n{listing.describe()}"
    )


def test_bitfusion_health_passes(guest_node: Node) -> None:
    _pool_client(guest_node)
    health = guest_node.sh("bitfusion", "health")
    assert health.ok, f"{guest_node.name}: bitfusion health failed\n{health.describe()}"


def test_bitfusion_fractional_run_sees_a_gpu(guest_node: Node) -> None:
    pool = _pool_client(guest_node)
    run = guest_node.sh(
        "bitfusion", "run", "-n", str(pool.num_gpus), "-p", f"{pool.partial:g}", "--", "nvidia-smi", "-L"
    )
    listed = guest_smi.parse_list(run.stdout) if run.ok else []
    assert len(listed) == pool.num_gpus, (
        f"{guest_node.name}: `bitfusion run -n {pool.num_gpus} -p {pool.partial:g}` sees {len(listed)} GPU(s)\n"
        f"{run.describe()}"
    )


def test_bitfusion_data_path_is_the_declared_one(guest_node: Node) -> None:
    pool = _pool_client(guest_node)
    expect = _expect(guest_node)
    if pool.nic == "vmxnet3":
        pytest.skip(f"{guest_node.name}: pool {pool.pool} over vmxnet3 (TCP): no RDMA device to check")
    index, nic = next(((i, n) for i, n in enumerate(expect.rdma) if n.type == pool.nic), (None, None))
    assert nic is not None and index is not None, f"{guest_node.name}: the spec gives no {pool.nic} RDMA NIC"
    device, _ = _rdma_device(guest_node, index, nic)
    show = guest_node.sh("rdma", "link", "show")
    links = {link.device: link for link in guest_smi.parse_rdma_links(show.stdout)} if show.ok else {}
    assert device in links and links[device].state == "ACTIVE", (
        f"{guest_node.name}: the pool's {pool.nic} path {device} is not ACTIVE\n{show.describe()}"
    )
    if pool.nic == "pvrdma":
        mode = guest_node.sh("cma_roce_mode", "-d", device, "-p", "1")
        assert mode.ok and mode.stdout.strip() == "RoCE v2", (
            f"{guest_node.name}: Bitfusion over PVRDMA needs RoCE v2 on {device}\n{mode.describe()}"
        )
