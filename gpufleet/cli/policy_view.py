"""``gpufleet validate STACK --policy [--policy-config FILE]``: the policy pack's rules, offline (``gpufleet.policy``).

The config is Pulumi's policy-config JSON, the same file ``pulumi preview --policy-pack policy --policy-pack-config
FILE`` reads; without ``--policy-config``, ``policy/config/<stack>.json`` when the checkout has one (what
``gpufleet pulumi preview --policy-pack policy`` passes too), else every rule's defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from gpufleet.cli.output import console, esc
from gpufleet.policy import PolicyFinding, evaluate, load_settings, subject_of_stack
from gpufleet.spec.stack import Stack

REPO_ROOT = Path(__file__).resolve().parents[2]
STAGE_CONFIG_DIR = REPO_ROOT / "policy" / "config"


def stage_config(stack: str) -> Path | None:
    """``policy/config/<stack>.json`` when it exists (the stage's own guardrail settings)."""
    found = STAGE_CONFIG_DIR / f"{stack}.json"
    return found if found.is_file() else None


def policy_findings(loaded: Stack, config: Path | None) -> tuple[Path | None, list[PolicyFinding]]:
    """The config used (given, else the stage's, else None: defaults) and every finding on the stack."""
    used = config or stage_config(loaded.name)
    return used, evaluate(subject_of_stack(loaded), load_settings(used))


def findings_json(used: Path | None, findings: list[PolicyFinding]) -> dict[str, Any]:
    return {
        "config": str(used) if used else None,
        "passed": not any(f.enforcement == "mandatory" for f in findings),
        "violations": [
            {
                "rule": f.violation.rule,
                "enforcementLevel": f.enforcement,
                "resource": f.violation.resource,
                "field": f.violation.field,
                "message": f.violation.message,
            }
            for f in findings
        ],
    }


def print_findings(stack: Path, used: Path | None, findings: list[PolicyFinding]) -> None:
    source = f"config {used}" if used else "default settings"
    if not findings:
        console.print(f"[green]policy passed[/]: {esc(stack)} ({esc(source)})")
        return
    table = Table(title=esc(f"{stack}: {len(findings)} policy violation(s) ({source})"), title_justify="left")
    for column in ("rule", "level", "resource", "field", "problem"):
        table.add_column(column)
    for f in findings:
        level = "[red]mandatory[/]" if f.enforcement == "mandatory" else "[yellow]advisory[/]"
        v = f.violation
        table.add_row(esc(v.rule), level, esc(v.resource), esc(v.field), esc(v.message))
    console.print(table)
