"""What every guest command gets and gives: the guest persona (:class:`Guest`: its state, its file system root,
the GPUs it sees), its stdin (:class:`Input`), its answer (``Result``: exit status, stdout, stderr), and what the
dispatcher asks of a command family (where its program lives, whether this persona has it installed)."""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from lab.guest.state import GuestState

if TYPE_CHECKING:
    from lab.guest.gpus import GuestView

# nvidia-smi, gridd and the GPU view import the catalog: loaded only by the commands that need them, because
# every SSH command is a fresh process (``uname`` or ``cat`` should not pay for them).

Result = tuple[int, bytes, bytes]


class Input:
    """A command's stdin: bytes from a pipe, or the SSH channel, read only if the command wants it (reading
    an SSH channel the client never closes would hang)."""

    def __init__(self, data: bytes | None = None, stream: BinaryIO | None = None) -> None:
        self._data = data
        self._stream = stream

    def read(self) -> bytes:
        if self._data is None:
            self._data = self._stream.read() if self._stream is not None else b""
        return self._data


class SharedInput(Input):
    """The command line's own stdin: the first command that reads it gets it all, later ones get nothing."""

    def __init__(self, stream: BinaryIO | None) -> None:
        super().__init__(stream=stream)
        self._consumed = False

    def read(self) -> bytes:
        if self._consumed:
            return b""
        self._consumed = True
        return super().read()


class Guest:
    """One guest persona: its state, its filesystem root and (lazily) the GPUs it sees."""

    def __init__(self, directory: Path) -> None:
        self.store = GuestState(directory)
        self.root = self.store.root
        self.state = self.store.read()
        self.name: str = self.state["name"]
        self.umask = 0o022
        self._view: GuestView | None = None

    @property
    def view(self) -> GuestView:
        if self._view is None:
            from lab.guest.gpus import guest_view

            self._view = guest_view(self.state)
        return self._view

    def vgpu_series(self) -> str | None:
        series = [g.series for g in self.view.gpus if g.kind == "vgpu" and g.series]
        return series[0] if series else None

    def host_path(self, guest_path: str) -> Path:
        """Map an absolute guest path into the state directory (relative paths start at /root)."""
        if not guest_path.startswith("/"):
            guest_path = "/root/" + guest_path
        norm = posixpath.normpath(guest_path)
        return self.root / norm.lstrip("/")


def ok(out: str = "", err: str = "", rc: int = 0) -> Result:
    return rc, out.encode(), err.encode()


def not_found(name: str) -> Result:
    return ok(err=f"bash: line 1: {name}: command not found\n", rc=127)


COMMAND_PATHS = {
    "nvidia-smi": "/usr/bin/nvidia-smi",
    "nvidia-ctk": "/usr/bin/nvidia-ctk",
    "docker": "/usr/bin/docker",
    "ibv_devices": "/usr/bin/ibv_devices",
    "rdma": "/usr/sbin/rdma",
    "ibv_devinfo": "/usr/bin/ibv_devinfo",
    "show_gids": "/usr/sbin/show_gids",
    "cma_roce_mode": "/usr/sbin/cma_roce_mode",
    "bitfusion": "/usr/bin/bitfusion",
    "systemctl": "/usr/bin/systemctl",
    "journalctl": "/usr/bin/journalctl",
}


def installed(g: Guest, name: str) -> bool:
    if name == "nvidia-smi":
        return bool(g.state.get("driver", {}).get("installed", True))
    if name in ("dkms",):
        return name in g.state.get("packages", {"dkms": ""})
    if name == "nvidia-ctk":
        return bool(g.state.get("container", {}).get("toolkit"))
    if name == "docker":
        return bool(g.state.get("container", {}).get("docker"))
    if name == "bitfusion":
        return str(g.state.get("persona", "")).startswith("bitfusion-")
    return True
