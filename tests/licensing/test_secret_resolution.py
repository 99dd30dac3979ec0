"""How a stack's secrets resolve (gpufleet.connections.resolve_stack_secret / stack_environ): the variable first,
then, for a lab stack only, the running lab's generated value; the licence targets read from them (no vCenter);
the lab's generated host key; the lab ESXi ``nvidia-smi -i`` bus id forms."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from gpufleet.connections import resolve_stack_secret, stack_environ
from gpufleet.errors import SpecError
from gpufleet.licensing.guest import resolve_client_token
from gpufleet.licensing.vsphere import VCENTER, license_targets
from gpufleet.spec.models import SecretRef
from gpufleet.spec.stack import Stack, parse_stack
from gpufleet.vsphere.licenses import EVALUATION_KEY, is_license_key
from lab.licenses import HOST_LICENSE_ENV, generate_host_license

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab" / "esxi"))

HOST_REF = SecretRef(config="gpufleet:hostLicense", env=HOST_LICENSE_ENV)
LAB_KEY = "GFLAB-UNIT0-00000-00000-00001"
ENV_KEY = "GFENV-UNIT0-00000-00000-00002"


def _stack(lab: bool, licensing: str = "{hostLicense: {env: GPUFLEET_HOST_LICENSE}}", hosts: str = "") -> Stack:
    vcenter = (
        "{lab: true}"
        if lab
        else "{host: vc.example.com, user: u, password: {env: VC_PW}, thumbprint: '" + ":".join(["AB"] * 32) + "'}"
    )
    text = f"""
config:
  gpufleet:vcenter: {vcenter}
  gpufleet:fleet:
    version: v1
    datacenter: D
    cluster: C
    licensing: {licensing}
    hosts:
      - {{name: h1}}
      - {{name: h2}}{hosts}
