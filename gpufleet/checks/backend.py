"""testinfra hosts whose SSH host keys are verified, and the bridge from a testinfra host to gpufleet.readers.

testinfra's own paramiko backend sets ``WarningPolicy`` (an unknown host key is accepted with a warning) and
never loads a known_hosts file. ``VerifiedParamikoBackend`` keeps testinfra's command execution but opens the
client with gpufleet's SSH runner code (``gpufleet.remote.ssh.open_client``: a ``RejectPolicy`` that names the refused
key, host keys from the pinned key or the known_hosts file of the stack / lab env, or ``UserKnownHostsFile`` of an
``--ssh-config``); ``StrictHostKeyChecking no`` is ignored.

testinfra's OpenSSH backends (``ssh://``, ``safe-ssh://``) run the ``ssh`` command, which obeys the ssh_config:
``StrictHostKeyChecking no`` or ``UserKnownHostsFile /dev/null`` there would turn verification off. So an effective
config (``ssh -G``) that says so is refused up front, naming the option and the file (``refuse_unverified_openssh``),
and every ssh command line carries ``-o StrictHostKeyChecking=yes`` before any other option (``openssh_host``):
ssh keeps the first value it obtains and reads its command line before any config file, so no config (an
``Include``, a ``Match`` block) can turn verification off.
"""

from __future__ import annotations

import functools
import os
import shlex
import subprocess
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import testinfra.backend
import testinfra.host
from testinfra.backend.base import CommandResult as TestinfraResult
from testinfra.backend.ssh import SshBackend

from gpufleet.connections import Secret, SshSettings
from gpufleet.errors import ConnectError, HostKeyError
from gpufleet.remote.ssh import CommandResult, open_client

try:  # paramiko is only needed for SSH nodes (the device run uses the local backend with no paramiko)
    import paramiko
    from testinfra.backend.paramiko import ParamikoBackend
except ImportError:  # pragma: no cover - exercised on the device machine only
    paramiko = None  # type: ignore[assignment]
    ParamikoBackend = object  # type: ignore[assignment,misc]

OUTPUT_LIMIT = 3000


@dataclass(frozen=True)
class Sh:
    """One command's result with what a failure message needs: the command line and what it printed."""

    command: str
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def describe(self) -> str:
        out = self.stdout.rstrip()
        if len(out) > OUTPUT_LIMIT:
            out = out[:OUTPUT_LIMIT] + f"\n... ({len(self.stdout) - OUTPUT_LIMIT} more characters)"
        text = f"$ {self.command}\n[exit {self.rc}]"
        if out:
            text += f"\n{out}"
        if self.stderr.strip():
            text += f"\n[stderr] {self.stderr.strip()[:OUTPUT_LIMIT]}"
        return text


def run(host: testinfra.host.Host, argv: Sequence[str]) -> Sh:
    """Run an argument list on a testinfra host (each argument quoted with shlex.quote)."""
    command = " ".join(shlex.quote(a) for a in argv)
    try:
        result: TestinfraResult = host.run(command)
    except RuntimeError as exc:  # testinfra's ssh:// backend raises on exit 255 (ssh's own failure) with the result
        result = exc.args[0] if exc.args and isinstance(exc.args[0], TestinfraResult) else None
        if result is None:
            raise
    return Sh(command, result.rc, result.stdout, result.stderr)


class TestinfraRunner:
    """gpufleet.remote's ``Runner`` over a testinfra host (``host.run`` only, so it works on ESXi where testinfra's
    file/service/package modules do not). Keeps every command it ran for failure messages."""

    __test__ = False  # not a pytest test class

    def __init__(self, name: str, host: testinfra.host.Host) -> None:
        self.name = name
        self.host = host
        self.transcript: list[Sh] = []

    def run(self, argv: Sequence[str], *, timeout: float | None = None) -> CommandResult:
        sh = run(self.host, argv)
        self.transcript.append(sh)
        return CommandResult(command=sh.command, rc=sh.rc, output=sh.stdout + sh.stderr)

    def run_many(self, argvs: Sequence[Sequence[str]], *, timeout: float | None = None) -> list[CommandResult]:
        """One command after another (testinfra has no batch): each stays in the transcript for the evidence."""
        return [self.run(argv, timeout=timeout) for argv in argvs]

    def last(self, prefix: str = "") -> Sh | None:
        """The latest command starting with ``prefix``."""
        return next((s for s in reversed(self.transcript) if s.command.startswith(prefix)), None)

    def remote_size(self, path: str) -> int | None:  # pragma: no cover - checks never upload
        raise NotImplementedError("checks are read-only")

    def upload(self, local: Path, remote: str) -> bool:  # pragma: no cover
        raise NotImplementedError("checks are read-only")

    def reconnect(self, timeout: float, poll: float = 0.2) -> None:  # pragma: no cover
        raise NotImplementedError("checks never reboot")

    def close(self) -> None:
        pass


class VerifiedParamikoBackend(ParamikoBackend):  # type: ignore[misc,valid-type]
    """testinfra's paramiko backend, with host keys verified (RejectPolicy + known_hosts / pinned key)."""

    NAME = "paramiko"

    def __init__(self, settings: SshSettings, timeout: int = 10) -> None:
        self.settings = settings
        spec = f"{settings.user}@{settings.address}:{settings.port}"
        super().__init__(spec, timeout=timeout)

    def get_pytest_id(self) -> str:
        return self.settings.name

    @functools.cached_property
    def client(self) -> Any:
        s = self.settings
        try:
            return open_client(s, self.timeout)  # HostKeyError for an unknown or changed key
        except paramiko.SSHException as exc:
            raise ConnectError(f"{s.name} ({s.address}:{s.port}): SSH failed: {exc}") from exc
        except OSError as exc:
            raise ConnectError(f"{s.name} ({s.address}:{s.port}) is unreachable over SSH: {exc}") from exc


