"""A usage error exits 1 on every verb (2 is "no": drift, does not fit, changes pending), with one JSON error
document on stdout under --json; `gpufleet pulumi` still passes its arguments to pulumi unchanged."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpufleet.cli import pulumi_cmd
from gpufleet.cli.main import app

LAB = str(Path(__file__).resolve().parents[2] / "stacks" / "Pulumi.lab.yaml")

# (argv, the words click's message has): unknown options, missing arguments, unknown commands, bad values.
USAGE = [
    (["validate"], "Missing argument"),
    (["validate", LAB, "--bogus"], "No such option: --bogus"),
    (["plan", LAB, "--jsn"], "No such option: --jsn"),
    (["mig", "fit"], "Missing"),
    (["mig", "fit", "--gpu", "A100-80GB-PCIe"], "Missing argument"),
    (["hosts", "prepare"], "Missing argument"),
    (["hosts", "prepare", LAB, "--max-unavailable", "many"], "valid integer"),
    (["vms", "apply", LAB, "--vm"], "requires an argument"),
    (["license", "apply"], "Missing argument"),
    (["verify", LAB, "--junit"], "requires an argument"),
    (["audit"], "Missing argument"),
    (["audit", LAB, "--parallel", "0"], "greater than or equal to 1"),
    (["lab", "fault"], "Missing argument"),
    (["lab", "nosuch"], "No such command"),
    (["nosuchverb"], "No such command"),
]


@pytest.mark.parametrize(("argv", "words"), USAGE, ids=[" ".join(a[:3]).replace(LAB, "STACK") for a, _ in USAGE])
def test_a_usage_error_exits_1_with_one_json_error_document(argv: list[str], words: str) -> None:
    human = CliRunner().invoke(app, argv)
    assert human.exit_code == 1, human.output
    unboxed = " ".join(human.output.replace("│", " ").split())  # typer draws the message in a box, wrapped
    assert words.lower() in unboxed.lower()
    at = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))  # before "--vm" lacking its value
    as_json = CliRunner().invoke(app, [*argv[:at], "--json", *argv[at:]])
    assert as_json.exit_code == 1, as_json.output
    document = json.loads(as_json.stdout)  # exactly one JSON document
    assert document["kind"] == "usage" and words.lower() in document["error"].lower()
    assert document["command"].startswith("gpufleet")


def test_drift_and_success_exit_codes_are_untouched() -> None:
    assert CliRunner().invoke(app, ["validate", LAB]).exit_code == 0
    assert CliRunner().invoke(app, ["--help"]).exit_code == 0
    no_fit = CliRunner().invoke(app, ["mig", "fit", "--gpu", "A100-80GB-PCIe", "4g.40gb", "4g.40gb", "--json"])
    assert no_fit.exit_code == 2 and json.loads(no_fit.stdout)["fits"] is False


def test_pulumi_gets_its_arguments_unchanged(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ran: list[list[str]] = []
    fake = tmp_path / "pulumi"
    monkeypatch.setattr(pulumi_cmd, "pulumi_binary", lambda: fake)
    monkeypatch.setattr(pulumi_cmd, "engine_environ", lambda: {"PULUMI_HOME": str(tmp_path)})
    monkeypatch.setattr(pulumi_cmd, "sync_workspace", lambda _state: tmp_path)
    monkeypatch.setattr(pulumi_cmd, "state_dir", lambda _env: tmp_path)
    monkeypatch.setattr(os, "execve", lambda binary, argv, env: ran.append(list(argv)))
    monkeypatch.chdir(Path.cwd())  # the wrapper chdirs into the (temporary) project dir: come back after
    args = ["preview", "--stack", "lab", "--no-such-pulumi-flag", "--json", "-v=3", "x"]
    result = CliRunner().invoke(app, ["pulumi", *args])
    assert result.exit_code == 0, result.output
    assert ran == [[str(fake), *args]]
    assert result.stdout == ""  # no JSON error document: pulumi answers its own usage errors


def test_pulumi_gets_a_literal_double_dash_as_typed() -> None:
    typed = ["gpufleet", "pulumi", "config", "set", "--stack", "lab", "--", "gpufleet:x", "-1"]
    assert pulumi_cmd.pulumi_args(typed, ["config", "set"]) == [
        "config",
        "set",
        "--stack",
        "lab",
        "--",
        "gpufleet:x",
        "-1",
    ]
    assert pulumi_cmd.pulumi_args(["pytest", "-q"], ["preview"]) == ["preview"]  # not run as `gpufleet pulumi`
