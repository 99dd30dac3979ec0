"""No test asserts a wall-clock upper bound: on a loaded machine any such bound fails (a slow-reboot test once saw
58 s < 10). Tests assert on the lab's event log, counters and ordering instead; lower bounds ("waited at least the
fault's 3 s") stay allowed. This reads every test module's syntax tree for an elapsed time (``clock() - start``, or
a name bound to one) on the small side of ``<`` / ``<=`` (or the big side of ``>`` / ``>=``)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
CLOCKS = {"monotonic", "perf_counter", "time"}


def _is_clock_call(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in CLOCKS
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "time"
    )


def _is_elapsed(node: ast.AST, elapsed_names: set[str]) -> bool:
    if isinstance(node, ast.Name):
        return node.id in elapsed_names
    return isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub) and _is_clock_call(node.left)


def clock_upper_bounds(source: str) -> list[int]:
    """Line numbers of asserts that bound an elapsed wall-clock time from above."""
    tree = ast.parse(source)
    elapsed_names = {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and _is_elapsed(node.value, set())
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assert):
            continue
        for compare in (n for n in ast.walk(node.test) if isinstance(n, ast.Compare)):
            operands = [compare.left, *compare.comparators]
            for op, left, right in zip(compare.ops, operands[:-1], operands[1:], strict=True):
                if not isinstance(op, ast.Lt | ast.LtE | ast.Gt | ast.GtE):
                    continue
                smaller = left if isinstance(op, ast.Lt | ast.LtE) else right
                if _is_elapsed(smaller, elapsed_names):
                    lines.append(node.lineno)
    return lines


def test_the_detector_finds_an_upper_bound_and_allows_a_lower_one() -> None:
    bad = "import time\nstarted = time.monotonic()\naway = time.monotonic() - started\nassert 2.9 <= away < 10\n"
    assert clock_upper_bounds(bad) == [4]
    assert clock_upper_bounds("import time\nt = time.perf_counter()\nassert time.perf_counter() - t < 1\n") == [3]
    assert clock_upper_bounds("import time\nt = time.monotonic()\nassert time.monotonic() - t >= 1\n") == []
    assert clock_upper_bounds("assert len([1]) < 5\n") == []


def test_no_test_bounds_wall_clock_time_from_above() -> None:
    found = {
        f"{path.relative_to(TESTS)}:{line}"
        for path in sorted(TESTS.rglob("*.py"))
        for line in clock_upper_bounds(path.read_text())
    }
    assert found == set(), "wall-clock upper bounds (assert on lab events / counters / ordering instead): " + ", ".join(
        sorted(found)
    )
