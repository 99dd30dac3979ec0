"""``gpufleet promote`` and ``gpufleet proof record`` offline: proof from saved ``audit --json`` / ``verify --json``
documents, the exit codes (0 nothing / written, 1 invalid, 2 refused or pending), the JSON and the write."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from promotion_stacks import stack_text, write
from typer.testing import CliRunner

from gpufleet.cli.main import app


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def saved(tmp_path: Path, stack: Path, *, drift: bool = False, failed: int = 0) -> tuple[Path, Path]:
    """What a pipeline saved from `gpufleet audit --json` and `gpufleet verify --json` of ``stack``."""
    finding = {
        "id": "vm.vgpu.changed:vms/dev-ts-01/vgpu/nvidia_l40s-12c",
        "kind": "vm.vgpu.changed",
        "severity": "error",
        "path": "vms/dev-ts-01/vgpu/nvidia_l40s-12c",
        "desired": "nvidia_l40s-12c",
        "actual": "nvidia_l40s-24c",
    }
    audit = {
        "stack": "dev",
        "status": "drift" if drift else "in-sync",
        "exitCode": 2 if drift else 0,
        "findings": [finding] if drift else [],
        "unreachable": [],
    }
    checks = [
        {"node": "dev-ts-01", "check": f"test_{i}", "outcome": "failed" if i < failed else "passed", "message": ""}
        for i in range(6)
    ]
    outcomes = [c["outcome"] for c in checks]
    verify = {
        "stack": str(stack),
        "summary": {o: outcomes.count(o) for o in ("passed", "failed", "skipped", "error")},
        "checks": checks,
        "junit": None,
    }
    a, v = tmp_path / f"audit-{drift}-{failed}.json", tmp_path / f"verify-{drift}-{failed}.json"
    a.write_text(json.dumps(audit))
    v.write_text(json.dumps(verify))
    return a, v


@pytest.fixture
def stages(tmp_path: Path) -> tuple[Path, Path]:
    dev = write(tmp_path, "dev", stack_text("dev", driver="550.127.06", feature=4, ts_profile="nvidia_l40s-12c"))
    staging = write(tmp_path, "staging", stack_text("stg", datastore="vsan-staging"))
    return dev, staging


def record(tmp_path: Path, dev: Path, name: str = "proof", **kw: Any) -> tuple[Any, Path]:
    a, v = saved(tmp_path, dev, **kw)
    out = tmp_path / name
    return cli("proof", "record", dev, "--out", out, "--audit-json", a, "--verify-json", v, "--json"), out


def test_proven_promotion_is_pending_then_written_then_nothing(tmp_path: Path, stages) -> None:
    dev, staging = stages
    recorded, proof = record(tmp_path, dev)
    assert recorded.exit_code == 0, recorded.output
    stamp = json.loads(recorded.output)
    assert stamp["proven"] and stamp["contentHash"].startswith("sha256:") and stamp["stack"] == "dev"
    assert sorted(p.name for p in proof.iterdir()) == ["audit.json", "proof.json", "verify.json"]

    before = staging.read_text()
    pending = cli("promote", dev, staging, "--proof", proof, "--json")
    assert pending.exit_code == 2, pending.output  # changes pending: shown, not written
    doc = json.loads(pending.output)
    assert doc["status"] == "pending" and doc["proof"]["proven"] and doc["proof"]["source"] == "recorded"
    assert set(doc) >= {"from", "to", "only", "contentHash", "status", "exitCode", "changes", "unmatched", "valid"}
    assert {(c["kind"], c["path"]) for c in doc["changes"]} == {
        ("driver", "driver"),
        ("vgpu", "vms[stg-ts-01].vgpu"),
        ("licensing", "licensing.featureType"),
    }
    assert staging.read_text() == before

    written = cli("promote", dev, staging, "--proof", proof, "--write")
    assert written.exit_code == 0, written.output
    assert "written" in written.output and staging.read_text() != before
    assert "featureType: 4" in staging.read_text() and "# The embedded lab" in staging.read_text()
    again = cli("promote", dev, staging, "--proof", proof, "--json")
    assert again.exit_code == 0 and json.loads(again.output)["status"] == "in-sync", again.output


def test_only_promotes_the_kinds_named(tmp_path: Path, stages) -> None:
    dev, staging = stages
    _, proof = record(tmp_path, dev)
    done = cli("promote", dev, staging, "--proof", proof, "--only", "licensing", "--write", "--json")
    assert done.exit_code == 0, done.output
    assert [c["kind"] for c in json.loads(done.output)["changes"]] == ["licensing"]
    assert "nvidia_l40s-24c" in staging.read_text()  # the vGPU change was not asked for
    bad = cli("promote", dev, staging, "--only", "gpus")
    assert bad.exit_code == 1 and "'gpus'" in bad.output


def test_a_drifted_or_failing_proof_is_refused_naming_why(tmp_path: Path, stages) -> None:
    dev, staging = stages
    recorded, proof = record(tmp_path, dev, drift=True, failed=2)
    assert recorded.exit_code == 2, recorded.output  # recorded, but it proves nothing
    refused = cli("promote", dev, staging, "--proof", proof, "--write", "--json")
    assert refused.exit_code == 2, refused.output
    doc = json.loads(refused.output)
    assert doc["status"] == "refused" and not doc["written"]
    reasons = "\n".join(doc["proof"]["reasons"])
    assert "audit of FROM is not in sync (drift: vm.vgpu.changed at vms/dev-ts-01/vgpu/nvidia_l40s-12c)" in reasons
    assert "verify of FROM is not green (4 passed, 2 failed, 0 error, 0 skipped: dev-ts-01 test_0" in reasons
    assert "featureType: 1" in staging.read_text()


def test_a_proof_of_other_content_is_refused(tmp_path: Path, stages) -> None:
    dev, staging = stages
    recorded, proof = record(tmp_path, dev)
    old = json.loads(recorded.output)["contentHash"]
    dev.write_text(dev.read_text().replace("featureType: 4", "featureType: 2"))
    refused = cli("promote", dev, staging, "--proof", proof, "--json")
    assert refused.exit_code == 2, refused.output
    doc = json.loads(refused.output)
    assert doc["contentHash"] != old
    assert f"proof is for content hash {old}, FROM is now {doc['contentHash']}" in doc["proof"]["reasons"]


def test_a_proof_file_changed_after_recording_is_refused(tmp_path: Path, stages) -> None:
    dev, staging = stages
    _, proof = record(tmp_path, dev)
    audit = json.loads((proof / "audit.json").read_text())
    audit["note"] = "edited"
    (proof / "audit.json").write_text(json.dumps(audit))
    refused = cli("promote", dev, staging, "--proof", proof)
    assert refused.exit_code == 2
    assert "audit.json is not the file recorded with the proof" in refused.output


def test_no_proof_in_the_directory_is_refused(tmp_path: Path, stages) -> None:
    dev, staging = stages
    refused = cli("promote", dev, staging, "--proof", tmp_path / "empty")
    assert refused.exit_code == 2 and "no proof in" in refused.output and "gpufleet proof record" in refused.output


def test_proof_record_refuses_documents_of_another_stack(tmp_path: Path, stages) -> None:
    dev, staging = stages
    a, v = saved(tmp_path, staging)
    done = cli("proof", "record", dev, "--out", tmp_path / "p", "--audit-json", a, "--verify-json", v)
    assert done.exit_code == 1 and "is the verify of stack" in done.output and "not of 'dev'" in done.output
    half = cli("proof", "record", dev, "--out", tmp_path / "p", "--audit-json", a)
    assert half.exit_code == 1 and "give both" in half.output


def test_a_proof_of_the_snake_case_format_is_refused_naming_how_to_record_it_again(tmp_path: Path, stages) -> None:
    dev, staging = stages
    recorded, proof = record(tmp_path, dev)
    assert recorded.exit_code == 0, recorded.output
    stamp = json.loads((proof / "proof.json").read_text())
    assert stamp["version"] == 2  # the camelCase audit.json
    (proof / "proof.json").write_text(json.dumps({**stamp, "version": 1}))
    refused = cli("promote", dev, staging, "--proof", proof, "--json")
    assert refused.exit_code == 2, refused.output
    reasons = "\n".join(json.loads(refused.output)["proof"]["reasons"])
    assert "proof of format version 1, this gpufleet reads version 2" in reasons
    assert "gpufleet proof record FROM --out DIR" in reasons


def test_proof_record_refuses_an_audit_saved_by_an_older_gpufleet(tmp_path: Path, stages) -> None:
    dev, _ = stages
    a, v = saved(tmp_path, dev)
    old = json.loads(a.read_text())
    old["exit_code"] = old.pop("exitCode")  # what `audit --json` printed before the one key convention
    a.write_text(json.dumps(old))
    done = cli("proof", "record", dev, "--out", tmp_path / "p", "--audit-json", a, "--verify-json", v)
    assert done.exit_code == 1, done.output
    assert "keys of an older gpufleet (exit_code" in done.output and "gpufleet audit --json" in done.output
    assert not (tmp_path / "p" / "proof.json").exists()


def test_to_that_would_not_validate_is_exit_1_naming_the_field(tmp_path: Path, stages) -> None:
    dev, _ = stages
    # TO's ts VM lives on the T4 host: FROM's L40S profile cannot go there.
    t4 = stack_text("stg").replace(
        "host: esxi-03.lab\n        vgpu: [{profile: nvidia_l40s-24c}]",
        "host: esxi-04.lab\n        vgpu: [{profile: nvidia_t4-16c}]",
    )
    staging = write(tmp_path, "staging", t4)
    _, proof = record(tmp_path, dev)
    done = cli("promote", dev, staging, "--proof", proof, "--write", "--json")
    assert done.exit_code == 1, done.output
    doc = json.loads(done.output)
    assert doc["status"] == "invalid" and not doc["valid"]
    assert any(i["path"].startswith("vms[stg-ts-01].vgpu[0]") for i in doc["issues"]), doc["issues"]
    assert "nvidia_t4-16c" in staging.read_text()  # nothing written


def test_the_same_stack_twice_is_bad_input(stages) -> None:
    dev, _ = stages
    done = cli("promote", dev, dev)
    assert done.exit_code == 1 and "the same stack file" in done.output
