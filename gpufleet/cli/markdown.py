"""``--format markdown``: a verb's answer as a pull-request comment — a compact summary table first, then the details
collapsed in ``<details>`` blocks. One renderer for ``validate``, ``plan``, ``audit`` and ``promote``; each renders
from the verb's own ``--json`` document, so the comment says exactly what the JSON says.

Every value that comes from a stack or a host (names, paths, messages) is escaped: ``|`` cannot break a table,
HTML is shown as text, and Markdown's own characters (`` ` * _ [ ] \\``) stay literal.
"""

from __future__ import annotations

import html
import re
import sys
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Annotated, Any

import typer

__all__ = [
    "FormatOpt",
    "OutputFormat",
    "cell",
    "chosen_format",
    "details",
    "render_audit",
    "render_plan",
    "render_promote",
    "render_validate",
    "table",
    "write",
]


class OutputFormat(StrEnum):
    TEXT = "text"
    JSON = "json"
    MARKDOWN = "markdown"


FormatOpt = Annotated[
    OutputFormat,
    typer.Option("--format", help="text (default), json (the same as --json) or markdown (a PR comment)"),
]


def chosen_format(json_out: bool, fmt: OutputFormat) -> OutputFormat:
    """The format asked for: ``--json`` is ``--format json``; ``--json`` with another ``--format`` is a usage error."""
    if json_out and fmt not in (OutputFormat.TEXT, OutputFormat.JSON):
        raise typer.BadParameter(
            f"--json and --format {fmt.value} ask for two formats: give one", param_hint="--format"
        )
    return OutputFormat.JSON if json_out else fmt


_MARKDOWN_CHARS = re.compile(r"([\\`*_\[\]|])")


def cell(value: Any) -> str:
    """A value as the text of one table cell: HTML escaped, Markdown's characters and ``|`` backslashed, line
    breaks as ``<br>`` (a cell is one line)."""
    if value is None or value == "":
        return "–"
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value)
    text = _MARKDOWN_CHARS.sub(r"\\\1", html.escape(str(value), quote=False))
    return "<br>".join(line for line in text.splitlines()) or "–"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def details(summary: str, body: str) -> str:
    """A collapsed block; ``summary`` is plain text (escaped here), ``body`` Markdown already escaped."""
    return f"<details><summary>{html.escape(summary)}</summary>\n\n{body}\n\n</details>"


def _document(title: str, summary: str, blocks: Iterable[str]) -> str:
    return "\n\n".join([f"### {cell(title)}", summary, *blocks]) + "\n"


def write(text: str) -> None:
    """Markdown on stdout as it is (never through rich, which would read ``[...]`` as markup)."""
    sys.stdout.write(text)
    sys.stdout.flush()


def _issues_block(issues: Sequence[dict[str, Any]], title: str) -> str:
    rows = [
        (i["path"], i["message"] + (f" (got {i['value']})" if i.get("value") else ""), i.get("valid")) for i in issues
    ]
    return details(f"{title} ({len(issues)})", table(("path", "problem", "valid values"), rows))


def render_validate(doc: dict[str, Any]) -> str:
    s = doc.get("summary") or {}
    issues = doc.get("issues") or []
    result = "valid" if doc.get("valid") else f"invalid: {len(issues)} problem(s)"
    summary = table(
        ("stack", "result", "hosts", "GPUs", "templates", "VMs"),
        [(doc["stack"], result, s.get("hosts"), s.get("gpus"), s.get("templates"), s.get("vms"))],
    )
    blocks = [_issues_block(issues, "problems")] if issues else []
    policy = doc.get("policy")
    if policy is not None:
        violations = policy.get("violations") or []
        mandatory = sum(v["enforcementLevel"] == "mandatory" for v in violations)
        verdict = "passed" if policy.get("passed") else f"refused: {mandatory} mandatory violation(s)"
        summary += "\n\n" + table(
            ("policy", "violations", "config"), [(verdict, len(violations), policy.get("config") or "defaults")]
        )
        if violations:
            rows = [(v["rule"], v["enforcementLevel"], v["resource"], v["field"], v["message"]) for v in violations]
            blocks.append(
                details(
                    f"policy violations ({len(violations)})",
                    table(("rule", "level", "resource", "field", "problem"), rows),
                )
            )
    return _document(f"gpufleet validate {doc['stack']}", summary, blocks)


def assignment(a: dict[str, Any]) -> str:
    """One GPU assignment of a plan as people read it (the text and the markdown of ``plan``)."""
    if "instance" in a:
        return f"{a['vm']}: {a['profile']} {a['instance']} @{a['start']}:{a['size']}"
    if "profile" in a:
        return f"{a['vm']}: {a['profile']}"
    return f"{a['vm']}: {a.get('device', 'passthrough')}"


