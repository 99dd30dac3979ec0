"""The checks' pytest plugin and runner: nodes built from a stack (lab env or ssh: blocks) and from testinfra's
--hosts, ssh_config handling, the in-process run behind ``gpufleet verify`` and its exit codes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gpufleet.checks.backend import settings_from_hostspec
from gpufleet.checks.nodes import build_nodes
from gpufleet.checks.run import run_checks
from gpufleet.errors import SpecError

REPO = Path(__file__).resolve().parents[2]
LAB_STACK = REPO / "stacks" / "Pulumi.lab.yaml"
THUMB = ":".join(["AB"] * 32)


def _fake_lab(root: Path) -> Path:
    """A lab env file (no lab processes): what nodes are built from for `vcenter: {lab: true}`."""
    root.mkdir(parents=True, exist_ok=True)
    known = root / "known_hosts"
    known.write_text("")
    entry = {"port": 2022, "user": "root", "key_file": str(root / "id"), "known_hosts": str(known)}
    hosts = [{"name": f"esxi-0{i}.lab", "address": f"127.0.0.1{i}", **entry} for i in range(1, 5)]
    guests = [
        {"name": n, "address": f"127.0.100.1{i}", **entry}
        for i, n in enumerate(["vm-ts-01", "vm-mig-01", "vm-pt-01"], 1)
    ]
    vcenter = {
        "url": "https://127.0.0.1:1/sdk",
        "host": "127.0.0.1",
        "port": 1,
        "user": "u",
        "password": "p",
        "ca_file": "/x",
        "thumbprint": THUMB,
    }
    (root / "env.json").write_text(json.dumps({"vcenter": vcenter, "hosts": hosts, "guests": guests}))
    return root


def test_nodes_of_the_lab_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUFLEET_LAB_DIR", str(_fake_lab(tmp_path / "lab")))
    nodes = {n.name: n for n in build_nodes(str(LAB_STACK))}
    assert [n for n in nodes if n.startswith("esxi")] == ["esxi-01.lab", "esxi-02.lab", "esxi-03.lab", "esxi-04.lab"]
    assert (
        nodes["esxi-02.lab"].desired.ats_nics == ("0000:31:00.0",)
        and nodes["esxi-02.lab"].settings.address == "127.0.0.12"
    )
    assert nodes["esxi-01.lab"].desired.mig == {"0000:3b:00.0": True, "0000:5e:00.0": True}
    ts = nodes["vm-ts-01"].expect
    assert (ts.vgpus[0].vgpu_type, ts.host_driver, ts.licensing) == ("L40S-24C", "550.90.05", True)
    assert nodes["vm-mig-01"].expect.vgpus[0].mig_instance == "3g.40gb"
    assert nodes["vm-pt-01"].expect.passthrough[0].device_ids == (0x2331,)
    assert (
        nodes["vm-rdma-01"].unreachable and "no SSH settings" in nodes["vm-rdma-01"].unreachable
    )  # not in this lab env
    only = build_nodes(str(LAB_STACK), only=["vm-pt-01"])
    assert [n.name for n in only] == ["vm-pt-01"]
    with pytest.raises(SpecError, match="unknown node"):
        build_nodes(str(LAB_STACK), only=["vm-nope"])


def test_testinfra_hosts_pick_and_reach_nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUFLEET_LAB_DIR", str(tmp_path / "no-lab"))  # --hosts needs no lab env
    (node,) = build_nodes(str(LAB_STACK), ["local://vm-pt-01"])
    assert (node.name, node.hostspec, node.expect.passthrough[0].model) == (
        "vm-pt-01",
        "local://vm-pt-01",
        "H100-80GB-PCIe",
    )
    with pytest.raises(SpecError, match="'vm-nope' is not a host or VM of the stack"):
        build_nodes(str(LAB_STACK), ["local://vm-nope"])
    (bare,) = build_nodes(None, ["local://anything"])
    assert bare.kind == "any" and bare.expect is None and bare.desired is None


def test_ssh_config_of_a_paramiko_hostspec(tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(
        "Host vm-a\n  HostName 127.0.100.11\n  Port 2022\n  User ops\n  IdentityFile ~/keys/id\n"
        f"  UserKnownHostsFile {tmp_path}/kh\n  StrictHostKeyChecking no\n"
    )
    s = settings_from_hostspec(f"paramiko://vm-a?ssh_config={config}")
    assert (s.name, s.address, s.port, s.user) == ("vm-a", "127.0.100.11", 2022, "ops")
    assert s.key_file == Path("~/keys/id").expanduser() and s.known_hosts == tmp_path / "kh"
    plain = settings_from_hostspec("paramiko://root@10.0.0.5:2200")
    assert (plain.address, plain.port, plain.user, plain.known_hosts) == (
        "10.0.0.5",
        2200,
        "root",
        Path("~/.ssh/known_hosts").expanduser(),
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stack_file(tmp_path: Path, vm_ssh: str | None) -> Path:
    ssh = f", ssh: {vm_ssh}" if vm_ssh else ""
    path = tmp_path / "Pulumi.t.yaml"
    path.write_text(
        f"""config:
  gpufleet:vcenter: {{host: vc, user: u, password: {{env: NOT_NEEDED}}, thumbprint: "{THUMB}"}}
  gpufleet:fleet:
    version: v1
    datacenter: D
    cluster: C
    hosts: [{{name: h, gpus: [{{pci: "0000:3b:00.0", model: T4, mode: dynamic-passthrough}}]}}]
    templates: [{{name: t}}]
    vms:
      - {{name: vm-a, template: t, passthrough: [{{model: T4}}]{ssh}}}
