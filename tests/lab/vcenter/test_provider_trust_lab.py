"""The environment ``gpufleet pulumi`` gives the engine (and so pulumi-vsphere, which cannot be built here) decides
what a Go TLS client trusts: shown with Go's own crypto/tls against the lab's vCenter. With the lab stack's trust
the handshake verifies; with the machine's defaults (system CAs) or a stack that cannot be honoured it is refused.
pulumi-vsphere verifies through the same code (govmomi's HTTP transport, Go's system roots)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gpufleet.engine import workspace as engine

pytestmark = pytest.mark.lab

DIAL = """package main

import (
	"crypto/tls"
	"fmt"
	"os"
)

// What pulumi-vsphere's transport does: verify against Go's system roots (no RootCAs of its own).
func main() {
	conn, err := tls.Dial("tcp", os.Args[1], &tls.Config{})
	if err != nil {
		fmt.Println("refused:", err)
		os.Exit(3)
	}
	conn.Close()
	fmt.Println("verified")
}
"""


@pytest.fixture(scope="module")
def go_dial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.skip("the Go toolchain is not on PATH (scripts/setup.sh installs it)")
    work = tmp_path_factory.mktemp("go-dial")
    (work / "dial.go").write_text(DIAL)
    env = dict(os.environ, CGO_ENABLED="0", GOTOOLCHAIN="local", GOFLAGS="")
    done = subprocess.run(
        [go, "build", "-o", str(work / "dial"), str(work / "dial.go")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return work / "dial"


def _dial(binary: Path, address: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), address], env=env, capture_output=True, text=True, timeout=60)


def test_go_tls_trusts_what_gpufleet_pulumi_says(lab_env: Any, go_dial: Path, tmp_path: Path) -> None:
    vc = lab_env.vcenter
    address = f"{vc.host}:{vc.port}"
    base = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    base[engine.STATE_ENV] = str(tmp_path / "state")

    lab = dict(base, **engine.trust_environ("lab", base))
    assert lab["SSL_CERT_FILE"] == vc.ca_file
    done = _dial(go_dial, address, lab)
    assert done.returncode == 0 and done.stdout.strip() == "verified", done.stdout + done.stderr

    for what, env in (
        ("the system CAs", base),
        ("a thumbprint-only stack", dict(base, **engine.trust_environ("dev", base))),
        ("no stack", dict(base, **engine.trust_environ("", base))),
    ):
        done = _dial(go_dial, address, env)
        assert done.returncode == 3 and "certificate signed by unknown authority" in done.stdout, (what, done.stdout)
