"""vSphere Bitfusion in the lab's guest personas: ``bitfusion`` on a server (exports the GPUs vCenter passed through
to its VM) and on a client (reads the configuration gpufleet placed: servers.conf, the CA, client.yaml with the
token; claims its id from the servers, lists the pool, runs a command on a share of a GPU).

Output formats: docs/reference/bitfusion_formats.txt says which are real captures (``bitfusion run``'s preamble,
the client-id claim error, servers.conf) and which are modelled because no capture was found (``list_gpus``'s
success listing, ``health``).

The lab's pool secrets (a CA in PEM form and a client token) are generated once per lab, kept 0600, and exported
to ``gpufleet lab env`` as GPUFLEET_BITFUSION_CA / GPUFLEET_BITFUSION_TOKEN; a server accepts a client whose
client.yaml token and CA match them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

CA_ENV = "GPUFLEET_BITFUSION_CA"
TOKEN_ENV = "GPUFLEET_BITFUSION_TOKEN"
SECRETS_FILE = "bitfusion_secrets.json"
PORT = 56001
VERSION = "4.5.4-7b6f2d1c"  # the lab servers' version string, as Bitfusion prints it (x.y.z-<build>)
# Where the client reads its configuration (the files of a Bitfusion token tarball: ca.crt, client.yaml,
# servers.conf), as gpufleet places them.
SERVERS_CONF = "/etc/bitfusion/servers.conf"
CA_FILE = "/etc/bitfusion/tls/ca.crt"
CLIENT_YAML = "/root/.bitfusion/client.yaml"


def lab_secrets(guests_dir: Path) -> dict[str, str]:
    """The lab's Bitfusion CA and client token (generated once, 0600)."""
    path = guests_dir / SECRETS_FILE
    if path.exists():
        return json.loads(path.read_text())
    body = base64.encodebytes(secrets.token_bytes(600)).decode()
    doc = {
        CA_ENV: f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n",
        TOKEN_ENV: "bf-" + secrets.token_urlsafe(32),
    }
    guests_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh)
    return doc


def _digest(text: str) -> str:
    return hashlib.sha256(text.strip().encode()).hexdigest()


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _servers_of(g: Any) -> list[str]:
    """Addresses listed in servers.conf (``servers: - addresses: [ip:port]``), in order."""
    from lab.guest.commands import read_file

    data, _ = read_file(g, SERVERS_CONF)
    if data is None:
        return []
    return [
        line.strip()[2:].strip()
        for line in data.decode().splitlines()
        if line.strip().startswith("- ") and ":" in line and not line.strip().startswith("- addresses")
    ]


def _server_guests(g: Any) -> dict[str, Any]:
    """address:port -> the server persona's Guest (its sibling state directories in the lab)."""
    from lab.guest.commands import Guest

    found: dict[str, Any] = {}
    for directory in sorted(g.store.dir.parent.iterdir()):
        state = directory / "state.json"
        if not state.is_file() or directory == g.store.dir:
            continue
        doc = json.loads(state.read_text())
        if doc.get("persona") == "bitfusion-server" and doc.get("address"):
            found[f"{doc['address']}:{PORT}"] = Guest(directory)
    return found


def _claim(g: Any) -> tuple[list[tuple[str, Any]], str | None]:
    """The servers that accept this client (its token and CA match the lab's), or the error Bitfusion prints."""
    from lab.guest.commands import read_file

    listed = _servers_of(g)
    if not listed:
        return [], f"Error: no servers listed in {SERVERS_CONF}\n"
    token, _ = read_file(g, CLIENT_YAML)
    ca, _ = read_file(g, CA_FILE)
    want = g.state.get("bitfusion", {})
    lines = []
    servers = _server_guests(g)
    accepted: list[tuple[str, Any]] = []
    for address in listed:
        lines.append(
            f"[INFO] {_stamp()} Query server {address} to claim host id: {g.state.get('boot', {}).get('id')}\n"
        )
        server = servers.get(address)
        ok_token = token is not None and any(
            _digest(line.split(":", 1)[1].strip().strip("'\"")) == want.get("token_sha256")
            for line in token.decode().splitlines()
            if line.strip().startswith("token:")
        )
        ok_ca = ca is not None and _digest(ca.decode()) == want.get("ca_sha256")
        if server is None or not server.view.gpus or not ok_token or not ok_ca:
            why = (
                "x509: certificate signed by unknown authority"
                if server and not ok_ca
                else ("401 Unauthorized" if server and not ok_token else f"dial tcp {address}: i/o timeout")
            )
            lines.append(
                f"[WARN] {_stamp()} Error contacting server {address} to verify client id: "
                f"Get https://{address}/claim_id: {why}\n"
            )
            continue
        accepted.append((address, server))
    if not accepted:
        return [], "".join(lines) + "Error: none of the servers responded correctly to client id claim requests.\n"
    return accepted, None


def _list_gpus(accepted: list[tuple[str, Any]]) -> str:
    out = []
    for i, (address, server) in enumerate(accepted):
        out.append(f" - server {i} [{address}]: running 0 tasks\n")
        out += [
            f"   |- GPU {k}: free memory {gpu.framebuffer_mib} MiB / {gpu.framebuffer_mib} MiB\n"
            for k, gpu in enumerate(server.view.gpus)
        ]
    return "".join(out)


