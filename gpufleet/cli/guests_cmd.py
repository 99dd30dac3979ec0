"""``gpufleet guests prepare STACK [--vm NAME] [--dry-run] [--json] [--max-unavailable N] [--failure-threshold N]``:
the guest side of the stack's GPU VMs (every VM with a ``guest:`` block, its own or its template's) over SSH, host
keys verified: NVIDIA guest driver of the host's branch, nouveau, kernel parameters, Container Toolkit, Docker's
nvidia runtime, at most one reboot, the assert (nvidia-smi, a GPU container), then NVIDIA licensing for vGPU VMs.

Exit codes (as ``hosts prepare``): 0 every guest converged; 1 bad input, or a guest failed / needs a reboot it may
not do / was skipped (each named with its state, step and output); 2 ``--dry-run`` with changes pending.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gpufleet.cli.output import console, err_console, esc, handle_errors, print_json
from gpufleet.errors import GpufleetError, SpecError, SpecIssue
from gpufleet.spec.stack import load_stack
from gpufleet.spec.validate import validated

guests_app = typer.Typer(
    name="guests",
    help="The guest side of GPU VMs: NVIDIA driver, Container Toolkit, Docker runtime.",
    no_args_is_help=True,
)
_STYLE = {
    "converged": "green",
    "changes-pending": "yellow",
    "reboot-required": "yellow",
    "failed": "bold red",
    "skipped": "dim",
}


@guests_app.command("prepare")
@handle_errors
def prepare(
    stack: Annotated[Path, typer.Argument(help="Stack config file, e.g. stacks/Pulumi.lab.yaml")],
    vm: Annotated[list[str] | None, typer.Option("--vm", help="Only this VM (repeatable)")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only check (read-only); exit 2 when changes are pending")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout")] = False,
    max_unavailable: Annotated[
        int | None,
        typer.Option("--max-unavailable", min=1, help="Guests prepared at once (default: rollout.maxUnavailable)"),
    ] = None,
    failure_threshold: Annotated[
        int | None,
        typer.Option(
            "--failure-threshold",
            min=1,
            help="Stop starting guests after this many failed (default: rollout.failureThreshold)",
        ),
    ] = None,
) -> None:
    """Install and configure the guest side of the stack's GPU VMs, then assert it and license vGPU guests."""
    from gpufleet.checks.bitfusion import configure_client, pool_client_targets
    from gpufleet.checks.nodes import stack_ssh_settings
    from gpufleet.connections import lab_dir, resolve_local_path
    from gpufleet.guest.prepare import GuestTarget, prepare_guests
    from gpufleet.licensing.guest import GuestSshRunner, resolve_client_token
    from gpufleet.spec.guest_desired import guest_desired

    loaded = validated(load_stack(stack))  # a stack `validate` rejects changes nothing
    fleet = loaded.fleet
    desired = {v.name: d for v in fleet.vms if (d := guest_desired(fleet, v)) is not None}
    pool_clients = [c.vm for p in fleet.gpu_pools for c in p.clients]
    if vm:
        unknown = [n for n in vm if n not in desired and n not in pool_clients]
        if unknown:
            raise SpecError(
                [
                    SpecIssue(
                        "--vm",
                        f"{', '.join(unknown)}: not a VM with a guest: block or a GPU pool client",
                        tuple(desired) + tuple(pool_clients),
                    )
                ]
            )
    names = [n for n in desired if not vm or n in vm]
    # GPU pool clients (Bitfusion): their client configuration, placed after the GPU guests (bad input first).
    pool_targets = pool_client_targets(loaded, [n for n in vm if n in pool_clients] if vm else None)
    guests_all = stack_ssh_settings(loaded)[1] if names or pool_targets else {}
    guests = guests_all
    missing = [n for n in names if n not in guests]
    if missing:
        raise SpecError([SpecIssue(f"vms[{n}].ssh", "no SSH settings: cannot reach the guest") for n in missing])
    by_name = {v.name: v for v in fleet.vms}
    licensed = [n for n in names if by_name[n].vgpu and by_name[n].nvidia_licensing]
    token = resolve_client_token(loaded) if licensed and not dry_run and fleet.licensing.nvidia_client_token else None
    targets = [
        GuestTarget(
            desired[n],
            gpu_count=len(by_name[n].vgpu) + len(by_name[n].passthrough),
            license_feature=fleet.licensing.feature_type if n in licensed and token is not None else None,
        )
        for n in names
    ]
    lab = lab_dir() if loaded.vcenter.lab else None
    out = err_console if as_json else console

    def on_event(name: str, message: str) -> None:
        if not as_json:
            out.print(f"[bold]{esc(name):<14}[/] {esc(message)}", highlight=False)

    report = prepare_guests(
        targets,
        lambda name: GuestSshRunner(guests[name]),
        lambda path: resolve_local_path(path, lab),
        max_unavailable=max_unavailable or fleet.rollout.max_unavailable,
        failure_threshold=failure_threshold or fleet.rollout.failure_threshold,
        dry_run=dry_run,
        token=token,
        on_event=on_event,
    )
    pool_results, pool_errors = [], []
    for target in pool_targets:
        try:
            result = configure_client(GuestSshRunner(guests_all[target.vm]), target.pool, target.files, dry_run=dry_run)
        except GpufleetError as exc:  # the message names the file, never its content
            pool_errors.append({"vm": target.vm, "pool": target.pool.name, "error": str(exc)})
            continue
        pool_results.append(result)
        on_event(
            target.vm, f"bitfusion client of {target.pool.name}: " + ", ".join(f"{p} {s}" for p, s in result.files)
        )
    exit_code = report.exit_code
    if pool_errors:
        exit_code = 1
    elif exit_code == 0 and dry_run and any(r.pending for r in pool_results):
        exit_code = 2
    if as_json:
        doc = {"stack": str(stack), **report.to_json()}
        if pool_targets:
            doc["poolClients"] = [r.to_json() for r in pool_results] + pool_errors
            doc["exitCode"] = exit_code
        print_json(doc)
    else:
        if report.guests or not pool_targets:  # a stack of pool clients only has no GPU guest table to show
            table = Table(title="guests prepare (dry run)" if dry_run else "guests prepare", title_justify="left")
            for column in ("VM", "state", "steps", "error"):
                table.add_column(column, overflow="fold")
            for g in report.guests:
                steps = esc(", ".join(f"{s.name}:{s.state}" for s in g.steps if s.state != "ok") or "all ok")
                error = f"[red]{esc(g.error['step'])}: {esc(g.error['message'])}[/]" if g.error else ""
                table.add_row(esc(g.name), f"[{_STYLE.get(g.state, '')}]{esc(g.state)}[/]", steps, error)
            console.print(table)
            summary = report.to_json()["summary"]
            console.print(
                f"{summary['guests']} guest(s): {summary['converged']} converged ({summary['changed']} changed), "
                f"{summary['changes-pending']} with changes pending, {summary['reboot-required']} needing a reboot, "
                f"{summary['failed']} failed, {summary['skipped']} skipped; at most {report.peak_in_progress} at once "
                f"(max-unavailable {report.max_unavailable}) in {report.seconds:.1f} s",
                highlight=False,
            )
        for r in pool_results:
            console.print(
                f"{esc(r.vm)}: Bitfusion client of pool {esc(r.pool)} "
                + ("changed" if r.changed else ("changes pending" if r.pending else "as wanted")),
                highlight=False,
            )
        for e in pool_errors:
            console.print(f"[red]{esc(e['vm'])}: {esc(e['error'])}[/]", highlight=False)
    raise typer.Exit(exit_code)


def register(app: typer.Typer) -> None:
    """Add ``gpufleet guests ...`` to the gpufleet app."""
    app.add_typer(guests_app, name="guests")
