"""Helpers of the lab_vcenter tests: a private vcsim (own CA, topology, port, credentials) and inventory lookups."""

from __future__ import annotations

import secrets
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pyVim.connect import SmartConnect
from pyVmomi import vim

from lab import vcenter
from lab.topology import Topology, write_topology

USER = "administrator@lab.local"
DEFAULT_HOST_STATE = dict(
    inMaintenanceMode=False,
    connectionState="connected",
    graphicsType="shared",
    assignmentPolicy="performance",
    driverActive=False,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class VcsimLab:
    port: int
    user: str
    password: str
    tls: vcenter.LabTls
    topology: Topology
    admin: vcenter.LabAdmin
    log_file: Path
    startup_s: float
    pid: int

    def connect(self, ca_file: Path | None = None) -> vim.ServiceInstance:
        ctx = ssl.create_default_context(cafile=str(ca_file or self.tls.ca_cert))
        return SmartConnect(host="127.0.0.1", port=self.port, user=self.user, pwd=self.password, sslContext=ctx)


@contextmanager
def running_vcsim(workdir: Path, topology: Topology, timeout: float = 60.0) -> Iterator[VcsimLab]:
    """Build (or reuse) the binary, make a CA, start vcsim on a free port; stop it afterwards."""
    import time

    binary = vcenter.build_vcsim()
    tls = vcenter.make_lab_ca(workdir / "tls")
    topo_file = write_topology(topology, workdir / "topology.json")
    password = secrets.token_urlsafe(16)
    port = free_port()
    log_file = workdir / "logs" / "vcsim.log"
    started = time.monotonic()
    proc = vcenter.start_vcsim(binary, topo_file, tls, port, USER, password, log_file, timeout=timeout)
    startup = time.monotonic() - started
    try:
        admin = vcenter.LabAdmin(f"https://127.0.0.1:{port}", USER, password, tls.ca_cert)
        yield VcsimLab(port, USER, password, tls, topology, admin, log_file, startup, proc.pid)
    finally:
        vcenter.stop_vcsim(proc.pid)
        proc.wait(timeout=15)


def find(si: vim.ServiceInstance, kind: type, name: str) -> vim.ManagedEntity:
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [kind], True)
    try:
        for obj in view.view:
            if obj.name == name:
                return obj
    finally:
        view.Destroy()
    raise LookupError(f"{kind.__name__} {name} not found")


def all_of(si: vim.ServiceInstance, kind: type) -> list:
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [kind], True)
    try:
        return list(view.view)
    finally:
        view.Destroy()
