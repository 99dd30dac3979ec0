"""``python -m host_setup prepare STACK [--max-unavailable N] [--dry-run] [--json]``: the same verb as
``gpufleet hosts prepare``, without the rest of the gpufleet CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from gpufleet.errors import GpufleetError
from gpufleet.markup import esc
from host_setup.cli import run_prepare

app = typer.Typer(
    name="host_setup",
    help="Prepare ESXi hosts for NVIDIA vGPU over SSH, rolling across the fleet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _main() -> None:
    """Host preparation (the same verb as ``gpufleet hosts prepare``)."""


@app.command()
def prepare(
    stack: Annotated[Path, typer.Argument(help="Stack config file, e.g. stacks/Pulumi.lab.yaml")],
    max_unavailable: Annotated[
        int | None, typer.Option("--max-unavailable", help="Hosts per cluster in maintenance at once (spec default)")
    ] = None,
    failure_threshold: Annotated[
        int | None, typer.Option("--failure-threshold", help="Stop after this many failed hosts (spec default)")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only plan; exit 2 when changes are pending")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout")] = False,
    host: Annotated[list[str] | None, typer.Option("--host", help="Only this host (repeatable)")] = None,
    take_over: Annotated[
        bool, typer.Option("--take-over", help="Take the clusters' rollout lease from a run that is gone")
    ] = False,
) -> None:
    """Plan, then prepare the stack's hosts: maintenance, driver, graphics, MIG, ATS, one reboot, verify."""
    try:
        code = run_prepare(
            stack,
            max_unavailable=max_unavailable,
            failure_threshold=failure_threshold,
            dry_run=dry_run,
            as_json=as_json,
            hosts=host or (),
            take_over=take_over,
        )
    except GpufleetError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {esc(exc)}", highlight=False)
        raise typer.Exit(exc.exit_code) from exc
    raise typer.Exit(code)


if __name__ == "__main__":
    app()
