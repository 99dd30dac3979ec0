"""The workflow and the local pipeline script stay one thing: every job of .github/workflows/gpufleet.yml runs
``scripts/pipeline.sh`` with a stage the script has, the matrix fans out over the stacks the script lists, and the
script refuses a stage or a stack it does not know (exit 1, naming it) before running anything."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "gpufleet.yml"
SCRIPT = ROOT / "scripts" / "pipeline.sh"
STAGES = {"list", "pr", "deploy", "promote", "drift"}


def _runs() -> list[str]:
    jobs = YAML(typ="safe").load(WORKFLOW.read_text())["jobs"]
    return [step["run"] for job in jobs.values() for step in job["steps"] if "run" in step]


def test_every_workflow_stage_is_a_stage_of_the_script() -> None:
    used = {m.group(1) for run in _runs() for m in re.finditer(r"scripts/pipeline\.sh (\w+)", run)}
    assert used == {"list", "pr", "deploy", "promote"}
    assert used <= STAGES
    case = SCRIPT.read_text().split("case $stage in", 1)[1]
    for stage in STAGES:
        assert re.search(rf"(^|\| |\s){stage}[ )|]", case, re.M), stage


def test_the_matrix_is_the_scripts_list_of_stacks(tmp_path: Path) -> None:
    for name in ("cluster-a", "cluster-b"):
        (tmp_path / f"Pulumi.{name}.yaml").write_text("config: {}\n")
    done = subprocess.run(
        ["bash", str(SCRIPT), "list"],
        capture_output=True,
        text=True,
        env={"GPUFLEET_STACKS_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["cluster-a", "cluster-b"]
    jobs = YAML(typ="safe").load(WORKFLOW.read_text())["jobs"]
    assert "fromJSON(needs.stacks.outputs.stacks)" in jobs["pr"]["strategy"]["matrix"]["stack"]


def test_an_unknown_stage_or_stack_is_refused_before_anything_runs(tmp_path: Path) -> None:
    env = {
        "GPUFLEET_STACKS_DIR": str(tmp_path),
        "GPUFLEET_PIPELINE_OUT": str(tmp_path / "out"),
        "PATH": "/usr/bin:/bin",
    }
    bad_stage = subprocess.run(["bash", str(SCRIPT), "ship", "lab"], capture_output=True, text=True, env=env)
    assert (
        bad_stage.returncode == 1 and "unknown stage ship (valid: list, pr, deploy, promote, drift)" in bad_stage.stderr
    )
    bad_stack = subprocess.run(["bash", str(SCRIPT), "pr", "nope"], capture_output=True, text=True, env=env)
    assert bad_stack.returncode == 1 and "no stack nope" in bad_stack.stderr
    assert not (tmp_path / "out").exists()  # nothing ran
    odd = subprocess.run(["bash", str(SCRIPT), "pr", "../etc"], capture_output=True, text=True, env=env)
    assert odd.returncode == 1 and "no stack ../etc" in odd.stderr