def ssh_host(settings: SshSettings, timeout: int = 10) -> testinfra.host.Host:
    """A testinfra host for an SSH node, host key verified."""
    if paramiko is None:  # pragma: no cover
        raise ConnectError("paramiko is not installed: SSH nodes cannot be checked (the local backend still works)")
    backend = VerifiedParamikoBackend(settings, timeout=timeout)
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host


def local_host() -> testinfra.host.Host:
    """testinfra's local backend (commands run here, through /bin/sh)."""
    return testinfra.get_host("local://")


def settings_from_hostspec(hostspec: str, ssh_config: str | None = None, identity: str | None = None) -> SshSettings:
    """SshSettings for a testinfra ``paramiko://[user@]name[:port][?ssh_config=F&ssh_identity_file=K]`` spec.

    The ssh_config's HostName/Port/User/IdentityFile/UserKnownHostsFile are honoured; without a
    UserKnownHostsFile, ~/.ssh/known_hosts is used. Host keys are always verified."""
    url = urllib.parse.urlparse(hostspec if "://" in hostspec else f"paramiko://{hostspec}")
    query = urllib.parse.parse_qs(url.query)
    ssh_config = query.get("ssh_config", [ssh_config])[0]
    identity = query.get("ssh_identity_file", [identity])[0]
    name = url.hostname or ""
    address, port, user = name, url.port or 22, url.username or "root"
    known_hosts: str | None = None
    if ssh_config:
        config = paramiko.SSHConfig.from_path(os.path.expanduser(ssh_config))
        found = config.lookup(name)
        address = found.get("hostname", address)
        port = url.port or int(found.get("port", port))
        user = url.username or found.get("user", user)
        if "identityfile" in found and not identity:
            identity = os.path.expanduser(found["identityfile"][0])
        if "userknownhostsfile" in found:
            known_hosts = os.path.expanduser(found["userknownhostsfile"].split()[0])
    known_hosts = known_hosts or os.path.expanduser("~/.ssh/known_hosts")
    return SshSettings(
        name=name,
        address=address,
        port=port,
        user=user,
        key_file=Path(identity) if identity else None,
        known_hosts=Path(known_hosts),
        password=Secret(urllib.parse.unquote(url.password)) if url.password else None,
    )


OPENSSH_SCHEMES = ("ssh://", "safe-ssh://")
FORCED_OPENSSH_OPTIONS = "-o StrictHostKeyChecking=yes"
_NO_CHECK = {"false": "no", "accept-new": "accept-new"}  # `ssh -G` spellings of values that accept unknown keys


def _openssh_backend(hostspec: str, ssh_config: str | None, identity: str | None) -> SshBackend:
    """testinfra's backend for an ``ssh://`` / ``safe-ssh://`` spec (the spec's own ?ssh_config= wins)."""
    options = {k: v for k, v in (("ssh_config", ssh_config), ("ssh_identity_file", identity)) if v}
    backend = testinfra.backend.get_backend(hostspec, **options)
    assert isinstance(backend, SshBackend), hostspec
    return backend


def _effective_config(backend: SshBackend) -> dict[str, str]:
    """What ssh will use for this host (``ssh -G``: Include and Match resolved), with the options testinfra passes."""
    argv = ["ssh", "-G"]
    if backend.ssh_config:
        argv += ["-F", backend.ssh_config]
    if backend.host.user:
        argv += ["-o", f"User={backend.host.user}"]
    if backend.host.port:
        argv += ["-o", f"Port={backend.host.port}"]
    argv += [*shlex.split(backend.ssh_extra_args or ""), backend.host.name]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConnectError(f"{backend.host.name}: cannot run `ssh -G` to read its ssh_config: {exc}") from exc
    if done.returncode != 0:
        raise ConnectError(f"{backend.host.name}: ssh cannot read its ssh_config: {done.stderr.strip()}")
    return dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)


def refuse_unverified_openssh(hostspec: str, ssh_config: str | None = None, identity: str | None = None) -> None:
    """HostKeyError when the ssh_config in effect for an OpenSSH hostspec turns host key verification off."""
    backend = _openssh_backend(hostspec, ssh_config, identity)
    config = _effective_config(backend)
    where = f"the ssh_config {backend.ssh_config}" if backend.ssh_config else "~/.ssh/config or /etc/ssh/ssh_config"
    name = backend.host.name
    strict = config.get("stricthostkeychecking", "ask")
    if strict in _NO_CHECK:
        raise HostKeyError(
            f"{name}: {where} sets StrictHostKeyChecking {_NO_CHECK[strict]} for this host: unknown host keys would "
            "be accepted. gpufleet always verifies host keys: remove that option, and list the host's key in a "
            "known_hosts file (UserKnownHostsFile)"
        )
    files = config.get("userknownhostsfile", "").split()
    if files and all(f == os.devnull for f in files):
        raise HostKeyError(
            f"{name}: {where} sets UserKnownHostsFile {os.devnull} for this host: no host key would be known. "
            "gpufleet always verifies host keys: name the known_hosts file that holds the host's key"
        )


def openssh_host(hostspec: str, ssh_config: str | None = None, identity: str | None = None) -> testinfra.host.Host:
    """A testinfra host over the ``ssh`` command with host keys verified whatever the ssh_config says
    (``StrictHostKeyChecking=yes`` first on every command line)."""
    backend = _openssh_backend(hostspec, ssh_config, identity)
    backend.ssh_extra_args = " ".join(filter(None, [FORCED_OPENSSH_OPTIONS, backend.ssh_extra_args]))
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host
