"""Generated fleets: the planner benchmark (400 GPUs / 2,800 VMs) and the example stacks of stacks/.

``python benchmarks/fleets.py --write-stacks`` rewrites the generated example stacks (the eight MLPerf MIG
scenarios on one A100 80GB host, and the 50-server / 180-GPU inference fleet seed). Deterministic (fixed seeds).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

ROOT = Path(__file__).resolve().parent.parent
DRIVER = {
    "version": "550.90.05",
    "kind": "component",
    "bundle": "/vmfs/volumes/datastore1/NVD-AIE-800_550.90.05-1OEM.800.1.0.20613240_23471011.zip",
}
VCENTER = {
    "host": "vcenter.example.com",
    "user": "administrator@vsphere.local",
    "password": {"config": "gpufleet:vcenterPassword", "env": "GPUFLEET_VCENTER_PASSWORD"},
    "caFile": "/etc/ssl/certs/vcenter-ca.pem",
}
PCI_SLOTS = [
    "0000:1b:00.0",
    "0000:3b:00.0",
    "0000:5e:00.0",
    "0000:86:00.0",
    "0000:ab:00.0",
    "0000:af:00.0",
    "0000:d8:00.0",
    "0000:db:00.0",
]
TEMPLATE = {
    "name": "tpl-ubuntu2204-gpu",
    "guestId": "ubuntu64Guest",
    "firmware": "efi",
    "cpus": 16,
    "memoryMb": 131072,
    "hardwareVersion": 20,
}
TEMPLATE_P2P = {**TEMPLATE, "name": "tpl-ubuntu2204-nvlink", "p2p": True, "relaxAcs": True}

# -- the eight MLPerf MIG scenarios on one A100 80GB host ------------------------------------------------
MLPERF_SCENARIOS: dict[str, list[str]] = {
    "1x7g": ["7g.80gb"],
    "2x3g": ["3g.40gb"] * 2,
    "3x2g": ["2g.20gb"] * 3,
    "4x1g20": ["1g.20gb"] * 4,
    "7x1g": ["1g.10gb"] * 7,
    "4g-3g": ["4g.40gb", "3g.40gb"],
    "4g-2g-1g": ["4g.40gb", "2g.20gb", "1g.10gb"],
    "2g-2g-2g-1g": ["2g.20gb", "2g.20gb", "2g.20gb", "1g.10gb"],
}
A100D = {
    "7g.80gb": "grid_a100d-7-80c",
    "4g.40gb": "grid_a100d-4-40c",
    "3g.40gb": "grid_a100d-3-40c",
    "2g.20gb": "grid_a100d-2-20c",
    "1g.20gb": "grid_a100d-1-20c",
    "1g.10gb": "grid_a100d-1-10c",
}


def mlperf_stack(scenario: str) -> dict[str, Any]:
    instances = MLPERF_SCENARIOS[scenario]
    host = "esxi-mlperf-01.example.com"
    return {
        "config": {
            "gpufleet:vcenter": VCENTER,
            "gpufleet:fleet": {
                "version": "v1",
                "datacenter": "DC-MLPerf",
                "cluster": "MLPerf-Inference",
                "driver": DRIVER,
                "hosts": [{"name": host, "gpus": [{"pci": "0000:ca:00.0", "model": "A100-80GB-PCIe", "mode": "mig"}]}],
                "templates": [TEMPLATE],
                "vms": [
                    {
                        "name": f"mlperf-{i + 1:02d}",
                        "template": TEMPLATE["name"],
                        "host": host,
                        "vgpu": [{"profile": A100D[inst]}],
                    }
                    for i, inst in enumerate(instances)
                ],
            },
        }
    }


# -- fleets built from host groups and VM mixes ------------------------------------------------------------
def _hosts(
    prefix: str,
    count: int,
    model: str,
    modes: list[str],
    start: int = 1,
    nvlink_pairs: bool = False,
    mixed: bool = False,
) -> list[dict[str, Any]]:
    hosts = []
    for h in range(count):
        gpus = []
        for g, mode in enumerate(modes):
            gpu: dict[str, Any] = {"pci": PCI_SLOTS[g], "model": model, "mode": mode}
            if mixed and mode == "vgpu":
                gpu["mixedSize"] = True
            if nvlink_pairs and mode == "vgpu" and g % 2 == 0 and g + 1 < len(modes) and modes[g + 1] == "vgpu":
                gpu["nvlinkPeers"] = [PCI_SLOTS[g + 1]]
            gpus.append(gpu)
        hosts.append({"name": f"{prefix}-{start + h:02d}.example.com", "gpus": gpus})
    return hosts


def _pick(rng: random.Random, mix: dict[str, float]) -> str:
    return rng.choices(list(mix), weights=list(mix.values()))[0]


def _fleet(hosts: list[dict[str, Any]], vms: list[dict[str, Any]], p2p: bool) -> dict[str, Any]:
    return {
        "version": "v1",
        "datacenter": "DC-Inference",
        "cluster": "GPU-Inference",
        "driver": DRIVER,
        "hosts": hosts,
        "templates": [TEMPLATE, TEMPLATE_P2P] if p2p else [TEMPLATE],
        "vms": vms,
    }


def _vms(
    rng: random.Random,
    prefix: str,
    count: int,
    mix: dict[str, float],
    hosts: list[dict[str, Any]],
    pin_share: float = 0.0,
) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        vm: dict[str, Any] = {
            "name": f"{prefix}-{i + 1:04d}",
            "template": TEMPLATE["name"],
            "vgpu": [{"profile": _pick(rng, mix)}],
        }
        if pin_share and rng.random() < pin_share:
            # pin to a host that can run the profile (Q-series vGPUs have no mixed-size mode)
            choices = [
                h
                for h in hosts
                if not (vm["vgpu"][0]["profile"].endswith("q") and any(g.get("mixedSize") for g in h["gpus"]))
            ]
            vm["host"] = rng.choice(choices)["name"]
        out.append(vm)
    return out


A100_MIG_MIX = {
    "grid_a100d-7-80c": 4,
    "grid_a100d-4-40c": 8,
    "grid_a100d-3-40c": 14,
    "grid_a100d-2-20c": 20,
    "grid_a100d-1-20c": 10,
    "grid_a100d-1-10c": 44,
}
H100_MIG_MIX = {
    "grid_h100xm-7-80c": 4,
    "grid_h100xm-4-40c": 10,
    "grid_h100xm-3-40c": 14,
    "grid_h100xm-2-20c": 22,
    "grid_h100xm-1-20c": 10,
    "grid_h100xm-1-10c": 40,
}
H100_TS_MIX = {"grid_h100xm-40c": 1, "grid_h100xm-20c": 2, "grid_h100xm-10c": 2}
L40S_MIX = {
    "nvidia_l40s-24c": 2,
    "nvidia_l40s-12c": 4,
    "nvidia_l40s-8c": 8,
    "nvidia_l40s-4c": 20,
    "nvidia_l40s-4q": 8,
    "nvidia_l40s-2q": 25,
    "nvidia_l40s-1q": 30,
}
L4_MIX = {"nvidia_l4-6c": 2, "nvidia_l4-4c": 4, "nvidia_l4-2q": 10, "nvidia_l4-1q": 16}
T4_MIX = {"grid_t4-4c": 1, "grid_t4-2q": 4, "grid_t4-1q": 20}


def benchmark_fleet(seed: int = 7) -> dict[str, Any]:
    """400 GPUs on 50 hosts, 2,800 VM requests of mixed profiles (MIG, time-sliced, mixed-size, NVLink pairs)."""
    rng = random.Random(seed)
    a100 = _hosts("a100", 15, "A100-80GB-PCIe", ["mig"] * 8)
    h100 = _hosts("h100", 10, "H100-80GB-SXM", ["mig"] * 4 + ["vgpu"] * 4, nvlink_pairs=True)
    l40s = _hosts("l40s", 14, "L40S", ["vgpu"] * 8) + _hosts("l40s-mx", 1, "L40S", ["vgpu"] * 8, start=15, mixed=True)
    l4 = _hosts("l4", 5, "L4", ["vgpu"] * 8)
    t4 = _hosts("t4", 5, "T4", ["vgpu"] * 8)
    vms = (
        _vms(rng, "a100-vm", 360, A100_MIG_MIX, a100, pin_share=0.03)
        + _vms(rng, "h100-mig-vm", 110, H100_MIG_MIX, h100, pin_share=0.03)
        + _vms(rng, "h100-ts-vm", 40, H100_TS_MIX, h100)
        + _vms(rng, "l40s-vm", 1400, L40S_MIX, l40s, pin_share=0.02)
        + _vms(rng, "l4-vm", 440, L4_MIX, l4)
        + _vms(rng, "t4-vm", 438, T4_MIX, t4)
    )
    # training VMs: two full H100 SXM vGPUs joined by NVLink, P2P on
    for i in range(12):
        vms.append(
            {
                "name": f"train-{i + 1:02d}",
                "template": TEMPLATE_P2P["name"],
                "vgpu": [{"profile": "grid_h100xm-80c"}, {"profile": "grid_h100xm-80c"}],
            }
        )
    assert len(vms) == 2800, len(vms)
    return _fleet(a100 + h100 + l40s + l4 + t4, vms, p2p=True)


def inference_fleet(seed: int = 11) -> dict[str, Any]:
    """The seed fleet: 50 servers, 180 GPUs, inference VMs placed automatically."""
    rng = random.Random(seed)
    h100 = _hosts("h100", 8, "H100-80GB-SXM", ["mig"] * 4 + ["vgpu"] * 4, nvlink_pairs=True)
    a100 = _hosts("a100", 4, "A100-80GB-PCIe", ["mig"] * 4)
    l40s = _hosts("l40s", 16, "L40S", ["vgpu"] * 4) + _hosts(
        "l40s-pt", 2, "L40S", ["dynamic-passthrough"] * 4, start=17
    )
    l4 = _hosts("l4", 8, "L4", ["vgpu"] * 2)
    t4 = _hosts("t4", 12, "T4", ["vgpu"])
    vms = (
        _vms(rng, "llm", 90, H100_MIG_MIX, h100)
        + _vms(rng, "h100-ts", 20, H100_TS_MIX, h100)
        + _vms(rng, "vision", 40, A100_MIG_MIX, a100)
        + _vms(rng, "rec", 300, L40S_MIX, l40s)
        + _vms(rng, "edge", 60, L4_MIX, l4)
        + _vms(rng, "vdi", 40, T4_MIX, t4)
    )
    for i in range(4):
        vms.append(
            {
                "name": f"train-{i + 1:02d}",
                "template": TEMPLATE_P2P["name"],
                "vgpu": [{"profile": "grid_h100xm-80c"}, {"profile": "grid_h100xm-80c"}],
            }
        )
    for i in range(6):
        vms.append({"name": f"render-{i + 1:02d}", "template": TEMPLATE["name"], "passthrough": [{"model": "L40S"}]})
    hosts = h100 + a100 + l40s + l4 + t4
    assert len(hosts) == 50 and sum(len(h["gpus"]) for h in hosts) == 180
    return _fleet(hosts, vms, p2p=True)


def _quoted(node: Any) -> Any:
    """Strings with ':' double-quoted, so flow-style mappings stay valid YAML."""
    if isinstance(node, dict):
        return {k: _quoted(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_quoted(v) for v in node]
    if isinstance(node, str) and ":" in node:
        return DoubleQuotedScalarString(node)
    return node


def _write(path: Path, header: str, document: dict[str, Any]) -> None:
    document = _quoted(document)
    yaml = YAML()
    yaml.default_flow_style = None
    yaml.width = 120
    with path.open("w") as out:
        out.write(header)
        yaml.dump(document, out)


def write_stacks(folder: Path = ROOT / "stacks") -> list[Path]:
    written = []
    for name, instances in MLPERF_SCENARIOS.items():
        path = folder / f"Pulumi.mlperf-{name}.yaml"
        header = (
            f"# MLPerf inference MIG scenario {name}: {len(instances)} VM(s) of {' + '.join(instances)} on one\n"
            "# A100 80GB PCIe in MIG mode. Generated by benchmarks/fleets.py --write-stacks.\n"
            "# Check the layout: gpufleet plan this file, or gpufleet mig fit --gpu A100-80GB "
            f"{' '.join(instances)}\n"
        )
        _write(path, header, mlperf_stack(name))
        written.append(path)
    path = folder / "Pulumi.inference-fleet.yaml"
    header = (
        "# The inference fleet seed: 50 servers, 180 GPUs (H100 SXM MIG + NVLink pairs, A100 MIG, L40S time-sliced\n"
        "# and Dynamic DirectPath, L4, T4), VMs placed by `gpufleet plan`. Generated by benchmarks/fleets.py.\n"
    )
    _write(path, header, {"config": {"gpufleet:vcenter": VCENTER, "gpufleet:fleet": inference_fleet()}})
    written.append(path)
    return written


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write-stacks", action="store_true")
    args = parser.parse_args()
    if not args.write_stacks:
        parser.print_help()
        sys.exit(0)
    for p in write_stacks():
        print(p.relative_to(ROOT))
