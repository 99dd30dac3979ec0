"""The ``hosts prepare`` verb's front end: rich progress and tables for people, one JSON document for machines.

``run_prepare`` is called by ``gpufleet hosts prepare`` and by ``python -m host_setup prepare``; it returns the
exit code (0 all done / nothing to do, 1 a host failed, 2 dry run with changes pending, 130 interrupted). Bad input raises
``GpufleetError`` for the caller to print (``gpufleet.cli.output.handle_errors``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from gpufleet.cli.markup import esc
from gpufleet.cli.output import print_json
from gpufleet.hosts.command import prepare_stack
from gpufleet.hosts.rollout import RolloutReport

_STATE_STYLE = {
    "ok": "green",
    "done": "bold green",
    "pending-reboot": "yellow",
    "needed": "yellow",
    "failed": "bold red",
    "skipped": "dim",
}


def summary_table(report: RolloutReport) -> Table:
    title = "hosts prepare (dry run)" if report.dry_run else "hosts prepare"
    table = Table(title=title, title_justify="left")
    table.add_column("host")
    table.add_column("changed")
    table.add_column("steps")
    table.add_column("error", overflow="fold")
    for host in report.hosts:
        steps = ", ".join(
            f"[{_STATE_STYLE.get(s.state, '')}]{esc(s.name)}:{esc(s.state)}[/]" for s in host.steps if s.state != "ok"
        )
        error = f"[red]{esc(host.error['step'])}: {esc(host.error['message'])}[/]" if host.error else ""
        table.add_row(esc(host.name), "yes" if host.changed else "no", steps or "[green]all ok[/]", error)
    return table


def run_prepare(
    stack: Path,
    *,
    max_unavailable: int | None,
    failure_threshold: int | None,
    dry_run: bool,
    as_json: bool,
    hosts: Sequence[str] = (),
    console: Console | None = None,
    take_over: bool = False,
) -> int:
    """Prepare the stack's hosts; print JSON (``as_json``) or progress and a table; return the exit code."""
    console = console or Console(stderr=as_json)
    prepare = partial(
        prepare_stack,
        stack,
        max_unavailable=max_unavailable,
        failure_threshold=failure_threshold,
        dry_run=dry_run,
        only=hosts,
        take_over=take_over,
    )
    if as_json:
        report = prepare()
        print_json({"stack": str(stack), **report.to_json()})
        return report.exit_code

    lock = threading.Lock()
    with Progress(
        SpinnerColumn(finished_text="[green]✓[/]"),
        TextColumn("[bold]{task.fields[host]:<14}"),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    ) as progress:
        tasks: dict[str, int] = {}

        def on_event(host: str, message: str) -> None:
            final = message == "done" or message.startswith(("failed", "skipped", "plan: nothing", "plan: failed"))
            final = final or (dry_run and message.startswith("plan:"))
            with lock:
                if not console.is_terminal:  # a log: a line per step of each host instead of live spinners
                    console.print(f"{host}: {message}", markup=False, highlight=False)
                    return
                if host not in tasks:
                    tasks[host] = progress.add_task(esc(message), host=esc(host), total=1)
                progress.update(tasks[host], description=esc(message), completed=1 if final else 0)

        report = prepare(on_event=on_event)
    console.print(summary_table(report))
    if report.stopped:
        console.print(f"[bold red]{esc(report.stopped)}[/]")
    left = [h.name for h in report.hosts if h.error and h.error.get("step") == "skipped"]
    if report.interrupted and left:
        console.print(f"[yellow]left for the next run ({len(left)}): {esc(', '.join(left))}[/]")
    peak = esc(", ".join(f"{c}: {n}" for c, n in report.peak_in_maintenance.items()))
    summary = report.to_json()["summary"]
    console.print(
        f"{summary['hosts']} host(s): {summary['changed']} changed, {summary['unchanged']} unchanged, "
        f"{summary['failed']} failed, {summary['skipped']} skipped"
        + (f", {summary['pending']} with changes pending" if report.dry_run else "")
        + (f"; at most {peak} in maintenance at once (max-unavailable {report.max_unavailable})" if peak else "")
        + f" in {report.seconds:.1f} s"
    )
    for host in report.failed:
        if host.in_maintenance:
            console.print(
                f"[yellow]{esc(host.name)} is left in maintenance mode; fix the cause and rerun to continue[/]"
            )
    return report.exit_code
