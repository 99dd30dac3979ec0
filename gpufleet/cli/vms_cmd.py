"""``gpufleet vms apply STACK [--dry-run] [--json] [--vm NAME]``: converge the VMs' GPU and RDMA devices and GPU
settings on an existing inventory, without Pulumi (brownfield, break-glass, the demo).

Exit codes: 0 done (or nothing to do), 1 a VM or setting failed / bad input, 2 a dry run found pending changes.
``--json`` prints ``{"vms": [{"name", "changed", "changes", "error", "host", "powerCycled"}], "templates": [{"name",
"exists", "changed", "changes", "skipped", "error", "host"}], "settings": [...], "dryRun"}``. Templates that exist in
vCenter get their GPU settings converged (not with ``--vm``); ``skipped`` lists what is only reported (hardware
version...) and does not count as pending.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gpufleet.cli.output import ExitCode, console, esc, handle_errors, print_json
from gpufleet.connections import resolve_vcenter
from gpufleet.spec.stack import load_stack
from gpufleet.spec.validate import validated
from gpufleet.vms.apply import ApplyReport, apply_vms
from gpufleet.vsphere.connect import connect


def _templates_table(report: ApplyReport) -> Table:
    table = Table(title="templates" + (" (dry run)" if report.dry_run else ""))
    table.add_column("template")
    table.add_column("result")
    table.add_column("changes")
    table.add_column("not changed (reported only)")
    for tpl in report.templates:
        if tpl.error:
            result, detail = "[red]error[/]", esc(tpl.error)
        elif not tpl.exists:
            result, detail = "[dim]not in vCenter[/]", "pulumi up creates it"
        elif tpl.changed:
            result = "[yellow]pending[/]" if report.dry_run else "[green]changed[/]"
            detail = esc("\n".join(tpl.changes))
        else:
            result, detail = "in sync", ""
        table.add_row(esc(tpl.name), result, detail, esc("\n".join(s.describe() for s in tpl.skipped)))
    return table


def _print_human(report: ApplyReport) -> None:
    table = Table(title="vms apply" + (" (dry run)" if report.dry_run else ""))
    table.add_column("VM")
    table.add_column("host")
    table.add_column("result")
    table.add_column("changes")
    for vm in report.vms:
        if vm.error:
            result = "[red]error[/]"
            detail = esc(vm.error)
        elif vm.changed:
            result = "[yellow]pending[/]" if report.dry_run else "[green]changed[/]"
            detail = esc("\n".join(vm.changes) + ("\n(power-cycled)" if vm.power_cycled else ""))
        else:
            result = "in sync"
            detail = ""
        table.add_row(esc(vm.name), esc(vm.host or ""), result, detail)
    console.print(table)
    if report.templates:
        console.print(_templates_table(report))
    for setting in report.settings:
        state = ("would set" if report.dry_run else "set") if setting.changed else "in sync"
        console.print(esc(f"vCenter setting {setting.key}: {state} ({setting.before} -> {setting.after})"))
    for error in report.setting_errors:
        console.print(f"[red]vCenter setting error:[/] {esc(error)}")


@handle_errors
def apply(
    stack: Annotated[Path, typer.Argument(help="Stack config file, e.g. stacks/Pulumi.lab.yaml")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the changes, change nothing (exit 2 if any)")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document")] = False,
    vm: Annotated[list[str] | None, typer.Option("--vm", help="Only this VM (repeatable)")] = None,
) -> None:
    """Converge the VMs' GPU/RDMA devices and GPU settings, and the templates' GPU settings, to the stack
    (idempotent)."""
    loaded = validated(load_stack(stack))
    with connect(resolve_vcenter(loaded.vcenter)) as si:
        report = apply_vms(si, loaded.fleet, dry_run=dry_run, names=vm or None)
    if json_out:
        print_json(report.to_json())
    else:
        _print_human(report)
    if report.failed:
        raise typer.Exit(ExitCode.ERROR)
    if dry_run and report.pending:
        raise typer.Exit(ExitCode.NO)


def register(app: typer.Typer) -> None:
    """Add ``gpufleet vms apply``."""
    vms = typer.Typer(help="Converge VMs' GPU and RDMA devices (without Pulumi).", no_args_is_help=True)
    vms.command("apply")(apply)
    app.add_typer(vms, name="vms")
