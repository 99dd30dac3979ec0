"""Fixtures of the vSphere licensing tests: a private lab vCenter (tests/vms/private_lab.py: same vcsim, topology
and lab CA as ``gpufleet lab up``) whose env.json carries the lab's generated host licence key, and a stack on it
that names a vCenter key, a default host key and one host's own key."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vms"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "checks"))  # the simulated guests (sim_guests.py)

from licensing_lab_keys import OWN_ENV, OWN_KEY, VCENTER_ENV, VCENTER_KEY  # noqa: E402
from private_lab import PrivateLab, private_lab, stack_document  # noqa: E402
from sim_guests import lab_token, make_guest, sim_runner  # noqa: E402, F401  (fixtures of the guest licensing tests)

from gpufleet.spec.stack import Stack, parse_stack  # noqa: E402
from gpufleet.vsphere.licenses import EVALUATION_KEY, assign_to, assigned_licenses, license_keys, remove_license  # noqa: E402
from lab.licenses import HOST_LICENSE_ENV, generate_host_license  # noqa: E402


def licensing_document(lab: PrivateLab) -> dict[str, Any]:
    """The lab inventory as a stack (no VMs: only licences) with vCenter, default and per-host keys."""
    doc = stack_document([], {"lab": True})
    fleet = doc["config"]["gpufleet:fleet"]
    fleet["licensing"] = {
        "vcenterLicense": {"config": "gpufleet:vcenterLicense", "env": VCENTER_ENV},
        "hostLicense": {"config": "gpufleet:hostLicense", "env": HOST_LICENSE_ENV},
    }
    fleet["hosts"][3]["license"] = {"env": OWN_ENV}  # esxi-04.lab carries its own key
    return doc


@pytest.fixture(scope="session")
def lic_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateLab]:
    if shutil.which("go") is None:
        pytest.skip("the lab vCenter needs Go >= 1.26 on PATH (it builds the Go module lab/vcsim)")
    with private_lab(tmp_path_factory.mktemp("lic-lab")) as lab:
        env_file = lab.dir / "env.json"
        doc = json.loads(env_file.read_text())
        doc["secrets"] = {HOST_LICENSE_ENV: generate_host_license()}  # as `gpufleet lab up` writes it
        env_file.write_text(json.dumps(doc))
        env_file.chmod(0o600)
        yield lab


@pytest.fixture
def lab_host_key(lic_lab: PrivateLab) -> str:
    return str(json.loads((lic_lab.dir / "env.json").read_text())["secrets"][HOST_LICENSE_ENV])


@pytest.fixture
def environ(lic_lab: PrivateLab) -> dict[str, str]:
    """The variables the CLI would see: the lab dir, the vCenter and esxi-04 keys; GPUFLEET_HOST_LICENSE unset
    (the lab's generated key stands in)."""
    return {"GPUFLEET_LAB_DIR": str(lic_lab.dir), VCENTER_ENV: VCENTER_KEY, OWN_ENV: OWN_KEY}


@pytest.fixture
def stack_file(lic_lab: PrivateLab, tmp_path: Path) -> Path:
    path = tmp_path / "Pulumi.lic.yaml"
    with path.open("w") as fh:
        YAML().dump(licensing_document(lic_lab), fh)
    return path


@pytest.fixture
def stack(stack_file: Path) -> Stack:
    return parse_stack(YAML(typ="safe").load(stack_file.read_text()), name="lic")


@pytest.fixture
def fresh(lic_lab: PrivateLab) -> Iterator[Any]:
    """A logged-in ServiceInstance on a vCenter where every entity runs in evaluation mode and no other key is
    held (before and after the test)."""

    def reset(si: Any) -> None:
        for entity, found in assigned_licenses(si).items():
            if not found.evaluation:
                assign_to(si, entity, "", EVALUATION_KEY)
        for key in license_keys(si) - {EVALUATION_KEY}:
            remove_license(si, key)

    with lic_lab.session() as si:
        reset(si)
        yield si
        reset(si)
