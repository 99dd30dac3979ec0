"""What a simulated command gets: who the host is, where the lab is, its state, and how to answer."""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from lab.esxi.state import HostStore
from lab.paths import LabPaths


@dataclass
class Result:
    code: int = 0
    out: str = ""
    err: str = ""


@dataclass
class Ctx:
    paths: LabPaths
    host: str
    cwd: str = "/"
    # Set by the shell when running under sshd: pids of this connection's sshd processes (killed by ssh-drop).
    session_pids: list[int] = field(default_factory=list)

    @property
    def store(self) -> HostStore:
        return HostStore(self.paths, self.host)

    @property
    def short_name(self) -> str:
        return self.host.split(".")[0]

    def drop_connection(self, out: str = "") -> None:
        """Cut this SSH connection now (the ``ssh-drop`` fault): flush what was printed, kill our sshd session."""
        if not self.session_pids:
            raise ConnectionAbortedError("ssh-drop: this command does not run under the lab's sshd")
        if out:
            os.write(1, out.encode())
        for pid in self.session_pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        os._exit(255)


# Under the lab's fork server (lab.forkserver) a command's parent is the server, not sshd: the server passes the
# ForceCommand's parent (the sshd session) here.
SSH_PARENT_ENV = "GPUFLEET_LAB_SSH_PARENT"


def session_sshd_pids() -> list[int]:
    """Ancestors of this command that are sshd per-connection processes (all sshd ancestors but the listener)."""
    pids: list[int] = []
    parent = os.environ.get(SSH_PARENT_ENV, "")
    pid = int(parent) if parent.isdigit() else os.getppid()
    while pid > 1:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            break
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if comm == "sshd":
            if "[listener]" in cmdline or " -D " in f" {cmdline} ":
                break
            pids.append(pid)
        pid = ppid
    return pids
