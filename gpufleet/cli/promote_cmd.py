"""``gpufleet promote FROM TO [--only KINDS] [--write] [--proof DIR] [--json | --format text|json|markdown]`` and
``gpufleet proof record STACK --out DIR [--audit-json FILE --verify-json FILE]``.

promote: FROM's promotable settings (``gpufleet.spec.promotion``: host driver, guest driver, vGPU / MIG profiles by
role, licensing featureType) that TO lacks, as a reviewable diff. Carried over only when FROM is proven (a live
audit in sync and verify green, or the proof recorded in ``--proof DIR`` for FROM's content hash now) and TO still
validates afterwards; ``--write`` then edits TO's stack file (a ruamel round trip: comments and order kept).

Exit codes: 0 nothing to promote, or written; 1 bad input, or TO would not validate (the issues named); 2 "no":
refused (FROM not proven, each reason named) or changes pending (proven, shown, not written without ``--write``).
``--json`` prints one document: ``{"from", "to", "only", "contentHash", "status", "exitCode", "changes": [{"kind",
"path", "role", "current", "promoted"}], "unmatched": [{"kind", "name", "role", "onlyIn"}], "valid", "issues",
"proof": {"proven", "source", "dir", "recordedHash", "reasons", "audit", "verify"}, "written"}``; status is
``in-sync``, ``invalid``, ``refused``, ``pending`` or ``written``.

proof record: exit 0 the stamp proves STACK, 2 recorded but not proving it (drift, a failed check), 1 bad input.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from gpufleet.cli import markdown
from gpufleet.cli.markdown import FormatOpt, OutputFormat, chosen_format
from gpufleet.cli.output import ExitCode, console, esc, handle_errors, print_json, progress
from gpufleet.cli.proof import Proof, check_live, check_recorded, record
from gpufleet.cli.spec_cmd import issues_json, load_and_check  # validate's own checks and issue JSON
from gpufleet.errors import SpecError, SpecIssue
from gpufleet.spec.promotion import KINDS, Promotion, apply_edits, content_hash, parse_kinds, promotion
from gpufleet.spec.stack import Stack, load_stack
from gpufleet.spec.validate import validated

StackArg = Annotated[Path, typer.Argument(help="Stack config file, e.g. stacks/Pulumi.dev.yaml")]


def _after(target: Path, text: str) -> list[SpecIssue]:
    """TO's issues once promoted, from the text that would be written (same file name: same stack name)."""
    with tempfile.TemporaryDirectory(prefix="gpufleet-promote-") as tmp:
        candidate = Path(tmp) / target.name
        candidate.write_text(text)
        _, issues = load_and_check(candidate, pinned_capacity=True)
    return issues


def _write(target: Path, text: str) -> None:
    """Replace TO's file in one step (a reader never sees half a file), keeping its mode."""
    mode = target.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _print_text(doc: dict[str, Any]) -> None:
    changes = doc["changes"]
    if changes:
        table = Table(title=esc(f"promote {doc['from']} -> {doc['to']}"), title_justify="left")
        for column in ("kind", "TO path", "role", "TO now", "promoted"):
            table.add_column(column, overflow="fold")
        for c in changes:
            table.add_row(*(esc(_text(c[k])) for k in ("kind", "path", "role", "current", "promoted")))
        console.print(table)
    for u in doc["unmatched"]:
        console.print(
            f"[dim]no counterpart[/] {esc(u['kind'])} {esc(u['name'])} (role {esc(u['role'])}) only in "
            f"{esc(u['onlyIn'].upper())}: not promoted",
            highlight=False,
        )
    for issue in doc["issues"]:
        console.print(f"[red]TO would not validate[/]: {esc(issue['path'])}: {esc(issue['message'])}", highlight=False)
    proof = doc["proof"]
    for reason in (proof or {}).get("reasons", []):
        console.print(f"[red]refused[/]: {esc(reason)}", highlight=False)
    words = {
        "in-sync": "[green]nothing to promote[/]: TO has FROM's promotable settings",
        "invalid": "[red]invalid[/]: TO would not validate after the promotion; nothing written",
        "refused": "[red]refused[/]: FROM is not proven; nothing written",
        "pending": "[yellow]changes pending[/]: FROM is proven; rerun with --write to edit TO",
        "written": f"[green]written[/]: {esc(doc['to'])}",
    }
    console.print(f"{words[doc['status']]} ({len(changes)} change(s), FROM {doc['contentHash'][:19]})", highlight=False)