def _run(g: Any, accepted: list[tuple[str, Any]], args: list[str]) -> tuple[int, str, str]:
    from lab.guest import smi
    from lab.guest.gpus import GuestView

    n, partial, command = 1, 1.0, []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            command = args[i + 1 :]
            break
        if a in ("-n", "--num_gpus") and i + 1 < len(args):
            n, i = int(args[i + 1]), i + 2
            continue
        if a in ("-p", "--partial") and i + 1 < len(args):
            partial, i = float(args[i + 1]), i + 2
            continue
        command = args[i:]
        break
    if not command:
        return 1, "", "Error: bitfusion run needs a command (bitfusion run -n 1 -p 0.25 -- nvidia-smi)\n"
    if not 0 < partial <= 1:
        return 1, "", f"Error: partial {partial} must be in (0, 1]\n"
    chosen = next(((a, s) for a, s in accepted if len(s.view.gpus) >= n), None)
    head = "".join(f"[INFO] {_stamp()} Query server {a} gpu availability\n" for a, _ in accepted)
    head += f"[INFO] {_stamp()} Choosing GPUs from server list [{' '.join(a for a, _ in accepted)}]\n"
    if chosen is None:
        return 1, head, f"Error: no server has {n} free GPUs\n"
    address, server = chosen
    gpus = server.view.gpus[:n]
    mib = int(gpus[0].framebuffer_mib * partial)
    head += (
        f"[INFO] {_stamp()} Requesting GPUs {list(range(n))} with {mib} MiB of memory from server 0, "
        f"with version {VERSION}...\nRequested resources:\nServer List: {address}\nClient idle timeout: 0 min\n"
        f"[INFO] {_stamp()} Locked {n} GPUs with partial memory {partial:g}, configuration saved to "
        f"'/tmp/bitfusion{abs(hash(g.name)) % 10**9}'\n"
        f"[INFO] {_stamp()} Running client command '{' '.join(command)}' on {n} GPUs, with the following servers:\n"
        f"[INFO] {_stamp()} {address.split(':')[0]} 55001 {server.state.get('boot', {}).get('id')} {PORT} {VERSION}\n\n"
    )
    name = command[0].rsplit("/", 1)[-1]
    if name != "nvidia-smi":
        return 127, head, f"bash: line 1: {command[0]}: command not found\n"
    view = GuestView(
        gpus=[replace(gpu, index=k, framebuffer_mib=mib) for k, gpu in enumerate(gpus)],
        rdma=[],
        driver_version=server.view.driver_version,
    )
    body = smi.render_list(view) if command[1:] in (["-L"], ["--list-gpus"]) else smi.render_table(view, time.time())
    return 0, head + body, ""


def _health(g: Any, accepted: list[tuple[str, Any]], error: str | None) -> tuple[int, str, str]:
    if g.state.get("persona") == "bitfusion-server":
        gpus = g.view.gpus
        rows = [
            f"[ {'OK' if gpus else 'FAIL'} ] GPUs passed through: {len(gpus)}\n",
            f"[ {'OK' if g.view.driver_version else 'FAIL'} ] NVIDIA driver: {g.view.driver_version or 'none'}\n",
            f"[ OK ] Bitfusion server {VERSION} listening on port {PORT}\n",
        ]
        return (0 if gpus and g.view.driver_version else 1), "".join(rows), ""
    if error:
        return 1, "[ FAIL ] Bitfusion client: servers\n", error
    rows = [f"[ OK ] Bitfusion client {VERSION}\n", f"[ OK ] servers reachable: {len(accepted)}\n"]
    rows += [f"[ OK ] server {a}: {len(s.view.gpus)} GPUs\n" for a, s in accepted]
    return 0, "".join(rows), ""


def cmd_bitfusion(g: Any, argv: list[str], stdin: Any) -> tuple[int, bytes, bytes]:
    persona = g.state.get("persona")
    if persona not in ("bitfusion-server", "bitfusion-client"):
        return 127, b"", b"bash: line 1: bitfusion: command not found\n"
    args = argv[1:]
    verb = args[0] if args else ""
    if verb == "version":
        return 0, f"{VERSION}\n".encode(), b""
    if persona == "bitfusion-server":
        if verb == "health":
            rc, out, err = _health(g, [], None)
            return rc, out.encode(), err.encode()
        if verb == "list_gpus":
            return 0, _list_gpus([(f"{g.state.get('address')}:{PORT}", g)]).encode(), b""
        return 1, b"", f"Error: unknown command {verb!r} on a Bitfusion server\n".encode()
    accepted, error = _claim(g)
    if verb == "health":
        rc, out, err = _health(g, accepted, error)
        return rc, out.encode(), err.encode()
    if error:
        return 1, b"", error.encode()
    if verb == "list_gpus":
        return 0, _list_gpus(accepted).encode(), b""
    if verb == "run":
        rc, out, err = _run(g, accepted, args[1:])
        return rc, out.encode(), err.encode()
    return 1, b"", f"Error: unknown command {verb!r} (list_gpus, health, run, version)\n".encode()
