"""``gpufleet verify STACK [--junit FILE] [--json] [--node NAME]``: the post-deploy checks (pytest-testinfra) for
every host and VM of the stack; ``gpufleet license apply STACK [--vm NAME] [--json]``: NVIDIA guest licensing.

verify exit codes: 0 every applicable check passed (skips are listed with their reason), 2 a check failed (the
deployment differs from the spec), 1 bad input or a node could not be reached.
``--json`` prints ``{"stack", "summary": {"passed", "failed", "skipped", "error"}, "checks": [{"node", "check",
"outcome", "message"}], "junit"}``.

license apply exit codes: 0 every VM licensed, 1 a VM failed or bad input. ``--json`` prints
``{"stack", "vms": [{"vm", "changed", "token_file", ..., "status", "error"}]}`` (never the token).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gpufleet.cli.output import ExitCode, console, err_console, handle_errors, print_json
from gpufleet.errors import GpufleetError, SpecError, SpecIssue

_STYLE = {"passed": "green", "failed": "red", "error": "red", "skipped": "yellow"}


@handle_errors
def verify(
    stack: Annotated[Path, typer.Argument(help="Stack config file, e.g. stacks/Pulumi.lab.yaml")],
    junit: Annotated[Path | None, typer.Option("--junit", help="Write a JUnit XML report to FILE")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document")] = False,
    node: Annotated[list[str] | None, typer.Option("--node", help="Only this host or VM (repeatable)")] = None,
) -> None:
    """Run the post-deploy checks (pytest-testinfra) for every host and VM of the stack."""
    from gpufleet.checks.nodes import build_nodes
    from gpufleet.checks.run import run_checks

    build_nodes(str(stack), None, node or None)  # bad input (stack, lab not running, unknown node) fails here
    run = run_checks(stack, junit=junit, nodes=node or None)
    if run.usage_error:
        raise SpecError([SpecIssue(str(stack), f"the checks could not run:\n{run.usage_error}")])
    if json_out:
        print_json({"stack": str(stack), **run.to_json()})
    else:
        table = Table(title=f"gpufleet verify {stack}")
        for column in ("node", "check", "result", "detail"):
            table.add_column(column, overflow="fold")
        skipped: dict[str, list[str]] = {}
        for r in run.results:
            check = r.check.removeprefix("test_").replace("_", " ")
            if r.outcome == "skipped":
                skipped.setdefault(r.message, []).append(check)
                continue
            detail = r.message.splitlines()[0] if r.message else ""
            table.add_row(r.node, check, f"[{_STYLE[r.outcome]}]{r.outcome}[/]", detail)
        console.print(table)
        if skipped:
            console.print("[yellow]skipped[/] (the check does not apply):", highlight=False)
            for reason, checks in skipped.items():
                console.print(f"  {reason} [dim]({len(checks)} check(s))[/]", highlight=False)
        for r in run.results:
            if r.outcome in ("failed", "error"):
                console.print(f"\n[bold red]{r.outcome.upper()}[/] {r.node} {r.check}", highlight=False)
                console.print(r.message, markup=False, highlight=False)
        summary = ", ".join(f"{run.count(o)} {o}" for o in ("passed", "failed", "error", "skipped"))
        console.print(f"\n{summary}" + (f"; JUnit report: {junit}" if junit else ""), highlight=False)
    if run.count("error") or (not run.results and run.exit_status not in (0, 5)):
        raise typer.Exit(ExitCode.ERROR)
    if run.count("failed"):
        raise typer.Exit(ExitCode.NO)


@handle_errors
def license_apply(
    stack: Annotated[Path, typer.Argument(help="Stack config file, e.g. stacks/Pulumi.lab.yaml")],
    vm: Annotated[list[str] | None, typer.Option("--vm", help="Only this VM (repeatable)")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for Licensed, per VM")] = 120.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document")] = False,
) -> None:
    """Place the NVIDIA client configuration token, set gridd.conf FeatureType, restart nvidia-gridd and wait
    for Licensed, on every vGPU VM of the stack (idempotent; the token is never printed)."""
    from gpufleet.checks.licensing import GuestSshRunner, apply_licensing, licensing_targets, resolve_client_token
    from gpufleet.checks.nodes import stack_ssh_settings
    from gpufleet.spec.stack import load_stack

    loaded = load_stack(stack)
    targets = licensing_targets(loaded.fleet, vm or None)
    token = resolve_client_token(loaded)
    _, guests = stack_ssh_settings(loaded)
    missing = [name for name in targets if name not in guests]
    if missing:
        raise SpecError(
            [SpecIssue(f"vms[{name}].ssh", "no SSH settings: cannot reach the guest to license it") for name in missing]
        )
    rows: list[dict] = []
    for name in targets:
        try:
            with GuestSshRunner(guests[name]) as runner:
                result = apply_licensing(runner, token, loaded.fleet.licensing.feature_type, timeout=timeout)
            rows.append({**result.to_json(), "error": None})
        except GpufleetError as exc:
            rows.append({"vm": name, "changed": False, "status": "", "error": str(exc)})
    if json_out:
        print_json({"stack": str(stack), "vms": rows})
    else:
        table = Table(title=f"gpufleet license apply {stack}")
        for column in ("VM", "result", "licence status", "detail"):
            table.add_column(column, overflow="fold")
        for row in rows:
            if row["error"]:
                table.add_row(row["vm"], "[red]error[/]", "", row["error"])
            else:
                what = "[green]changed[/]" if row["changed"] else "in place"
                detail = f"FeatureType={row['feature_type']}, token {row['token_file']}"
                table.add_row(row["vm"], what, row["status"], detail)
        console.print(table)
    if any(row["error"] for row in rows):
        if not json_out:
            err_console.print("[red]licensing failed on at least one VM[/]")
        raise typer.Exit(ExitCode.ERROR)


def register(app: typer.Typer) -> None:
    """Add ``gpufleet verify`` and ``gpufleet license apply``."""
    app.command("verify")(verify)
    lic = typer.Typer(help="NVIDIA vGPU guest licensing.", no_args_is_help=True)
    lic.command("apply")(license_apply)
    app.add_typer(lic, name="license")
