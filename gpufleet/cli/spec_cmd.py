"""Offline verbs on the fleet spec: ``validate STACK``, ``schema``, ``mig fit --gpu MODEL PROFILE...``, ``plan STACK``.

Exit codes: 0 ok (valid / fits / every VM placed), 1 error (bad input: invalid stack, unknown model or profile),
2 "no" (the MIG instances do not fit, or some VMs cannot be placed). ``--json`` prints exactly one JSON document:
- validate: ``{"stack", "valid", "issues": [{"path", "message", "valid"}], "summary"}``
- mig fit:  ``{"gpu", "fits": true, "placements": [{"profile", "instance", "start", "size"}], "freeSlices"}`` or
  ``{"gpu", "fits": false, "conflicts": [...], "reason"}``; bad input: ``{"error", "valid"}``
- plan:     ``{"stack", "feasible", "strategy", "summary", "hosts": [{"name", "gpus": [...]}], "vms", "unplaced"}``
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from gpufleet.catalog import CatalogError
from gpufleet.cli import markdown
from gpufleet.cli.markdown import FormatOpt, OutputFormat, chosen_format
from gpufleet.cli.output import ExitCode, console, err_console, esc, handle_errors, print_json
from gpufleet.errors import SpecError, SpecIssue
from gpufleet.placement.mig import MigFit, fit
from gpufleet.placement.migrate import Migration, MigrationTarget, migrate_pool
from gpufleet.placement.planner import Plan, plan
from gpufleet.placement.pool import PoolPlan, plan_pools
from gpufleet.spec.schema import stack_schema
from gpufleet.spec.stack import FLEET_KEY, Stack, load_stack
from gpufleet.spec.validate import stack_issues

StackArg = Annotated[Path, typer.Argument(help="Stack config file, e.g. stacks/Pulumi.lab.yaml")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout")]
PolicyOpt = Annotated[
    bool, typer.Option("--policy", help="Also run the policy pack's rules (exit 2 on a mandatory one)")
]
PolicyConfigOpt = Annotated[
    Path | None,
    typer.Option("--policy-config", help="Policy config JSON (Pulumi's format); implies --policy"),
]


def issues_json(issues: list[SpecIssue]) -> list[dict[str, Any]]:
    return [
        {
            "path": i.path,
            "indexPath": i.index_path or i.path,
            "message": i.message,
            "value": i.value,
            "valid": list(i.valid),
            **({"rule": i.rule} if i.rule else {}),
        }
        for i in issues
    ]


def _print_issues(title: str, issues: list[SpecIssue]) -> None:
    table = Table(title=esc(title), title_justify="left")
    table.add_column("path", style="cyan", no_wrap=True)
    table.add_column("problem")
    table.add_column("valid values", style="green")
    for issue in issues:
        table.add_row(esc(issue.path), esc(issue.message + issue.got), esc(", ".join(issue.valid)))
    console.print(table)


def _pinned_capacity_issues(loaded: Stack) -> list[SpecIssue]:
    """VMs pinned to a host whose GPUs cannot hold them (e.g. two 4g.40gb on one A100): impossible whatever the
    plan, so an invalid stack. Unpinned VMs that find no room are a capacity answer of `plan` (exit 2)."""
    pinned = {vm.name for vm in loaded.fleet.vms if vm.host}
    found = [
        SpecIssue(u.path, f"does not fit on its pinned host: {u.reason}")
        for u in plan(loaded.fleet).unplaced
        if u.vm in pinned
    ]
    # A GPU pool's clients reserve their shares: shares that cannot all be held at once are an invalid pool.
    found += [
        SpecIssue(u.path, f"does not fit the pool: {u.reason}") for p in plan_pools(loaded.fleet) for u in p.unplaced
    ]
    return stack_issues(loaded, found)


def load_and_check(stack: Path, pinned_capacity: bool = False) -> tuple[Stack | None, list[SpecIssue]]:
    """Shape issues (from loading), then hardware issues (validate_fleet), then, when asked, the capacity of
    pinned hosts; never raises SpecError."""
    try:
        loaded = load_stack(stack)
    except SpecError as exc:
        return None, exc.issues
    issues = stack_issues(loaded)
    if not issues and pinned_capacity:
        issues = _pinned_capacity_issues(loaded)
    return loaded, issues


def _summary(loaded: Stack) -> dict[str, int]:
    fleet = loaded.fleet
    return {
        "hosts": len(fleet.hosts),
        "gpus": sum(len(h.gpus) for h in fleet.hosts),
        "templates": len(fleet.templates),
        "vms": len(fleet.vms),
    }


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


@handle_errors
def validate(
    stack: StackArg,
    json_out: JsonOpt = False,
    fmt: FormatOpt = OutputFormat.TEXT,
    policy: PolicyOpt = False,
    policy_config: PolicyConfigOpt = None,
) -> None:
    """Check a stack against the spec and the hardware rules (exit 0 valid, 1 invalid); with --policy, also the
    guardrails of the policy pack (exit 2 when a mandatory rule is violated)."""
    from gpufleet.cli.policy_view import findings_json, policy_findings, print_findings

    out = chosen_format(json_out, fmt)
    loaded, issues = load_and_check(stack, pinned_capacity=True)
    with_policy = (policy or policy_config is not None) and loaded is not None and not issues
    used, findings = policy_findings(loaded, policy_config) if with_policy and loaded is not None else (None, [])
    if out is not OutputFormat.TEXT:
        doc: dict[str, Any] = {"stack": str(stack), "valid": not issues, "issues": issues_json(issues)}
        if loaded is not None:
            doc["summary"] = _summary(loaded)
        if with_policy:
            doc["policy"] = findings_json(used, findings)
        print_json(doc) if out is OutputFormat.JSON else markdown.write(markdown.render_validate(doc))
    elif issues:
        _print_issues(f"{stack}: {len(issues)} problem(s)", issues)
    else:
        assert loaded is not None
        s = _summary(loaded)
        counts = ", ".join(
            _plural(s[k], noun)
            for k, noun in (("hosts", "host"), ("gpus", "GPU"), ("templates", "template"), ("vms", "VM"))
        )
        console.print(f"[green]valid[/]: {esc(stack)} ({counts})")
        if with_policy:
            print_findings(stack, used, findings)
    if issues:
        raise typer.Exit(ExitCode.ERROR)
    if any(f.enforcement == "mandatory" for f in findings):
        raise typer.Exit(ExitCode.NO)


def schema() -> None:
    """Print the JSON Schema of a stack config file (for editors and CI)."""
    print_json(stack_schema())


def _slice_bar(start: int, size: int, total: int) -> str:
    return "".join("■" if start <= s < start + size else "·" for s in range(total))


def _print_fit(result: MigFit) -> None:
    if result.fits:
        table = Table(title=esc(f"MIG placement on {result.gpu}"), title_justify="left")
        for col in ("profile", "instance", "start", "size", "slices"):
            table.add_column(col)
        for p in result.placements:
            table.add_row(
                esc(p.profile),
                esc(p.instance),
                str(p.start),
                str(p.size),
                _slice_bar(p.start, p.size, result.memory_slices),
            )
        console.print(table)
        free = ",".join(map(str, result.free_slices)) or "none"
        console.print(f"[green]fits[/]; free memory slices (by index 0-{result.memory_slices - 1}): {free}")
    else:
        console.print(f"[red]does not fit[/] on {esc(result.gpu)}: {esc(', '.join(result.conflicts))}")
        console.print(esc(result.reason))


def mig_fit(
    profiles: Annotated[list[str], typer.Argument(help="MIG instances (4g.40gb) or MIG-backed vGPU profiles")],
    gpu: Annotated[str, typer.Option("--gpu", help="GPU model, e.g. A100-80GB, H100-80GB, A30")],
    json_out: JsonOpt = False,
) -> None:
    """Do these MIG instances fit on one GPU, and where? (exit 0 fits, 2 does not, 1 bad input)"""
    try:
        result = fit(gpu, profiles)
    except CatalogError as exc:
        if json_out:
            print_json({"gpu": gpu, "error": str(exc), "valid": list(exc.valid)})
        else:
            err_console.print(f"[bold red]error:[/] {esc(exc)}", highlight=False)
        raise typer.Exit(ExitCode.ERROR) from exc
    if json_out:
        print_json(result.to_json())
    else:
        _print_fit(result)
    if not result.fits:
        raise typer.Exit(ExitCode.NO)


def _print_plan(name: str, result: Plan) -> None:
    doc = result.to_json()
    for host in doc["hosts"]:
        table = Table(title=esc(host["name"]), title_justify="left")
        for col in ("GPU", "model", "mode", "assigned", "free", "density"):
            table.add_column(col)
        for gpu in host["gpus"]:
            assigned = "\n".join(markdown.assignment(a) for a in gpu["assignments"]) or "-"
            mode = gpu["mode"] + (" (mixed)" if gpu["mixedSize"] else "")
            table.add_row(
                esc(gpu["pci"]), esc(gpu["model"]), esc(mode), esc(assigned), esc(gpu["free"]), f"{gpu['density']:.0%}"
            )
        console.print(table)
    s = doc["summary"]
    console.print(
        f"{esc(name)}: {s['vmsPlaced']} VM(s) placed on {s['gpusUsed']} of {s['gpusTotal']} GPUs "
        f"(lower bound {s['lowerBound']}, mean density of used GPUs {s['density']:.0%})"
    )
    if result.unplaced:
        table = Table(title="cannot be placed", title_justify="left")
        table.add_column("VM", style="red")
        table.add_column("path", style="cyan")
        table.add_column("why")
        for u in result.unplaced:
            table.add_row(esc(u.vm), esc(u.path), esc(u.reason))
        console.print(table)


def _fleet_yaml(document: dict[str, Any]) -> list[str]:
    text = yaml.safe_dump({FLEET_KEY: document}, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return text.splitlines(keepends=True)


def _migration_diff(stack: Path, loaded: Stack, migration: Migration) -> str:
    """The proposal as a unified diff of the fleet (both sides written the same way, so only changes show)."""
    if migration.document is None:
        return ""
    before = _fleet_yaml(loaded.config[FLEET_KEY])
    after = _fleet_yaml(migration.document)
    return "".join(difflib.unified_diff(before, after, f"{stack} (gpufleet:fleet)", f"{stack} (proposed)"))


def _migrate(stack: Path, loaded: Stack, name: str, target: MigrationTarget, json_out: bool) -> None:
    if loaded.fleet.pool(name) is None:
        names = [p.name for p in loaded.fleet.gpu_pools]
        message = f"--migrate-pool: no GPU pool named {name!r} in {stack}"
        if json_out:
            print_json({"stack": str(stack), "error": message, "valid": names})
        else:
            hint = f" (valid: {', '.join(names)})" if names else " (the stack has no gpuPools)"
            err_console.print(f"[bold red]error:[/] {esc(message + hint)}", highlight=False)
        raise typer.Exit(ExitCode.ERROR)
    migration = migrate_pool(loaded.fleet, loaded.config[FLEET_KEY], name, target)
    diff = _migration_diff(stack, loaded, migration)
    if json_out:
        print_json({"stack": str(stack), **migration.to_json(), "diff": diff})
    else:
        table = Table(title=esc(f"pool {name} -> {target.value}: what its clients would need"), title_justify="left")
        for col in ("client", "share", "board", "profiles", "host", "GPUs", "why not"):
            table.add_column(col)
        for c in migration.clients:
            table.add_row(
                esc(c.vm),
                esc(c.share),
                esc(c.board),
                esc(", ".join(c.profiles) or "-"),
                esc(c.host or "-"),
                esc(", ".join(c.gpus) or "-"),
                esc(c.reason or ""),
            )
        console.print(table)
        for m in migration.gpu_modes:
            console.print(
                f"{esc(m['host'])} GPU {esc(m['pci'])} ({esc(m['model'])}): mode {esc(m['from'])} -> {esc(m['to'])}"
            )
        if migration.removed_vms:
            console.print(f"server VMs no longer needed: {esc(', '.join(migration.removed_vms))}")
        if migration.issues:
            _print_issues(f"the proposal breaks {len(migration.issues)} rule(s)", migration.issues)
        if diff:
            console.print(esc(diff), end="", highlight=False, soft_wrap=True)
    if not migration.feasible:
        raise typer.Exit(ExitCode.NO)


def _print_pools(pools: list[PoolPlan]) -> None:
    for pool in pools:
        doc = pool.to_json()
        table = Table(title=esc(f"GPU pool {pool.pool} (Bitfusion)"), title_justify="left")
        for col in ("server", "GPU", "model", "clients", "allocated", "free"):
            table.add_column(col)
        for gpu in doc["gpus"]:
            clients = "\n".join(f"{c['vm']}: {c['share']}" for c in gpu["clients"]) or "-"
            table.add_row(
                esc(f"{gpu['server']} ({gpu['host']})"),
                esc(gpu["pci"]),
                esc(gpu["model"]),
                esc(clients),
                esc(gpu["allocated"]),
                esc(gpu["free"]),
            )
        console.print(table)
        console.print(
            f"pool {esc(pool.pool)}: {len(pool.placements)} client(s) hold {doc['allocated']} of {doc['gpusTotal']} "
            f"GPUs (occupancy {doc['occupancy']:.0%})"
        )
        if pool.unplaced:
            table = Table(title=esc(f"pool {pool.pool}: shares that do not fit"), title_justify="left")
            table.add_column("client", style="red")
            table.add_column("path", style="cyan")
            table.add_column("why")
            for u in pool.unplaced:
                table.add_row(esc(u.client), esc(u.path), esc(u.reason))
            console.print(table)


@handle_errors
def plan_cmd(
    stack: StackArg,
    json_out: JsonOpt = False,
    fmt: FormatOpt = OutputFormat.TEXT,
    migrate_pool: Annotated[
        str | None,
        typer.Option(
            "--migrate-pool",
            help="The way off Bitfusion: the vGPU / MIG profiles this pool's clients would need, as a stack diff",
        ),
    ] = None,
    target: Annotated[
        MigrationTarget,
        typer.Option("--to", help="with --migrate-pool: time-sliced vGPU or MIG-backed vGPU"),
    ] = MigrationTarget.VGPU,
) -> None:
    """Place every VM's GPUs onto hosts, GPUs and MIG slots, and GPU pools' shares onto their servers' GPUs (exit 0
    all placed, 2 some cannot be, 1 invalid); --migrate-pool NAME: the stack without the pool (exit 2: no fit)."""
    out = chosen_format(json_out, fmt)
    loaded, issues = load_and_check(stack)
    if issues or loaded is None:
        doc = {"stack": str(stack), "feasible": False, "issues": issues_json(issues)}
        if out is OutputFormat.TEXT:
            _print_issues(f"{stack}: {len(issues)} problem(s); fix them before planning", issues)
        else:
            print_json(doc) if out is OutputFormat.JSON else markdown.write(markdown.render_plan(doc))
        raise typer.Exit(ExitCode.ERROR)
    if migrate_pool is not None:
        _migrate(stack, loaded, migrate_pool, target, out is OutputFormat.JSON)
        return
    result = plan(loaded.fleet)
    pools = plan_pools(loaded.fleet)
    if out is not OutputFormat.TEXT:
        doc = {"stack": str(stack), **result.to_json(), "pools": [p.to_json() for p in pools]}
        print_json(doc) if out is OutputFormat.JSON else markdown.write(markdown.render_plan(doc))
    else:
        _print_plan(loaded.name, result)
        _print_pools(pools)
    if not result.feasible or not all(p.feasible for p in pools):
        raise typer.Exit(ExitCode.NO)


def register(app: typer.Typer) -> None:
    """Add ``validate``, ``schema``, ``mig fit`` and ``plan``."""
    app.command("validate")(validate)
    app.command("schema")(schema)
    app.command("plan")(plan_cmd)
    mig = typer.Typer(help="MIG geometry questions, answered offline.", no_args_is_help=True)
    mig.command("fit")(mig_fit)
    app.add_typer(mig, name="mig")
