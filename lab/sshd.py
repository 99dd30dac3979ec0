"""OpenSSH mechanics shared by the lab's ESXi hosts and guest personas: keys, one sshd per endpoint, known_hosts.

Every lab endpoint is an :class:`SshdUnit`: a real OpenSSH ``sshd`` (Debian ``openssh-server``) listening on its
own loopback address, with its own ed25519 host key, public-key authentication only (the lab client key), and a
``ForceCommand`` that runs a simulator (``lab.esxi.shell`` for hosts; the guest module for guests) through
``labexec`` (lab/execclient): the command runs in a fork of the lab's warm simulator (lab.forkserver), or, when no
fork server answers, as ``python -I -m MODULE``. The simulator reads ``SSH_ORIGINAL_COMMAND`` and learns who it
is from ``SetEnv`` (``GPUFLEET_LAB_HOST``, ``GPUFLEET_LAB_DIR`` and the unit's extra ``env``). An SFTP subsystem request reaches the same ForceCommand with
``SSH_ORIGINAL_COMMAND=internal-sftp``; the simulator then serves SFTP itself, rooted in the unit's fake file system.

The supervisor (lab.supervisor) starts and restarts the sshd processes of all units listed in ``run/units.json``;
a guest module contributes its units through ``lab.guest.guest_units(ctx)`` (see lab.manager).
"""

from __future__ import annotations

import functools
import os
import shlex
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

SSHD_BINARY = "/usr/sbin/sshd"
SSH_KEYGEN = "/usr/bin/ssh-keygen"
PRIVSEP_DIR = Path("/run/sshd")  # Debian's sshd refuses to start without it


@dataclass
class SshdUnit:
    """One SSH endpoint of the lab."""

    name: str  # the endpoint's name (vCenter HostSystem name for hosts, VM name for guests)
    kind: str  # "esxi" | "guest"
    address: str  # loopback address it listens on
    port: int
    state_dir: str  # holds sshd_config and the host key (the unit's own directory)
    module: str  # python module run as ForceCommand, e.g. "lab.esxi.shell"
    env: dict[str, str] = field(default_factory=dict)  # extra SetEnv variables
    user: str = "root"

    @property
    def config_path(self) -> Path:
        return Path(self.state_dir) / "sshd_config"

    @property
    def host_key_path(self) -> Path:
        return Path(self.state_dir) / "ssh_host_ed25519_key"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SshdUnit:
        return cls(**data)


def generate_key(path: Path, comment: str) -> str:
    """Create an ed25519 key pair at ``path`` (and ``path.pub``) unless it exists; return the public key line."""
    pub = path.with_name(path.name + ".pub")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            check=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
        )
    path.chmod(0o600)
    return pub.read_text().strip()


def public_key_body(pub_line: str) -> str:
    """``ssh-ed25519 AAAA...`` without the comment (what known_hosts needs)."""
    parts = pub_line.split()
    return f"{parts[0]} {parts[1]}"


def known_hosts_entry(address: str, port: int, pub_line: str) -> str:
    host = address if port == 22 else f"[{address}]:{port}"
    return f"{host} {public_key_body(pub_line)}"


def write_known_hosts(path: Path, entries: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in entries))
    path.chmod(0o644)


@functools.cache
def exec_client() -> Path:
    """The ForceCommand binary (lab/execclient, built once and cached like vcsim)."""
    from lab.vcenter import build_exec_client

    return build_exec_client()


