"""``gpufleet audit STACK [--json] [--html FILE] [--junit FILE]``: desired vs actual GPU state, without Pulumi.

Reads vCenter (one paged PropertyCollector retrieval) and every host over SSH (in parallel, bounded), compares
with the stack and reports each difference as a finding (stable id, path, desired, actual, severity, fix).

Exit codes: 0 in sync, 2 drift, 1 could not audit (bad input, or vCenter / a host unreachable: the rest is still
compared and reported, and what was unreachable is named). ``--json`` prints one JSON document on stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from gpufleet.audit.findings import counts
from gpufleet.audit.host_state import DEFAULT_PARALLEL
from gpufleet.audit.report_html import write_html
from gpufleet.audit.report_junit import write_junit
from gpufleet.audit.result import AuditResult
from gpufleet.audit.run import audit_stack
from gpufleet.cli import markdown
from gpufleet.cli.markdown import FormatOpt, OutputFormat, chosen_format
from gpufleet.cli.output import console, err_console, esc, handle_errors, print_json
from gpufleet.spec.stack import load_stack
from gpufleet.spec.validate import validated

_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
_STATUS = {
    "in-sync": "[bold green]in sync[/]",
    "drift": "[bold red]drift[/]",
    "incomplete": "[bold dark_orange]incomplete[/]",
}


def _short_fix(hint: str, stack: Path) -> str:
    # The terminal gets the verb; the JSON, HTML and JUnit reports carry the whole hint.
    return hint.split(" (", 1)[0].replace("STACK", str(stack))


def _print_human(result: AuditResult, written: list[str], stack: Path) -> None:
    c = counts(result.findings)
    vc = result.vcenter
    console.print(
        f"audit of stack [bold]{esc(result.stack)}[/] ({esc(result.datacenter)}): {_STATUS[result.status]} · "
        f"{len(result.desired.hosts)} hosts, {sum(not v.template for v in result.desired.vms.values())} VMs, "
        f"{len(result.objects)} objects · {c['error']} errors, {c['warning']} warnings, {c['info']} info"
        + (f" · vCenter read in {vc.round_trips} round trips, {result.timings.get('vcenter', 0):.2f} s" if vc else ""),
        highlight=False,
    )
    for u in result.unreachable:
        console.print(f"[bold dark_orange]unreachable[/] {esc(u.target)}: {esc(u.reason)}", highlight=False)
    if result.findings:
        table = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("severity", no_wrap=True)
        table.add_column("id", no_wrap=True)
        table.add_column("path", overflow="fold", ratio=3)
        table.add_column("desired", overflow="fold", ratio=2)
        table.add_column("actual", overflow="fold", ratio=2)
        table.add_column("fix", overflow="fold", ratio=2)
        for f in result.findings:
            table.add_row(
                Text(str(f.severity), style=_STYLE[str(f.severity)]),
                esc(f.id),
                esc(f.path),
                esc(f.desired or "–"),
                esc(f.actual or "–"),
                esc(_short_fix(f.hint, stack)),
            )
        console.print(table)
    for path in written:
        console.print(f"wrote {esc(path)}", highlight=False)


@handle_errors
def audit(
    stack: Annotated[Path, typer.Argument(help="Stack config file, e.g. stacks/Pulumi.lab.yaml")],
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout")] = False,
    html: Annotated[Path | None, typer.Option("--html", help="Write the HTML report to this file")] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML (one case per object) here")] = None,
    parallel: Annotated[
        int, typer.Option("--parallel", min=1, max=256, help="Hosts read over SSH at once")
    ] = DEFAULT_PARALLEL,
    fmt: FormatOpt = OutputFormat.TEXT,
) -> None:
    """Diff desired (the stack) against actual GPU state (vCenter + hosts). Exit 0 in sync, 2 drift, 1 could
    not audit."""
    out = chosen_format(json_out, fmt)
    json_out = out is OutputFormat.JSON
    loaded = validated(load_stack(stack))
    result = audit_stack(loaded, ssh_parallel=parallel)
    written = []
    if html is not None:
        written.append(str(write_html(result, html)))
    if junit is not None:
        written.append(str(write_junit(result, junit)))
    if json_out:
        document = result.to_dict()
        document["reports"] = written
        print_json(document)
    elif out is OutputFormat.MARKDOWN:
        document = result.to_dict()
        document["reports"] = written
        markdown.write(markdown.render_audit(document))
    else:
        _print_human(result, written, stack)
    if result.unreachable and out is not OutputFormat.TEXT:
        names = ", ".join(u.target for u in result.unreachable)
        err_console.print(f"[bold dark_orange]could not audit:[/] {esc(names)} unreachable", highlight=False)
    raise typer.Exit(result.exit_code)


def register(app: typer.Typer) -> None:
    """Add ``gpufleet audit``."""
    app.command("audit")(audit)
