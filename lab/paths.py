"""Where a lab keeps its state: one directory (``$GPUFLEET_LAB_DIR``, default ``<repo>/.lab``).

Layout (all created by ``lab.manager.up`` and removed by ``lab.manager.down``)::

    env.json              how to reach everything (0600: holds the lab's generated vCenter password)
    lab.json              the manager's record: shape, ports, pids of what it started
    topology.json         the inventory both faces are seeded from (lab.topology)
    events.jsonl          what happened (maintenance enter/exit, reboots, installs, faults), one JSON per line
    tls/                  the lab CA and vcsim's certificate (lab.vcenter.make_lab_ca)
    ssh/                  the lab client key, authorized_keys, known_hosts (all lab host keys)
    hosts/<name>/         per ESXi host: sshd_config, host key, state.json (+ .lock), fs/ (its datastore, /tmp)
    guests/<name>/        per guest persona (lab.guest)
    depot/                NVIDIA driver bundles (older / same / newer) to upload to a host's datastore
    run/                  supervisor control socket, the fork server's exec.sock, units.json, supervisor.json
    logs/                 vcsim, supervisor, fork server and sshd logs

This module imports nothing heavy: the ESXi command simulator imports it on every SSH command.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LAB_DIR_ENV = "GPUFLEET_LAB_DIR"
HOST_ENV = "GPUFLEET_LAB_HOST"


def default_lab_dir() -> Path:
    """``$GPUFLEET_LAB_DIR`` if set, else ``<repo>/.lab`` (git-ignored)."""
    env = os.environ.get(LAB_DIR_ENV)
    return Path(env).resolve() if env else REPO_ROOT / ".lab"


@dataclass(frozen=True)
class LabPaths:
    root: Path

    @classmethod
    def resolve(cls, root: Path | str | None = None) -> LabPaths:
        return cls(Path(root).resolve() if root is not None else default_lab_dir())

    # -- files at the top -------------------------------------------------------------------------------
    @property
    def env_file(self) -> Path:
        return self.root / "env.json"

    @property
    def state_file(self) -> Path:
        return self.root / "lab.json"

    @property
    def topology_file(self) -> Path:
        return self.root / "topology.json"

    @property
    def events_file(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def lock_file(self) -> Path:
        """Serializes ``up``/``down`` of this lab. Kept outside ``root`` so that ``down`` can remove all of it."""
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        return Path("/tmp") / f"gpufleet-lab-{digest}.lock"

    # -- directories --------------------------------------------------------------------------------------
    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    @property
    def ssh_dir(self) -> Path:
        return self.root / "ssh"

    @property
    def client_key(self) -> Path:
        return self.ssh_dir / "id_ed25519"

    @property
    def authorized_keys(self) -> Path:
        return self.ssh_dir / "authorized_keys"

    @property
    def known_hosts(self) -> Path:
        return self.ssh_dir / "known_hosts"

    @property
    def hosts_dir(self) -> Path:
        return self.root / "hosts"

    def host_dir(self, name: str) -> Path:
        return self.hosts_dir / name

    def host_state(self, name: str) -> Path:
        return self.host_dir(name) / "state.json"

    def host_fs(self, name: str) -> Path:
        """The root of the host's simulated file system (``/vmfs/volumes/datastore1``, ``/tmp`` live under it)."""
        return self.host_dir(name) / "fs"

    @property
    def guests_dir(self) -> Path:
        return self.root / "guests"

    @property
    def depot_dir(self) -> Path:
        return self.root / "depot"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def supervisor_socket(self) -> Path:
        return self.run_dir / "supervisor.sock"

    @property
    def supervisor_state(self) -> Path:
        return self.run_dir / "supervisor.json"

    @property
    def units_file(self) -> Path:
        return self.run_dir / "units.json"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"
