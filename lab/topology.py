"""The lab's inventory: one description that seeds both faces (vcsim and the ESXi simulator).

``build_topology()`` is deterministic; ``write_topology()`` writes it as JSON for the Go vcsim main
(``-topology FILE``) and the SSH-side simulators. Shape of the JSON document::

    {"datacenter": "DC-Lab", "cluster": "GPU-Cluster", "datastore": "datastore-lab",
     "hosts": [{"name": "esxi-01.lab", "address": "127.0.0.11", "cpu_model": ..., "numa_nodes": 2,
                "gpus": [{"pci_id": "0000:3b:00.0", "model": "A100-80GB-PCIe", "vendor_id": 4318,
                          "device_id": 8373, "device_name": "...", "numa_node": 0,
                          "vgpu_profiles": ["grid_a100d-1-10c", ...], "mig_capable": true,
                          "architecture": "ampere"}],
                "nics": [{"pci_id": "0000:5e:00.0", "vendor_id": 5555, "device_id": 4125,
                          "device_name": "MT2892 Family [ConnectX-6 Dx]", "numa_node": 0,
                          "vmnic": "vmnic4", "vmrdma": "vmrdma0"}],
                "driver": null | {"version": "535.161.05", ...}}],
     "vms": [{"name": "tpl-ubuntu2204-gpu", "host": "esxi-01.lab", "template": true, ...}],
     "guests": [{"name": "vm-ts-01", "address": "127.0.1.11", ...}]}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab.gpu_catalog import LAB_GPU_MODELS, vsphere_profiles_for

NVIDIA_VENDOR_ID = 0x10DE
MELLANOX_VENDOR_ID = 0x15B3
CONNECTX6DX_DEVICE_ID = 0x101D

DATACENTER = "DC-Lab"
CLUSTER = "GPU-Cluster"
DATASTORE = "datastore-lab"
# The NVIDIA vGPU host driver release the lab bundle carries (NVAIE 5.x branch, ESXi 8).
LAB_DRIVER_VERSION = "550.90.05"


@dataclass(frozen=True)
class Gpu:
    pci_id: str
    model: str
    vendor_id: int
    device_id: int
    device_name: str
    numa_node: int
    architecture: str
    mig_capable: bool
    vgpu_profiles: list[str]


@dataclass(frozen=True)
class Nic:
    pci_id: str
    vendor_id: int
    device_id: int
    device_name: str
    numa_node: int
    vmnic: str
    vmrdma: str


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    gpus: list[Gpu]
    nics: list[Nic]
    numa_nodes: int = 2
    cpu_model: str = "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"
    memory_gb: int = 1024


@dataclass(frozen=True)
class Vm:
    name: str
    host: str
    template: bool = False
    guest_id: str = "ubuntu64Guest"
    num_cpus: int = 8
    memory_mb: int = 65536
    power_state: str = "poweredOff"


@dataclass(frozen=True)
class Guest:
    """A guest persona reachable over SSH: the Linux side of a VM of the same name."""

    name: str
    address: str
    persona: str  # vgpu-timesliced | vgpu-mig | passthrough-h100 | rdma | bitfusion-server | bitfusion-client


@dataclass
class Topology:
    hosts: list[Host]
    vms: list[Vm]
    guests: list[Guest]
    datacenter: str = DATACENTER
    cluster: str = CLUSTER
    datastore: str = DATASTORE
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


# The default lab: four hosts, one GPU family each, a ConnectX-6 Dx on every host.
_DEFAULT_HOST_GPUS: list[tuple[str, int]] = [
    ("A100-80GB-PCIe", 2),
    ("H100-80GB-PCIe", 2),
    ("L40S", 2),
    ("T4", 4),
]

# PCI bus numbers of the GPU slots, half on each NUMA node, like a 2-socket server.
_GPU_BUSES = ["3b", "5e", "86", "af"]
_NIC_BUSES = ["31", "98"]


# (VM, host, persona) of the Bitfusion pool's members; they start without GPU or RDMA devices, like the others.
BITFUSION_VMS: list[tuple[str, str, str]] = [
    ("bf-server-01", "esxi-04.lab", "bitfusion-server"),
    ("bf-server-02", "esxi-04.lab", "bitfusion-server"),
    ("bf-client-01", "esxi-03.lab", "bitfusion-client"),
    ("bf-client-02", "esxi-03.lab", "bitfusion-client"),
    ("bf-client-03", "esxi-03.lab", "bitfusion-client"),
]


def _host_address(index: int) -> str:
    # 127.0.0.11 .. 127.0.0.254, then 127.0.1.x etc. for large benchmark labs.
    n = 11 + index
    return f"127.0.{n // 244}.{n % 244 + 10}" if n >= 254 else f"127.0.0.{n}"


def _guest_address(index: int) -> str:
    return f"127.0.100.{11 + index}"


def _gpus_for(model: str, count: int) -> list[Gpu]:
    info = LAB_GPU_MODELS[model]
    gpus = []
    for slot in range(count):
        bus = _GPU_BUSES[slot % len(_GPU_BUSES)]
        gpus.append(
            Gpu(
                pci_id=f"0000:{bus}:00.0",
                model=model,
                vendor_id=NVIDIA_VENDOR_ID,
                device_id=info.device_id,
                device_name=info.device_name,
                numa_node=0 if slot < max(1, count // 2) else 1,
                architecture=info.architecture,
                mig_capable=info.mig_capable,
                vgpu_profiles=vsphere_profiles_for(model),
            )
        )
    return gpus


def _nics() -> list[Nic]:
    return [
        Nic(
            pci_id=f"0000:{bus}:00.0",
            vendor_id=MELLANOX_VENDOR_ID,
            device_id=CONNECTX6DX_DEVICE_ID,
            device_name="MT2892 Family [ConnectX-6 Dx]",
            numa_node=i,
            vmnic=f"vmnic{4 + i}",
            vmrdma=f"vmrdma{i}",
        )
        for i, bus in enumerate(_NIC_BUSES)
    ]


def build_topology(hosts: int = 4, vms_per_host: int = 0) -> Topology:
    """The lab inventory for ``hosts`` hosts (GPU families cycle) and ``vms_per_host`` extra VMs each."""
    if hosts < 1:
        raise ValueError("hosts must be at least 1")
    host_list: list[Host] = []
    for i in range(hosts):
        model, count = _DEFAULT_HOST_GPUS[i % len(_DEFAULT_HOST_GPUS)]
        host_list.append(
            Host(name=f"esxi-{i + 1:02d}.lab", address=_host_address(i), gpus=_gpus_for(model, count), nics=_nics())
        )
    vms = [Vm(name="tpl-ubuntu2204-gpu", host=host_list[0].name, template=True)]
    # VMs the lab stack gives GPUs to (they start without GPU devices) and their guest personas.
    guest_vms = [
        ("vm-ts-01", "esxi-03.lab", "vgpu-timesliced"),
        ("vm-mig-01", "esxi-01.lab", "vgpu-mig"),
        ("vm-pt-01", "esxi-02.lab", "passthrough-h100"),
        ("vm-rdma-01", "esxi-02.lab", "rdma"),
        # The GPU pool of stacks/Pulumi.lab-bitfusion.yaml (vSphere Bitfusion): two servers on the T4 host that
        # export its GPUs passed through to them, three clients without GPUs on another host.
        *BITFUSION_VMS,
    ]
    guests: list[Guest] = []
    for idx, (name, host, persona) in enumerate(guest_vms):
        if hosts >= 4:
            # Running, like a deployed fleet: `vms apply` power-cycles them (rollout.allowPowerCycle) and the
            # guest persona answers SSH only while vCenter shows its VM poweredOn.
            vms.append(Vm(name=name, host=host, power_state="poweredOn"))
            guests.append(Guest(name=name, address=_guest_address(idx), persona=persona))
    for h in host_list:
        for j in range(vms_per_host):
            vms.append(Vm(name=f"{h.name.split('.')[0]}-vm{j + 1:03d}", host=h.name, num_cpus=4, memory_mb=16384))
    return Topology(hosts=host_list, vms=vms, guests=guests)


def write_topology(topology: Topology, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(topology.to_json())
    return path
