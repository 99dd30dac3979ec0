"""A throwaway OpenSSH sshd on a loopback address, for the SSH runner's tests (no lab needed).

Real sshd, real host key, key authentication only, internal-sftp. Stopped (by pid) when the test ends.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from gpufleet.connections import SshSettings

SSHD = "/usr/sbin/sshd"
ADDRESS = "127.0.77.1"


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=30)
    return path.with_name(path.name + ".pub").read_text().strip()


@dataclass
class Sshd:
    root: Path
    address: str
    port: int
    host_pub: str  # "ssh-ed25519 AAAA... comment"
    client_key: Path
    known_hosts: Path
    config: Path
    process: subprocess.Popen | None = None

    def settings(self, **overrides: object) -> SshSettings:
        values: dict[str, object] = {
            "name": "test-host",
            "address": self.address,
            "port": self.port,
            "user": "root",
            "key_file": self.client_key,
            "known_hosts": self.known_hosts,
        }
        values.update(overrides)
        return SshSettings(**values)  # type: ignore[arg-type]

    def start(self) -> None:
        with open(self.root / "sshd.log", "ab") as log:
            self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)], stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.address, self.port), timeout=0.5):
                    return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError((self.root / "sshd.log").read_text()) from None
                time.sleep(0.05)
        raise RuntimeError("sshd did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None


@pytest.fixture
def sshd(tmp_path: Path):
    if not os.access(SSHD, os.X_OK):
        pytest.skip("OpenSSH server (sshd) is not installed: apt-get install openssh-server")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    host_key = tmp_path / "ssh_host_ed25519_key"
    host_pub = _keygen(host_key)
    client_key = tmp_path / "id_ed25519"
    client_pub = _keygen(client_key)
    (tmp_path / "authorized_keys").write_text(client_pub + "\n")
    port = _free_port(ADDRESS)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[{ADDRESS}]:{port} {' '.join(host_pub.split()[:2])}\n")
    (tmp_path / "sftp-root").mkdir()
    config = tmp_path / "sshd_config"
    config.write_text(
        f"ListenAddress {ADDRESS}\nPort {port}\nHostKey {host_key}\nPidFile {tmp_path}/sshd.pid\n"
        f"AuthorizedKeysFile {tmp_path}/authorized_keys\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nPermitRootLogin yes\nStrictModes no\nUsePAM no\nLogLevel ERROR\n"
        "Subsystem sftp internal-sftp\nMaxStartups 50\nMaxSessions 50\n"
    )
    server = Sshd(tmp_path, ADDRESS, port, host_pub, client_key, known_hosts, config)
    server.start()
    try:
        yield server
    finally:
        server.stop()
