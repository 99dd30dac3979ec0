"""What `validate` tells a person (issue 12, item 12): "did you mean" for unknown keys, the rejected value echoed
(bounded, never a secret's), the file, line and column of a YAML error, and paths with names beside indices."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from spec_factory import base
from typer.testing import CliRunner

from gpufleet.cli.main import app
from gpufleet.errors import SpecError
from gpufleet.spec.stack import parse_stack

runner = CliRunner()
SECRET = "hunter2-Sup3r-s3cret-value"


def validate(tmp_path: Path, fleet: Any, vcenter: Any = None) -> tuple[list[dict[str, Any]], str]:
    path = tmp_path / "Pulumi.t.yaml"
    config = {"gpufleet:fleet": fleet, "gpufleet:vcenter": {"lab": True} if vcenter is None else vcenter}
    YAML(typ="safe").dump({"config": config}, path)
    result = runner.invoke(app, ["validate", str(path), "--json"])
    human = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == human.exit_code == 1, result.stdout
    return json.loads(result.stdout)["issues"], human.stdout + result.stdout


def at(issues: list[dict[str, Any]], path: str) -> dict[str, Any]:
    found = [i for i in issues if i["path"] == path]
    assert found, f"no issue at {path}: {[i['path'] for i in issues]}"
    return found[0]


@pytest.mark.parametrize(
    ("where", "typo", "meant"),
    [
        (("templates", 0), "memoryMB", "memoryMb"),
        (("vms", 0), "vgpus", "vgpu"),
        (("vms", 0), "hots", "host"),
        (("hosts", 0), "graphicType", "graphicsType"),
        ((), "rollouts", "rollout"),
    ],
)
def test_unknown_keys_say_did_you_mean(tmp_path: Path, where: tuple[Any, ...], typo: str, meant: str) -> None:
    fleet = base()
    node = fleet
    for part in where:
        node = node[part]
    node[typo] = node.pop(meant, 1)
    issues, out = validate(tmp_path, fleet)
    names = {("templates", 0): "templates[tpl].", ("vms", 0): "vms[vm-mig].", ("hosts", 0): "hosts[esxi-a].", (): ""}
    issue = at(issues, names[where] + typo)
    assert f"did you mean `{meant}`?" in issue["message"] and issue["value"] is None
    assert f"did you mean `{meant}`?" in out


def test_an_unknown_key_without_a_close_one_lists_the_keys_allowed(tmp_path: Path) -> None:
    fleet = base()
    fleet["vms"][0]["zzzqqq"] = 1
    issue = at(validate(tmp_path, fleet)[0], "vms[vm-mig].zzzqqq")
    assert "did you mean" not in issue["message"] and {"name", "template", "vgpu"} <= set(issue["valid"])


def test_a_misspelt_fleet_key_is_named() -> None:
    with pytest.raises(SpecError) as err:
        parse_stack({"config": {"gpufleet:flet": base(), "gpufleet:vcenter": {"lab": True}}})
    assert "did you mean it, not `gpufleet:flet`?" in str(err.value)


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        ("cpus", "8", "'8'"),
        ("cpus", True, "true"),
        ("firmware", "uefi", "'uefi'"),
        ("hardwareVersion", 99, "99"),
        ("firmware", "x" * 500, "'" + "x" * 58),
    ],
)
def test_the_rejected_value_is_echoed_bounded(tmp_path: Path, field: str, value: Any, shown: str) -> None:
    fleet = base()
    fleet["templates"][0][field] = value
    issues, out = validate(tmp_path, fleet)
    issue = at(issues, f"templates[tpl].{field}")
    assert issue["value"].startswith(shown) and len(issue["value"]) <= 60
    assert shown in out and "x" * 100 not in out


@pytest.mark.parametrize(
    ("where", "key"),
    [
        (("licensing",), "nvidiaClientToken"),
        (("licensing",), "hostLicense"),
        (("hosts", 0), "license"),
    ],
)
def test_a_secret_written_in_the_file_is_never_echoed(tmp_path: Path, where: tuple[Any, ...], key: str) -> None:
    fleet = base()
    node = fleet.setdefault(where[0], {}) if len(where) == 1 else fleet[where[0]][where[1]]
    for shape in (SECRET, {"value": SECRET}, [SECRET], {"env": "X", "token": SECRET}):
        node[key] = shape
        issues, out = validate(tmp_path, fleet)
        assert SECRET not in out and all(i["value"] is None for i in issues if key in i["path"])


def test_a_misspelt_secret_key_is_not_echoed_either(tmp_path: Path) -> None:
    fleet = base()
    fleet["hosts"][0]["ssh"] = {"address": "10.0.0.1", "knownHosts": "/k", "passwrd": SECRET}
    vcenter = {"host": "vc", "user": "u", "password": SECRET, "thumbprint": "AB"}
    issues, out = validate(tmp_path, fleet, vcenter)
    assert SECRET not in out
    assert "never the value itself" in at(issues, "vcenter.password")["message"]
    assert "did you mean `password`?" in at(issues, "hosts[esxi-a].ssh.passwrd")["message"]


def test_paths_carry_names_and_the_index_form_beside_them(tmp_path: Path) -> None:
    fleet = base()
    fleet["vms"][0]["vgpu"][0]["profile"] = "grid_a100d-9-90c"  # a hardware rule
    issues, out = validate(tmp_path, fleet)
    assert at(issues, "vms[vm-mig].vgpu[0].profile")["indexPath"] == "vms[0].vgpu[0].profile"
    assert "vms[vm-mig].vgpu[0].profile" in out
    fleet = base()
    fleet["vms"][1]["cpus"] = "4"  # a shape rule (pydantic)
    issues, out = validate(tmp_path, fleet)
    assert at(issues, "vms[vm-ts].cpus")["indexPath"] == "vms[1].cpus"
    assert "vms[vm-ts].cpus" in out


def test_names_that_cannot_stand_in_for_an_index_keep_it(tmp_path: Path) -> None:
    fleet = base()
    fleet["vms"][1]["name"] = fleet["vms"][0]["name"]  # a duplicate: vms[vm-mig] would be ambiguous
    fleet["vms"][2]["name"] = "7"  # a number: vms[7] would read as an index
    fleet["vms"][3]["name"] = "a]b"
    for vm in fleet["vms"][:4]:
        vm["cpus"] = "1"
    issues, _ = validate(tmp_path, fleet)
    paths = {i["path"] for i in issues}
    assert {"vms[0].cpus", "vms[1].cpus", "vms[2].cpus", "vms[3].cpus"} <= paths, paths


def test_references_to_other_items_in_messages_carry_names_too(tmp_path: Path) -> None:
    fleet = base()
    fleet["templates"][1]["name"] = "tpl"  # duplicate template name: the rule says where the other one is
    fleet["hosts"][1]["name"] = "esxi-a"
    issues, _ = validate(tmp_path, fleet)
    dup = [i for i in issues if "duplicate name" in i["message"]]
    assert any("(also hosts[0])" in i["message"] or "(also templates[0])" in i["message"] for i in dup), dup
    fleet = base()
    fleet["vms"][0]["rdma"] = [{"type": "passthrough", "nic": "0000:32:00.0"}]  # not reserved for passthrough
    issues, _ = validate(tmp_path, fleet)
    assert any("hosts[esxi-a].nics[1]" in i["message"] for i in issues), issues