"""
    return parse_stack(YAML(typ="safe").load(text), name="t")


def _lab(tmp_path: Path, secrets: dict[str, str] | None) -> dict[str, str]:
    doc: dict[str, object] = {"vcenter": {"host": "127.0.0.1"}}
    if secrets is not None:
        doc["secrets"] = secrets
    (tmp_path / "env.json").write_text(json.dumps(doc))
    return {"GPUFLEET_LAB_DIR": str(tmp_path)}


def test_the_variable_wins_over_the_labs_value(tmp_path: Path) -> None:
    environ = _lab(tmp_path, {HOST_LICENSE_ENV: LAB_KEY}) | {HOST_LICENSE_ENV: ENV_KEY}
    secret = resolve_stack_secret(_stack(True), HOST_REF, "licensing.hostLicense", environ)
    assert secret is not None and secret.reveal() == ENV_KEY
    assert stack_environ(_stack(True), environ)[HOST_LICENSE_ENV] == ENV_KEY


def test_a_lab_stack_falls_back_on_the_labs_generated_value(tmp_path: Path) -> None:
    environ = _lab(tmp_path, {HOST_LICENSE_ENV: LAB_KEY, "GPUFLEET_NVIDIA_CLIENT_TOKEN": "tok-lab"})
    secret = resolve_stack_secret(_stack(True), HOST_REF, "licensing.hostLicense", environ)
    assert secret is not None and secret.reveal() == LAB_KEY and str(secret) == "***"
    merged = stack_environ(_stack(True), environ)
    assert merged[HOST_LICENSE_ENV] == LAB_KEY and merged["GPUFLEET_LAB_DIR"] == str(tmp_path)
    # The NVIDIA token resolves the same way.
    stack = _stack(True, "{nvidiaClientToken: {env: GPUFLEET_NVIDIA_CLIENT_TOKEN}}")
    assert resolve_client_token(stack, environ).reveal() == "tok-lab"


def test_a_non_lab_stack_never_reads_the_lab(tmp_path: Path) -> None:
    environ = _lab(tmp_path, {HOST_LICENSE_ENV: LAB_KEY})
    with pytest.raises(
        SpecError, match=r"licensing.hostLicense: environment variable GPUFLEET_HOST_LICENSE is not set"
    ):
        resolve_stack_secret(_stack(False), HOST_REF, "licensing.hostLicense", environ)
    assert HOST_LICENSE_ENV not in stack_environ(_stack(False), environ)


def test_unset_everywhere_names_the_variable(tmp_path: Path) -> None:
    environ = _lab(tmp_path, None)  # a lab env file without generated secrets
    with pytest.raises(SpecError, match="GPUFLEET_HOST_LICENSE is not set"):
        resolve_stack_secret(_stack(True), HOST_REF, "licensing.hostLicense", environ)
    assert resolve_stack_secret(_stack(True), None, "x", environ) is None


def test_a_set_variable_needs_no_running_lab(tmp_path: Path) -> None:
    environ = {"GPUFLEET_LAB_DIR": str(tmp_path / "nothing"), HOST_LICENSE_ENV: ENV_KEY}
    secret = resolve_stack_secret(_stack(True), HOST_REF, "licensing.hostLicense", environ)
    assert secret is not None and secret.reveal() == ENV_KEY
    with pytest.raises(SpecError, match="gpufleet lab up"):
        resolve_stack_secret(_stack(True), HOST_REF, "licensing.hostLicense", {"GPUFLEET_LAB_DIR": str(tmp_path / "x")})


def test_licence_targets_per_host_key_and_checks(tmp_path: Path) -> None:
    stack = _stack(
        True,
        "{vcenterLicense: {env: VC_KEY}, hostLicense: {env: GPUFLEET_HOST_LICENSE}}",
        "\n      - {name: h3, license: {env: H3_KEY}}",
    )
    environ = _lab(tmp_path, {HOST_LICENSE_ENV: LAB_KEY}) | {
        "VC_KEY": ENV_KEY,
        "H3_KEY": "GFH3K-UNIT0-00000-00000-00003",
    }
    targets = license_targets(stack, environ=environ)
    assert [(t.target, t.field, t.variable) for t in targets] == [
        (VCENTER, "licensing.vcenterLicense", "$VC_KEY"),
        ("h1", "licensing.hostLicense", "$GPUFLEET_HOST_LICENSE"),
        ("h2", "licensing.hostLicense", "$GPUFLEET_HOST_LICENSE"),
        ("h3", "hosts[2].license", "$H3_KEY"),
    ]
    assert [t.key.reveal() for t in targets[1:3]] == [LAB_KEY, LAB_KEY]
    assert targets[3].fingerprint == "*****-*****-*****-*****-00003"
    only = license_targets(stack, hosts=["h3"], include_vcenter=False, environ=environ)
    assert [t.target for t in only] == ["h3"]

    with pytest.raises(SpecError) as info:
        license_targets(
            stack, hosts=["h9", "h3"], environ=environ | {"H3_KEY": "secret-but-bad", "VC_KEY": EVALUATION_KEY}
        )
    text = str(info.value)
    assert "'h9' is not a host of the stack" in text and "h1, h2, h3" in text
    assert "hosts[2].license (h3): $H3_KEY does not hold a vSphere licence key" in text
    assert "licensing.vcenterLicense (vcenter): $VC_KEY holds the evaluation key" in text
    assert "secret-but-bad" not in text

    with pytest.raises(
        SpecError, match=r"licensing.vcenterLicense \(vcenter\): environment variable VC_KEY is not set"
    ):
        license_targets(stack, environ={k: v for k, v in environ.items() if k != "VC_KEY"})


def test_no_licensing_in_the_spec_means_no_targets() -> None:
    assert license_targets(_stack(False, "{}"), environ={}) == []


def test_the_labs_generated_host_key_has_the_vsphere_format() -> None:
    keys = {generate_host_license() for _ in range(20)}
    assert len(keys) == 20
    assert all(is_license_key(k) and re.fullmatch(r"GFLAB(-[0-9A-Z]{5}){4}", k) for k in keys)
    assert not is_license_key("gflab-aaaaa-bbbbb-ccccc-ddddd") and not is_license_key("AAAAA-BBBBB")


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from simhost import SimLab

    lab = SimLab(tmp_path_factory.mktemp("smi") / "lab")
    assert lab.install_driver("esxi-01.lab").code == 0
    lab.boot("esxi-01.lab")
    return lab


@pytest.mark.parametrize("bus", ["0000:3b:00.0", "0000:3B:00.0", "00000000:3B:00.0", "00000000:3b:00.0", "3b:00.0"])
def test_nvidia_smi_i_takes_a_bus_id_in_any_case_and_domain_width(sim, bus: str) -> None:  # type: ignore[no-untyped-def]
    r = sim.run("esxi-01.lab", f"nvidia-smi -i {bus} --query-gpu=index,pci.bus_id --format=csv,noheader")
    assert (r.code, r.out) == (0, "0, 00000000:3B:00.0\n")
    r = sim.run(
        "esxi-01.lab",
        f"nvidia-smi --id={bus.replace('3b', '5e').replace('3B', '5E')} --query-gpu=index --format=csv,noheader",
    )
    assert (r.code, r.out) == (0, "1\n")
    r = sim.run("esxi-01.lab", f"nvidia-smi mig -i {bus} -lgip")
    rows = re.findall(r"^\|\s+(\d+)\s+MIG ", r.out, flags=re.M)
    assert r.code == 0 and rows and set(rows) == {"0"}


def test_nvidia_smi_i_unknown_bus_id(sim) -> None:  # type: ignore[no-untyped-def]
    for bad in ("0000:99:00.0", "3b:00", "zz:00.0"):
        r = sim.run("esxi-01.lab", f"nvidia-smi -i {bad} --query-gpu=index --format=csv,noheader")
        assert (r.code, r.err) == (6, "No devices were found\n")
