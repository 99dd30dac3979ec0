"""Fixtures of the lab tests of the checks and of ``guests prepare`` (a pytest plugin module, imported by
tests/checks/conftest.py and tests/guest/conftest.py): lab guests with their VM converged in vCenter (``gpufleet vms apply``'s engine),
nodes of the lab stack reached over SSH (host keys verified), and the ``gpufleet`` CLI.

A test that uses a guest holds the guest VM's ESXi host (``lab_host``: the lab's per-host lock, the convention for
VMs too), resets the guest persona, and removes the GPU/RDMA devices it added when it ends."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gpufleet.checks.nodes import Node, nodes_from_stack, stack_ssh_settings
from gpufleet.spec.stack import Stack, load_stack

ROOT = Path(__file__).resolve().parents[2]
LAB_STACK = ROOT / "stacks" / "Pulumi.lab.yaml"


@pytest.fixture(scope="session")
def lab_stack_file() -> Path:
    return LAB_STACK


@pytest.fixture(scope="session")
def stack(lab_env: Any) -> Stack:
    return load_stack(LAB_STACK)


@pytest.fixture
def lab_nodes(stack: Stack) -> Callable[[], dict[str, Node]]:
    """Fresh nodes of the lab stack (facts are read once per node, so a test takes new ones after a change)."""

    def make() -> dict[str, Node]:
        hosts, guests = stack_ssh_settings(stack)
        return {n.name: n for n in nodes_from_stack(stack.fleet, hosts, guests)}

    return make


def _gpu_devices(vm: Any) -> list[Any]:
    from pyVmomi import vim

    kinds = (vim.vm.device.VirtualPCIPassthrough, vim.vm.device.VirtualVmxnet3Vrdma)
    return [d for d in vm.config.hardware.device if isinstance(d, kinds)]


def _reconfigure(vm: Any, changes: list[tuple[str, Any]], what: str) -> None:
    from pyVmomi import vim

    from gpufleet.vsphere.tasks import wait_for_task

    if not changes:
        return
    if vm.runtime.powerState != "poweredOff":
        wait_for_task(vm.PowerOffVM_Task(), what=f"power off {vm.name}", timeout=60)
    spec = vim.vm.ConfigSpec(
        deviceChange=[vim.vm.device.VirtualDeviceSpec(operation=op, device=d) for op, d in changes]
    )
    wait_for_task(vm.ReconfigVM_Task(spec=spec), what=what, timeout=60)


def _power_on(vm: Any) -> None:
    from gpufleet.vsphere.tasks import wait_for_task

    if vm.runtime.powerState != "poweredOn":
        wait_for_task(vm.PowerOnVM_Task(), what=f"power on {vm.name}", timeout=60)


@pytest.fixture
def lab_guest(stack: Stack, lab_host: Callable[[str], Any], lab_paths: Any) -> Iterator[Callable[..., None]]:
    """``lab_guest("vm-ts-01", apply=True)``: hold the VM's host, reset the guest persona, detach the VM's GPU and
    RDMA devices in vCenter, then (apply=True) give the VM its devices from the lab stack (``vms apply``'s engine).
    Afterwards the VM gets back the devices it had, and the guest is reset again."""
    from pyVmomi import vim

    from gpufleet.connections import resolve_vcenter
    from gpufleet.vms.apply import apply_vms
    from gpufleet.vsphere.connect import connect
    from gpufleet.vsphere.inventory import find_by_name
    from lab.guest.units import reset_guest
    from lab.vcenter import LabAdmin

    saved: list[tuple[str, list[Any], str]] = []
    held_hosts: set[str] = set()

    with connect(resolve_vcenter(stack.vcenter)) as si:

        def hold(host: str) -> None:
            if host not in held_hosts:  # the per-host lock is not re-entrant
                lab_host(host)
                held_hosts.add(host)
                # The host was reset (no driver): let vCenter offer its vGPU profiles, as a prepared host does
                # (the lab's admin endpoint; host preparation itself is tested elsewhere).
                LabAdmin().update_host(host, driverActive=True, graphicsType="sharedDirect")

        def reserve(*names: str) -> None:
            """Hold the hosts of these VMs up front, in sorted order: tests that take several hosts one by one
            in different orders would otherwise deadlock each other on the per-host locks."""
            for host in sorted({next(v.host for v in stack.fleet.vms if v.name == n) for n in names}):
                hold(host)

        def take(name: str, apply: bool = True) -> None:
            vm_spec = next(v for v in stack.fleet.vms if v.name == name)
            hold(vm_spec.host)
            reset_guest(lab_paths, name)
            vm = find_by_name(si, vim.VirtualMachine, name)
            before = _gpu_devices(vm)
            saved.append((name, before, str(vm.runtime.powerState)))
            _reconfigure(vm, [("remove", d) for d in before], f"detach the devices of {name}")
            if apply:
                report = apply_vms(si, stack.fleet, names=[name])
                assert not report.failed, report.to_json()
            _power_on(vm)  # the guest persona answers only while its VM runs

        take.reserve = reserve  # type: ignore[attr-defined]
        yield take
        for name, before, power in reversed(saved):
            vm = find_by_name(si, vim.VirtualMachine, name)
            _reconfigure(vm, [("remove", d) for d in _gpu_devices(vm)], f"detach the test devices of {name}")
            for i, device in enumerate(before):
                device.key = -(i + 1)
            _reconfigure(vm, [("add", d) for d in before], f"give {name} its devices back")
            if power == "poweredOn":
                _power_on(vm)
            reset_guest(lab_paths, name)


@pytest.fixture
def gpufleet_cli() -> Callable[..., subprocess.CompletedProcess]:
    """Run the gpufleet CLI (``python -m gpufleet``) with the session's environment (GPUFLEET_LAB_DIR)."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "gpufleet", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env or dict(os.environ),
        )

    return run
