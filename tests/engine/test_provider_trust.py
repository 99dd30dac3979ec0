"""What pulumi-vsphere trusts under ``gpufleet pulumi``: the engine's environment (which the engine passes to every
provider it launches) carries the stack's vCenter CA as SSL_CERT_FILE and an empty SSL_CERT_DIR, or an empty bundle
where the stack cannot be honoured (a thumbprint only, no stack, a stack that does not load)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpufleet.cli import pulumi_cmd
from gpufleet.cli.main import app
from gpufleet.engine import workspace as engine

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    base = {"PATH": "/usr/bin", engine.STATE_ENV: str(tmp_path / "state"), "GPUFLEET_LAB_DIR": str(tmp_path / "lab")}
    return base | extra


def _trusts_nothing(env: dict[str, str]) -> bool:
    return Path(env["SSL_CERT_FILE"]).read_text() == "" and not any(Path(env["SSL_CERT_DIR"]).iterdir())


def test_a_ca_file_stack_makes_the_provider_trust_that_ca_alone(tmp_path: Path) -> None:
    env = engine.engine_environ(
        _env(tmp_path, SSL_CERT_FILE="/etc/ssl/certs/ca-certificates.crt", VSPHERE_ALLOW_UNVERIFIED_SSL="true"),
        stack="staging",
    )
    assert env["SSL_CERT_FILE"] == "/etc/gpufleet/staging-vcenter-ca.pem"  # stacks/Pulumi.staging.yaml caFile
    cert_dir = Path(env["SSL_CERT_DIR"])
    assert cert_dir.is_dir() and not any(cert_dir.iterdir())  # not /etc/ssl/certs: no other CA
    assert "VSPHERE_ALLOW_UNVERIFIED_SSL" not in env
    assert engine.engine_environ(_env(tmp_path), stack="organization/gpufleet/prod")["SSL_CERT_FILE"] == (
        "/etc/gpufleet/prod-vcenter-ca.pem"
    )


def test_the_lab_stack_trusts_the_running_labs_ca(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    lab.mkdir()
    ca = lab / "ca.pem"
    ca.write_text("lab CA\n")
    vcenter = {"host": "127.0.0.1", "port": 18443, "user": "u", "password": "p", "ca_file": str(ca)}
    (lab / "env.json").write_text(json.dumps({"vcenter": vcenter}))
    env = engine.engine_environ(_env(tmp_path), stack="lab")
    assert env["SSL_CERT_FILE"] == str(ca) and not any(Path(env["SSL_CERT_DIR"]).iterdir())


@pytest.mark.parametrize("stack", ["dev", "", "no-such-stack", "lab"])  # thumbprint only; none; missing; lab down
def test_a_stack_that_cannot_be_honoured_trusts_nothing(tmp_path: Path, stack: str) -> None:
    env = engine.engine_environ(_env(tmp_path, SSL_CERT_FILE="/etc/ssl/certs/ca-certificates.crt"), stack=stack)
    assert _trusts_nothing(env)


def test_without_a_stack_the_callers_trust_is_left_alone(tmp_path: Path) -> None:
    env = engine.engine_environ(_env(tmp_path, SSL_CERT_FILE="/x/ca.pem"))
    assert env["SSL_CERT_FILE"] == "/x/ca.pem" and "SSL_CERT_DIR" not in env


@pytest.mark.parametrize(
    ("args", "stack"),
    [
        (["up", "--stack", "staging", "--yes"], "staging"),
        (["preview", "--stack=prod"], "prod"),
        (["destroy", "-s", "lab"], "lab"),
        (["refresh", "-slab"], "lab"),
        (["config", "set", "--", "gpufleet:x", "--stack"], None),  # after --: values, not options
        (["up", "--yes"], None),
    ],
)
def test_the_stack_of_a_command_line(args: list[str], stack: str | None) -> None:
    assert engine.stack_of_args(args, {}) == stack
    assert engine.stack_of_args(["up"], {"PULUMI_STACK": "staging"}) == "staging"


def _run_wrapper(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: list[str], selected: str) -> dict[str, str]:
    ran: list[dict[str, str]] = []
    asked: list[str] = []
    monkeypatch.setattr(pulumi_cmd, "pulumi_binary", lambda: tmp_path / "pulumi")
    monkeypatch.setattr(pulumi_cmd, "engine_environ", lambda: _env(tmp_path))
    monkeypatch.setattr(pulumi_cmd, "sync_workspace", lambda _state: tmp_path)
    monkeypatch.setattr(pulumi_cmd, "selected_stack", lambda _env, _project: asked.append("?") or selected)
    monkeypatch.setattr(os, "execve", lambda binary, argv, env: ran.append(dict(env)))
    monkeypatch.chdir(Path.cwd())  # the wrapper chdirs into the (temporary) project dir: come back after
    result = CliRunner().invoke(app, ["pulumi", *args])
    assert result.exit_code == 0, result.output
    (env,) = ran
    env["asked"] = str(len(asked))
    return env


def test_gpufleet_pulumi_sets_the_trust_of_the_stack_it_runs_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    named = _run_wrapper(monkeypatch, tmp_path, ["up", "--stack", "staging", "--yes"], selected="prod")
    assert named["SSL_CERT_FILE"] == "/etc/gpufleet/staging-vcenter-ca.pem" and named["asked"] == "0"
    selected = _run_wrapper(monkeypatch, tmp_path, ["destroy", "--yes"], selected="prod")
    assert selected["SSL_CERT_FILE"] == "/etc/gpufleet/prod-vcenter-ca.pem" and selected["asked"] == "1"
    other = _run_wrapper(monkeypatch, tmp_path, ["stack", "ls"], selected="prod")
    assert _trusts_nothing(other) and other["asked"] == "0"  # launches no provider: not asked, trusts nothing
