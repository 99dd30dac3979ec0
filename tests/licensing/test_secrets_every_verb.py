"""No secret reaches any output of any verb, neither whole nor as a slice (issue 12, item 7's "every verb").

Secrets of odd shapes (no dashes, unicode, a near-miss of a vSphere key, a token with dots) are put where the stacks
take them from (their environment variables); each verb runs as users run it (a subprocess, human output and
``--json``, the report files it writes); every stream and file is grepped for the secret and for every piece of it a
mask by slicing would print. The lab's own secrets (its vCenter password, its generated host key and client token
in env.json) are grepped for too.

- the licensing lab (a vCenter of its own): ``license apply`` for real and ``--dry-run`` - the malformed keys are
  refused by vCenter, and that refusal must not quote them;
- the shared test lab (hosts and guests): the read-only verbs - validate, plan, schema, hosts prepare --dry-run,
  vms apply --dry-run, license apply --dry-run, guests prepare --dry-run, verify, audit (terminal, JSON, HTML,
  JUnit).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from licensing_lab_keys import OWN_ENV, VCENTER_ENV

from lab.licenses import HOST_LICENSE_ENV

ROOT = Path(__file__).resolve().parents[2]
LAB_STACK = ROOT / "stacks" / "Pulumi.lab.yaml"
TOKEN_ENV = "GPUFLEET_NVIDIA_CLIENT_TOKEN"

ODD = {
    VCENTER_ENV: "NoDashesVcenterSecret9",
    HOST_LICENSE_ENV: "ÄÖÜ-ß-ключ-Zq7",
    OWN_ENV: "KKKQV-LLLQV-MMMQV-NNNQV-WXYZ",  # a vSphere key's near miss: 4 in the last group
    TOKEN_ENV: "eyJqzx.tkQvq-wqZx-dtQz.SECRETPAYLOADq8",  # pieces no output would hold by chance
}


def fragments(secret: str) -> set[str]:
    """The secret and every piece a mask by slicing would show (around dashes and dots), long enough to grep."""
    pieces = {secret}
    for sep in ("-", ".", "‑"):
        pieces |= set(secret.split(sep))
    pieces |= {secret[-5:], secret[:5]}
    return {p for p in pieces if len(p) >= 4}


def assert_nothing_leaked(
    outputs: dict[str, str], secrets: dict[str, str], whole: dict[str, str] | None = None
) -> None:
    """No fragment of ``secrets`` and nothing of ``whole`` (well-formed keys, whose last group a mask may show, and
    random passwords, whose short pieces could turn up by chance) in any output; no traceback either."""
    for where, text in outputs.items():
        assert "Traceback" not in text, f"{where}: a traceback\n{text[-3000:]}"
        for name, secret in secrets.items():
            leaked = sorted(f for f in fragments(secret) if f in text)
            assert not leaked, f"{where} shows {leaked} of the secret in {name}"
        for name, secret in (whole or {}).items():
            assert secret not in text, f"{where} shows {name}"


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ODD} | {"COLUMNS": "200"} | env
    return subprocess.run(
        [sys.executable, "-m", "gpufleet", *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=full
    )


def both(done: subprocess.CompletedProcess) -> str:
    return done.stdout + "\n" + done.stderr


def test_license_apply_never_shows_a_malformed_key_it_was_refused(
    fresh: object, stack_file: Path, environ: dict[str, str]
) -> None:
    env = environ | {VCENTER_ENV: ODD[VCENTER_ENV], HOST_LICENSE_ENV: ODD[HOST_LICENSE_ENV], OWN_ENV: ODD[OWN_ENV]}
    outputs: dict[str, str] = {}
    for label, extra in (("dry run", ["--dry-run"]), ("apply", [])):
        human = run(["license", "apply", str(stack_file), *extra], env)
        as_json = run(["license", "apply", str(stack_file), *extra, "--json"], env)
        outputs[f"{label}: terminal"] = both(human)
        outputs[f"{label}: --json"] = both(as_json)
        assert human.returncode != 0 or label == "dry run", both(human)  # malformed keys cannot be assigned
    refused = outputs["apply: --json"]
    assert "esxi-04.lab" in refused  # the refusal names where, not what
    assert_nothing_leaked(outputs, {k: ODD[k] for k in (VCENTER_ENV, HOST_LICENSE_ENV, OWN_ENV)})


def _lab_secrets(lab_paths: object) -> dict[str, str]:
    document = json.loads((Path(lab_paths.root) / "env.json").read_text())  # type: ignore[attr-defined]
    found = {"lab vCenter password": str(document["vcenter"]["password"])}
    for name, value in (document.get("secrets") or {}).items():
        found[f"lab {name}"] = str(value)
    return found


def test_the_read_only_verbs_never_show_a_secret(lab_env: object, lab_paths: object, tmp_path: Path) -> None:
    env = {
        "GPUFLEET_LAB_DIR": str(lab_paths.root),  # type: ignore[attr-defined]
        HOST_LICENSE_ENV: ODD[HOST_LICENSE_ENV],
        TOKEN_ENV: ODD[TOKEN_ENV],
    }
    stack = str(LAB_STACK)
    html, junit, verify_junit = tmp_path / "audit.html", tmp_path / "audit.xml", tmp_path / "verify.xml"
    verbs = {
        "validate": ["validate", stack],
        "plan": ["plan", stack],
        "schema": ["schema"],
        "hosts prepare --dry-run": ["hosts", "prepare", stack, "--dry-run"],
        "vms apply --dry-run": ["vms", "apply", stack, "--dry-run"],
        "license apply --dry-run": ["license", "apply", stack, "--dry-run"],
        "guests prepare --dry-run": ["guests", "prepare", stack, "--dry-run"],
        "verify": ["verify", stack, "--junit", str(verify_junit)],
        "audit": ["audit", stack, "--html", str(html), "--junit", str(junit)],
    }
    outputs: dict[str, str] = {}
    for label, args in verbs.items():
        outputs[f"{label}: terminal"] = both(run(args, env))
        if label != "schema":
            outputs[f"{label}: --json"] = both(run([*args, "--json"], env))
    for path in (html, junit, verify_junit):
        assert path.exists(), f"{path.name} was not written"
        outputs[path.name] = path.read_text()
    assert "esxi-01.lab" in outputs["audit: --json"] and "vm-ts-01" in outputs["verify: --json"]
    odd = {HOST_LICENSE_ENV: ODD[HOST_LICENSE_ENV], TOKEN_ENV: ODD[TOKEN_ENV]}
    assert_nothing_leaked(outputs, odd, whole=_lab_secrets(lab_paths))
