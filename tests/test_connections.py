"""gpufleet.connections: lab env file, spec + environment secrets, lab-depot:// paths, secrets never printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpufleet.connections import Secret, resolve_connections, resolve_local_path
from gpufleet.errors import SpecError
from gpufleet.spec.stack import parse_stack

FLEET = {"version": "v1", "datacenter": "DC", "cluster": "C", "hosts": [{"name": "esxi-01.lab"}]}


def lab_env(directory: Path) -> dict:
    document = {
        "vcenter": {
            "url": "https://127.0.0.10:8989/sdk",
            "host": "127.0.0.10",
            "port": 8989,
            "user": "admin",
            "password": "lab-pw",
            "ca_file": str(directory / "tls" / "ca.pem"),
            "thumbprint": "ab:" * 31 + "ab",
        },
        "hosts": [
            {
                "name": "esxi-01.lab",
                "address": "127.0.0.11",
                "port": 22,
                "user": "root",
                "key_file": "/k",
                "known_hosts": "/kh",
            }
        ],
        "guests": [
            {
                "name": "vm-ts-01",
                "address": "127.0.100.11",
                "port": 22,
                "user": "root",
                "key_file": "/k",
                "known_hosts": "/kh",
            }
        ],
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "env.json").write_text(json.dumps(document))
    return document


def test_lab_settings_come_from_the_env_file(tmp_path: Path) -> None:
    lab_env(tmp_path)
    stack = parse_stack({"config": {"gpufleet:vcenter": {"lab": True}, "gpufleet:fleet": FLEET}})
    conns = resolve_connections(stack, environ={"GPUFLEET_LAB_DIR": str(tmp_path)})
    assert conns.vcenter.host == "127.0.0.10" and conns.vcenter.port == 8989
    assert conns.vcenter.password.reveal() == "lab-pw"
    assert conns.vcenter.thumbprint == "AB:" * 31 + "AB"
    assert conns.host("esxi-01.lab").address == "127.0.0.11"
    assert conns.host("esxi-01.lab").known_hosts == Path("/kh")
    assert conns.local_path("lab-depot://NVD.zip") == tmp_path / "depot" / "NVD.zip"
    with pytest.raises(SpecError, match="esxi-09.lab: no SSH settings"):
        conns.host("esxi-09.lab")


def test_a_stack_host_the_lab_lacks_is_bad_input(tmp_path: Path) -> None:
    lab_env(tmp_path)
    fleet = {**FLEET, "hosts": [{"name": "esxi-01.lab"}, {"name": "esxi-77.lab"}]}
    stack = parse_stack({"config": {"gpufleet:vcenter": {"lab": True}, "gpufleet:fleet": fleet}})
    with pytest.raises(
        SpecError, match=r"hosts\[1\].name: 'esxi-77.lab' is not a host of the running lab \(valid: esxi-01.lab\)"
    ):
        resolve_connections(stack, environ={"GPUFLEET_LAB_DIR": str(tmp_path)})


def test_lab_not_running_says_how_to_start_it(tmp_path: Path) -> None:
    stack = parse_stack({"config": {"gpufleet:vcenter": {"lab": True}, "gpufleet:fleet": FLEET}})
    with pytest.raises(SpecError, match="gpufleet lab up"):
        resolve_connections(stack, environ={"GPUFLEET_LAB_DIR": str(tmp_path / "none")})


def _real_stack(ssh: dict, password: dict) -> object:
    vcenter = {
        "host": "vc.example",
        "user": "administrator@vsphere.local",
        "password": password,
        "thumbprint": "AB:" * 31 + "AB",
    }
    fleet = {**FLEET, "hosts": [{"name": "esxi-01.lab", "ssh": ssh}]}
    return parse_stack({"config": {"gpufleet:vcenter": vcenter, "gpufleet:fleet": fleet}})


def test_secrets_come_from_the_environment_and_never_print() -> None:
    stack = _real_stack(
        {"address": "10.0.0.5", "knownHosts": "/etc/ssh/known", "password": {"env": "ESXI_PW"}}, {"env": "VC_PW"}
    )
    conns = resolve_connections(stack, environ={"VC_PW": "vc-secret", "ESXI_PW": "esxi-secret"})
    assert conns.vcenter.password.reveal() == "vc-secret"
    assert conns.host("esxi-01.lab").password == Secret("esxi-secret")
    for text in (repr(conns), str(conns), f"{conns.vcenter}", repr(conns.host("esxi-01.lab"))):
        assert "secret" not in text.replace("Secret(", "")


def test_every_missing_secret_and_setting_is_reported_at_once() -> None:
    stack = _real_stack({"address": "10.0.0.5", "password": {"config": "gpufleet:esxiPassword"}}, {"env": "VC_PW"})
    with pytest.raises(SpecError) as err:
        resolve_connections(stack, environ={})
    message = str(err.value)
    assert "vcenter.password: environment variable VC_PW is not set" in message
    assert "hosts[0].ssh: give hostKey (pinned) or knownHosts" in message


def test_pulumi_only_secret_is_explained() -> None:
    stack = _real_stack(
        {"address": "10.0.0.5", "knownHosts": "/k", "password": {"config": "gpufleet:esxiPassword"}}, {"env": "VC_PW"}
    )
    with pytest.raises(SpecError, match="only the Pulumi secret 'gpufleet:esxiPassword'.*add `env: VARIABLE`"):
        resolve_connections(stack, environ={"VC_PW": "x"})


def test_lab_depot_paths(tmp_path: Path) -> None:
    assert resolve_local_path("lab-depot://a.zip", tmp_path) == tmp_path / "depot" / "a.zip"
    assert resolve_local_path("/srv/a.zip", tmp_path) == Path("/srv/a.zip")
    with pytest.raises(SpecError, match="plain file name"):
        resolve_local_path("lab-depot://../etc/passwd", tmp_path)
