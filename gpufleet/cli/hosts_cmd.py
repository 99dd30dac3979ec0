"""``gpufleet hosts prepare STACK`` (also ``python -m host_setup prepare STACK``): rolling ESXi host preparation
(gpufleet.hosts), with its safety rules:
never more than ``--max-unavailable`` hosts per cluster in maintenance, stop at the failure threshold, a failed
host left in maintenance and reported, resumable, hosts that need nothing untouched.

Exit codes: 0 all hosts as wanted; 1 bad input or a host failed; 2 ``--dry-run`` with changes pending; 130
interrupted (SIGINT: the hosts in their maintenance window finished it, the rest were not started).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gpufleet.cli.hosts_prepare import run_prepare
from gpufleet.cli.output import GpufleetGroup, console, err_console, handle_errors

_HELP = "ESXi host preparation: driver, graphics, MIG, ATS, rolling with bounded maintenance."

hosts_app = typer.Typer(
    name="hosts",
    help=_HELP,
    no_args_is_help=True,
)


@hosts_app.command("prepare")
@handle_errors
def prepare(
    stack: Annotated[Path, typer.Argument(help="Stack config file, e.g. stacks/Pulumi.lab.yaml")],
    max_unavailable: Annotated[
        int | None,
        typer.Option(
            "--max-unavailable", help="Hosts per cluster in maintenance at once (default: rollout.maxUnavailable)"
        ),
    ] = None,
    failure_threshold: Annotated[
        int | None,
        typer.Option(
            "--failure-threshold", help="Stop after this many failed hosts (default: rollout.failureThreshold)"
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only plan (read-only); exit 2 when changes are pending")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout")] = False,
    host: Annotated[list[str] | None, typer.Option("--host", help="Only this host of the stack (repeatable)")] = None,
    take_over: Annotated[
        bool, typer.Option("--take-over", help="Take the clusters' rollout lease from a run that is gone")
    ] = False,
) -> None:
    """Plan, then prepare the stack's ESXi hosts: maintenance (with evacuation), NVIDIA driver, graphics default
    type, MIG mode, ATS, one reboot for all pending changes, verify, exit maintenance."""
    code = run_prepare(
        stack,
        max_unavailable=max_unavailable,
        failure_threshold=failure_threshold,
        dry_run=dry_run,
        as_json=as_json,
        hosts=host or (),
        console=err_console if as_json else console,
        take_over=take_over,
    )
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add ``gpufleet hosts ...`` to the gpufleet app."""
    app.add_typer(hosts_app, name="hosts")


def standalone_app() -> typer.Typer:
    """``python -m host_setup``: the same ``prepare`` command without the rest of the gpufleet CLI."""
    app = typer.Typer(
        name="host_setup",
        cls=GpufleetGroup,
        help=_HELP,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def _root() -> None:
        """ESXi host preparation (the same verb as ``gpufleet hosts prepare``)."""

    app.command("prepare")(prepare)
    return app
