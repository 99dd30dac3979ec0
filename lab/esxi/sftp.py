"""SFTP for a simulated host, served by the ForceCommand itself over the SSH channel's stdin/stdout.

sshd hands an ``sftp`` subsystem request to the ForceCommand with ``SSH_ORIGINAL_COMMAND=internal-sftp``; we run
paramiko's SFTP server implementation on stdio, with a file-system interface that maps the client's absolute
ESXi paths (``/vmfs/volumes/datastore1/...``, ``/tmp/...``) into the host's ``fs/`` directory and refuses
anything that would leave it (``..``, symlinks). Reused by guest personas with another root.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import Any

from paramiko import SFTPAttributes, SFTPHandle, SFTPServer, SFTPServerInterface
from paramiko.sftp import SFTP_NO_SUCH_FILE, SFTP_OK, SFTP_OP_UNSUPPORTED, SFTP_PERMISSION_DENIED


class _Handle(SFTPHandle):
    def stat(self) -> Any:
        try:
            return SFTPAttributes.from_stat(
                os.fstat(self.readfile.fileno() if self.readfile else self.writefile.fileno())
            )
        except OSError as exc:
            return SFTPServer.convert_errno(exc.errno)

    def chattr(self, attr: Any) -> int:
        return SFTP_OK


class RootedSFTP(SFTPServerInterface):
    """An SFTP file system rooted at ``root``; client paths are absolute paths inside it."""

    def __init__(self, server: Any, *args: Any, root: Path, **kwargs: Any) -> None:
        super().__init__(server, *args, **kwargs)
        self.root = root.resolve()

    def _client(self, path: str) -> str:
        norm = os.path.normpath("/" + path.lstrip("/")) if path not in ("", ".") else "/"
        return norm.replace("//", "/")

    def _real(self, path: str) -> Path:
        real = (self.root / self._client(path).lstrip("/")).resolve()
        if real != self.root and self.root not in real.parents:
            raise PermissionError(errno.EACCES, "outside the host file system")
        return real

    def canonicalize(self, path: str) -> str:
        return self._client(path)

    def list_folder(self, path: str) -> Any:
        try:
            real = self._real(path)
            out = []
            for name in sorted(os.listdir(real)):
                attr = SFTPAttributes.from_stat(os.stat(real / name))
                attr.filename = name
                out.append(attr)
            return out
        except OSError as exc:
            return SFTPServer.convert_errno(exc.errno)

    def stat(self, path: str) -> Any:
        try:
            return SFTPAttributes.from_stat(os.stat(self._real(path)))
        except OSError as exc:
            return SFTPServer.convert_errno(exc.errno)

    lstat = stat

    def open(self, path: str, flags: int, attr: Any) -> Any:
        try:
            real = self._real(path)
            fd = os.open(real, flags | getattr(os, "O_BINARY", 0), 0o644)
        except OSError as exc:
            return SFTPServer.convert_errno(exc.errno)
        if flags & os.O_WRONLY:
            mode = "ab" if flags & os.O_APPEND else "wb"
        elif flags & os.O_RDWR:
            mode = "a+b" if flags & os.O_APPEND else "r+b"
        else:
            mode = "rb"
        try:
            fobj = os.fdopen(fd, mode)
        except OSError as exc:
            os.close(fd)
            return SFTPServer.convert_errno(exc.errno)
        handle = _Handle(flags)
        handle.filename = str(real)
        handle.readfile = fobj
        handle.writefile = fobj
        return handle

    def remove(self, path: str) -> int:
        try:
            os.remove(self._real(path))
        except OSError as exc:
            return SFTPServer.convert_errno(exc.errno)
        return SFTP_OK

    def rename(self, oldpath: str, newpath: str) -> int:
        try:
            os.rename(self._real(oldpath), self._real(newpath))
        except OSError as exc:
            return SFTPServer.convert_errno(exc.errno)
        return SFTP_OK

    posix_rename = rename

    def mkdir(self, path: str, attr: Any) -> int:
        try:
            os.mkdir(self._real(path))
        except OSError as exc:
            return SFTPServer.convert_errno(exc.errno)
        return SFTP_OK

    def rmdir(self, path: str) -> int:
        try:
            os.rmdir(self._real(path))
        except OSError as exc:
            return SFTPServer.convert_errno(exc.errno)
        return SFTP_OK

    def chattr(self, path: str, attr: Any) -> int:
        try:
            self._real(path)
        except OSError:
            return SFTP_PERMISSION_DENIED
        return SFTP_OK

    def symlink(self, target_path: str, path: str) -> int:
        return SFTP_OP_UNSUPPORTED

    def readlink(self, path: str) -> Any:
        return SFTP_NO_SUCH_FILE


class _StdioTransport:
    def get_log_channel(self) -> str:
        return "lab.sftp"

    def get_hexdump(self) -> bool:
        return False

    def _log(self, *args: Any) -> None:
        pass


class _StdioChannel:
    """Enough of a paramiko Channel for SFTPServer: bytes in on fd 0, out on fd 1."""

    def __init__(self) -> None:
        self._transport = _StdioTransport()

    def get_transport(self) -> _StdioTransport:
        return self._transport

    def recv(self, n: int) -> bytes:
        return os.read(0, n)

    def send(self, data: bytes) -> int:
        return os.write(1, data)

    def get_name(self) -> str:
        return "stdio"

    def __repr__(self) -> str:
        return "<stdio channel>"


def serve_stdio(root: Path) -> int:
    """Serve SFTP on stdin/stdout until the client closes the session."""
    logging.getLogger("lab.sftp").addHandler(logging.NullHandler())
    channel = _StdioChannel()
    server = SFTPServer(channel, "sftp", None, RootedSFTP, root=root)
    try:
        server.start_subsystem("sftp", channel.get_transport(), channel)
    except EOFError:
        pass  # the client went away before the version exchange
    finally:
        for f in list(server.file_table.values()):
            f.close()
    return 0
