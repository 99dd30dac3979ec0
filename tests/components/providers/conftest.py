"""Fixtures of the dynamic provider tests: a private lab vCenter (tests/vms/private_lab.py) and Pulumi's own
dynamic provider server (``python -m pulumi.dynamic``) configured as the engine would with the stack config."""

from __future__ import annotations

import os
import ssl
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "vms"))

from dynamic_server import DynamicProviderServer  # noqa: E402
from private_lab import PrivateLab, private_lab  # noqa: E402

from gpufleet.connections import resolve_vcenter  # noqa: E402
from gpufleet.spec.stack import load_stack  # noqa: E402
from gpufleet.vsphere.tasks import wait_for_task  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
LAB = load_stack(ROOT / "stacks" / "Pulumi.lab.yaml")
VM = "vm-ts-01"


@pytest.fixture(scope="session")
def prov_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateLab]:
    with private_lab(tmp_path_factory.mktemp("prov-lab")) as lab:
        yield lab


@pytest.fixture(scope="module")
def server(prov_lab: PrivateLab) -> Iterator[DynamicProviderServer]:
    """The dynamic provider server, configured with the stack config (the vCenter password is a Pulumi secret;
    GPUFLEET_LAB_DIR lets `vcenter: {lab: true}` resources find the private lab)."""
    srv = DynamicProviderServer(env={"GPUFLEET_LAB_DIR": str(prov_lab.dir)})
    try:
        srv.configure({"gpufleet:vcenterPassword": prov_lab.password, "gpufleet:fleet": "{}"})
        yield srv
    finally:
        log = srv.close()
        sys.stderr.write(log[-4000:])


@pytest.fixture(scope="module")
def lab_server(lab_env: Any) -> Iterator[DynamicProviderServer]:
    """A provider server that reads the suite's shared lab (GPUFLEET_LAB_DIR is the test lab's), for resources
    whose ``vcenter`` is ``{lab: true}`` and that need the lab's hosts or guests."""
    srv = DynamicProviderServer(env={"GPUFLEET_LAB_DIR": os.environ["GPUFLEET_LAB_DIR"]}, timeout=300)
    try:
        srv.configure({})
        yield srv
    finally:
        srv.close()


@pytest.fixture
def lab_vms(prov_lab: PrivateLab) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    with prov_lab.session() as si:
        for name in names:
            prov_lab.destroy_vm(si, name)


@pytest.fixture
def vgpu_guest(lab_env: Any, lab_host: Callable[[str], Any]) -> Iterator[None]:
    """vm-ts-01 with a vGPU in vCenter (so its guest's nvidia-smi shows one); esxi-03 held by this test."""
    lab_host("esxi-03.lab")
    settings = resolve_vcenter(LAB.vcenter)
    si = SmartConnect(
        host=settings.host,
        port=settings.port,
        user=settings.user,
        pwd=settings.password.reveal(),
        sslContext=ssl.create_default_context(cafile=str(settings.ca_file)),
    )
    try:
        view = si.content.viewManager.CreateContainerView(si.content.rootFolder, [vim.VirtualMachine], True)
        vm = next(v for v in view.view if v.name == VM)
        view.Destroy()
        passthrough = vim.vm.device.VirtualPCIPassthrough
        add = vim.vm.device.VirtualDeviceSpec(
            operation="add", device=passthrough(key=-1, backing=passthrough.VmiopBackingInfo(vgpu="nvidia_l40s-24c"))
        )
        wait_for_task(vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=[add])), what="add vGPU", timeout=60)
        added = [d for d in vm.config.hardware.device if isinstance(d, passthrough)]
        # lab_host left the host's VMs powered off; the guest persona answers only while its VM runs.
        wait_for_task(vm.PowerOnVM_Task(), what=f"power on {VM}", timeout=60)
        yield
        wait_for_task(vm.PowerOffVM_Task(), what=f"power off {VM}", timeout=60)  # lab_host powers it on again
        remove = [vim.vm.device.VirtualDeviceSpec(operation="remove", device=d) for d in added]
        wait_for_task(vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=remove)), what="remove vGPU", timeout=60)
    finally:
        Disconnect(si)
