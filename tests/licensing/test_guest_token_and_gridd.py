"""The NVIDIA guest licensing step against a simulated guest: token placement (name, mode, stale tokens, custom
path), gridd.conf FeatureType, restart and wait, idempotence, failures that say why without the token."""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gpufleet.connections import Secret
from gpufleet.errors import SpecError
from gpufleet.licensing import guest as licensing
from gpufleet.licensing.guest import LicensingError, apply_licensing, conf_value, set_feature_type, token_file_name
from gpufleet.spec.stack import Stack, parse_stack

TOKEN_DIR = "root/etc/nvidia/ClientConfigToken"


def _tokens(directory: Path) -> list[Path]:
    return sorted((directory / TOKEN_DIR).glob("*.tok"))


def _apply(runner: object, token: str, feature: int = 1, timeout: float = 5) -> licensing.LicensingResult:
    return apply_licensing(runner, Secret(token), feature, poll=0.02, timeout=timeout)  # type: ignore[arg-type]


def test_set_feature_type_keeps_everything_else() -> None:
    conf = "# FeatureType=4 in a comment\nServerPort=7070\nFeatureType=0\nFeatureType=2\n"
    assert set_feature_type(conf, 1) == "# FeatureType=4 in a comment\nServerPort=7070\nFeatureType=1\n"
    assert set_feature_type("ServerPort=7070\n", 4) == "ServerPort=7070\n\nFeatureType=4\n"
    assert set_feature_type("", 1) == "FeatureType=1\n"
    assert conf_value('ClientConfigTokenPath="/opt/tokens"\n', "ClientConfigTokenPath") == "/opt/tokens"
    assert conf_value("#ClientConfigTokenPath=/x\n", "ClientConfigTokenPath") is None


def test_token_file_name_is_the_nls_portal_pattern() -> None:
    assert (
        token_file_name(datetime(2022, 5, 25, 23, 56, 59, tzinfo=UTC))
        == "client_configuration_token_05-25-2022-23-56-59.tok"
    )


def test_licenses_a_guest_then_changes_nothing(
    make_guest: Callable[..., Path], sim_runner: type, lab_token: str
) -> None:
    directory = make_guest("vm-ts-01")
    runner = sim_runner("vm-ts-01", directory)
    first = _apply(runner, lab_token)
    assert first.changed and first.token_written and first.gridd_conf_changed and first.restarted
    assert first.status.startswith("Licensed (Expiry: ") and first.products == ("NVIDIA Virtual Compute Server",)
    (token_file,) = _tokens(directory)
    assert re.fullmatch(r"client_configuration_token_\d\d-\d\d-\d{4}-\d\d-\d\d-\d\d\.tok", token_file.name)
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o744 and token_file.read_text() == lab_token
    assert "FeatureType=1" in (directory / "root/etc/nvidia/gridd.conf").read_text()
    assert not any(lab_token in c for c in runner.commands), "the token must travel on stdin only"

    second = _apply(runner, lab_token)
    assert not second.changed and not second.restarted and second.token_file == first.token_file
    assert json.dumps(second.to_json()).find(lab_token) == -1


def test_a_new_token_replaces_the_stale_one_and_a_wrong_mode_is_fixed(
    make_guest: Callable[..., Path], sim_runner: type, lab_token: str
) -> None:
    directory = make_guest("vm-mig-01")
    runner = sim_runner("vm-mig-01", directory)
    tokens = directory / TOKEN_DIR
    (tokens / "client_configuration_token_01-01-2024-00-00-00.tok").write_text("an-old-token")
    result = _apply(runner, lab_token)
    assert result.stale_tokens_removed == (
        "/etc/nvidia/ClientConfigToken/client_configuration_token_01-01-2024-00-00-00.tok",
    )
    (current,) = _tokens(directory)
    current.chmod(0o600)
    again = _apply(runner, lab_token)
    assert again.changed and again.token_written and again.restarted and stat.S_IMODE(current.stat().st_mode) == 0o744


def test_a_custom_token_path_in_gridd_conf_is_honoured(
    make_guest: Callable[..., Path], sim_runner: type, lab_token: str
) -> None:
    directory = make_guest("vm-rdma-01")
    (directory / "root/etc/nvidia/gridd.conf").write_text(
        "ClientConfigTokenPath=/var/lib/nvidia/tokens\nFeatureType=0\n"
    )
    result = _apply(sim_runner("vm-rdma-01", directory), lab_token)
    assert result.token_file.startswith("/var/lib/nvidia/tokens/") and result.status.startswith("Licensed")
    assert not _tokens(directory)


