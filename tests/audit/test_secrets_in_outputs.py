"""A licence key of an odd shape never reaches audit's outputs (terminal, JSON, HTML, JUnit), neither whole nor as
a slice: what does not look like a vSphere key is named by a short SHA-256 of it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from audit_fixtures import LAB_STACK, LICENSE_ENV, digest, in_sync_ssh, in_sync_vcenter, result_for
from typer.testing import CliRunner

from gpufleet.audit.desired import desired_state
from gpufleet.audit.state import LicenseState
from gpufleet.cli import audit_cmd
from gpufleet.cli.main import app
from gpufleet.spec.stack import load_stack
from gpufleet.vsphere.licenses import key_fingerprint

# (what the spec's variable holds, what vCenter reports assigned): both secrets, both malformed.
ODD = [
    ("NoDashesAtAllSecret9", "AnotherDashlessSecret7"),
    ("Q", "Z"),
    ("ÄÖÜ-ß-ключ", "пароль‑секрет"),  # unicode; the second's hyphen is U+2011, not "-"
    ("KKKKK-LLLLL-MMMMM-NNNNN-WXYZ", "Qzvb-Wkrp-SECRETPART"),  # near-misses: a slice would leak
]


def _fragments(secret: str) -> set[str]:
    """The secret and every piece a mask by slicing would print (what follows a dash), long enough to grep."""
    pieces = {secret, *secret.split("-"), *secret.split("‑")}
    return {p for p in pieces if len(p) >= 3}


@pytest.mark.parametrize(("wanted", "assigned"), ODD)
def test_odd_shaped_keys_are_masked_in_every_audit_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wanted: str, assigned: str
) -> None:
    stack = load_stack(LAB_STACK)
    desired = desired_state(stack.fleet, {LICENSE_ENV: wanted})
    vc = in_sync_vcenter(desired)
    first = next(iter(vc.hosts))
    # What vcenter_state.read_licenses makes of an assignment: the key itself is never kept.
    seen = LicenseState("vSphere 8 Enterprise Plus", key_fingerprint(assigned), digest(assigned), False)
    vc = replace(vc, hosts={**vc.hosts, first: replace(vc.hosts[first], license=seen)})
    result = result_for(desired, vc, in_sync_ssh(desired))
    assert result.exit_code == 2  # the key differs: a finding that names both masked keys
    monkeypatch.setattr(audit_cmd, "audit_stack", lambda *_a, **_k: result)
    monkeypatch.setenv("COLUMNS", "400")

    html, junit = tmp_path / "audit.html", tmp_path / "audit.xml"
    human = CliRunner().invoke(app, ["audit", str(LAB_STACK), "--html", str(html), "--junit", str(junit)])
    as_json = CliRunner().invoke(app, ["audit", str(LAB_STACK), "--json"])
    assert (human.exit_code, as_json.exit_code) == (2, 2), human.output
    document = json.loads(as_json.stdout)
    outputs = {"terminal": human.output, "json": as_json.stdout, "html": html.read_text(), "junit": junit.read_text()}

    for secret in (wanted, assigned):
        masked = key_fingerprint(secret)
        assert masked.startswith("(not a licence key; sha256 ") and secret not in masked
        for where, text in outputs.items():
            assert masked in text or where == "terminal" and "sha256" in text, f"{where} does not name the key"
            leaked = sorted(f for f in _fragments(secret) if f in text)
            assert not leaked, f"{where} shows {leaked} of the secret {secret!r}"
    # One-character secrets cannot be grepped for: the fields that name a key hold the fingerprint and nothing else.
    names = json.dumps(document, ensure_ascii=False)
    assert (
        f"*****-*****-*****-*****-{wanted[-1:]}" not in names
        and f"*****-*****-*****-*****-{assigned[-1:]}" not in names
    )


def test_a_well_formed_key_shows_only_its_last_group() -> None:
    assert key_fingerprint("ABCDE-FGHIJ-KLMNO-PQRST-UVWXY") == "*****-*****-*****-*****-UVWXY"
    assert key_fingerprint("") == "(none)"
