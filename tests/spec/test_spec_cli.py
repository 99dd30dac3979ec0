"""The CLI verbs of the spec area: exit codes 0/1/2 and the JSON contracts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from spec_factory import base
from typer.testing import CliRunner

from gpufleet.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
LAB = str(ROOT / "stacks" / "Pulumi.lab.yaml")
runner = CliRunner()


def run(*args: str) -> tuple[int, Any, str]:
    result = runner.invoke(app, list(args))
    doc = json.loads(result.stdout) if "--json" in args or args[0] == "schema" else None
    return result.exit_code, doc, result.stdout + (result.stderr or "")


def write_stack(tmp_path: Path, fleet: dict[str, Any]) -> str:
    path = tmp_path / "Pulumi.t.yaml"
    YAML(typ="safe").dump({"config": {"gpufleet:fleet": fleet, "gpufleet:vcenter": {"lab": True}}}, path)
    return str(path)


def test_validate_the_lab() -> None:
    code, doc, _ = run("validate", LAB, "--json")
    assert code == 0
    assert doc["valid"] is True and doc["issues"] == []
    assert doc["summary"] == {"hosts": 4, "gpus": 10, "templates": 1, "vms": 4}
    code, _, out = run("validate", LAB)
    assert code == 0 and "valid" in out


def test_validate_an_invalid_stack(tmp_path: Path) -> None:
    fleet = base()
    fleet["vms"][0]["vgpu"][0]["profile"] = "grid_a100d-9-90c"
    fleet["templates"][0]["firmware"] = "bios"
    stack = write_stack(tmp_path, fleet)
    code, doc, _ = run("validate", stack, "--json")
    assert code == 1 and doc["valid"] is False
    paths = {i["path"] for i in doc["issues"]}
    assert {"vms[vm-mig].vgpu[0].profile", "templates[tpl].firmware"} <= paths
    issue = next(i for i in doc["issues"] if i["path"] == "templates[tpl].firmware")
    assert issue["indexPath"] == "templates[0].firmware"
    assert issue["valid"] == ["efi"]
    code, _, out = run("validate", stack)
    assert code == 1 and "vms[vm-mig].vgpu[0].profile" in out


def test_validate_a_missing_or_broken_file(tmp_path: Path) -> None:
    code, doc, _ = run("validate", str(tmp_path / "nope.yaml"), "--json")
    assert code == 1 and "not found" in doc["issues"][0]["message"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("config: [1, 2\n")
    code, doc, _ = run("validate", str(bad), "--json")
    assert code == 1 and "YAML" in doc["issues"][0]["message"]


def test_schema_describes_the_stack_file() -> None:
    code, doc, _ = run("schema")
    assert code == 0
    assert doc["properties"]["config"]["properties"]["gpufleet:fleet"] == {"$ref": "#/$defs/Fleet"}
    fleet = doc["$defs"]["Fleet"]
    assert {"version", "hosts", "vms", "templates"} <= set(fleet["properties"])
    assert doc["$defs"]["Fleet"]["additionalProperties"] is False
    assert "memoryMb" in doc["$defs"]["TemplateSpec"]["properties"]  # camelCase as in YAML
    assert "A100-80GB-PCIe" in doc["$defs"]["GpuSpec"]["properties"]["model"]["examples"]


def test_mig_fit_fits() -> None:
    code, doc, _ = run("mig", "fit", "--gpu", "a100-80gb", "3g.40gb", "grid_a100d-4-40c", "--json")
    assert code == 0
    assert doc["gpu"] == "A100-80GB-PCIe" and doc["fits"] is True
    assert doc["placements"] == [
        {"profile": "3g.40gb", "instance": "3g.40gb", "start": 4, "size": 4},
        {"profile": "grid_a100d-4-40c", "instance": "4g.40gb", "start": 0, "size": 4},
    ]
    code, _, out = run("mig", "fit", "--gpu", "A100-80GB", "4g.40gb", "2g.20gb", "1g.10gb")
    assert code == 0 and "fits" in out and "■■■■····" in out


def test_mig_fit_does_not_fit() -> None:
    code, doc, _ = run("mig", "fit", "--gpu", "H100-80GB", "4g.40gb", "3g.40gb", "3g.40gb", "--json")
    assert code == 2
    assert doc["fits"] is False and set(doc["conflicts"]) == {"4g.40gb", "3g.40gb"} and doc["reason"]
    code, _, out = run("mig", "fit", "--gpu", "H100-80GB", "7g.80gb", "1g.10gb")
    assert code == 2 and "does not fit" in out


@pytest.mark.parametrize(
    ("args", "valid"),
    [(["--gpu", "B200", "1g.10gb"], "A100-80GB-PCIe"), (["--gpu", "A100-80GB", "9g.90gb"], "3g.40gb")],
)
def test_mig_fit_bad_input(args: list[str], valid: str) -> None:
    code, doc, _ = run("mig", "fit", *args, "--json")
    assert code == 1 and valid in doc["valid"] and doc["error"]


def test_plan_the_lab() -> None:
    code, doc, _ = run("plan", LAB, "--json")
    assert code == 0 and doc["feasible"] is True
    assert doc["summary"]["vmsPlaced"] == 4 and doc["summary"]["gpusTotal"] == 10
    esxi01 = next(h for h in doc["hosts"] if h["name"] == "esxi-01.lab")
    assert esxi01["gpus"][0]["assignments"][0]["instance"] == "3g.40gb"
    code, _, out = run("plan", LAB)
    assert code == 0 and "esxi-01.lab" in out and "lower bound" in out


def test_plan_infeasible_names_the_vms(tmp_path: Path) -> None:
    fleet = base()
    fleet["vms"] += [
        {"name": f"big-{i}", "template": "tpl", "vgpu": [{"profile": "grid_a100d-7-80c"}]} for i in range(3)
    ]
    code, doc, _ = run("plan", write_stack(tmp_path, fleet), "--json")
    assert code == 2 and doc["feasible"] is False
    assert {u["vm"] for u in doc["unplaced"]} and all(u["reason"] for u in doc["unplaced"])
    code, _, out = run("plan", write_stack(tmp_path, fleet))
    assert code == 2 and "cannot be placed" in out


def test_plan_refuses_an_invalid_stack(tmp_path: Path) -> None:
    fleet = base()
    fleet["vms"][0]["host"] = "nowhere"
    code, doc, _ = run("plan", write_stack(tmp_path, fleet), "--json")
    assert code == 1 and doc["issues"][0]["path"] == "vms[vm-mig].host"


def test_validate_rejects_vms_that_cannot_fit_on_their_pinned_host(tmp_path: Path) -> None:
    fleet = base()
    # esxi-a's MIG GPUs hold one 7g.80gb each: a third VM pinned there cannot fit whatever the plan.
    big = [{"profile": "grid_a100d-7-80c"}]
    fleet["vms"] = [{"name": f"vm-big-{i}", "template": "tpl", "host": "esxi-a", "vgpu": big} for i in range(3)]
    stack = write_stack(tmp_path, fleet)
    code, doc, _ = run("validate", stack, "--json")
    assert code == 1 and doc["valid"] is False
    assert [(i["path"], i["indexPath"]) for i in doc["issues"]] == [("vms[vm-big-2]", "vms[2]")]
    assert "does not fit on its pinned host" in doc["issues"][0]["message"]
    # plan answers the same stack with its placement and exit 2, not an input error.
    code, doc, _ = run("plan", stack, "--json")
    assert code == 2 and [u["vm"] for u in doc["unplaced"]] == ["vm-big-2"]
    # Unpinned, the same VMs are a capacity question for plan only: validate accepts them.
    for vm in fleet["vms"]:
        del vm["host"]
    assert run("validate", write_stack(tmp_path, fleet), "--json")[0] == 0