def render_plan(doc: dict[str, Any]) -> str:
    title = f"gpufleet plan {doc['stack']}"
    if "summary" not in doc:  # the stack is invalid: nothing was planned
        issues = doc.get("issues") or []
        summary = table(("stack", "feasible", "problems"), [(doc["stack"], "no: invalid stack", len(issues))])
        return _document(title, summary, [_issues_block(issues, "problems")])
    s = doc["summary"]
    unplaced = doc.get("unplaced") or []
    summary = table(
        ("stack", "feasible", "VMs placed", "GPUs used", "lower bound", "mean density", "cannot be placed"),
        [
            (
                doc["stack"],
                "yes" if doc["feasible"] else "no",
                s["vmsPlaced"],
                f"{s['gpusUsed']} of {s['gpusTotal']}",
                s["lowerBound"],
                f"{s['density']:.0%}",
                len(unplaced),
            )
        ],
    )
    blocks = []
    if unplaced:
        rows = [(u["vm"], u["path"], u["reason"]) for u in unplaced]
        blocks.append(details(f"cannot be placed ({len(unplaced)})", table(("VM", "path", "why"), rows)))
    for host in doc["hosts"]:
        rows = [
            (
                g["pci"],
                g["model"],
                g["mode"] + (" (mixed)" if g.get("mixedSize") else ""),
                [assignment(a) for a in g["assignments"]],
                g["free"],
                f"{g['density']:.0%}",
            )
            for g in host["gpus"]
        ]
        blocks.append(
            details(
                f"{host['name']} ({len(rows)} GPUs)",
                table(("GPU", "model", "mode", "assigned", "free", "density"), rows),
            )
        )
    return _document(title, summary, blocks)


def render_audit(doc: dict[str, Any]) -> str:
    counts = doc["summary"]["findings"]
    findings = doc.get("findings") or []
    unreachable = doc.get("unreachable") or []
    summary = table(
        ("stack", "status", "errors", "warnings", "info", "objects", "unreachable"),
        [
            (
                doc["stack"],
                doc["status"],
                counts.get("error", 0),
                counts.get("warning", 0),
                counts.get("info", 0),
                doc["summary"]["objects"],
                len(unreachable),
            )
        ],
    )
    blocks = []
    if findings:
        rows = [(f["severity"], f["id"], f["path"], f.get("desired"), f.get("actual"), f.get("hint")) for f in findings]
        blocks.append(
            details(f"findings ({len(findings)})", table(("severity", "id", "path", "desired", "actual", "fix"), rows))
        )
    if unreachable:
        rows = [(u.get("target"), u.get("kind"), u.get("reason")) for u in unreachable]
        blocks.append(details(f"unreachable ({len(unreachable)})", table(("target", "kind", "why"), rows)))
    return _document(f"gpufleet audit {doc['stack']}", summary, blocks)


def render_promote(doc: dict[str, Any]) -> str:
    changes = doc.get("changes") or []
    proof = doc.get("proof") or {}
    proven = proof.get("proven")
    proof_text = "not checked" if proven is None else ("proven" if proven else "not proven")
    if proof.get("source"):
        proof_text += f" ({proof['source']})"
    summary = table(
        ("from", "to", "status", "changes", "FROM", "TO after", "content hash"),
        [
            (
                doc["from"],
                doc["to"],
                doc["status"],
                len(changes),
                proof_text,
                "valid" if doc.get("valid", True) else "invalid",
                doc.get("contentHash", "")[:19],
            )
        ],
    )
    blocks = []
    if changes:
        rows = [(c["kind"], c["path"], c.get("role"), c.get("current"), c.get("promoted")) for c in changes]
        blocks.append(
            details(f"changes ({len(changes)})", table(("kind", "TO path", "role", "TO now", "promoted"), rows))
        )
    if proof.get("reasons"):
        blocks.append(details("why FROM is not proven", "\n".join(f"- {cell(r)}" for r in proof["reasons"])))
    if doc.get("issues"):
        blocks.append(_issues_block(doc["issues"], "TO would not validate"))
    unmatched = doc.get("unmatched") or []
    if unmatched:
        rows = [(u["kind"], u["name"], u["role"], u["onlyIn"]) for u in unmatched]
        blocks.append(
            details(
                f"no counterpart, not promoted ({len(unmatched)})", table(("kind", "name", "role", "only in"), rows)
            )
        )
    return _document(f"gpufleet promote {doc['from']} {doc['to']}", summary, blocks)
