"""Proof that a stack is deployed as written: its ``audit`` in sync and its ``verify`` green, either checked now (live)
or recorded in a proof directory stamped with the content hash of the stack's promotable settings.

A proof directory (``gpufleet proof record STACK --out DIR``) holds ``audit.json`` and ``verify.json`` — exactly
what ``gpufleet audit --json`` and ``gpufleet verify --json`` print — and ``proof.json``, the stamp: the stack,
its content hash (``gpufleet.spec.promotion.content_hash``), when, the SHA-256 of both files and their outcome.
A proof is accepted only for the same stack at the same content hash, with both files as recorded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gpufleet.cli.output import ExitCode, gpufleet_version, json_text
from gpufleet.cli.verify_cmd import verify_exit_code
from gpufleet.errors import SpecError, SpecIssue
from gpufleet.spec.promotion import content_hash
from gpufleet.spec.stack import Stack, stack_name

__all__ = ["Proof", "check_live", "check_recorded", "record", "run_audit", "run_verify"]

PROOF_FILE, AUDIT_FILE, VERIFY_FILE = "proof.json", "audit.json", "verify.json"
MAX_PROOF_BYTES = 64 * 1024 * 1024  # a verify of a large fleet is a few MiB
# 2: audit.json in the camelCase key convention of every --json document ("exitCode"); a version-1 proof (its
# audit.json says "exit_code") is refused, naming how to record it again, rather than read under two spellings.
PROOF_VERSION = 2


@dataclass
class Proof:
    """Whether a stack is proven, how, and why not (each reason names what failed)."""

    source: str  # "live" or "recorded"
    reasons: list[str] = field(default_factory=list)
    recorded_hash: str | None = None
    audit: dict[str, Any] | None = None  # {"status", "exitCode", "findings"}
    verify: dict[str, Any] | None = None  # {"summary", "exitCode"}
    directory: str | None = None

    @property
    def proven(self) -> bool:
        return not self.reasons

    def to_json(self) -> dict[str, Any]:
        return {
            "proven": self.proven,
            "source": self.source,
            "dir": self.directory,
            "recordedHash": self.recorded_hash,
            "reasons": self.reasons,
            "audit": self.audit,
            "verify": self.verify,
        }


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def run_audit(stack: Stack) -> dict[str, Any]:
    """The document ``gpufleet audit --json`` prints, from the same code path."""
    from gpufleet.audit.run import audit_stack

    return audit_stack(stack).to_dict()


def run_verify(stack: Stack) -> dict[str, Any]:
    """The document ``gpufleet verify --json`` prints, from the same code path (plus pytest's status)."""
    from gpufleet.checks.nodes import build_nodes
    from gpufleet.checks.run import run_checks

    assert stack.path is not None
    build_nodes(str(stack.path), None, None)  # bad input (lab not running, unknown node) fails here, as in verify
    run = run_checks(stack.path)
    if run.usage_error:
        raise SpecError([SpecIssue(str(stack.path), f"the checks could not run:\n{run.usage_error}")])
    return {"stack": str(stack.path), **run.to_json(), "pytestStatus": run.exit_status}


def _audit_outcome(doc: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    findings = doc.get("findings") or []
    outcome = {"status": doc.get("status"), "exitCode": doc.get("exitCode"), "findings": len(findings)}
    if doc.get("status") == "in-sync" and doc.get("exitCode") == 0:
        return outcome, []
    drift = [f for f in findings if f.get("severity") != "info"]
    named = ", ".join(f"{f.get('kind')} at {f.get('path')}" for f in drift[:5])
    more = f" and {len(drift) - 5} more" if len(drift) > 5 else ""
    unreachable = ", ".join(str(u.get("target")) for u in doc.get("unreachable") or [])
    why = (
        f"{doc.get('status')}"
        + (f": {named}{more}" if named else "")
        + (f"; unreachable: {unreachable}" if unreachable else "")
    )
    return outcome, [f"audit of FROM is not in sync ({why})"]


def _verify_outcome(doc: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    summary = doc.get("summary") or {}
    checks = len(doc.get("checks") or [])
    code = verify_exit_code(summary, checks, int(doc.get("pytestStatus", 0)))
    outcome = {"summary": summary, "exitCode": code}
    if code == ExitCode.OK and summary.get("passed"):
        return outcome, []
    failing = [
        f"{c.get('node')} {c.get('check')}" for c in doc.get("checks") or [] if c.get("outcome") in ("failed", "error")
    ]
    counts = ", ".join(f"{summary.get(k, 0)} {k}" for k in ("passed", "failed", "error", "skipped"))
    named = (
        f": {', '.join(failing[:5])}" + (f" and {len(failing) - 5} more" if len(failing) > 5 else "") if failing else ""
    )
    return outcome, [f"verify of FROM is not green ({counts}{named})"]


def check_live(stack: Stack) -> Proof:
    """Audit FROM now and, when it is in sync, verify it (a drifted stack is not verified: it is refused anyway)."""
    proof = Proof("live")
    proof.audit, proof.reasons = _audit_outcome(run_audit(stack))
    if proof.reasons:
        proof.reasons.append("verify of FROM not run: the audit already refuses it")
        return proof
    proof.verify, reasons = _verify_outcome(run_verify(stack))
    proof.reasons += reasons
    return proof


def _read_json(path: Path) -> tuple[bytes, Any]:
    """A proof file's bytes and document; SpecError naming the file when it is missing, too big or not JSON."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_PROOF_BYTES + 1)
    except OSError as exc:
        raise SpecError([SpecIssue(str(path), f"cannot read the proof file: {exc.strerror or exc}")]) from exc
    if len(data) > MAX_PROOF_BYTES:
        raise SpecError([SpecIssue(str(path), f"larger than {MAX_PROOF_BYTES // (1024 * 1024)} MiB")])
    try:
        return data, json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpecError([SpecIssue(str(path), f"not a JSON document: {exc}")]) from exc


def check_recorded(directory: Path, stack: Stack) -> Proof:
    """The proof recorded in ``directory`` for ``stack`` at its content hash now."""
    proof = Proof("recorded", directory=str(directory))
    stamp_path = directory / PROOF_FILE
    if not stamp_path.is_file():
        proof.reasons.append(
            f"no proof in {directory} ({PROOF_FILE} missing; record one with `gpufleet proof record FROM --out DIR`)"
        )
        return proof
    _, stamp = _read_json(stamp_path)
    if not isinstance(stamp, dict) or stamp.get("kind") != "gpufleet-proof":
        raise SpecError([SpecIssue(str(stamp_path), 'not a gpufleet proof stamp (no "kind": "gpufleet-proof")')])
    if stamp.get("version") != PROOF_VERSION:
        proof.reasons.append(
            f"{stamp_path} is a proof of format version {stamp.get('version')}, this gpufleet reads version "
            f'{PROOF_VERSION} (its audit.json in camelCase keys, README "JSON output"): record it again with '
            "`gpufleet proof record FROM --out DIR`"
        )
        return proof
    proof.recorded_hash = stamp.get("contentHash")
    now = content_hash(stack)
    if stamp.get("stack") != stack.name:
        proof.reasons.append(f"proof is for stack {stamp.get('stack')!r}, FROM is {stack.name!r}")
    if proof.recorded_hash != now:
        proof.reasons.append(f"proof is for content hash {proof.recorded_hash}, FROM is now {now}")
    for name, outcome in ((AUDIT_FILE, _audit_outcome), (VERIFY_FILE, _verify_outcome)):
        path = directory / name
        if not path.is_file():
            proof.reasons.append(f"{path} missing")
            continue
        data, doc = _read_json(path)
        if _sha256(data) != (stamp.get("files") or {}).get(name):
            proof.reasons.append(f"{path} is not the file recorded with the proof (its SHA-256 differs)")
        result, reasons = outcome(doc if isinstance(doc, dict) else {})
        setattr(proof, name.removesuffix(".json"), result)
        proof.reasons += reasons
    return proof


def _same_stack(doc: Any, stack: Stack, what: str, path: Path) -> dict[str, Any]:
    """A given audit / verify document, checked to be of this stack (audit names the stack, verify its file)."""
    if not isinstance(doc, dict) or "stack" not in doc:
        raise SpecError([SpecIssue(str(path), f'not the JSON of `gpufleet {what} --json` (no "stack")')])
    snake = sorted(k for k in doc if "_" in k)
    if snake:
        raise SpecError(
            [
                SpecIssue(
                    str(path),
                    f"is a {what} document with the keys of an older gpufleet ({', '.join(snake)}; now camelCase, "
                    f'README "JSON output"): save it again with `gpufleet {what} --json`',
                )
            ]
        )
    named = str(doc["stack"])
    if named != stack.name and stack_name(Path(named)) != stack.name:
        raise SpecError([SpecIssue(str(path), f"is the {what} of stack {named!r}, not of {stack.name!r}")])
    return doc


def record(
    stack: Stack, out: Path, audit_json: Path | None = None, verify_json: Path | None = None
) -> tuple[dict[str, Any], Proof]:
    """Write ``out/{audit,verify,proof}.json`` for ``stack``: the given documents (``audit --json`` / ``verify
    --json`` saved by a pipeline), else a live audit and verify. The stamp is written whatever they say; the
    returned Proof says whether it proves the stack."""
    if (audit_json is None) != (verify_json is None):
        raise SpecError([SpecIssue("--audit-json/--verify-json", "give both saved documents, or neither (run both)")])
    if audit_json is not None and verify_json is not None:
        audit_doc = _same_stack(_read_json(audit_json)[1], stack, "audit", audit_json)
        verify_doc = _same_stack(_read_json(verify_json)[1], stack, "verify", verify_json)
    else:
        audit_doc = run_audit(stack)
        verify_doc = run_verify(stack)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, doc in ((AUDIT_FILE, audit_doc), (VERIFY_FILE, verify_doc)):
        data = json_text(doc).encode()  # byte for byte what `audit --json` / `verify --json` print
        (out / name).write_bytes(data)
        files[name] = _sha256(data)
    proof = Proof("recorded", directory=str(out))
    proof.audit, reasons = _audit_outcome(audit_doc)
    proof.verify, more = _verify_outcome(verify_doc)
    proof.reasons = reasons + more
    proof.recorded_hash = content_hash(stack)
    stamp = {
        "kind": "gpufleet-proof",
        "version": PROOF_VERSION,
        "stack": stack.name,
        "stackFile": str(stack.path),
        "contentHash": proof.recorded_hash,
        "recordedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "gpufleetVersion": gpufleet_version(),
        "files": files,
        "audit": proof.audit,
        "verify": proof.verify,
        "proven": proof.proven,
        "reasons": proof.reasons,
    }
    (out / PROOF_FILE).write_text(json.dumps(stamp, indent=2) + "\n")
    return stamp, proof