"""
    )
    return path


def test_run_checks_collects_every_outcome_and_writes_junit(tmp_path: Path) -> None:
    junit = tmp_path / "j.xml"
    # This machine is vm-a (local backend). No container is started here: the docker checks are deselected.
    run = run_checks(
        _stack_file(tmp_path, None),
        junit=junit,
        hosts="local://vm-a",
        extra_args=["-k", "not container and not docker"],
    )
    outcomes = {(r.check, r.outcome) for r in run.results}
    assert ("test_os_is_64_bit", "passed") in outcomes
    assert ("test_passthrough_gpu_is_visible", "failed") in outcomes or (
        "test_passthrough_gpu_is_visible",
        "passed",
    ) in outcomes
    assert all(r.message for r in run.results if r.outcome in ("skipped", "failed"))
    assert any(r.message == "vm-a: passthrough GPUs need no vGPU software licence" for r in run.results)
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and int(suite.get("tests")) == len(run.results) and suite.get("name") == "gpufleet-verify"


def _verify(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GPUFLEET_LAB_DIR"}
    return subprocess.run(
        [sys.executable, "-m", "gpufleet", "verify", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=env,
    )


def test_verify_exit_codes_for_bad_input_and_unreachable_nodes(tmp_path: Path) -> None:
    missing = _verify(str(tmp_path / "nope.yaml"), "--json")
    assert missing.returncode == 1 and "stack file not found" in missing.stderr and missing.stdout == ""
    (tmp_path / "kh").write_text("")
    (tmp_path / "id").write_text("")
    ssh = f"{{address: 127.0.0.1, port: {_closed_port()}, keyFile: {tmp_path / 'id'}, knownHosts: {tmp_path / 'kh'}}}"
    unreachable = _verify(str(_stack_file(tmp_path, ssh)), "--json")
    assert unreachable.returncode == 1, unreachable.stdout + unreachable.stderr
    document = json.loads(unreachable.stdout)
    errors = [c for c in document["checks"] if c["outcome"] == "error"]
    assert errors and all("unreachable over SSH" in c["message"] for c in errors)
    invalid = _stack_file(tmp_path, None)
    invalid.write_text(invalid.read_text().replace("mode: dynamic-passthrough", "mode: vgpu"))
    refused = _verify(str(invalid), "--json")  # the T4 is no passthrough GPU any more: validate rejects the stack
    assert refused.returncode == 1 and "vms[vm-a].passthrough[0].model" in refused.stderr, refused.stderr
    no_ssh = _verify(str(_stack_file(tmp_path, None)), "--json")
    assert no_ssh.returncode == 0 and json.loads(no_ssh.stdout)["summary"]["passed"] == 0
    assert {c["message"] for c in json.loads(no_ssh.stdout)["checks"]} >= {
        "no SSH settings for VM vm-a (vms[].ssh, or a lab guest)"
    }
