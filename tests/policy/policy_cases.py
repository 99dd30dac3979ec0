"""The lab stack made to violate each policy rule, one variant per rule: shared by the rule tests (offline) and
the policy pack's tests through the real engine, so both faces are judged on the same stacks."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "stacks" / "Pulumi.lab.yaml"
LAB_CONFIG = ROOT / "policy" / "config" / "lab.json"


_LAB = YAML(typ="safe").load(LAB.read_text())


def lab_document() -> dict[str, Any]:
    return copy.deepcopy(_LAB)


def fleet(document: dict[str, Any]) -> dict[str, Any]:
    return document["config"]["gpufleet:fleet"]


def make_unverified(d: dict[str, Any]) -> None:
    d["config"]["vsphere:allowUnverifiedSsl"] = True


def make_plain_secret(d: dict[str, Any]) -> None:
    d["config"]["gpufleet:hostLicense"] = "PLAIN-LICENSE-KEY-VALUE"


def make_too_many(d: dict[str, Any]) -> None:
    fleet(d)["rollout"]["maxUnavailable"] = 3


def make_mig(d: dict[str, Any]) -> None:
    vms = fleet(d)["vms"]
    vms[0].update(host="esxi-01.lab", vgpu=[{"profile": "grid_a100d-4-40c", "gpu": "0000:3b:00.0"}])
    vms[1]["vgpu"] = [{"profile": "grid_a100d-4-40c", "gpu": "0000:3b:00.0"}]


def make_shared_passthrough(d: dict[str, Any]) -> None:
    fleet(d)["vms"][2]["passthrough"] = [{"gpu": "0000:3b:00.0"}]  # esxi-02's MIG GPU


def make_prod(d: dict[str, Any]) -> None:
    fleet(d)["rollout"]["failureThreshold"] = 2  # the lab's own value; a prod stack must stop at the first failure


def make_branch(d: dict[str, Any]) -> None:
    pass  # the lab's 550 driver under a config that allows only 535


VIOLATIONS = [
    ("vcenter-tls-verified", make_unverified, "lab", {}, "vsphere:allowUnverifiedSsl: is true"),
    ("no-plain-secrets", make_plain_secret, "lab", {}, "config.gpufleet:hostLicense: holds a secret in plain text"),
    (
        "max-unavailable-share",
        make_too_many,
        "lab",
        {},
        "cluster GPU-Cluster: gpufleet:fleet.rollout.maxUnavailable: is 3: more than 50% of the cluster's 4 hosts",
    ),
    ("mig-layout-fits", make_mig, "lab", {}, "gpufleet:fleet.vms[vm-mig-01].vgpu[0].gpu: the MIG-backed vGPUs pinned"),
    (
        "gpu-passthrough-exclusive",
        make_shared_passthrough,
        "lab",
        {},
        "VM vm-pt-01: gpufleet:fleet.vms[vm-pt-01].passthrough[0].gpu: GPU 0000:3b:00.0 of esxi-02.lab is in mode mig",
    ),
    ("prod-rollout-safety", make_prod, "lab-prod", {}, "gpufleet:fleet.rollout.failureThreshold: is 2"),
    (
        "driver-branch-allowed",
        make_branch,
        "lab",
        {"driver-branch-allowed": {"allowedBranches": ["535"]}},
        "cluster GPU-Cluster: gpufleet:fleet.driver.version: 550.90.05 is of branch 550, not allowed (valid branches: 535",
    ),
]
