"""``gpufleet verify STACK [--junit FILE] [--json] [--node NAME]``: the post-deploy checks (pytest-testinfra) for
every host and VM of the stack; ``gpufleet license apply STACK [--host NAME] [--vm NAME] [--dry-run] [--json]``:
vSphere licence keys and NVIDIA guest licensing.

verify exit codes: 0 every applicable check passed (skips are listed with their reason), 2 a check failed (the
deployment differs from the spec), 1 bad input or a node could not be reached.
``--json`` prints ``{"stack", "summary": {"passed", "failed", "skipped", "error"}, "checks": [{"node", "check",
"outcome", "message"}], "junit"}``.

license apply: first the vSphere licence keys (vCenter ``licensing.vcenterLicense``, each host ``hosts[].license``
or ``licensing.hostLicense``; added to vCenter if missing, then assigned), then the NVIDIA guest token on every vGPU
VM. ``--host``/``--vm`` limit it to those (then vCenter's key is left alone). A key that is not a licence key, or
that vCenter refuses, fails before anything is assigned. Exit codes: 0 everything licensed, 1 a target failed or
bad input, 2 a ``--dry-run`` found vSphere licences to assign (guests are not contacted in a dry run).
``--json`` prints ``{"stack", "dryRun", "vsphere": [{"target", "changed", "error", "desired", "before"}],
"guests": [{"vm", "changed", "tokenFile", ..., "status", "error"}]}`` (keys masked, never the token).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gpufleet.checks.run import CheckResult, CheckRun, OnResult, node_of
from gpufleet.cli.output import ExitCode, console, err_console, esc, handle_errors, print_json, progress
from gpufleet.errors import GpufleetError, SpecError, SpecIssue
from gpufleet.spec.models import Fleet
from gpufleet.spec.stack import Stack, load_stack
from gpufleet.spec.validate import validated

_STYLE = {"passed": "green", "failed": "red", "error": "red", "skipped": "yellow"}
_OUTCOMES = ("passed", "failed", "error", "skipped")


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

    loaded = validated(load_stack(stack))  # a stack `validate` rejects is refused before anything is reached
    build_nodes(str(stack), None, node or None)  # bad input (stack, lab not running, unknown node) fails here
    names = [h.name for h in loaded.fleet.hosts] + [v.name for v in loaded.fleet.vms]
    if json_out:
        run = run_checks(stack, junit=junit, nodes=node or None)
    else:
        with progress(console, "verify", counted=True, ticking=False) as update:
            run = run_checks(stack, junit=junit, nodes=node or None, on_result=_progress_of(update, names))
    if run.usage_error:
        raise SpecError([SpecIssue(str(stack), f"the checks could not run:\n{run.usage_error}")])
    if json_out:
        print_json({"stack": str(stack), **run.to_json()})
    else:
        _print_verify(stack, run, names, junit)
    code = verify_exit_code(run.to_json()["summary"], len(run.results), run.exit_status)
    if code:
        raise typer.Exit(code)


def verify_exit_code(summary: Mapping[str, int], checks: int, pytest_status: int = 0) -> int:
    """verify's answer from its counts (also read back from a recorded ``verify --json``): 1 a check errored or
    pytest failed before any check ran, 2 a check failed, 0 every check that applies passed."""
    if summary.get("error") or (not checks and pytest_status not in (0, 5)):
        return ExitCode.ERROR
    if summary.get("failed"):
        return ExitCode.NO
    return ExitCode.OK


def _progress_of(update: Callable[..., None], names: list[str]) -> OnResult:
    """Progress of the checks: every check on a terminal, a line per host / VM once all its checks ran."""
    left: Counter[str] = Counter()
    seen: dict[str, Counter[str]] = {}

    def on_result(result: CheckResult, done: int, planned: list[str]) -> None:
        if done == 1:
            left.update(node_of(n, names) for n in planned)
        name = node_of(result.node, names)
        outcomes = seen.setdefault(name, Counter())
        outcomes[result.outcome] += 1
        left[name] -= 1
        update(f"{name}: {_check_words(result.check)}", advance=1, log=False, total=len(planned))
        if left[name] == 0:
            counts = ", ".join(f"{outcomes[o]} {o}" for o in _OUTCOMES if outcomes[o])
            update(f"{name}: {sum(outcomes.values())} checks ({counts})")

    return on_result


def _check_words(check: str) -> str:
    return check.removeprefix("test_").replace("_", " ")


def _print_verify(stack: Path, run: CheckRun, names: list[str], junit: Path | None) -> None:
    """Compact: one row per host / VM with its counts, the skip reasons once each, every failure in full."""
    per_node: dict[str, Counter[str]] = {}
    for r in run.results:
        per_node.setdefault(node_of(r.node, names), Counter())[r.outcome] += 1
    table = Table(title=esc(f"gpufleet verify {stack}"), title_justify="left")
    table.add_column("host / VM")
    for outcome in _OUTCOMES:
        table.add_column(outcome, justify="right")
    for name, counts in per_node.items():
        table.add_row(
            esc(name),
            *(f"[{_STYLE[o]}]{counts[o]}[/]" if counts[o] and o != "passed" else str(counts[o]) for o in _OUTCOMES),
        )
    console.print(table)
    skipped: dict[str, list[str]] = {}  # reason -> the host / VM of each check skipped for it
    for r in run.results:
        if r.outcome == "skipped":
            name = node_of(r.node, names)
            label, sep, reason = r.message.partition(": ")
            # "esxi-03.lab 0000:3b:00.0: L40S has no MIG": the reason once, with the hosts / VMs it applies to
            reason = reason if sep and label.split(" ")[0] == name else r.message
            skipped.setdefault(reason, []).append(name)
    if skipped:
        console.print(f"[yellow]skipped[/] (the check does not apply), {run.count('skipped')} check(s):")
        for reason, nodes in skipped.items():
            where = ", ".join(dict.fromkeys(nodes))
            console.print(f"  {esc(reason)}: {esc(where)} [dim]({len(nodes)})[/]", highlight=False)
    for r in run.results:
        if r.outcome in ("failed", "error"):
            console.print(f"\n[bold red]{r.outcome.upper()}[/] {esc(r.node)} {esc(r.check)}", highlight=False)
            console.print(r.message, markup=False, highlight=False)
    summary = ", ".join(f"{run.count(o)} {o}" for o in _OUTCOMES)
    console.print(f"\n{summary}" + (f"; JUnit report: {junit}" if junit else ""), highlight=False, markup=False)


def _vsphere_rows(loaded: Stack, hosts: list[str] | None, include_vcenter: bool, dry_run: bool) -> list[dict]:
    """The vSphere licence step (keys read and checked before vCenter is contacted)."""
    from gpufleet.connections import resolve_vcenter
    from gpufleet.licensing.vsphere import apply_licenses, license_targets
    from gpufleet.vsphere.connect import connect

    targets = license_targets(loaded, hosts=hosts, include_vcenter=include_vcenter)
    if not targets:
        return []
    with connect(resolve_vcenter(loaded.vcenter)) as si:
        return [r.to_json() for r in apply_licenses(si, loaded.fleet.datacenter, targets, dry_run=dry_run)]


def _print_license_tables(stack: Path, vsphere_rows: list[dict], guest_rows: list[dict], dry_run: bool) -> None:
    suffix = " (dry run)" if dry_run else ""
    if vsphere_rows:
        table = Table(title=f"vSphere licences{suffix}")
        for column in ("target", "result", "key", "before"):
            table.add_column(column, overflow="fold")
        for row in vsphere_rows:
            if row["error"]:
                result = "[red]error[/]"
            elif row["changed"]:
                result = "[yellow]pending[/]" if dry_run else "[green]assigned[/]"
            else:
                result = "in place"
            table.add_row(
                esc(row["target"]), result, esc(row["desired"]), esc(row["error"] or row["before"] or "(none)")
            )
        console.print(table)
    else:
        console.print("vSphere licences: the stack names none for these targets", highlight=False)
    table = Table(title=esc(f"gpufleet license apply {stack}: NVIDIA guest licensing{suffix}"))
    for column in ("VM", "result", "licence status", "detail"):
        table.add_column(column, overflow="fold")
    for row in guest_rows:
        if row.get("error"):
            table.add_row(esc(row["vm"]), "[red]error[/]", "", esc(row["error"]))
        elif row.get("skipped"):
            table.add_row(esc(row["vm"]), "[dim]skipped[/]", "", esc(row["skipped"]))
        elif row.get("reason"):
            table.add_row(esc(row["vm"]), "not needed", "", esc(row["reason"]))
        else:
            what = "[green]changed[/]" if row["changed"] else "in place"
            detail = f"FeatureType={row['featureType']}, token {row['tokenFile']}"
            table.add_row(esc(row["vm"]), what, esc(row["status"]), esc(detail))
    console.print(table)


def _not_needed(fleet: Fleet) -> list[dict[str, str]]:
    """The stack's VMs that get no NVIDIA licensing, and why: shown, so a VM is never silently left out."""
    rows = []
    for vm in fleet.vms:
        if not vm.vgpu:
            why = "passthrough GPU: no vGPU licence" if vm.passthrough else "no GPU"
            rows.append({"vm": vm.name, "reason": why})
        elif not vm.nvidia_licensing:
            rows.append({"vm": vm.name, "reason": "nvidiaLicensing: false in the stack"})
    return rows


