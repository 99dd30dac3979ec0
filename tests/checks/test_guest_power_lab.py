"""A lab guest persona answers only while vCenter shows its VM poweredOn: powered off, it fails like an unreachable
guest (ssh's exit 255 and "Connection refused"), and ``gpufleet verify`` reports the node unreachable (exit 1)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

import pytest
from pyVmomi import vim

from gpufleet.checks.backend import ssh_host
from gpufleet.checks.nodes import Node
from gpufleet.connections import resolve_vcenter
from gpufleet.spec.stack import Stack
from gpufleet.vsphere.connect import connect
from gpufleet.vsphere.inventory import find_by_name
from gpufleet.vsphere.tasks import wait_for_task

pytestmark = [pytest.mark.lab, pytest.mark.slow]


def test_a_powered_off_guest_is_unreachable_and_verify_says_so(
    lab_guest: Callable[..., None],
    lab_nodes: Callable[[], dict[str, Node]],
    stack: Stack,
    gpufleet_cli: Callable[..., subprocess.CompletedProcess],
) -> None:
    lab_guest("vm-pt-01", apply=False)  # holds esxi-02; powers vm-pt-01 back on afterwards
    node = lab_nodes()["vm-pt-01"]
    assert node.settings is not None
    assert ssh_host(node.settings).run("uname -s").stdout.strip() == "Linux"  # running: it answers

    with connect(resolve_vcenter(stack.vcenter)) as si:
        vm = find_by_name(si, vim.VirtualMachine, "vm-pt-01")
        wait_for_task(vm.PowerOffVM_Task(), what="power off vm-pt-01", timeout=60)
    off = ssh_host(node.settings).run("uname -s")
    assert off.rc == 255 and off.stdout == ""
    assert f"ssh: connect to host {node.settings.address} port {node.settings.port}: Connection refused" in off.stderr
    assert "vm-pt-01 is poweredOff in vCenter" in off.stderr

    proc = gpufleet_cli("verify", "stacks/Pulumi.lab.yaml", "--node", "vm-pt-01", "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    document = json.loads(proc.stdout)
    assert document["summary"]["passed"] == 0 and document["summary"]["error"] >= 1
    errors = [c["message"] for c in document["checks"] if c["outcome"] == "error"]
    assert errors and all("vm-pt-01 is unreachable over SSH: ssh: connect to host" in m for m in errors), errors
