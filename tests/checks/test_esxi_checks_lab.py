"""The ESXi host checks over SSH against the lab's simulated hosts: a freshly installed host fails the checks the
spec makes (driver, nvidia-smi, graphics type, MIG, ATS) with the esxcli / nvidia-smi command and its output; after
``gpufleet hosts prepare`` every check passes (also through ``gpufleet verify``); changes made behind gpufleet's
back over SSH (maintenance mode, graphics type, a MIG change pending until reboot, ATS pending) fail again."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from gpufleet.checks import test_esxi_hosts as checks
from gpufleet.checks.nodes import Node

pytestmark = [pytest.mark.lab, pytest.mark.slow]
Nodes = Callable[[], dict[str, Node]]
A100 = "0000:3b:00.0"  # esxi-01's first A100 (MIG in the lab stack; Ampere: MIG changes wait for a reboot)
CX6 = "0000:31:00.0"  # esxi-02's ConnectX-6 Dx with ats: true


def _fails(check: Callable[..., None], *args: Any) -> str:
    with pytest.raises(AssertionError) as info:
        check(*args)
    return str(info.value)


def _prepare(cli: Callable[..., subprocess.CompletedProcess], host: str) -> None:
    proc = cli("hosts", "prepare", "stacks/Pulumi.lab.yaml", "--host", host, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_a_fresh_host_fails_then_passes_after_prepare_then_drift_fails(
    lab_host: Callable[[str], Any], lab_nodes: Nodes, gpufleet_cli: Callable[..., subprocess.CompletedProcess]
) -> None:
    lab_host("esxi-01.lab")
    node = lab_nodes()["esxi-01.lab"]
    message = _fails(checks.test_nvidia_host_driver_is_installed_at_the_desired_version, node)
    assert "no NVIDIA host driver component is installed; the spec wants 550.90.05" in message
    assert "$ esxcli --formatter=xml software component list" in message
    message = _fails(checks.test_nvidia_smi_answers_with_the_desired_driver, node)
    assert "nvidia-smi does not answer" in message and "$ nvidia-smi -q -x" in message
    assert "nvidia-smi does not answer" in _fails(checks.test_gpu_mig_mode_is_as_desired, (node, A100))
    checks.test_host_is_not_in_maintenance_mode(node)
    checks.test_host_has_no_reboot_pending(node)

    _prepare(gpufleet_cli, "esxi-01.lab")
    node = lab_nodes()["esxi-01.lab"]
    checks.test_nvidia_host_driver_is_installed_at_the_desired_version(node)
    checks.test_nvidia_smi_answers_with_the_desired_driver(node)
    checks.test_default_graphics_type_is_as_desired(node)
    checks.test_host_is_not_in_maintenance_mode(node)
    checks.test_host_has_no_reboot_pending(node)
    for pci in node.desired.gpu_models:
        checks.test_gpu_mig_mode_is_as_desired((node, pci))
        checks.test_gpu_has_no_mig_change_pending((node, pci))
    checks.test_host_settings_are_as_the_host_steps_want(node)
    verify = gpufleet_cli("verify", "stacks/Pulumi.lab.yaml", "--node", "esxi-01.lab", "--json")
    assert verify.returncode == 0, verify.stdout[-3000:] + verify.stderr[-2000:]
    summary = json.loads(verify.stdout)["summary"]
    assert summary["failed"] == 0 and summary["passed"] >= 8

    # Behind gpufleet's back, over SSH: maintenance mode, graphics type, MIG off pending until the next reboot.
    for argv in (
        ["esxcli", "system", "maintenanceMode", "set", "--enable", "true"],
        ["esxcli", "graphics", "host", "set", "--default-type", "Shared"],
        ["nvidia-smi", "-i", "00000000:3B:00.0", "-mig", "0"],  # nvidia-smi's own spelling of A100
    ):
        assert node.sh(*argv).ok, argv
    node = lab_nodes()["esxi-01.lab"]
    message = _fails(checks.test_host_is_not_in_maintenance_mode, node)
    assert (
        "esxi-01.lab is still in maintenance mode" in message
        and "$ esxcli --formatter=xml system maintenanceMode get" in message
    )
    message = _fails(checks.test_default_graphics_type_is_as_desired, node)
    assert (
        "default graphics type is Shared; the spec wants SharedPassthru" in message and "graphics host get" in message
    )
    message = _fails(checks.test_gpu_has_no_mig_change_pending, (node, A100))
    assert (
        f"GPU {A100} has a MIG mode change pending (Enabled -> Disabled)" in message
        and "<pending_mig>Disabled</pending_mig>" in message
    )
    checks.test_gpu_mig_mode_is_as_desired((node, A100))  # still Enabled until the reboot
    message = _fails(checks.test_host_has_no_reboot_pending, node)
    assert f"GPU {A100} MIG mode Enabled -> Disabled" in message
    message = _fails(checks.test_host_settings_are_as_the_host_steps_want, node)  # every step's comparison
    assert "graphics/defaultType: default graphics type is not sharedDirect (wanted sharedDirect, is shared)" in message
    assert f"gpus/{A100}/migModePending: {A100} MIG mode will change to disabled at the next reboot" in message


def test_ats_for_gpudirect_rdma(
    lab_host: Callable[[str], Any], lab_nodes: Nodes, gpufleet_cli: Callable[..., subprocess.CompletedProcess]
) -> None:
    lab_host("esxi-02.lab")
    node = lab_nodes()["esxi-02.lab"]
    checks.test_ats_is_enabled_on_the_host_for_gpudirect_rdma((node, CX6))  # ESXi's default is TRUE
    message = _fails(checks.test_ats_is_enabled_on_the_connectx_nic, (node, CX6))
    assert (
        f"ATS_ENABLED of NIC {CX6} is off (next boot: False)" in message
        and f"$ mlxconfig -d {CX6} -e q ATS_ENABLED" in message
    )

    _prepare(gpufleet_cli, "esxi-02.lab")
    node = lab_nodes()["esxi-02.lab"]
    checks.test_ats_is_enabled_on_the_host_for_gpudirect_rdma((node, CX6))
    checks.test_ats_is_enabled_on_the_connectx_nic((node, CX6))
    checks.test_host_has_no_reboot_pending(node)
    checks.test_host_settings_are_as_the_host_steps_want(node)

    assert node.sh("esxcli", "system", "settings", "kernel", "set", "-s", "atsSupport", "-v", "FALSE").ok
    node = lab_nodes()["esxi-02.lab"]
    message = _fails(checks.test_ats_is_enabled_on_the_host_for_gpudirect_rdma, (node, CX6))
    assert (
        "kernel setting atsSupport is configured FALSE, runtime TRUE" in message
        and "kernel list -o atsSupport" in message
    )
    message = _fails(checks.test_host_has_no_reboot_pending, node)
    assert "esxi-02.lab needs a reboot: kernel setting atsSupport configured FALSE, runtime TRUE" in message
