"""Values from outside (names, host output, error messages) are printed through rich as written: `[/]` (which
rich would refuse with MarkupError) and `[bold]` (which it would swallow as a style) reach the terminal literally,
in every table and line the verbs print (issue 12, item 4)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.console import Console

from gpufleet.cli import output
from gpufleet.cli.markup import esc
from gpufleet.errors import GpufleetError

HOSTILE = ["[/]", "[bold]loud", "[link=file:///x]y[/link]", "trailing\\"]


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """The CLI's consoles, recording into one buffer."""
    buffer = io.StringIO()
    recorder = Console(file=buffer, width=400, emoji=False, color_system=None)
    for module in ("gpufleet.cli.output", "gpufleet.cli.vms_cmd", "gpufleet.cli.verify_cmd", "gpufleet.cli.audit_cmd"):
        monkeypatch.setattr(f"{module}.console", recorder, raising=False)
        monkeypatch.setattr(f"{module}.err_console", recorder, raising=False)
    return buffer


@pytest.mark.parametrize("text", HOSTILE)
def test_esc_prints_any_text_as_written(text: str) -> None:
    buffer = io.StringIO()
    Console(file=buffer, color_system=None).print(f"[red]x[/] {esc(text)} [green]y[/] [red]{esc(text)}[/]")
    assert buffer.getvalue().strip().startswith(f"x {text}") and buffer.getvalue().strip().endswith(f"y {text}")


@pytest.mark.parametrize("text", HOSTILE)
def test_an_error_message_is_printed_as_written(screen: io.StringIO, text: str) -> None:
    @output.handle_errors
    def verb() -> None:
        raise GpufleetError(f"host {text} refused")

    with pytest.raises(typer.Exit):
        verb()
    assert f"host {text} refused" in screen.getvalue()


@pytest.mark.parametrize("text", HOSTILE)
def test_vms_apply_tables(screen: io.StringIO, text: str) -> None:
    from gpufleet.cli.vms_cmd import _print_human
    from gpufleet.vms.apply import ApplyReport, VmReport

    report = ApplyReport(
        vms=[VmReport(name=f"vm{text}", error=f"failed: {text}"), VmReport(name="b", changed=True, changes=[text])],
        setting_errors=[f"denied {text}"],
    )
    _print_human(report)
    shown = screen.getvalue()
    assert f"vm{text}" in shown and f"failed: {text}" in shown and f"denied {text}" in shown


@pytest.mark.parametrize("text", HOSTILE)
def test_hosts_prepare_summary_table(text: str) -> None:
    from gpufleet.cli.hosts_prepare import summary_table
    from gpufleet.hosts.model import HostReport
    from gpufleet.hosts.rollout import RolloutReport

    host = HostReport(name=f"esxi{text}", cluster="c", error={"step": "driver", "message": f"esxcli said {text}"})
    buffer = io.StringIO()
    Console(file=buffer, width=400, color_system=None).print(
        summary_table(RolloutReport(hosts=[host], dry_run=False, max_unavailable=1, failure_threshold=1))
    )
    assert f"esxi{text}" in buffer.getvalue() and f"esxcli said {text}" in buffer.getvalue()


@pytest.mark.parametrize("text", HOSTILE)
def test_license_apply_tables(screen: io.StringIO, text: str) -> None:
    from gpufleet.cli.verify_cmd import _print_license_tables

    vsphere = [
        {"target": f"esxi{text}", "error": f"refused {text}", "changed": False, "desired": "*****", "before": None}
    ]
    guests: list[dict[str, Any]] = [{"vm": f"vm{text}", "error": f"gridd: {text}", "changed": False}]
    _print_license_tables(Path("s.yaml"), vsphere, guests, dry_run=False)
    shown = screen.getvalue()
    assert all(f"{w}{text}" in shown for w in ("esxi", "refused ", "vm", "gridd: ")), shown


def test_audit_lines_and_table(screen: io.StringIO) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "audit"))
    from audit_fixtures import in_sync_ssh, in_sync_vcenter, lab_desired, result_for

    from gpufleet.audit.state import Unreachable
    from gpufleet.cli.audit_cmd import _print_human

    desired = lab_desired()
    ssh = in_sync_ssh(desired)
    del ssh["esxi-04.lab"]
    result = result_for(desired, in_sync_vcenter(desired), ssh, [Unreachable("esxi-04.lab", "ssh: [/] [bold]x")])
    _print_human(result, [], Path("stacks/Pulumi.lab.yaml"))
    assert "ssh: [/] [bold]x" in screen.getvalue()
