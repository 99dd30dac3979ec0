"""pytest plugin of gpufleet's post-deploy checks (entry point ``gpufleet_checks``, loaded by every pytest that
has gpufleet installed; inert unless a test asks for its fixtures).

    pytest --pyargs gpufleet.checks --stack stacks/Pulumi.lab.yaml            # every host and VM of the stack
    pytest --pyargs gpufleet.checks --stack S --hosts paramiko://vm-ts-01?ssh_config=cfg   # testinfra's --hosts
    pytest --pyargs gpufleet.checks --stack S --hosts local://vm-h100        # this machine is the VM vm-h100
    pytest --pyargs gpufleet.checks --stack S --hosts ssh://esxi-01?ssh_config=cfg   # OpenSSH, host keys verified

Fixtures, one test item per node (or per GPU / vGPU / RDMA NIC of a node), ids are node names:
``esxi_node``, ``esxi_gpu``, ``esxi_ats_nic``, ``guest_node``, ``guest_vgpu``, ``guest_passthrough``,
``guest_rdma``. A check that does not apply to a node is skipped with the reason.
"""

from __future__ import annotations

from typing import Any

import pytest

from gpufleet.checks.nodes import ESXI, GUEST, Node, build_nodes
from gpufleet.errors import GpufleetError

DEFAULT_CUDA_IMAGE = "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04"
_NODES_KEY = pytest.StashKey[list[Node]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gpufleet", "gpufleet post-deploy checks")
    group.addoption(
        "--stack", action="store", default=None, help="Pulumi stack config file (stacks/Pulumi.<name>.yaml)"
    )
    group.addoption(
        "--gpufleet-node",
        action="append",
        default=[],
        help="check only this host or VM of the stack (repeatable)",
    )
    group.addoption(
        "--gpufleet-cuda-image",
        action="store",
        default=DEFAULT_CUDA_IMAGE,
        help=f"container image for the GPU container check (default {DEFAULT_CUDA_IMAGE})",
    )


def nodes(config: pytest.Config) -> list[Node]:
    """The run's nodes, built once per session from --stack / --hosts / --gpufleet-node."""
    if _NODES_KEY not in config.stash:
        hosts = config.getoption("hosts", default=None)
        try:
            config.stash[_NODES_KEY] = build_nodes(
                config.getoption("stack"),
                hosts.split(",") if hosts else None,
                config.getoption("gpufleet_node") or None,
                ssh_config=config.getoption("ssh_config", default=None),
                ssh_identity_file=config.getoption("ssh_identity_file", default=None),
            )
        except GpufleetError as exc:
            raise pytest.UsageError(f"gpufleet checks: {exc}") from exc
    return config.stash[_NODES_KEY]


def _params(items: list[tuple[str, Any, str | None]]) -> list[Any]:
    return [
        pytest.param(value, id=ident, marks=[pytest.mark.skip(reason=reason)] if reason else [])
        for ident, value, reason in items
    ]


def _esxi_gpu_items(all_nodes: list[Node]) -> list[tuple[str, Any, str | None]]:
    items: list[tuple[str, Any, str | None]] = []
    for node in all_nodes:
        if node.kind != ESXI:
            continue
        gpus = node.desired.gpu_models if node.desired else {}
        if not gpus:
            items.append((node.name, (node, None), f"{node.name}: no GPUs in the spec"))
        for pci in gpus:
            items.append((f"{node.name}-{pci}", (node, pci), None))
    return items


def _esxi_nic_items(all_nodes: list[Node]) -> list[tuple[str, Any, str | None]]:
    items: list[tuple[str, Any, str | None]] = []
    for node in all_nodes:
        if node.kind != ESXI:
            continue
        nics = node.desired.ats_nics if node.desired else ()
        if not nics:
            items.append(
                (node.name, (node, None), f"{node.name}: no NIC with ats: true in the spec (no GPUDirect RDMA)")
            )
        for pci in nics:
            items.append((f"{node.name}-{pci}", (node, pci), None))
    return items


def _guest_items(all_nodes: list[Node], attr: str, what: str) -> list[tuple[str, Any, str | None]]:
    items: list[tuple[str, Any, str | None]] = []
    for node in all_nodes:
        if node.kind != GUEST or node.expect is None:
            continue
        entries = getattr(node.expect, attr)
        if not entries:
            items.append((node.name, (node, -1, None), f"{node.name}: no {what} in the spec"))
        for i, entry in enumerate(entries):
            label = getattr(entry, "profile", None) or getattr(entry, "model", None) or getattr(entry, "type", "")
            items.append((f"{node.name}-{i}-{label}", (node, i, entry), None))
    return items


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    names = metafunc.fixturenames
    wanted = [
        n
        for n in (
            "esxi_node",
            "guest_node",
            "esxi_gpu",
            "esxi_ats_nic",
            "guest_vgpu",
            "guest_passthrough",
            "guest_rdma",
        )
        if n in names
    ]
    if not wanted:
        return
    all_nodes = nodes(metafunc.config)
    fixture = wanted[0]
    if fixture == "esxi_node":
        items = [(n.name, n, None) for n in all_nodes if n.kind in (ESXI, "any")]
    elif fixture == "guest_node":
        items = [(n.name, n, None) for n in all_nodes if n.kind in (GUEST, "any")]
    elif fixture == "esxi_gpu":
        items = _esxi_gpu_items(all_nodes)
    elif fixture == "esxi_ats_nic":
        items = _esxi_nic_items(all_nodes)
    elif fixture == "guest_vgpu":
        items = _guest_items(all_nodes, "vgpus", "vGPU")
    elif fixture == "guest_passthrough":
        items = _guest_items(all_nodes, "passthrough", "passthrough GPU")
    else:
        items = _guest_items(all_nodes, "rdma", "RDMA NIC")
    if not items:
        kind = "ESXi host" if fixture.startswith("esxi") else "guest"
        if all_nodes:
            reason = f"no {kind} among the nodes checked ({', '.join(n.name for n in all_nodes[:6])})"
        else:
            reason = "no nodes to check: give --stack STACK (and/or testinfra's --hosts)"
        items = [(f"no-{kind.split()[0].lower()}", None, reason)]
    metafunc.parametrize(f"_gpufleet_{fixture}", _params(items), indirect=True)


def _reach(node: Node, kind: str) -> Node:
    """Skip when the node cannot be reached or is not of this kind; connect (errors are setup errors)."""
    if node.unreachable:
        pytest.skip(node.unreachable)
    kernel = node.kernel()
    if kind == ESXI and kernel != "VMkernel":
        pytest.skip(f"{node.name} is not an ESXi host (uname -s: {kernel})")
    if kind == GUEST and kernel == "VMkernel":
        pytest.skip(f"{node.name} is an ESXi host, not a guest")
    return node


@pytest.fixture
def _gpufleet_esxi_node(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture
def _gpufleet_guest_node(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture
def _gpufleet_esxi_gpu(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture
def _gpufleet_esxi_ats_nic(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture
def _gpufleet_guest_vgpu(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture
def _gpufleet_guest_passthrough(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture
def _gpufleet_guest_rdma(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture
def esxi_node(_gpufleet_esxi_node: Node) -> Node:
    """An ESXi host of the stack (connected over SSH, host key verified)."""
    return _reach(_gpufleet_esxi_node, ESXI)


@pytest.fixture
def guest_node(_gpufleet_guest_node: Node) -> Node:
    """A guest (VM) of the stack."""
    return _reach(_gpufleet_guest_node, GUEST)


@pytest.fixture
def esxi_gpu(_gpufleet_esxi_gpu: tuple[Node, str]) -> tuple[Node, str]:
    """(ESXi node, PCI address) for every GPU of every host in the spec."""
    node, pci = _gpufleet_esxi_gpu
    return _reach(node, ESXI), pci


@pytest.fixture
def esxi_ats_nic(_gpufleet_esxi_ats_nic: tuple[Node, str]) -> tuple[Node, str]:
    """(ESXi node, NIC PCI address) for every NIC with ats: true."""
    node, pci = _gpufleet_esxi_ats_nic
    return _reach(node, ESXI), pci


@pytest.fixture
def guest_vgpu(_gpufleet_guest_vgpu: tuple[Node, int, Any]) -> tuple[Node, int, Any]:
    """(guest node, index, ExpectedVgpu) for every vGPU of every VM in the spec."""
    node, index, entry = _gpufleet_guest_vgpu
    return _reach(node, GUEST), index, entry


@pytest.fixture
def guest_passthrough(_gpufleet_guest_passthrough: tuple[Node, int, Any]) -> tuple[Node, int, Any]:
    """(guest node, index, ExpectedPassthrough) for every passthrough GPU of every VM in the spec."""
    node, index, entry = _gpufleet_guest_passthrough
    return _reach(node, GUEST), index, entry


@pytest.fixture
def guest_rdma(_gpufleet_guest_rdma: tuple[Node, int, Any]) -> tuple[Node, int, Any]:
    """(guest node, index, RdmaNicRequest) for every RDMA NIC of every VM in the spec."""
    node, index, entry = _gpufleet_guest_rdma
    return _reach(node, GUEST), index, entry


@pytest.fixture
def cuda_image(request: pytest.FixtureRequest) -> str:
    """The container image the GPU container check runs (--gpufleet-cuda-image)."""
    return str(request.config.getoption("gpufleet_cuda_image"))


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    if not config.getoption("stack") and not config.getoption("hosts", default=None):
        return None
    stack = config.getoption("stack") or "(none: --hosts only)"
    return [f"gpufleet checks: stack {stack}"]