@handle_errors
def license_apply(
    stack: Annotated[Path, typer.Argument(help="Stack config file, e.g. stacks/Pulumi.lab.yaml")],
    vm: Annotated[list[str] | None, typer.Option("--vm", help="Only this VM (repeatable)")] = None,
    host: Annotated[
        list[str] | None, typer.Option("--host", help="Only this host's vSphere licence (repeatable)")
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for Licensed, per VM")] = 120.0,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Show the vSphere licences that would change, change nothing (exit 2 if any)"),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document")] = False,
) -> None:
    """Assign the stack's vSphere licence keys (vCenter and every host: added to vCenter if missing), then place
    the NVIDIA client configuration token, set gridd.conf FeatureType, restart nvidia-gridd and wait for Licensed
    on every vGPU VM. Idempotent; keys and token are never printed. With --host/--vm only those are handled."""
    from gpufleet.checks.nodes import stack_ssh_settings
    from gpufleet.licensing.guest import GuestSshRunner, apply_licensing, licensing_targets, resolve_client_token

    loaded = validated(load_stack(stack))  # a stack `validate` rejects changes nothing
    selective = bool(vm or host)
    # Every input (keys, token, SSH settings) is read and checked before anything changes.
    targets = licensing_targets(loaded.fleet, vm or None) if (vm or not selective) else []
    token = resolve_client_token(loaded) if targets and not dry_run else None
    guests = stack_ssh_settings(loaded)[1] if targets else {}
    missing = [name for name in targets if name not in guests]
    if missing:
        raise SpecError(
            [SpecIssue(f"vms[{name}].ssh", "no SSH settings: cannot reach the guest to license it") for name in missing]
        )
    vsphere_rows: list[dict] = []
    if host or not selective:
        vsphere_rows = _vsphere_rows(loaded, host or None, include_vcenter=not selective, dry_run=dry_run)
    guest_rows: list[dict] = []
    with contextlib.ExitStack() as stack_of_progress:
        update = (lambda *a, **k: None) if json_out else stack_of_progress.enter_context(progress(console, "license"))
        for name in targets:
            if dry_run:
                guest_rows.append(
                    {
                        "vm": name,
                        "changed": False,
                        "status": "",
                        "error": None,
                        "skipped": "dry run: guests not contacted",
                    }
                )
                continue
            assert token is not None
            update(f"{name}: token, gridd.conf, nvidia-gridd restart, waiting for Licensed", log=False)
            try:
                with GuestSshRunner(guests[name]) as runner:
                    result = apply_licensing(runner, token, loaded.fleet.licensing.feature_type, timeout=timeout)
                guest_rows.append({**result.to_json(), "error": None})
                update(f"{name}: {result.to_json()['status'] or 'done'}")
            except GpufleetError as exc:
                guest_rows.append({"vm": name, "changed": False, "status": "", "error": str(exc)})
                update(f"{name}: failed")
    not_needed = [] if selective else _not_needed(loaded.fleet)
    if json_out:
        print_json(
            {
                "stack": str(stack),
                "dryRun": dry_run,
                "vsphere": vsphere_rows,
                "guests": guest_rows,
                "notNeeded": not_needed,
            }
        )
    else:
        _print_license_tables(stack, vsphere_rows, guest_rows + not_needed, dry_run)
    if any(row["error"] for row in vsphere_rows + guest_rows):
        if not json_out:
            err_console.print("[red]licensing failed on at least one target[/]")
        raise typer.Exit(ExitCode.ERROR)
    if dry_run and any(row["changed"] for row in vsphere_rows):
        raise typer.Exit(ExitCode.NO)


def register(app: typer.Typer) -> None:
    """Add ``gpufleet verify`` and ``gpufleet license apply``."""
    app.command("verify")(verify)
    lic = typer.Typer(help="vSphere licence keys and NVIDIA vGPU guest licensing.", no_args_is_help=True)
    lic.command("apply")(license_apply)
    app.add_typer(lic, name="license")
