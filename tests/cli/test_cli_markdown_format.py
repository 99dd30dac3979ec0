"""``--format markdown`` (a PR comment: a summary table, then ``<details>`` blocks) for validate, plan and promote,
``--format json`` = ``--json``, and the escaping of every value that comes from a stack."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from gpufleet.cli.main import app
from gpufleet.cli.markdown import cell, details, table

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "stacks" / "Pulumi.lab.yaml"
HOSTILE = "vm|<b>x</b>_*"


def cli(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_a_cell_cannot_break_the_table_or_carry_html() -> None:
    assert cell("a|b") == "a\\|b"
    assert cell("<script>alert(1)</script>") == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert cell("two\nlines") == "two<br>lines"
    assert cell("`x` *y* _z_ [l](u) \\") == "\\`x\\` \\*y\\* \\_z\\_ \\[l\\](u) \\\\"
    assert cell(None) == "–" and cell(["a", "b"]) == "a, b"
    assert table(("h|1",), [("v",)]).splitlines() == ["| h\\|1 |", "|---|", "| v |"]
    assert details("<x>", "body") == "<details><summary>&lt;x&gt;</summary>\n\nbody\n\n</details>"


def test_validate_markdown_of_an_invalid_stack(tmp_path: Path) -> None:
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text(LAB.read_text().replace("host: esxi-03.lab", "host: esxi-99.lab").replace("vm-ts-01", HOSTILE))
    done = cli("validate", bad, "--format", "markdown")
    assert done.exit_code == 1, done.output
    lines = done.output.splitlines()
    assert lines[0] == f"### gpufleet validate {cell(str(bad))}"
    assert "| stack | result | hosts | GPUs | templates | VMs |" in lines
    assert "<details><summary>problems (" in done.output and "</details>" in done.output
    assert "vm\\|&lt;b&gt;x&lt;/b&gt;\\_\\*" in done.output and "<b>x</b>" not in done.output


def test_validate_format_json_is_json_and_two_formats_are_a_usage_error() -> None:
    as_json = cli("validate", LAB, "--format", "json")
    assert as_json.exit_code == 0 and json.loads(as_json.output)["valid"] is True
    both = cli("validate", LAB, "--json", "--format", "markdown")
    assert both.exit_code == 1 and json.loads(both.output.split("\nUsage")[0])["kind"] == "usage"
    unknown = cli("validate", LAB, "--format", "html")
    assert unknown.exit_code == 1


def test_plan_markdown_has_a_summary_and_a_details_block_per_host() -> None:
    done = cli("plan", LAB, "--format", "markdown")
    assert done.exit_code == 0, done.output
    assert (
        "| stack | feasible | VMs placed | GPUs used | lower bound | mean density | cannot be placed |" in done.output
    )
    assert done.output.count("<details><summary>esxi-0") == 4
    assert "| GPU | model | mode | assigned | free | density |" in done.output
    assert "vm-mig-01: grid\\_a100d-3-40c 3g.40gb" in done.output


def test_promote_markdown_shows_the_changes_and_why_it_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "Pulumi.dev.yaml"
    source.write_text(LAB.read_text().replace("featureType: 1", "featureType: 4"))
    target = tmp_path / "Pulumi.staging.yaml"
    target.write_text(LAB.read_text())
    done = cli("promote", source, target, "--proof", tmp_path / "none", "--format", "markdown")
    assert done.exit_code == 2, done.output
    assert "| from | to | status | changes | FROM | TO after | content hash |" in done.output
    assert "| refused | 1 | not proven (recorded) | valid |" in done.output
    assert "<details><summary>changes (1)</summary>" in done.output
    assert "| licensing | licensing.featureType | – | 1 | 4 |" in done.output
    assert "<details><summary>why FROM is not proven</summary>" in done.output
