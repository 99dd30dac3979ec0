"""Every guest check, passing on the lab personas and failing on a broken one, with a failure message that shows
the command and what it printed. The personas run in-process here (no sshd); tests/checks' lab tests run the same
checks over SSH against the running lab."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gpufleet.checks import test_guests as checks
from gpufleet.checks.nodes import Node
from gpufleet.spec.stack import Stack, parse_stack

SimNode = Callable[..., tuple[Node, Path]]
IMAGE = "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04"


def stack_variant(stack: Stack, change: Callable[[dict], None]) -> Stack:
    document = {"config": copy.deepcopy(stack.config)}
    change(document["config"]["gpufleet:fleet"])
    return parse_stack(document, name="variant")


def fails(check: Callable[..., None], *args: Any) -> str:
    with pytest.raises(AssertionError) as info:
        check(*args)
    return str(info.value)


def skips(check: Callable[..., None], *args: Any) -> str:
    with pytest.raises(pytest.skip.Exception) as info:
        check(*args)
    return str(info.value.msg)


# ---------------------------------------------------------------- operating system and driver
def test_64_bit_os(sim_node: SimNode) -> None:
    node, _ = sim_node("vm-ts-01")
    checks.test_os_is_64_bit(node)
    node, _ = sim_node("vm-mig-01", arch="i686")
    message = fails(checks.test_os_is_64_bit, node)
    assert "not a 64-bit machine" in message and "$ uname -m" in message and "i686" in message


def test_nvidia_kernel_module(sim_node: SimNode) -> None:
    node, _ = sim_node("vm-pt-01")
    checks.test_nvidia_kernel_module_is_loaded(node)
    node, _ = sim_node("vm-ts-01", driver={"installed": False})
    message = fails(checks.test_nvidia_kernel_module_is_loaded, node)
    assert (
        "nvidia kernel module is not loaded" in message
        and "$ cat /proc/modules" in message
        and "vmxnet3 77824 0 - Live" in message
    )


def test_nvidia_smi_sees_every_gpu(sim_node: SimNode) -> None:
    node, _ = sim_node("vm-mig-01")
    checks.test_nvidia_smi_sees_every_gpu_of_the_vm(node)
    node, _ = sim_node("vm-ts-01", static_gpus=[])
    message = fails(checks.test_nvidia_smi_sees_every_gpu_of_the_vm, node)
    assert (
        "nvidia-smi does not answer" in message
        and "$ nvidia-smi -q -x" in message
        and "couldn't communicate" in message
    )
    two = [{"kind": "vgpu", "profile": "nvidia_l40s-24c"}] * 2
    node, _ = sim_node("vm-ts-01", static_gpus=two)
    message = fails(checks.test_nvidia_smi_sees_every_gpu_of_the_vm, node)
    assert (
        "shows 2 GPU(s); the spec gives the VM 1" in message
        and "<product_name>NVIDIA L40S-24C</product_name>" in message
    )


def test_guest_driver_branch(sim_node: SimNode) -> None:
    node, _ = sim_node("vm-ts-01")
    checks.test_guest_driver_matches_the_host_driver_branch(node)
    node, _ = sim_node("vm-ts-01", driver={"installed": True, "version": "535.183.06"})
    checks.test_guest_driver_matches_the_host_driver_branch(node)  # NVIDIA: the previous branch pairs too
    node, _ = sim_node("vm-ts-01", driver={"installed": True, "version": "570.124.06"})
    message = fails(checks.test_guest_driver_matches_the_host_driver_branch, node)
    assert "guest driver 570.124.06 (branch 570) cannot pair with the host's vGPU Manager 550.90.05" in message
    assert "$ cat /proc/driver/nvidia/version" in message and "570.124.06" in message
    # The lab stack's guest block wants 550.90.07: another 550 driver pairs, but is not the one asked for.
    node, _ = sim_node("vm-ts-01")
    checks.test_guest_driver_is_the_version_of_the_guest_block(node)
    node, _ = sim_node("vm-ts-01", driver={"installed": True, "version": "550.127.05"})
    message = fails(checks.test_guest_driver_is_the_version_of_the_guest_block, node)
    assert "NVIDIA module 550.127.05 loaded; vms[0].guest.driver wants 550.90.07" in message
    node, _ = sim_node("vm-pt-01")
    assert "data-center driver" in skips(checks.test_guest_driver_matches_the_host_driver_branch, node)


# ---------------------------------------------------------------- GPUs of the VM
def test_vgpu_profile(sim_node: SimNode) -> None:
    node, _ = sim_node("vm-ts-01")
    checks.test_vgpu_profile_is_visible((node, 0, node.expect.vgpus[0]))
    node, _ = sim_node("vm-ts-01", static_gpus=[{"kind": "vgpu", "profile": "nvidia_l40s-12c"}])
    message = fails(checks.test_vgpu_profile_is_visible, (node, 0, node.expect.vgpus[0]))
    assert "vGPU nvidia_l40s-24c (L40S-24C) is not visible; nvidia-smi shows NVIDIA L40S-12C" in message
    assert "$ nvidia-smi -q -x" in message


def test_mig_instance(sim_node: SimNode) -> None:
    node, _ = sim_node("vm-mig-01")
    checks.test_mig_instance_is_visible((node, 0, node.expect.vgpus[0]))
    node, _ = sim_node("vm-mig-01", static_gpus=[{"kind": "vgpu", "profile": "grid_a100d-4-40c"}])
    message = fails(checks.test_mig_instance_is_visible, (node, 0, node.expect.vgpus[0]))
    assert "MIG instance 3g.40gb of vGPU grid_a100d-3-40c is not visible" in message
    assert "$ nvidia-smi -L" in message and "MIG 4g.40gb" in message
    node, _ = sim_node("vm-ts-01")
    assert "time-sliced" in skips(checks.test_mig_instance_is_visible, (node, 0, node.expect.vgpus[0]))


def test_passthrough_gpu(sim_node: SimNode) -> None:
    node, _ = sim_node("vm-pt-01")
    checks.test_passthrough_gpu_is_visible((node, 0, node.expect.passthrough[0]))
    node, _ = sim_node("vm-pt-01", static_gpus=[{"kind": "passthrough", "model": "T4"}])
    message = fails(checks.test_passthrough_gpu_is_visible, (node, 0, node.expect.passthrough[0]))
    assert "passthrough GPU H100-80GB-PCIe (PCI device 0x2331, 0000:5e:00.0 on esxi-02.lab) is not visible" in message
    assert "Tesla T4 [Pass-Through, 0x1EB8]" in message and "$ nvidia-smi -q -x" in message


def _two_a100_vgpus(fleet: dict) -> None:
    fleet["hosts"][0]["gpus"][0]["nvlinkPeers"] = ["0000:5e:00.0"]
    fleet["hosts"][0]["gpus"][1]["nvlinkPeers"] = ["0000:3b:00.0"]
    fleet["vms"][1]["vgpu"] = [{"profile": "grid_a100d-3-40c"}, {"profile": "grid_a100d-3-40c"}]


def test_p2p_topology(sim_node: SimNode, lab_stack: Stack) -> None:
    stack = stack_variant(lab_stack, _two_a100_vgpus)
    two = [{"kind": "vgpu", "profile": "grid_a100d-3-40c"}] * 2
    node, _ = sim_node("vm-mig-01", stack=stack, static_gpus=two)
    assert node.expect.nvlink
    checks.test_gpus_are_connected_peer_to_peer(node)
    for vgpu in (0, 1):
        checks.test_vgpu_profile_is_visible((node, vgpu, node.expect.vgpus[vgpu]))
    node, _ = sim_node("vm-mig-01", stack=stack, static_gpus=two, nvlink=False)
    message = fails(checks.test_gpus_are_connected_peer_to_peer, node)
    assert (
        "bridges these GPUs with NVLink but topo shows {(0, 1): 'PHB'}" in message and "$ nvidia-smi topo -m" in message
    )
    node, _ = sim_node("vm-mig-01", stack=stack, static_gpus=two[:1])
    message = fails(checks.test_vgpu_profile_is_visible, (node, 1, node.expect.vgpus[1]))
    assert "grid_a100d-3-40c (A100D-3-40C) is not visible" in message
    node, _ = sim_node("vm-ts-01")
    assert "several GPUs" in skips(checks.test_gpus_are_connected_peer_to_peer, node)


# ---------------------------------------------------------------- licensing
def test_nvidia_gridd_running(sim_node: SimNode) -> None:
    node, directory = sim_node("vm-ts-01")
    checks.test_nvidia_gridd_is_running(node)
    node, _ = sim_node("vm-mig-01", gridd={"active": False, "log": []})
    message = fails(checks.test_nvidia_gridd_is_running, node)
    assert (
        "nvidia-gridd is not running" in message
        and "$ systemctl is-active nvidia-gridd" in message
        and "inactive" in message
    )


def test_vgpu_licence_state(
    sim_node: SimNode, license_guest: Callable[..., None], fresh_node: Callable[..., Node]
) -> None:
    node, directory = sim_node("vm-rdma-01")
    message = fails(checks.test_vgpu_licence_is_licensed, node)
    assert "vGPU licence not acquired: {'0000:02:01.0': 'Unlicensed (Unrestricted)'}" in message
    assert "<license_status>Unlicensed (Unrestricted)</license_status>" in message
    license_guest("vm-rdma-01", directory)
    checks.test_vgpu_licence_is_licensed(fresh_node(node, directory))


def test_vgpu_licence_feature(sim_node: SimNode, lab_stack: Stack, license_guest: Callable[..., None]) -> None:
    node, directory = sim_node("vm-ts-01")
    license_guest("vm-ts-01", directory)
    checks.test_vgpu_licence_has_the_expected_feature(node)
    rtx = stack_variant(lab_stack, lambda fleet: fleet["licensing"].update(featureType=2))
    node, directory = sim_node("vm-mig-01", stack=rtx)
    license_guest("vm-mig-01", directory)
    message = fails(checks.test_vgpu_licence_has_the_expected_feature, node)
    assert "licensed product {'0000:02:01.0': 'NVIDIA Virtual Compute Server'}" in message
    assert "FeatureType 2 expects NVIDIA RTX Virtual Workstation" in message and "$ nvidia-smi -q -x" in message
    node, _ = sim_node("vm-pt-01")
    assert "passthrough GPUs need no vGPU software licence" in skips(checks.test_vgpu_licence_is_licensed, node)


# ---------------------------------------------------------------- containers
def test_container_toolkit(sim_node: SimNode) -> None:
    node, _ = sim_node("vm-ts-01")
    checks.test_nvidia_container_toolkit_is_installed(node)
    node, _ = sim_node("vm-mig-01", container={"toolkit": None, "docker": True, "nvidia_runtime": False})
    message = fails(checks.test_nvidia_container_toolkit_is_installed, node)
    assert (
        "(nvidia-ctk) is not installed" in message
        and "$ nvidia-ctk --version" in message
        and "command not found" in message
    )


def test_docker_nvidia_runtime(sim_node: SimNode) -> None:
    node, _ = sim_node("vm-pt-01")
    checks.test_docker_has_the_nvidia_runtime(node)
    node, _ = sim_node("vm-ts-01", container={"toolkit": "1.16.2", "docker": True, "nvidia_runtime": False})
    message = fails(checks.test_docker_has_the_nvidia_runtime, node)
    assert "docker has no nvidia runtime" in message and "$ docker info --format '{{json .Runtimes}}'" in message
    assert '"runc"' in message


def test_gpu_container(sim_node: SimNode) -> None:
    node, _ = sim_node("vm-mig-01")
    checks.test_gpu_container_sees_the_gpus(node, IMAGE)
    node, _ = sim_node("vm-ts-01", container={"toolkit": "1.16.2", "docker": True, "nvidia_runtime": False})
    message = fails(checks.test_gpu_container_sees_the_gpus, node, IMAGE)
    assert "a GPU container sees 0 GPU(s), the VM has 1" in message
    assert (
        f"$ docker run --rm --gpus all {IMAGE} nvidia-smi -L" in message and "could not select device driver" in message
    )


# ---------------------------------------------------------------- RDMA
def test_rdma_device(sim_node: SimNode) -> None:
    node, _ = sim_node("vm-rdma-01")
    checks.test_rdma_device_is_present((node, 0, node.expect.rdma[0]))
    node, _ = sim_node("vm-rdma-01", static_rdma=[])
    message = fails(checks.test_rdma_device_is_present, (node, 0, node.expect.rdma[0]))
    assert (
        "RDMA NIC 0 (pvrdma) has no vmw_pvrdma* device; ibv_devices lists none" in message
        and "$ ibv_devices" in message
    )


def test_rdma_link(sim_node: SimNode) -> None:
    node, _ = sim_node("vm-rdma-01")
    checks.test_rdma_link_is_active((node, 0, node.expect.rdma[0]))
    node, _ = sim_node("vm-rdma-01", static_rdma=[{"type": "pvrdma", "roce": "v2", "state": "DOWN"}])
    message = fails(checks.test_rdma_link_is_active, (node, 0, node.expect.rdma[0]))
    assert (
        "RDMA link of vmw_pvrdma0 is not ACTIVE" in message
        and "$ rdma link show" in message
        and "state DOWN" in message
    )


def test_roce_version(sim_node: SimNode) -> None:
    node, _ = sim_node("vm-rdma-01")
    checks.test_roce_version_is_as_desired((node, 0, node.expect.rdma[0]))
    node, _ = sim_node("vm-rdma-01", static_rdma=[{"type": "pvrdma", "roce": "v1"}])
    message = fails(checks.test_roce_version_is_as_desired, (node, 0, node.expect.rdma[0]))
    assert "vmw_pvrdma0 does not offer RoCE v2 GIDs" in message
    assert (
        "$ cat /sys/class/infiniband/vmw_pvrdma0/ports/1/gid_attrs/types/1" in message and "Invalid argument" in message
    )


def test_checks_without_a_stack_skip_with_the_reason(bare_node: Callable[[str], Node]) -> None:
    node = bare_node("vm-ts-01")
    checks.test_os_is_64_bit(node)  # needs no expectation
    assert "no --stack given" in skips(checks.test_nvidia_smi_sees_every_gpu_of_the_vm, node)
