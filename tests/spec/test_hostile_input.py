"""No traceback, ever: hostile stack files and arguments end in exit 1 and a message naming the file (and line and
column) or the spec path, never a traceback or a hang (issue 12, item 4)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from spec_factory import base
from typer.testing import CliRunner

from gpufleet.cli.main import app
from gpufleet.spec.stack import MAX_STACK_BYTES

ROOT = Path(__file__).resolve().parents[2]
LAB_TEXT = (ROOT / "stacks" / "Pulumi.lab.yaml").read_text()
runner = CliRunner()


def run(*args: str) -> tuple[int, str, Any]:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    output = result.stdout + (result.stderr or "")
    assert "Traceback" not in output, output
    doc = json.loads(result.stdout) if "--json" in args else None
    return result.exit_code, output, doc


def only_issue(*args: str) -> dict[str, Any]:
    code, _, doc = run("validate", *args, "--json")
    assert code == 1 and doc["valid"] is False, doc
    [issue] = doc["issues"]
    return issue


def write(tmp_path: Path, data: bytes | str, name: str = "Pulumi.t.yaml") -> str:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


def stack_of(tmp_path: Path, fleet: dict[str, Any]) -> str:
    path = tmp_path / "Pulumi.t.yaml"
    YAML(typ="safe").dump({"config": {"gpufleet:fleet": fleet, "gpufleet:vcenter": {"lab": True}}}, path)
    return str(path)


# -- the file itself -----------------------------------------------------------------------------------------


def test_non_utf8_bytes_name_the_line_and_column(tmp_path: Path) -> None:
    stack = write(tmp_path, LAB_TEXT.replace("DC-Lab", "DC-\xff", 1).encode("latin-1"))
    line = next(i for i, text in enumerate(LAB_TEXT.splitlines(), 1) if "DC-Lab" in text)
    issue = only_issue(stack)
    assert issue["path"].startswith(f"{stack}:{line}:"), issue
    assert "not UTF-8" in issue["message"] and "0xff" in issue["message"]


def test_an_integer_of_thousands_of_digits_is_refused_with_its_line(tmp_path: Path) -> None:
    text = LAB_TEXT.replace("cpus: 8", "cpus: " + "9" * 5000, 1)
    assert text != LAB_TEXT
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "9" * 5000 in t)
    issue = only_issue(write(tmp_path, text))
    assert issue["path"].startswith(f"{tmp_path / 'Pulumi.t.yaml'}:{line}:") and "5000 digits" in issue["message"]


def test_a_long_integer_under_the_limit_is_echoed_bounded(tmp_path: Path) -> None:
    fleet = base()
    fleet["templates"][0]["cpus"] = int("9" * 4000)
    issue = only_issue(stack_of(tmp_path, fleet))
    assert issue["path"] == "templates[tpl].cpus"
    assert issue["value"].startswith("a number of about 400") and "9" * 100 not in json.dumps(issue)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda tmp: str(tmp), "is a directory"),
        (lambda tmp: "", "an empty path names the current directory"),
        (lambda tmp: _loop(tmp), "Too many levels of symbolic links"),
        (lambda tmp: "/dev/zero", f"larger than {MAX_STACK_BYTES // 2**20} MiB"),
        (lambda tmp: write(tmp, b""), "is empty"),
        (lambda tmp: write(tmp, b"# only a comment\n"), "is empty"),
        (lambda tmp: write(tmp, b"x" * (MAX_STACK_BYTES + 1)), f"larger than {MAX_STACK_BYTES // 2**20} MiB"),
        (lambda tmp: str(tmp / "missing.yaml"), "not found"),
    ],
    ids=["directory", "empty path", "symlink loop", "/dev/zero", "empty file", "comments only", "too big", "missing"],
)
def test_what_is_not_a_stack_file_is_refused_by_name(tmp_path: Path, make: Any, words: str) -> None:
    target = make(tmp_path)
    issue = only_issue(target)
    assert issue["path"] == (target or "."), issue
    assert words in issue["message"], issue


def _loop(tmp_path: Path) -> str:
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop)
    return str(loop)


def test_a_fifo_without_a_writer_is_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "stack.fifo"
    os.mkfifo(fifo)
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(issue=only_issue(str(fifo))), daemon=True)
    worker.start()
    worker.join(120)  # a generous bound against a hang (a blocking open never returns); not a timing assertion
    assert not worker.is_alive(), "validate blocked on a FIFO without a writer"
    assert "is empty" in result["issue"]["message"]


def test_a_fifo_with_a_writer_is_read(tmp_path: Path) -> None:
    fifo = tmp_path / "stack.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text(LAB_TEXT), daemon=True)
    writer.start()
    code, out, _ = run("validate", str(fifo))
    writer.join(60)
    assert code == 0 and "valid" in out


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("config:\n  gpufleet:fleet:\n    version: v1\n   datacenter: x\n", 4, "not valid YAML"),
        ("config:\n  a: 1\n  a: 2\n", 3, 'duplicate key "a"'),
        ("config:\n  a: [1, 2\n", 3, "not valid YAML"),
        ("config:\n  a: !!python/object:os.system x\n", 2, "could not determine a constructor"),
        ("config:\n  a: *nowhere\n", 2, "undefined alias"),
        ("config:\n  a: 'x\x00y'\n", 2, "control characters are not allowed"),
    ],
    ids=["indentation", "duplicate key", "unclosed flow", "python tag", "undefined alias", "NUL"],
)
def test_yaml_errors_name_the_file_line_and_column(tmp_path: Path, text: str, line: int, words: str) -> None:
    stack = write(tmp_path, text)
    issue = only_issue(stack)
    assert issue["path"].startswith(f"{stack}:{line}:"), issue
    assert words in issue["message"], issue
    code, out, _ = run("validate", stack)
    assert code == 1 and f"Pulumi.t.yaml:{line}:" in out.replace("\n", "")


def test_deep_nesting_is_refused_not_a_recursion_traceback(tmp_path: Path) -> None:
    issue = only_issue(write(tmp_path, "config: " + "[" * 5000 + "]" * 5000 + "\n"))
    assert issue["path"] in ("config", str(tmp_path / "Pulumi.t.yaml")), issue


# -- values printed through rich -----------------------------------------------------------------------------


@pytest.mark.parametrize("markup", ["[/]", "[bold red]x", "[link=file:///etc/passwd]x[/link]", "x\\"])
def test_rich_markup_in_values_is_printed_as_written(tmp_path: Path, markup: str) -> None:
    fleet = base()
    fleet["vms"][0]["template"] = markup
    code, out, _ = run("validate", stack_of(tmp_path, fleet))
    assert code == 1 and markup in out, out
    code, out, _ = run("plan", stack_of(tmp_path, fleet))
    assert code == 1 and "vms[vm-mig].template" in out


def test_rich_markup_in_mig_fit_arguments_is_printed_as_written() -> None:
    code, out, _ = run("mig", "fit", "--gpu", "[/]", "1g.10gb")
    assert code == 1 and "[/]" in out
    code, out, _ = run("mig", "fit", "--gpu", "A100-80GB", "[bold]x[/]")
    assert code == 1 and "[bold]x[/]" in out


# -- control characters --------------------------------------------------------------------------------------


@pytest.mark.parametrize("char", ["\x07", "\x1b", "\x00", "\x7f", "\x85", "\u202e"])
def test_control_characters_in_names_are_refused_naming_the_field(tmp_path: Path, char: str) -> None:
    fleet = base()
    fleet["vms"][1]["name"] = f"vm{char}evil"
    fleet["hosts"][0]["name"] = f"esx{char}i"
    code, _, doc = run("validate", stack_of(tmp_path, fleet), "--json")
    assert code == 1
    by_path = {i["indexPath"]: i for i in doc["issues"]}
    for where in ("vms[1].name", "hosts[0].name"):
        assert f"control character (U+{ord(char):04X})" in by_path[where]["message"], doc["issues"]
    assert char not in json.dumps(doc, ensure_ascii=False).replace(json.dumps(char)[1:-1], "")


@pytest.mark.parametrize(("key", "path"), [("\x1b[31mred", "'\\x1b[31mred'"), ("a.b", "'a.b'"), ("k" * 5000, "'kkkk")])
def test_an_unknown_key_is_named_quoted_and_bounded(tmp_path: Path, key: str, path: str) -> None:
    fleet = base()
    fleet["vms"][0][key] = 1
    issue = only_issue(stack_of(tmp_path, fleet))
    assert issue["path"].startswith(f"vms[vm-mig].{path}") and len(issue["path"]) < 100, issue
    assert "\x1b" not in issue["path"] and "unknown key" in issue["message"]


def test_control_characters_in_the_guest_block_are_refused_too(tmp_path: Path) -> None:
    fleet = base()
    fleet["templates"][0]["guest"] = {
        "driver": {"source": "run", "path": "/depot/NVIDIA-Linux-x86_64-550.90.07-grid.run\x1b[2J"},
        "kernelParams": ["pci=realloc\x07"],
    }
    code, _, doc = run("validate", stack_of(tmp_path, fleet), "--json")
    assert code == 1
    by_path = {i["indexPath"]: i["message"] for i in doc["issues"]}
    assert "control character (U+001B)" in by_path["templates[0].guest.driver.path"], by_path
    assert "control character (U+0007)" in by_path["templates[0].guest.kernelParams"], by_path
    assert "\x1b" not in json.dumps(doc, ensure_ascii=False)
