"""The guest checks over SSH against the lab's guest personas: what vCenter attaches is what the guest sees, the
licensing step (CLI) licenses and is idempotent, checks pass and fail with the command and output, host keys are
verified (unknown and changed keys refused), and ``gpufleet verify`` / plain pytest / testinfra ``--hosts`` agree."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gpufleet.checks import test_guests as checks
from gpufleet.checks.backend import ssh_host
from gpufleet.checks.nodes import Node
from gpufleet.errors import HostKeyError

pytestmark = [pytest.mark.lab, pytest.mark.slow]
Nodes = Callable[[], dict[str, Node]]


def _fails(check: Callable[..., None], *args: Any) -> str:
    with pytest.raises(AssertionError) as info:
        check(*args)
    return str(info.value)


def test_the_guest_sees_what_vcenter_attached(lab_guest: Callable[..., None], lab_nodes: Nodes) -> None:
    lab_guest.reserve("vm-ts-01", "vm-mig-01")  # type: ignore[attr-defined]
    lab_guest("vm-ts-01", apply=False)
    node = lab_nodes()["vm-ts-01"]
    message = _fails(checks.test_nvidia_smi_sees_every_gpu_of_the_vm, node)
    assert "nvidia-smi does not answer" in message and "$ nvidia-smi -q -x" in message and "[exit 9]" in message
    checks.test_os_is_64_bit(node)  # reached over SSH all the same

    lab_guest("vm-mig-01")  # vms apply attaches grid_a100d-3-40c
    node = lab_nodes()["vm-mig-01"]
    checks.test_nvidia_smi_sees_every_gpu_of_the_vm(node)
    checks.test_vgpu_profile_is_visible((node, 0, node.expect.vgpus[0]))
    checks.test_mig_instance_is_visible((node, 0, node.expect.vgpus[0]))
    checks.test_guest_driver_matches_the_host_driver_branch(node)


def test_passthrough_and_rdma_guests(lab_guest: Callable[..., None], lab_nodes: Nodes) -> None:
    lab_guest("vm-pt-01")
    lab_guest("vm-rdma-01")
    nodes = lab_nodes()
    pt, rdma = nodes["vm-pt-01"], nodes["vm-rdma-01"]
    checks.test_passthrough_gpu_is_visible((pt, 0, pt.expect.passthrough[0]))
    checks.test_nvidia_kernel_module_is_loaded(pt)
    for check in (
        checks.test_rdma_device_is_present,
        checks.test_rdma_link_is_active,
        checks.test_roce_version_is_as_desired,
    ):
        check((rdma, 0, rdma.expect.rdma[0]))
    checks.test_vgpu_profile_is_visible((rdma, 0, rdma.expect.vgpus[0]))


def test_licensing_over_ssh_is_idempotent_and_never_prints_the_token(
    lab_guest: Callable[..., None],
    lab_nodes: Nodes,
    gpufleet_cli: Callable[..., subprocess.CompletedProcess],
    lab_paths: Any,
) -> None:
    lab_guest("vm-ts-01")
    node = lab_nodes()["vm-ts-01"]
    message = _fails(checks.test_vgpu_licence_is_licensed, node)
    assert "Unlicensed (Unrestricted)" in message and "$ nvidia-smi -q -x" in message

    token = json.loads(Path(lab_paths.env_file).read_text())["secrets"]["GPUFLEET_NVIDIA_CLIENT_TOKEN"]
    first = gpufleet_cli("license", "apply", "stacks/Pulumi.lab.yaml", "--vm", "vm-ts-01", "--json")
    assert first.returncode == 0, first.stderr + first.stdout
    (result,) = json.loads(first.stdout)["guests"]
    assert result["changed"] and result["tokenWritten"] and result["griddConfChanged"] and result["restarted"]
    assert result["status"].startswith("Licensed (Expiry: ") and result["products"] == ["NVIDIA Virtual Compute Server"]
    assert token not in first.stdout + first.stderr

    again = gpufleet_cli("license", "apply", "stacks/Pulumi.lab.yaml", "--vm", "vm-ts-01", "--json")
    (result2,) = json.loads(again.stdout)["guests"]
    assert again.returncode == 0 and not result2["changed"] and result2["tokenFile"] == result["tokenFile"]

    node = lab_nodes()["vm-ts-01"]
    checks.test_nvidia_gridd_is_running(node)
    checks.test_vgpu_licence_is_licensed(node)
    checks.test_vgpu_licence_has_the_expected_feature(node)
    # testinfra's own file module, over SSH to the persona: the token's name and mode are NVIDIA's.
    token_file = node.host().file(result["tokenFile"])
    assert token_file.exists and token_file.mode == 0o744
    assert Path(result["tokenFile"]).name.startswith("client_configuration_token_")
    assert "FeatureType=1" in node.host().file("/etc/nvidia/gridd.conf").content_string

    node.sh("systemctl", "stop", "nvidia-gridd")
    node = lab_nodes()["vm-ts-01"]
    message = _fails(checks.test_nvidia_gridd_is_running, node)
    assert "$ systemctl is-active nvidia-gridd" in message and "inactive" in message
    assert "Unlicensed" in _fails(checks.test_vgpu_licence_is_licensed, node)


def test_host_keys_are_verified(lab_env: Any, lab_nodes: Nodes, tmp_path: Path) -> None:
    node = lab_nodes()["vm-pt-01"]
    assert node.settings is not None and node.settings.host_key  # the lab pins each guest's key
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    with pytest.raises(HostKeyError, match="not in"):
        ssh_host(replace(node.settings, host_key=None, known_hosts=empty)).run("true")
    # Another key for this address (esxi-01's), pinned or in known_hosts: a changed key is refused too.
    other = lab_env.host("esxi-01.lab")
    lines = Path(node.settings.known_hosts).read_text().splitlines()
    esxi_key = next(line.split(" ", 1)[1] for line in lines if line.startswith(f"[{other.address}]:{other.port} "))
    changed = tmp_path / "known_hosts_changed"
    changed.write_text(f"[{node.settings.address}]:{node.settings.port} {esxi_key}\n")
    with pytest.raises(HostKeyError, match="CHANGED"):
        ssh_host(replace(node.settings, host_key=None, known_hosts=changed)).run("true")
    with pytest.raises(HostKeyError, match="CHANGED"):
        ssh_host(replace(node.settings, host_key=esxi_key)).run("true")
    assert ssh_host(replace(node.settings, host_key=None)).run("uname -s").stdout.strip() == "Linux"  # known_hosts
    assert ssh_host(node.settings).run("uname -s").stdout.strip() == "Linux"  # pinned key


def test_gpufleet_verify_passes_then_fails_with_exit_2(
    lab_guest: Callable[..., None], gpufleet_cli: Callable[..., subprocess.CompletedProcess], tmp_path: Path
) -> None:
    lab_guest.reserve("vm-pt-01", "vm-mig-01")  # type: ignore[attr-defined]
    lab_guest("vm-pt-01")
    junit = tmp_path / "verify.xml"
    ok = gpufleet_cli("verify", "stacks/Pulumi.lab.yaml", "--node", "vm-pt-01", "--json", "--junit", str(junit))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    document = json.loads(ok.stdout)
    assert document["summary"]["failed"] == 0 and document["summary"]["passed"] >= 6
    passed = {c["check"] for c in document["checks"] if c["outcome"] == "passed"}
    assert {"test_passthrough_gpu_is_visible", "test_os_is_64_bit", "test_gpu_container_sees_the_gpus"} <= passed
    skipped = {c["message"] for c in document["checks"] if c["outcome"] == "skipped"}
    assert "vm-pt-01: passthrough GPUs need no vGPU software licence" in skipped
    suite = ET.parse(junit).getroot()
    assert int(suite.find("testsuite").get("failures")) == 0 and int(suite.find("testsuite").get("tests")) == len(
        document["checks"]
    )

    lab_guest("vm-mig-01")  # vGPU attached, not licensed yet
    bad = gpufleet_cli("verify", "stacks/Pulumi.lab.yaml", "--node", "vm-mig-01")
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "FAILED vm-mig-01 test_vgpu_licence_is_licensed" in bad.stdout and "$ nvidia-smi -q -x" in bad.stdout


def test_plain_pytest_with_testinfra_hosts_and_an_ssh_config(
    lab_guest: Callable[..., None], lab_env: Any, tmp_path: Path
) -> None:
    lab_guest("vm-pt-01")
    guest = lab_env.guest("vm-pt-01")
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host vm-pt-01\n  HostName {guest.address}\n  Port {guest.port}\n  User {guest.user}\n"
        f"  IdentityFile {guest.key_file}\n  UserKnownHostsFile {guest.known_hosts}\n  StrictHostKeyChecking no\n"
    )
    junit = tmp_path / "pytest.xml"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--pyargs",
            "gpufleet.checks",
            "--noconftest",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            "--stack",
            "stacks/Pulumi.lab.yaml",
            "--hosts",
            f"paramiko://vm-pt-01?ssh_config={config}",
            f"--junitxml={junit}",
            "-q",
        ],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert "test_passthrough_gpu_is_visible[vm-pt-01-0-H100-80GB-PCIe]" in cases
    assert cases["test_passthrough_gpu_is_visible[vm-pt-01-0-H100-80GB-PCIe]"].find("skipped") is None
    # `StrictHostKeyChecking no` is not honoured: with the wrong known_hosts the node is refused (setup error).
    config.write_text(
        config.read_text().replace(f"UserKnownHostsFile {guest.known_hosts}", f"UserKnownHostsFile {tmp_path / 'none'}")
    )
    (tmp_path / "none").write_text("")
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--pyargs",
            "gpufleet.checks",
            "--noconftest",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            "--stack",
            "stacks/Pulumi.lab.yaml",
            "--hosts",
            f"paramiko://vm-pt-01?ssh_config={config}",
            "-q",
            "-k",
            "64_bit",
        ],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 1 and "HostKeyError" in refused.stdout, refused.stdout[-3000:]
