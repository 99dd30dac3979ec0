"""The hermetic engine settings and the engine's project dir (gpufleet.engine.workspace), without running the engine."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from gpufleet.engine import workspace as engine

yaml = YAML(typ="safe")


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "stacks").mkdir(parents=True)
    (repo / "Pulumi.yaml").write_text(
        "name: gpufleet\nruntime:\n  name: python\n  options:\n    virtualenv: .venv\nstackConfigDir: stacks\n"
    )
    (repo / "stacks" / "Pulumi.lab.yaml").write_text(
        "# the lab\nconfig:\n  gpufleet:vcenter:\n    lab: true\n  gpufleet:fleet:\n    version: v1\n"
    )
    return repo


def test_project_points_back_at_the_repository(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    project = engine.sync_workspace(tmp_path / "state", repo)
    manifest = yaml.load((project / "Pulumi.yaml").read_text())
    assert manifest["main"] == str(repo)  # the program runs from the repository
    assert manifest["runtime"]["options"]["virtualenv"] == str(repo / ".venv")
    assert manifest["stackConfigDir"] == "stacks"
    assert yaml.load((project / "stacks" / "Pulumi.lab.yaml").read_text())["config"]["gpufleet:vcenter"] == {
        "lab": True
    }


def test_machine_secrets_stay_in_the_workspace_and_the_repository_file_is_never_written(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    state = tmp_path / "state"
    project = engine.sync_workspace(state, repo)
    before = (repo / "stacks" / "Pulumi.lab.yaml").read_text()
    # What `pulumi stack init` and `pulumi config set --secret` write (into the workspace copy).
    target = project / "stacks" / "Pulumi.lab.yaml"
    written = yaml.load(target.read_text())
    written["encryptionsalt"] = "v1:SALT"
    written["config"]["gpufleet:nvidiaClientToken"] = {"secure": "v1:CIPHER"}
    written["config"]["gpufleet:fleet"] = {"version": "edited-by-pulumi"}
    with open(target, "w") as fh:
        yaml.dump(written, fh)
    # The repository's config changes meanwhile: the next run takes it, and keeps the machine's secrets.
    (repo / "stacks" / "Pulumi.lab.yaml").write_text(before.replace("version: v1", "version: v1\n    cluster: C"))
    engine.sync_workspace(state, repo)
    merged = yaml.load(target.read_text())
    assert merged["encryptionsalt"] == "v1:SALT"
    assert merged["config"]["gpufleet:nvidiaClientToken"] == {"secure": "v1:CIPHER"}
    assert merged["config"]["gpufleet:fleet"] == {"version": "v1", "cluster": "C"}  # the repository wins
    assert "encryptionsalt" not in (repo / "stacks" / "Pulumi.lab.yaml").read_text()


def test_a_stack_that_carries_its_own_salt_keeps_it(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "stacks" / "Pulumi.prod.yaml").write_text("encryptionsalt: v1:TEAM\nconfig:\n  a:b: c\n")
    state = tmp_path / "state"
    project = engine.sync_workspace(state, repo)
    target = project / "stacks" / "Pulumi.prod.yaml"
    target.write_text("encryptionsalt: v1:MACHINE\nconfig:\n  a:b: c\n")
    engine.sync_workspace(state, repo)
    assert yaml.load(target.read_text())["encryptionsalt"] == "v1:TEAM"


def test_workspace_only_stacks_are_left_alone(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    state = tmp_path / "state"
    project = engine.sync_workspace(state, repo)
    (project / "stacks" / "Pulumi.broken.yaml").write_text("config: {}\n")
    engine.sync_workspace(state, repo)
    assert (project / "stacks" / "Pulumi.broken.yaml").read_text() == "config: {}\n"


def test_environment_is_hermetic_and_the_passphrase_is_a_private_file(tmp_path: Path) -> None:
    env = engine.engine_environ(
        {"PATH": "/usr/bin", engine.STATE_ENV: str(tmp_path / "s"), "PULUMI_CONFIG_PASSPHRASE": "leak"}
    )
    assert env["PULUMI_BACKEND_URL"] == f"file://{tmp_path / 's' / 'backend'}"
    assert env["PULUMI_HOME"] == str(tmp_path / "s" / "home")
    assert env["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] == "true"
    assert env["PULUMI_SKIP_UPDATE_CHECK"] == "true"
    assert "PULUMI_CONFIG_PASSPHRASE" not in env  # one source: the file
    assert env["PATH"].split(":")[:2] == [str(engine.TOOLS_BIN), str(engine.VENV_BIN)]
    passphrase = Path(env["PULUMI_CONFIG_PASSPHRASE_FILE"])
    assert stat.S_IMODE(passphrase.stat().st_mode) == 0o600
    first = passphrase.read_text()
    assert len(first) >= 32
    assert engine.engine_environ({engine.STATE_ENV: str(tmp_path / "s")})["PULUMI_CONFIG_PASSPHRASE_FILE"] == str(
        passphrase
    )
    assert passphrase.read_text() == first  # generated once, then reused


def test_missing_engine_names_the_command_that_builds_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(engine, "TOOLS_BIN", tmp_path / "bin")
    with pytest.raises(engine.EngineMissing, match=r"run `make engine`"):
        engine.pulumi_binary()


def test_cli_reports_a_missing_engine_without_a_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gpufleet.cli.main import app

    monkeypatch.setattr(engine, "TOOLS_BIN", tmp_path / "bin")
    result = CliRunner().invoke(app, ["pulumi", "preview"])
    assert result.exit_code == 1
    assert "make engine" in " ".join(result.output.split()) and "Traceback" not in result.output


def test_path_options_are_made_absolute_and_the_pack_starts_through_its_launcher(tmp_path: Path) -> None:
    from gpufleet.cli.pulumi_cmd import path_args

    repo = Path(__file__).resolve().parents[2]
    args = path_args(["preview", "--stack", "lab", "--policy-pack", "policy", "-C=examples/fleet"], repo, "lab")
    assert args == [
        "preview",
        "--stack",
        "lab",
        "--policy-pack",
        str(repo / "policy" / "gpufleet-policy"),
        "-C",
        str(repo / "examples" / "fleet"),
        "--policy-pack-config",
        str(repo / "policy" / "config" / "lab.json"),  # the stage's config, as `validate --policy` reads it
    ]


def test_a_given_policy_config_is_kept_and_a_stack_without_one_gets_none(tmp_path: Path) -> None:
    from gpufleet.cli.pulumi_cmd import path_args

    repo = Path(__file__).resolve().parents[2]
    given = path_args(["up", "--policy-pack", "policy", "--policy-pack-config", "p.json"], tmp_path, "lab")
    assert given[-2:] == ["--policy-pack-config", str(tmp_path / "p.json")]
    assert given.count("--policy-pack-config") == 1
    none = path_args(["preview", f"--policy-pack={repo / 'policy'}"], tmp_path, "no-such-stage")
    assert none == ["preview", "--policy-pack", str(repo / "policy" / "gpufleet-policy")]
    assert path_args(["preview", "--policy-pack"], tmp_path, "lab") == ["preview", "--policy-pack"]  # pulumi says why