def render_config(unit: SshdUnit, lab_root: Path, authorized_keys: Path, python: str | None = None) -> str:
    """The sshd_config of one unit: key auth only, ForceCommand to the simulator, nothing else allowed."""
    python = python or sys.executable
    # SHLVL=1: sshd runs ForceCommand through the user's shell, and bash sources ~/.bashrc when it thinks sshd
    # started it (SSH_CLIENT set and a shell level below 2). A user's rc (pyenv init, say) would then run before
    # every simulated command and could print into its output, which a real ESXi shell never does.
    env = {"GPUFLEET_LAB_HOST": unit.name, "GPUFLEET_LAB_DIR": str(lab_root), "SHLVL": "1", **unit.env}
    setenv = " ".join(f"{k}={v}" for k, v in env.items())
    # labexec hands the command to the lab's fork server (lab.forkserver), or becomes `python -I -m MODULE` itself
    # when none answers (-I: ignore PYTHON* variables and the user site; the venv's editable install maps `lab`).
    force = f"exec {shlex.quote(str(exec_client()))} {shlex.quote(python)} {unit.module}"
    return "\n".join(
        [
            f"# gpufleet lab: {unit.kind} {unit.name}",
            f"ListenAddress {unit.address}:{unit.port}",
            f"HostKey {unit.host_key_path}",
            "PidFile none",
            f"AuthorizedKeysFile {authorized_keys}",
            "AuthenticationMethods publickey",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "HostbasedAuthentication no",
            "PermitRootLogin prohibit-password",
            "PermitEmptyPasswords no",
            "UsePAM no",
            # The lab dir may live under /tmp (world-writable parents); the keys themselves are 0600.
            "StrictModes no",
            "PrintMotd no",
            "PrintLastLog no",
            "AllowTcpForwarding no",
            "AllowAgentForwarding no",
            "AllowStreamLocalForwarding no",
            "X11Forwarding no",
            "PermitTunnel no",
            "PermitUserEnvironment no",
            "PermitUserRC no",
            "MaxStartups 200:30:400",
            "MaxSessions 64",
            "LoginGraceTime 30",
            "LogLevel INFO",
            f"SetEnv {setenv}",
            f"ForceCommand {force}",
            "Subsystem sftp internal-sftp",
            "",
        ]
    )


def write_config(unit: SshdUnit, lab_root: Path, authorized_keys: Path, python: str | None = None) -> Path:
    path = unit.config_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_config(unit, lab_root, authorized_keys, python))
    return path


def check_config(config: Path) -> None:
    """``sshd -t``: fail early with sshd's own message."""
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    proc = subprocess.run([SSHD_BINARY, "-t", "-f", str(config)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"sshd rejected {config}: {proc.stderr.strip()}")


def start(unit: SshdUnit, log_file: Path) -> subprocess.Popen:
    """Start the unit's sshd in the foreground (-D) so that its parent can supervise and stop it by pid."""
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_file, "ab")  # noqa: SIM115 - handed to the child; closed when the child is reaped
    try:
        return subprocess.Popen(
            [SSHD_BINARY, "-D", "-f", str(unit.config_path), "-E", str(log_file)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            close_fds=True,
        )
    finally:
        log.close()


def _hex_endpoint(address: str, port: int) -> str:
    """/proc/net/tcp's spelling of an IPv4 endpoint: little-endian address, port in hex."""
    octets = [int(x) for x in address.split(".")]
    return "".join(f"{o:02X}" for o in reversed(octets)) + f":{port:04X}"


def listener_inode(address: str, port: int) -> str | None:
    """Inode of the socket listening on address:port, if any (state 0A = LISTEN)."""
    want = _hex_endpoint(address, port)
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if fields[1] == want and fields[3] == "0A":
            return fields[9]
    return None


def owns_listener(pid: int, address: str, port: int) -> bool:
    """True when process ``pid`` holds the socket listening on address:port (not some other process)."""
    inode = listener_inode(address, port)
    if inode is None:
        return False
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    target = f"socket:[{inode}]"
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                return True
        except OSError:
            continue
    return False


def port_user(address: str, port: int) -> str | None:
    """Who listens on address:port ("pid N: cmdline"), or None when the port is free."""
    inode = listener_inode(address, port)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{entry}/fd"):
                if os.readlink(f"/proc/{entry}/fd/{fd}") == target:
                    cmd = (
                        Path(f"/proc/{entry}/cmdline")
                        .read_bytes()
                        .replace(b"\0", b" ")
                        .decode(errors="replace")
                        .strip()
                    )
                    return f"pid {entry}: {cmd}"
        except OSError:
            continue
    return "another process"
