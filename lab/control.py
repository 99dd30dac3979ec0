"""The lab supervisor's control protocol: one JSON request line over its Unix socket, one JSON answer line
(used by ``gpufleet lab`` verbs, by the ESXi simulator's ``reboot``, and served by ``lab.supervisor``)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any


def read_line(sock: socket.socket) -> bytes:
    """Bytes up to and with the first newline, or all until the peer closes (socket timeouts apply)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def request(socket_path: Path, message: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Send ``message`` to the supervisor at ``socket_path`` and return its answer ({} when it closed without
    one). OSError when it does not answer within ``timeout`` seconds per socket operation."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(socket_path))
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = read_line(sock)
    return json.loads(data or b"{}")
