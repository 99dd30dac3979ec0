"""testinfra's OpenSSH backend (``--hosts ssh://NAME?ssh_config=F``) against a lab ESXi host: an ssh_config that
turns host key checking off is refused naming the option and the file, and verification is forced on the ssh
command line whatever the config says (a host whose key is not known is refused by ssh itself)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gpufleet.checks.backend import FORCED_OPENSSH_OPTIONS
from gpufleet.checks.nodes import Node, build_nodes
from gpufleet.errors import ConnectError, HostKeyError

pytestmark = pytest.mark.lab

HOST = "esxi-01.lab"


def _config(tmp_path: Path, host: Any, extra: str, name: str = "ssh_config") -> Path:
    config = tmp_path / name
    config.write_text(
        f"Host {host.name}\n  HostName {host.address}\n  Port {host.port}\n  User {host.user}\n"
        f"  IdentityFile {host.key_file}\n  IdentitiesOnly yes\n  BatchMode yes\n{extra}"
    )
    return config


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ("  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n", "StrictHostKeyChecking no"),
        ("  StrictHostKeyChecking accept-new\n", "StrictHostKeyChecking accept-new"),
        ("  UserKnownHostsFile /dev/null\n", "UserKnownHostsFile /dev/null"),
    ],
)
def test_a_config_that_turns_checking_off_is_refused_naming_option_and_file(
    lab_env: Any, tmp_path: Path, extra: str, named: str
) -> None:
    config = _config(tmp_path, lab_env.host(HOST), extra)
    with pytest.raises(HostKeyError) as caught:
        build_nodes(None, [f"ssh://{HOST}?ssh_config={config}"])
    message = str(caught.value)
    assert named in message and str(config) in message and HOST in message


def test_the_plugin_refuses_it_as_a_usage_error(lab_env: Any, tmp_path: Path) -> None:
    config = _config(tmp_path, lab_env.host(HOST), "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--pyargs", "gpufleet.checks"]
        + ["--hosts", f"ssh://{HOST}?ssh_config={config}", "-k", "kernel or driver"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = done.stdout + done.stderr
    assert done.returncode not in (0, 1), out[-3000:]  # collection stopped: no check ran (1 would be "failed")
    assert f"gpufleet checks: {HOST}: the ssh_config {config} sets StrictHostKeyChecking no" in out
    assert " passed" not in out


def test_verification_is_forced_whatever_the_config_says(lab_env: Any, tmp_path: Path) -> None:
    host = lab_env.host(HOST)
    empty = tmp_path / "known_hosts_without_the_host"
    empty.write_text("")
    config = _config(tmp_path, host, f"  StrictHostKeyChecking no\n  UserKnownHostsFile {empty}\n")
    # Built directly, past the up-front refusal (as a config ssh -G could not show would be): ssh itself refuses.
    node = Node(name=HOST, kind="any", hostspec=f"ssh://{HOST}?ssh_config={config}")
    with pytest.raises(ConnectError, match="Host key verification failed"):
        node.kernel()
    assert FORCED_OPENSSH_OPTIONS in (node.host().backend.ssh_extra_args or "")
    assert empty.read_text() == ""  # nothing was added


def test_a_config_with_the_pinned_known_hosts_connects(lab_env: Any, tmp_path: Path) -> None:
    host = lab_env.host(HOST)
    config = _config(tmp_path, host, f"  UserKnownHostsFile {host.known_hosts}\n")
    (node,) = build_nodes(None, [f"ssh://{HOST}?ssh_config={config}"])
    assert node.kernel() == "VMkernel"
