"""A small valid fleet (as the YAML dict a stack file holds) that tests mutate into broken ones."""

from __future__ import annotations

import copy
from typing import Any

from gpufleet.errors import SpecError, SpecIssue
from gpufleet.spec.models import Fleet
from gpufleet.spec.stack import parse_stack
from gpufleet.spec.validate import validate_fleet

DRIVER = {"version": "550.90.05", "bundle": "/vmfs/volumes/ds1/NVD-AIE-800_550.90.05.zip"}

BASE: dict[str, Any] = {
    "version": "v1",
    "datacenter": "DC",
    "cluster": "C",
    "driver": DRIVER,
    "hosts": [
        {
            "name": "esxi-a",
            "gpus": [
                {"pci": "0000:3b:00.0", "model": "A100-80GB-PCIe", "mode": "mig"},
                {"pci": "0000:5e:00.0", "model": "A100-80GB-PCIe", "mode": "mig"},
            ],
            "nics": [
                {"pci": "0000:31:00.0", "ats": True, "passthrough": True},
                {"pci": "0000:32:00.0"},
            ],
        },
        {
            "name": "esxi-b",
            "gpus": [
                {"pci": "0000:3b:00.0", "model": "L40S", "mode": "vgpu"},
                {"pci": "0000:5e:00.0", "model": "L40S", "mode": "vgpu", "mixedSize": True},
                {"pci": "0000:86:00.0", "model": "L40S", "mode": "passthrough"},
                {"pci": "0000:af:00.0", "model": "L40S", "mode": "dynamic-passthrough"},
            ],
        },
        {
            "name": "esxi-c",
            "gpus": [
                {"pci": "0000:1b:00.0", "model": "H100-80GB-SXM", "mode": "vgpu", "nvlinkPeers": ["0000:3b:00.0"]},
                {"pci": "0000:3b:00.0", "model": "H100-80GB-SXM", "mode": "vgpu"},
                {"pci": "0000:5e:00.0", "model": "H100-80GB-SXM", "mode": "vgpu", "nvlinkPeers": ["0000:86:00.0"]},
                {"pci": "0000:86:00.0", "model": "H100-80GB-SXM", "mode": "vgpu"},
            ],
        },
    ],
    "templates": [
        {"name": "tpl", "guestId": "ubuntu64Guest", "firmware": "efi", "hardwareVersion": 19},
        {"name": "tpl-p2p", "guestId": "ubuntu64Guest", "firmware": "efi", "hardwareVersion": 19, "p2p": True},
    ],
    "vms": [
        {"name": "vm-mig", "template": "tpl", "host": "esxi-a", "vgpu": [{"profile": "grid_a100d-3-40c"}]},
        {"name": "vm-ts", "template": "tpl", "vgpu": [{"profile": "nvidia_l40s-24c"}]},
        {"name": "vm-pt", "template": "tpl", "host": "esxi-b", "passthrough": [{"gpu": "0000:86:00.0"}]},
        {"name": "vm-dyn", "template": "tpl", "passthrough": [{"model": "L40S"}]},
        {
            "name": "vm-train",
            "template": "tpl-p2p",
            "host": "esxi-c",
            "vgpu": [
                {"profile": "grid_h100xm-80c", "gpu": "0000:1b:00.0"},
                {"profile": "nvidia_h100xm-80c", "gpu": "0000:3b:00.0"},
            ],
        },
        {"name": "vm-rdma", "template": "tpl", "rdma": [{"type": "pvrdma", "network": "rdma-pg"}]},
        {
            "name": "vm-gdr",
            "template": "tpl-p2p",
            "host": "esxi-a",
            "vgpu": [{"profile": "grid_a100d-1-10c"}],
            "rdma": [{"type": "passthrough", "nic": "0000:31:00.0"}],
        },
    ],
}


def base() -> dict[str, Any]:
    return copy.deepcopy(BASE)


def issues_of(fleet: dict[str, Any]) -> list[SpecIssue]:
    """Shape issues (from the stack loader) or hardware issues (validate_fleet): never raises anything else."""
    try:
        stack = parse_stack({"config": {"gpufleet:fleet": fleet, "gpufleet:vcenter": {"lab": True}}})
    except SpecError as exc:
        return exc.issues
    return validate_fleet(stack.fleet)


def fleet_of(fleet: dict[str, Any]) -> Fleet:
    return Fleet.model_validate(fleet)
