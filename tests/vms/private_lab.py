"""A private copy of the lab's vCenter for tests that change VMs (one per pytest session / xdist worker).

Same vcsim binary, same topology and lab CA as ``gpufleet lab up`` (``lab.vcenter``), so the tests talk real SOAP
over verified TLS to the same simulator; but private, so changing VMs' devices and hosts' driver state never
disturbs other tests sharing the session lab. Hosts start prepared (NVIDIA driver active, graphics Shared Direct),
as ``gpufleet hosts prepare`` leaves them; each test clones its own VMs from the lab's template.

It also writes a lab env file (``env.json``, mode 0600) so code that reads ``vcenter.lab: true`` through
``GPUFLEET_LAB_DIR`` finds this vCenter.
"""

from __future__ import annotations

import json
import secrets
import socket
import ssl
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from gpufleet.vsphere.tasks import wait_for_task
from lab import vcenter
from lab.topology import build_topology, write_topology

USER = "administrator@lab.local"
TEMPLATE = "tpl-ubuntu2204-gpu"
# `vms apply` converges the stack's templates too (tpl-ubuntu2204-gpu in every test stack): VMs are cloned from an
# untouched copy of it, so each test starts from the same VM whatever ran before.
CLONE_SOURCE = "tpl-pristine"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PrivateLab:
    dir: Path  # GPUFLEET_LAB_DIR for code that reads vcenter.lab: true
    port: int
    password: str
    ca_file: Path
    admin: vcenter.LabAdmin

    def connect(self) -> vim.ServiceInstance:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        return SmartConnect(host="127.0.0.1", port=self.port, user=USER, pwd=self.password, sslContext=ctx)

    @contextmanager
    def session(self) -> Iterator[vim.ServiceInstance]:
        si = self.connect()
        try:
            yield si
        finally:
            Disconnect(si)

    def vcenter_spec(self, password_key: str = "gpufleet:vcenterPassword") -> dict[str, Any]:
        """A non-lab ``gpufleet:vcenter`` for this vCenter: the password is a Pulumi secret config key."""
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "user": USER,
            "caFile": str(self.ca_file),
            "password": {"config": password_key},
        }

    def find(self, si: vim.ServiceInstance, kind: type, name: str) -> Any:
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [kind], True)
        try:
            return next((o for o in view.view if o.name == name), None)
        finally:
            view.Destroy()

    def clone_vm(self, si: vim.ServiceInstance, host: str, prefix: str = "e5") -> vim.VirtualMachine:
        """A fresh powered-off VM on ``host``, cloned from (a pristine copy of) the lab's GPU template (unique name)."""
        template = self.find(si, vim.VirtualMachine, CLONE_SOURCE)
        target = self.find(si, vim.HostSystem, host)
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        where = vim.vm.RelocateSpec(host=target, pool=target.parent.resourcePool)
        spec = vim.vm.CloneSpec(location=where, powerOn=False, template=False)
        wait_for_task(
            template.CloneVM_Task(folder=template.parent, name=name, spec=spec), what=f"clone {name}", timeout=120
        )
        vm = self.find(si, vim.VirtualMachine, name)
        if vm.runtime.host != target:  # vcsim's clone keeps the template's host: move it where it was asked
            wait_for_task(vm.RelocateVM_Task(spec=where), what=f"relocate {name}", timeout=120)
        return vm

    def clone_template(self, si: vim.ServiceInstance, name: str, source: str = TEMPLATE) -> vim.VirtualMachine:
        """A template called ``name``, cloned from the template ``source`` on the same host."""
        template = self.find(si, vim.VirtualMachine, source)
        host = template.runtime.host
        where = vim.vm.RelocateSpec(host=host, pool=host.parent.resourcePool)
        spec = vim.vm.CloneSpec(location=where, powerOn=False, template=True)
        wait_for_task(
            template.CloneVM_Task(folder=template.parent, name=name, spec=spec), what=f"clone {name}", timeout=120
        )
        return self.find(si, vim.VirtualMachine, name)

    def destroy_vm(self, si: vim.ServiceInstance, name: str) -> None:
        vm = self.find(si, vim.VirtualMachine, name)
        if vm is None:
            return
        if str(vm.runtime.powerState) != "poweredOff":
            wait_for_task(vm.PowerOffVM_Task(), what=f"power off {name}", timeout=60)
        wait_for_task(vm.Destroy_Task(), what=f"destroy {name}", timeout=60)