def _text(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "(none)"
    return str(value)


def _decide(
    source: Stack, target: Path, found: Promotion, proof_dir: Path | None, write: bool, quiet: bool
) -> tuple[str, list[SpecIssue], Proof | None, bool]:
    """status, TO's issues after, the proof looked at, whether TO was written."""
    if not found.changes:
        return "in-sync", [], None, False
    text = apply_edits(target.read_text(), found.edits)
    issues = _after(target, text)
    if issues:
        return "invalid", issues, None, False
    if proof_dir is not None:
        proof = check_recorded(proof_dir, source)
    elif quiet:
        proof = check_live(source)
    else:
        with progress(console, "promote") as update:
            update(f"proving {source.name}: audit, then verify", log=True)
            proof = check_live(source)
    if not proof.proven:
        return "refused", [], proof, False
    if not write:
        return "pending", [], proof, False
    _write(target, text)
    return "written", [], proof, True


@handle_errors
def promote(
    from_stack: StackArg,
    to_stack: StackArg,
    only: Annotated[
        str | None, typer.Option("--only", help=f"Only these kinds, comma-separated: {','.join(KINDS)}")
    ] = None,
    write: Annotated[bool, typer.Option("--write", help="Edit TO's stack file (comments and order kept)")] = False,
    proof_dir: Annotated[
        Path | None, typer.Option("--proof", help="Proof recorded for FROM (gpufleet proof record); else checked live")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document")] = False,
    fmt: FormatOpt = OutputFormat.TEXT,
) -> None:
    """Carry FROM's proven driver, guest driver, vGPU / MIG profiles (by role) and licensing to TO. Exit 0 nothing
    to promote or written, 2 refused (not proven) or changes pending, 1 invalid."""
    out = chosen_format(json_out, fmt)
    kinds = parse_kinds(only)
    source = validated(load_stack(from_stack))  # only a valid FROM is promoted
    target = load_stack(to_stack)
    if source.path is not None and target.path is not None and source.path.resolve() == target.path.resolve():
        raise SpecError([SpecIssue(str(to_stack), "FROM and TO are the same stack file")])
    found = promotion(source, target, kinds)
    status, issues, proof, written = _decide(
        source, to_stack, found, proof_dir, write, quiet=out is not OutputFormat.TEXT
    )
    code = {"in-sync": 0, "written": 0, "invalid": 1, "refused": 2, "pending": 2}[status]
    doc = {
        "from": str(from_stack),
        "to": str(to_stack),
        "only": list(kinds),
        "contentHash": content_hash(source),
        "status": status,
        "exitCode": code,
        "changes": [c.to_json() for c in found.changes],
        "unmatched": [u.to_json() for u in found.unmatched],
        "valid": not issues,
        "issues": issues_json(issues),
        "proof": proof.to_json() if proof else None,
        "written": written,
    }
    if out is OutputFormat.JSON:
        print_json(doc)
    elif out is OutputFormat.MARKDOWN:
        markdown.write(markdown.render_promote(doc))
    else:
        _print_text(doc)
    if code:
        raise typer.Exit(code)


@handle_errors
def proof_record(
    stack: StackArg,
    out: Annotated[Path, typer.Option("--out", help="Proof directory to write (audit.json, verify.json, proof.json)")],
    audit_json: Annotated[
        Path | None, typer.Option("--audit-json", help="A saved `gpufleet audit --json` of STACK (else run now)")
    ] = None,
    verify_json: Annotated[
        Path | None, typer.Option("--verify-json", help="A saved `gpufleet verify --json` of STACK (else run now)")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the stamp as one JSON document")] = False,
) -> None:
    """Record STACK's audit and verify, stamped with the content hash of its promotable settings, for `promote
    --proof`. Exit 0 the proof proves STACK, 2 recorded but not proving it (drift, a failed check), 1 bad input."""
    loaded = validated(load_stack(stack))
    stamp, proof = record(loaded, out, audit_json, verify_json)
    if json_out:
        print_json(stamp)
    else:
        verdict = "[green]proves[/]" if proof.proven else "[red]does not prove[/]"
        console.print(f"{esc(out)}: {verdict} {esc(loaded.name)} at {esc(stamp['contentHash'][:19])}", highlight=False)
        for reason in proof.reasons:
            console.print(f"  {esc(reason)}", highlight=False)
    if not proof.proven:
        raise typer.Exit(ExitCode.NO)


def register(app: typer.Typer) -> None:
    """Add ``gpufleet promote`` and ``gpufleet proof record``."""
    app.command("promote")(promote)
    proof = typer.Typer(
        help="Recorded proof that a stack is deployed as written (for promote --proof).", no_args_is_help=True
    )
    proof.command("record")(proof_record)
    app.add_typer(proof, name="proof")
