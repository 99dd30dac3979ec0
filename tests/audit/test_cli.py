"""``gpufleet audit`` without a reachable fleet: bad input is exit 1 with a message that says what to do,
before anything connects."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from gpufleet.cli.main import app

ROOT = Path(__file__).resolve().parents[2]


def test_audit_without_a_running_lab_says_how_to_start_it(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("GPUFLEET_LAB_DIR", str(tmp_path / "no-lab"))
    result = CliRunner().invoke(app, ["audit", str(ROOT / "stacks" / "Pulumi.lab.yaml"), "--json"])
    assert result.exit_code == 1
    assert "gpufleet lab up" in result.output
    assert not (tmp_path / "no-lab").exists()


def test_audit_of_a_missing_stack_file(tmp_path: Path):
    result = CliRunner().invoke(app, ["audit", str(tmp_path / "Pulumi.nope.yaml")])
    assert result.exit_code == 1
    assert "stack file not found" in result.output