def stack_document(fleet_vms: list[dict[str, Any]], vcenter_config: dict[str, Any], **rollout: Any) -> dict[str, Any]:
    """A Pulumi stack document for the lab inventory with these VMs (hosts and template as in stacks/Pulumi.lab.yaml)."""
    hosts = [
        {
            "name": "esxi-01.lab",
            "gpus": [
                {"pci": "0000:3b:00.0", "model": "A100-80GB-PCIe", "mode": "mig"},
                {"pci": "0000:5e:00.0", "model": "A100-80GB-PCIe", "mode": "mig"},
            ],
        },
        {
            "name": "esxi-02.lab",
            "gpus": [
                {"pci": "0000:3b:00.0", "model": "H100-80GB-PCIe", "mode": "mig"},
                {"pci": "0000:5e:00.0", "model": "H100-80GB-PCIe", "mode": "passthrough"},
            ],
            "nics": [{"pci": "0000:31:00.0", "model": "ConnectX-6-Dx", "ats": True, "passthrough": True}],
        },
        {
            "name": "esxi-03.lab",
            "gpus": [
                {"pci": "0000:3b:00.0", "model": "L40S", "mode": "vgpu"},
                {"pci": "0000:5e:00.0", "model": "L40S", "mode": "vgpu"},
            ],
        },
        {
            "name": "esxi-04.lab",
            "gpus": [{"pci": f"0000:{b}:00.0", "model": "T4", "mode": "vgpu"} for b in ("3b", "5e", "86", "af")],
        },
    ]
    fleet = {
        "version": "v1",
        "datacenter": "DC-Lab",
        "cluster": "GPU-Cluster",
        "driver": {"version": "550.90.05", "bundle": "/vmfs/volumes/datastore1/NVD-AIE-800_550.90.05.zip"},
        "rollout": rollout,
        "hosts": hosts,
        "templates": [{"name": TEMPLATE, "hardwareVersion": 19, "network": "VM Network"}],
        "vms": fleet_vms,
    }
    return {"config": {"gpufleet:vcenter": vcenter_config, "gpufleet:fleet": fleet}}


@contextmanager
def private_lab(workdir: Path) -> Iterator[PrivateLab]:
    """Build (cached) and start a private vcsim with the lab topology; hosts prepared; stopped afterwards."""
    binary = vcenter.build_vcsim()
    tls = vcenter.make_lab_ca(workdir / "tls")
    topology = write_topology(build_topology(), workdir / "topology.json")
    password = secrets.token_urlsafe(16)
    port = _free_port()
    proc = vcenter.start_vcsim(binary, topology, tls, port, USER, password, workdir / "vcsim.log", timeout=60)
    try:
        admin = vcenter.LabAdmin(f"https://127.0.0.1:{port}", USER, password, tls.ca_cert)
        for host in admin.hosts():
            admin.update_host(host, driverActive=True, graphicsType="sharedDirect")
        env = {
            "vcenter": {
                "url": f"https://127.0.0.1:{port}/sdk",
                "host": "127.0.0.1",
                "port": port,
                "user": USER,
                "password": password,
                "ca_file": str(tls.ca_cert),
                "thumbprint": tls.thumbprint,
            },
            "hosts": [],
            "guests": [],
        }
        env_file = workdir / "env.json"
        env_file.write_text(json.dumps(env))
        env_file.chmod(0o600)
        lab = PrivateLab(workdir, port, password, tls.ca_cert, admin)
        with lab.session() as si:
            lab.clone_template(si, CLONE_SOURCE)
        yield lab
    finally:
        vcenter.stop_vcsim(proc.pid)
        proc.wait(timeout=15)
