"""Run commands on an ESXi host over SSH (paramiko), safely.

    with SshRunner(conns.host("esxi-01.lab")) as ssh:
        result = ssh.run(["esxcli", "--formatter=xml", "system", "maintenanceMode", "get"])
        result.check()                                   # CommandFailed (command, exit status, output) if rc != 0
        ssh.upload(Path("NVD-AIE...zip"), "/vmfs/volumes/datastore1/NVD-AIE...zip")   # only when not there yet

- Host keys are verified against the pinned key (``SshSettings.host_key``) or the ``known_hosts`` file, and
  nothing else: an unknown key raises ``HostKeyError`` with the offered key's fingerprint (trusting it is an
  explicit act: add it to known_hosts or pin it in the spec); a changed key raises ``HostKeyError`` too.
- Login with the key file or the password; neither is ever logged (only commands are, at DEBUG).
- Commands are argument lists, quoted with ``shlex``; stdout and stderr are read together, in order.
- Timeouts on connect (TCP, banner, auth) and on every command (``CommandTimeout``).
- Connection *establishment* is retried with jittered exponential backoff (tenacity); a command is never
  re-sent: a connection lost while a command runs is ``ConnectionLost`` (the command may or may not have run,
  so the caller re-reads the host's state instead of guessing).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import logging
import secrets
import shlex
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

import paramiko
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_fixed,
    wait_random_exponential,
)

from gpufleet.connections import SshSettings
from gpufleet.errors import ConnectError, HostKeyError, TaskError
from gpufleet.remote.known_hosts import KnownHosts, load_known_hosts

log = logging.getLogger(__name__)
# paramiko's transport thread logs a connection reset during the banner (sshd shedding load; the connect is retried
# below) as an ERROR with its traceback. With no handler anywhere Python's last-resort handler would print that
# traceback on the terminal of a verb that then succeeds; the retry's own outcome is what gets reported.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

_OUTPUT_TAIL = 2000


@dataclass(frozen=True)
class CommandResult:
    """What a command printed (stdout and stderr interleaved) and its exit status."""

    command: str
    rc: int
    output: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def check(self, host: str = "") -> CommandResult:
        """Self when the exit status is 0, else ``CommandFailed``."""
        if self.rc != 0:
            raise CommandFailed(host, self)
        return self


class CommandFailed(TaskError):
    """A command exited non-zero; the message carries the command, the status and the end of its output."""

    def __init__(self, host: str, result: CommandResult) -> None:
        self.result = result
        tail = result.output.strip()[-_OUTPUT_TAIL:]
        where = f"{host}: " if host else ""
        super().__init__(f"{where}`{result.command}` exited {result.rc}: {tail or '(no output)'}", fault=result.command)


class CommandTimeout(TaskError):
    """A command did not finish within its timeout (the channel is closed; the command may still run)."""


class ConnectionLost(ConnectError):
    """The SSH connection dropped while a command ran: whether it took effect is unknown."""


class Runner(Protocol):
    """What steps need from a host connection (``SshRunner``, or a fake in tests)."""

    name: str

    def run(self, argv: Sequence[str], *, timeout: float | None = None) -> CommandResult: ...

    def run_many(self, argvs: Sequence[Sequence[str]], *, timeout: float | None = None) -> list[CommandResult]:
        """Several read-only commands in one round trip; one result each (rc 0 or 1: success or not)."""
        ...

    def remote_size(self, path: str) -> int | None: ...

    def upload(self, local: Path, remote: str) -> bool: ...

    def reconnect(self, timeout: float, poll: float = 0.2) -> None: ...

    def wait_until_down(self, timeout: float, poll: float = 0.1) -> bool: ...

    def close(self) -> None: ...


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style ``SHA256:...`` fingerprint of a public key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _known_name(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


class _RefuseUnknownKey(paramiko.RejectPolicy):
    """RejectPolicy that says which key was refused and how to trust it on purpose."""

    def __init__(self, settings: SshSettings, known: KnownHosts | None = None) -> None:
        self.settings = settings
        self.known = known

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        s = self.settings
        _refuse_revoked(s, hostname, key, self.known)
        source = "the pinned hostKey" if s.host_key else f"known_hosts {s.known_hosts}"
        ca = self.known.cert_authorities_for(hostname) if self.known else []
        why = (
            f" (line {', '.join(str(m.line) for m in ca)} of {s.known_hosts} is a @cert-authority line: host "
            "certificates are not supported by gpufleet's SSH client, so the host's own key must be listed or pinned)"
            if ca
            else ""
        )
        raise HostKeyError(
            f"{s.name} ({hostname}) offered an unknown {key.get_name()} host key {fingerprint(key)}, not in {source}"
            f"{why}: refusing to connect. If this key is right (check it on the host's console), trust it explicitly: "
            f"add it to the known_hosts file (ssh-keyscan -p {s.port} {s.address}) or pin it as the host's ssh.hostKey"
        )


def _refuse_revoked(s: SshSettings, hostname: str, key: paramiko.PKey, known: KnownHosts | None) -> None:
    line = known.revoked_line(key) if known else None
    if known is not None and line is not None:
        raise HostKeyError(
            f"{s.name} ({hostname}) offered the {key.get_name()} host key {fingerprint(key)}, which line {line} of "
            f"{known.path} marks @revoked: refusing to connect. A revoked key is never trusted; give the host a new "
            "key and list that one"
        )


def verified_client(settings: SshSettings) -> paramiko.SSHClient:
    """A paramiko client that trusts only the pinned host key or the known_hosts file and refuses any other key
    (``HostKeyError`` naming the offered key; a key the file marks ``@revoked`` is refused as revoked);
    HostKeyError before any connection when neither is given."""
    return _verified_client(settings)[0]


def _verified_client(settings: SshSettings) -> tuple[paramiko.SSHClient, KnownHosts | None]:
    s = settings
    client = paramiko.SSHClient()
    known: KnownHosts | None = None
    if s.host_key:
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(f"{_known_name(s.address, s.port)} {s.host_key}")
        except (binascii.Error, paramiko.SSHException, ValueError) as exc:
            raise HostKeyError(f"{s.name}: the pinned hostKey is not a valid public key: {exc}") from exc
        if entry is None or entry.key is None:
            raise HostKeyError(f"{s.name}: the pinned hostKey is not a valid public key")
        for name in entry.hostnames:
            client.get_host_keys().add(name, entry.key.get_name(), entry.key)
    elif s.known_hosts:
        try:
            known = load_known_hosts(s.known_hosts, into=client.get_host_keys())
        except OSError as exc:
            raise HostKeyError(f"{s.name}: cannot read known_hosts {s.known_hosts}: {exc}") from exc
    else:
        raise HostKeyError(f"{s.name}: no pinned hostKey and no known_hosts file: host keys are always verified")
    client.set_missing_host_key_policy(_RefuseUnknownKey(s, known))
    return client, known


def open_client(settings: SshSettings, timeout: float) -> paramiko.SSHClient:
    """One connection attempt with a ``verified_client`` (key file or password; no agent, no ~/.ssh keys;
    ``timeout`` on TCP, banner, auth and channel opening). An unknown or changed host key is ``HostKeyError``,
    a refused login ``ConnectError``; other failures (OSError, paramiko.SSHException) are raised as they are,
    for the caller to retry or report. The client is closed on any failure."""
    s = settings
    if not s.host_key and not s.known_hosts:
        _verified_client(s)  # raises HostKeyError: nothing to verify against, so not even a TCP connection
    # TCP first: while a host reboots, a refused port is the common answer and must cost no known_hosts parse.
    sock = socket.create_connection((s.address, s.port), timeout=timeout)
    try:
        client, known = _verified_client(s)
    except BaseException:
        sock.close()
        raise
    try:
        # Every command is a small request and a small answer: without TCP_NODELAY, Nagle's algorithm and the
        # peer's delayed ACK add ~40 ms to each round trip (a channel open, each exec).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.connect(
            s.address,
            port=s.port,
            sock=sock,
            username=s.user,
            key_filename=str(s.key_file) if s.key_file else None,
            password=s.password.reveal() if s.password else None,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            channel_timeout=timeout,
            allow_agent=False,
            look_for_keys=False,
        )
    except paramiko.BadHostKeyException as exc:
        client.close()
        _refuse_revoked(s, _known_name(s.address, s.port), exc.key, known)  # named as revoked, not as "changed"
        raise HostKeyError(
            f"{s.name} ({s.address}:{s.port}) presented a CHANGED host key {fingerprint(exc.key)} "
            f"(expected {fingerprint(exc.expected_key)}): refusing to connect. This can be an attack; if the host "
            "was reinstalled on purpose, replace its entry in known_hosts or its pinned hostKey"
        ) from exc
    except paramiko.AuthenticationException as exc:
        client.close()
        raise ConnectError(f"{s.name} ({s.address}:{s.port}) refused the login of {s.user!r}") from exc
    except BaseException:
        client.close()
        raise
    return client


def _is_retryable(exc: BaseException) -> bool:
    """Connection errors are retried; a refused host key or login is not (retrying cannot fix them)."""
    if isinstance(exc, HostKeyError | paramiko.AuthenticationException | paramiko.BadHostKeyException):
        return False
    return isinstance(exc, OSError | EOFError | paramiko.SSHException)


class SshRunner:
    """One SSH connection to one host, opened lazily and reopened after a drop. Use from one thread."""

    def __init__(
        self,
        settings: SshSettings,
        *,
        connect_timeout: float = 10.0,
        command_timeout: float = 600.0,
        connect_attempts: int = 4,
        backoff_max: float = 4.0,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.connect_attempts = connect_attempts
        self.backoff_max = backoff_max
        self._client: paramiko.SSHClient | None = None

    # -- connection ---------------------------------------------------------------------------------------
    def _connect_once(self) -> paramiko.SSHClient:
        client = open_client(self.settings, self.connect_timeout)
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(5)
        return client

    def connect(self) -> None:
        """Open the connection (retrying connection errors with backoff) unless it is open."""
        if self._client is not None and self._alive():
            return
        self.close()
        s = self.settings
        retrying = Retrying(
            retry=retry_if_exception(_is_retryable),
            wait=wait_random_exponential(multiplier=0.2, max=self.backoff_max),
            stop=stop_after_attempt(self.connect_attempts),
            reraise=True,
        )
        try:
            self._client = retrying(self._connect_once)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise ConnectError(f"{s.name} ({s.address}:{s.port}) is unreachable over SSH: {exc}") from exc

    def reconnect(self, timeout: float, poll: float = 0.2) -> None:
        """Wait until the host answers SSH again (after a reboot), up to ``timeout`` seconds. A refused host key
        or login fails at once; only "not back yet" is waited for."""
        self.close()
        s = self.settings
        retrying = Retrying(
            retry=retry_if_exception(_is_retryable),
            wait=wait_fixed(poll),  # a host coming back from a reboot is noticed within `poll` seconds
            stop=stop_after_delay(timeout),
            reraise=True,
        )
        try:
            self._client = retrying(self._connect_once)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise ConnectError(f"{s.name} did not answer SSH within {timeout:.0f} s: {exc}") from exc

    def wait_until_down(self, timeout: float, poll: float = 0.1) -> bool:
        """Close our connection and wait until the host stops accepting TCP on its SSH port (it is going
        down for a reboot). False when it still accepts after ``timeout`` seconds."""
        self.close()
        s = self.settings
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((s.address, s.port), timeout=min(1.0, timeout)):
                    pass
            except OSError:
                return True
            time.sleep(poll)
        return False

    def _alive(self) -> bool:
        transport = self._client.get_transport() if self._client else None
        return bool(transport and transport.is_active())

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> SshRunner:
        self.connect()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _open_channel(self) -> paramiko.Channel:
        self.connect()
        transport = self._client.get_transport() if self._client else None
        if transport is None:
            raise paramiko.SSHException("no transport")
        return transport.open_session(timeout=self.connect_timeout)

    # -- commands -----------------------------------------------------------------------------------------
    def run(self, argv: Sequence[str], *, timeout: float | None = None, stdin: bytes | None = None) -> CommandResult:
        """Run one command (an argument list, quoted here); return its exit status and combined output.
        ``stdin``: bytes sent to the command's standard input, then end of file (a secret passed this way never
        appears on a command line or in the log)."""
        if isinstance(argv, str):
            raise TypeError("pass the command as a list of arguments; they are quoted for the remote shell")
        return self._exec(shlex.join(argv), timeout, stdin)

    def run_many(self, argvs: Sequence[Sequence[str]], *, timeout: float | None = None) -> list[CommandResult]:
        """Run read-only commands in one SSH exec (``a 2>&1 && echo MARK0 || echo MARK1; b ...``): one round
        trip instead of one per command. Each result's rc is 0 or 1 (the shell's && / || tell only that) and
        its output is the command's own, stderr included. Never for commands that change the host: a failure
        in the middle does not stop the rest."""
        if not argvs:
            return []
        if any(isinstance(a, str) for a in argvs):
            raise TypeError("pass each command as a list of arguments")
        token = secrets.token_hex(8)  # output cannot fake a marker it cannot guess
        marks = [f"@@gpufleet-{token}-{i}:" for i in range(len(argvs))]
        line = "; ".join(
            f"{shlex.join(a)} 2>&1 && echo {m}0@@ || echo {m}1@@" for a, m in zip(argvs, marks, strict=True)
        )
        combined = self._exec(line, timeout)
        results: list[CommandResult] = []
        rest = combined.output
        for argv, mark in zip(argvs, marks, strict=True):
            at = rest.find(mark)
            if at < 0:
                raise ConnectionLost(f"{self.name}: the batch of reads stopped before `{shlex.join(argv)}`")
            status = rest[at + len(mark) : at + len(mark) + 1]
            results.append(CommandResult(shlex.join(argv), 0 if status == "0" else 1, rest[:at]))
            rest = rest[rest.find("@@", at + len(mark)) + 3 :]
        return results

    def _exec(self, command: str, timeout: float | None, stdin: bytes | None = None) -> CommandResult:
        limit = self.command_timeout if timeout is None else timeout
        log.debug("%s: %s%s", self.name, command, "" if stdin is None else " (input on stdin)")
        try:
            channel = self._open_channel()
        except (OSError, EOFError, paramiko.SSHException):
            # Nothing was sent yet: reopening the connection and sending once is safe.
            self.close()
            try:
                channel = self._open_channel()
            except (OSError, EOFError, paramiko.SSHException) as exc:
                raise ConnectError(f"{self.name}: cannot open an SSH channel: {exc}") from exc
        transport = channel.get_transport()
        deadline = time.monotonic() + limit
        chunks: list[bytes] = []
        try:
            channel.set_combine_stderr(True)
            channel.exec_command(command)
            if stdin is not None:
                channel.sendall(stdin)
                channel.shutdown_write()
            while True:
                channel.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    data = channel.recv(65536)
                except TimeoutError as exc:
                    raise CommandTimeout(
                        f"{self.name}: `{command}` did not finish within {limit:.0f} s", fault=command
                    ) from exc
                if not data:
                    break
                chunks.append(data)
            while not channel.exit_status_ready():
                if not (transport and transport.is_active()) or time.monotonic() > deadline:
                    break
                time.sleep(0.005)
            rc = channel.recv_exit_status() if channel.exit_status_ready() else -1
        except (OSError, EOFError, paramiko.SSHException) as exc:
            self.close()
            raise ConnectionLost(f"{self.name}: connection lost while running `{command}`: {exc}") from exc
        finally:
            channel.close()
        output = b"".join(chunks).decode("utf-8", errors="replace")
        if rc == -1:
            self.close()
            raise ConnectionLost(f"{self.name}: connection lost while running `{command}` (no exit status)")
        return CommandResult(command=command, rc=rc, output=output)

    # -- files --------------------------------------------------------------------------------------------
    def remote_size(self, path: str) -> int | None:
        """Size of a remote file, or None when it does not exist."""
        self.connect()
        assert self._client is not None
        with self._client.open_sftp() as sftp:
            try:
                return int(sftp.stat(path).st_size or 0)
            except FileNotFoundError:
                return None

    def upload(self, local: Path, remote: str) -> bool:
        """Copy ``local`` to the absolute ``remote`` path over SFTP unless a file of the same size is there;
        written under a temporary name and renamed, so an interrupted upload never looks complete.
        Returns True when it uploaded."""
        size = local.stat().st_size
        self.connect()
        assert self._client is not None
        with self._client.open_sftp() as sftp:
            try:
                if sftp.stat(remote).st_size == size:
                    return False
            except FileNotFoundError:
                pass
            _makedirs(sftp, str(Path(remote).parent))
            partial = f"{remote}.gpufleet-partial"
            sftp.put(str(local), partial, confirm=True)
            with contextlib.suppress(FileNotFoundError):
                sftp.remove(remote)
            sftp.rename(partial, remote)
        log.info("%s: uploaded %s (%d bytes) to %s", self.name, local.name, size, remote)
        return True


def _makedirs(sftp: paramiko.SFTPClient, directory: str) -> None:
    parts = [p for p in directory.split("/") if p]
    path = ""
    for part in parts:
        path += "/" + part
        try:
            sftp.stat(path)
        except FileNotFoundError:
            sftp.mkdir(path)


__all__ = [
    "CommandFailed",
    "CommandResult",
    "CommandTimeout",
    "ConnectionLost",
    "Runner",
    "SshRunner",
    "fingerprint",
    "open_client",
    "verified_client",
]
