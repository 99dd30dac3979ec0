"""The Bitfusion client configuration of a GPU pool's clients, placed over SSH (host keys verified): the servers list
(``/etc/bitfusion/servers.conf``), the CA that signs the servers' certificates (``/etc/bitfusion/tls/ca.crt``) and
the client token (``/root/.bitfusion/client.yaml``) — the three files of a Bitfusion token tarball (ca.crt,
client.yaml, servers.conf; docs/reference/bitfusion_formats.txt).

The CA and the token are secrets: written through the licensing step's private temporary file (created 0600, fed on
stdin, never on a command line), left 0600, never logged or returned; a file is compared by its SHA-256 and mode, so
a rerun with the same secrets changes nothing. One implementation for ``gpufleet guests prepare`` and the
``BitfusionClientConfig`` Pulumi resource.
"""

from __future__ import annotations

import hashlib
import posixpath
import shlex
from dataclasses import dataclass
from typing import Any

from gpufleet.connections import Secret, read_lab_env, resolve_stack_secret
from gpufleet.errors import SpecError, SpecIssue
from gpufleet.licensing.guest import GuestRunner, _run, _write  # one way to write a guest file holding a secret
from gpufleet.spec.models import GpuPool
from gpufleet.spec.stack import Stack

SERVERS_CONF = "/etc/bitfusion/servers.conf"
CA_FILE = "/etc/bitfusion/tls/ca.crt"
CLIENT_YAML = "/root/.bitfusion/client.yaml"
SERVER_PORT = 56001  # Bitfusion servers' client port (servers.conf in the captures)
PUBLIC_MODE = "644"
SECRET_MODE = "600"


def servers_conf(addresses: list[str]) -> str:
    """servers.conf as the Bitfusion token tarball writes it: one ``- addresses: [ip:port]`` entry per server."""
    return "servers:\n" + "".join(f"- addresses:\n  - {a}:{SERVER_PORT}\n" for a in addresses)


@dataclass(frozen=True)
class ClientFile:
    path: str
    mode: str
    secret: bool
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def client_files(server_addresses: list[str], ca: Secret, token: Secret) -> list[ClientFile]:
    return [
        ClientFile(SERVERS_CONF, PUBLIC_MODE, False, servers_conf(server_addresses).encode()),
        ClientFile(CA_FILE, SECRET_MODE, True, ca.reveal().strip().encode() + b"\n"),
        ClientFile(CLIENT_YAML, SECRET_MODE, True, f"token: {token.reveal().strip()}\n".encode()),
    ]


def desired_digest(files: list[ClientFile]) -> str:
    """One digest of the whole configuration (what a Pulumi resource keeps in its state instead of the secrets)."""
    return hashlib.sha256(b"".join(f"{f.path} {f.mode} {f.sha256}\n".encode() for f in files)).hexdigest()


@dataclass(frozen=True)
class ClientConfigResult:
    vm: str
    pool: str
    changed: bool
    files: tuple[tuple[str, str], ...]  # (path, ok | needed | written)

    @property
    def pending(self) -> list[str]:
        return [p for p, state in self.files if state == "needed"]

    def to_json(self) -> dict[str, Any]:
        return {
            "vm": self.vm,
            "pool": self.pool,
            "changed": self.changed,
            "files": [{"path": p, "state": s} for p, s in self.files],
        }


def _current(runner: GuestRunner, path: str) -> tuple[str | None, str | None]:
    """(sha256, mode) of a guest file; (None, None) when it is missing."""
    result = runner.run(["sh", "-c", f"sha256sum {shlex.quote(path)} && stat -c %a {shlex.quote(path)}"], timeout=60.0)
    if result.rc != 0:
        return None, None
    lines = result.output.split("\n")
    digest = lines[0].split()[0] if lines and lines[0].split() else None
    mode = lines[1].strip() if len(lines) > 1 else None
    return digest, mode


def configure_client(
    runner: GuestRunner, pool: GpuPool, files: list[ClientFile], *, dry_run: bool = False
) -> ClientConfigResult:
    """Make the client's Bitfusion files ``files``; with ``dry_run`` only say which differ. Idempotent."""
    states: list[tuple[str, str]] = []
    for f in files:
        digest, mode = _current(runner, f.path)
        if digest == f.sha256 and mode == f.mode:
            states.append((f.path, "ok"))
            continue
        if dry_run:
            states.append((f.path, "needed"))
            continue
        directory = posixpath.dirname(f.path)
        _run(runner, ["mkdir", "-p", "-m", "700" if f.secret else "755", directory], f"creating {directory}")
        _write(
            runner,
            f.path,
            f.data,
            f.mode,
            "the Bitfusion CA"
            if f.path == CA_FILE
            else ("the Bitfusion client token" if f.path == CLIENT_YAML else "the Bitfusion servers list"),
        )
        states.append((f.path, "written"))
    return ClientConfigResult(runner.name, pool.name, any(s == "written" for _, s in states), tuple(states))


@dataclass(frozen=True)
class PoolClientTarget:
    pool: GpuPool
    vm: str
    files: list[ClientFile]


def server_addresses(stack: Stack, pool: GpuPool) -> list[str]:
    """The SSH addresses of the pool's server VMs, in spec order (servers.conf): the running lab's for a lab
    stack, else each VM's ``ssh.address`` (an address only: no login is needed to name a server). SpecError naming
    ``vms[NAME].ssh`` for a server that has none."""
    if stack.vcenter.lab:
        known = {str(g["name"]): str(g["address"]) for g in read_lab_env().get("guests") or []}
    else:
        known = {vm.name: vm.ssh.address for vm in stack.fleet.vms if vm.ssh is not None}
    missing = [s.vm for s in pool.servers if s.vm not in known]
    if missing:
        raise SpecError([SpecIssue(f"vms[{n}].ssh", "no SSH settings: cannot name the server") for n in missing])
    return [known[s.vm] for s in pool.servers]


def pool_client_targets(stack: Stack, only: list[str] | None = None) -> list[PoolClientTarget]:
    """Every client of the stack's GPU pools (``only``: those named) with the files it should hold. The servers'
    addresses are their VMs' SSH addresses; the CA and token come from the pool's secret references (for a lab
    stack, from the running lab). SpecError naming the field when one is missing."""
    from gpufleet.checks.nodes import stack_ssh_settings

    pools = [(p, c.vm) for p in stack.fleet.gpu_pools for c in p.clients if not only or c.vm in only]
    if not pools:
        return []
    guests = stack_ssh_settings(stack)[1]
    missing = sorted({vm for _, vm in pools if vm not in guests})
    if missing:
        raise SpecError([SpecIssue(f"vms[{n}].ssh", "no SSH settings: cannot reach the guest") for n in missing])
    targets = []
    secrets: dict[str, tuple[Secret, Secret, list[str]]] = {}
    for pool, vm in pools:
        if pool.name not in secrets:
            ca = resolve_stack_secret(stack, pool.tls.ca, f"gpuPools[{pool.name}].tls.ca")
            token = resolve_stack_secret(stack, pool.client_token, f"gpuPools[{pool.name}].clientToken")
            assert ca is not None and token is not None  # required fields of the pool
            secrets[pool.name] = (ca, token, server_addresses(stack, pool))
        ca, token, servers = secrets[pool.name]
        targets.append(PoolClientTarget(pool, vm, client_files(servers, ca, token)))
    return targets