@pytest.mark.parametrize(
    ("token", "feature", "changes", "why"),
    [
        ("not-the-lab-token", 1, {}, "Invalid client configuration token"),
        (None, 2, {}, "Requested feature was not found"),  # RTX vWS asked of a C-series vGPU
        (None, 1, {"faults": {"license_server_down": True}}, "Failed to connect to the license server"),
    ],
)
def test_failures_name_the_reason_and_never_the_token(
    make_guest: Callable[..., Path],
    sim_runner: type,
    lab_token: str,
    token: str | None,
    feature: int,
    changes: dict,
    why: str,
) -> None:
    directory = make_guest("vm-ts-01", **changes)
    secret = token or lab_token
    with pytest.raises(LicensingError) as info:
        _apply(sim_runner("vm-ts-01", directory), secret, feature, timeout=0.5)
    message = str(info.value)
    assert "not licensed after" in message and "Unlicensed (Unrestricted)" in message and why in message
    assert secret not in message


def test_refuses_a_guest_without_vgpu_and_a_bad_feature_type(
    make_guest: Callable[..., Path], sim_runner: type, lab_token: str
) -> None:
    with pytest.raises(LicensingError, match=r"no vGPU to license \(nvidia-smi shows NVIDIA H100 PCIe\)"):
        _apply(sim_runner("vm-pt-01", make_guest("vm-pt-01")), lab_token)
    with pytest.raises(LicensingError, match="FeatureType 3 is not valid"):
        _apply(sim_runner("vm-ts-01", make_guest("vm-ts-01")), lab_token, 3)


def _stack(lab: bool, token_ref: str = "{env: GPUFLEET_NVIDIA_CLIENT_TOKEN}") -> Stack:
    from ruamel.yaml import YAML

    vcenter = (
        "{lab: true}" if lab else '{host: vc, user: u, password: {env: P}, thumbprint: "' + ":".join(["AA"] * 32) + '"}'
    )
    text = f"""
config:
  gpufleet:vcenter: {vcenter}
  gpufleet:fleet:
    version: v1
    datacenter: D
    cluster: C
    licensing: {{nvidiaClientToken: {token_ref}}}
    templates: [{{name: t}}]
    vms:
      - {{name: a, template: t, vgpu: [{{profile: nvidia_l40s-24c}}]}}
      - {{name: b, template: t, vgpu: [{{profile: nvidia_l40s-24c}}], nvidiaLicensing: false}}
      - {{name: c, template: t, passthrough: [{{model: T4}}]}}
"""
    return parse_stack(YAML(typ="safe").load(text), name="t")


def test_client_token_comes_from_the_environment_or_the_running_lab(tmp_path: Path) -> None:
    assert (
        licensing.resolve_client_token(_stack(False), {"GPUFLEET_NVIDIA_CLIENT_TOKEN": "tok-env"}).reveal() == "tok-env"
    )
    with pytest.raises(SpecError, match="GPUFLEET_NVIDIA_CLIENT_TOKEN is not set"):
        licensing.resolve_client_token(_stack(False), {})
    lab = tmp_path / "lab"
    (lab / "guests").mkdir(parents=True)
    (lab / "env.json").write_text(
        json.dumps({"vcenter": {"host": "x"}, "secrets": {"GPUFLEET_NVIDIA_CLIENT_TOKEN": "tok-lab"}})
    )
    environ = {"GPUFLEET_LAB_DIR": str(lab)}
    assert licensing.resolve_client_token(_stack(True), environ).reveal() == "tok-lab"
    assert repr(licensing.resolve_client_token(_stack(True), environ)) == "Secret('***')"
    (lab / "env.json").write_text(json.dumps({"vcenter": {"host": "x"}}))  # a lab without generated secrets
    with pytest.raises(SpecError, match="GPUFLEET_NVIDIA_CLIENT_TOKEN is not set"):
        licensing.resolve_client_token(_stack(True), environ)


def test_licensing_targets_are_the_vgpu_vms_with_licensing_on() -> None:
    fleet = _stack(False).fleet
    assert licensing.licensing_targets(fleet) == ["a"]
    with pytest.raises(SpecError, match="not a vGPU VM with NVIDIA licensing"):
        licensing.licensing_targets(fleet, ["c"])
