"""Run the packaged checks in this process (pytest, with the gpufleet plugin) and collect one result per check
item: what ``gpufleet verify`` prints and what its exit code is decided from."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gpufleet.spec.json_keys import jsonable

PACKAGE = "gpufleet.checks"
PLUGIN = "gpufleet.checks.plugin"


def _plugin_installed() -> bool:
    """Is the pytest11 entry point installed (pip install gpufleet)? If not (a bare checkout on PYTHONPATH, as on
    the device machine), the plugin is loaded with ``-p``."""
    from importlib.metadata import entry_points

    return any(ep.value == PLUGIN for ep in entry_points(group="pytest11"))


@dataclass(frozen=True)
class CheckResult:
    node: str  # the node (or node-GPU / node-NIC) id of the item
    check: str  # the check's name, e.g. test_vgpu_licence_is_licensed
    outcome: str  # passed | failed | skipped | error
    message: str  # failure text (with command and output), skip reason, or ""


@dataclass
class CheckRun:
    exit_status: int  # pytest's
    results: list[CheckResult] = field(default_factory=list)
    junit: str | None = None
    usage_error: str | None = None

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": {o: self.count(o) for o in ("passed", "failed", "skipped", "error")},
            "checks": [jsonable(r) for r in self.results],
            "junit": self.junit,
        }


def node_of(item_node: str, names: Sequence[str]) -> str:
    """The host or VM a check item belongs to: its id is the node's name, or the name and a part
    (``esxi-01.lab-0000:3b:00.0``, ``vm-rdma-01-0-pvrdma``); the longest matching name wins."""
    matches = [n for n in names if item_node == n or item_node.startswith(n + "-")]
    return max(matches, key=len) if matches else item_node


def _message(excinfo: pytest.ExceptionInfo[BaseException] | None) -> str:
    if excinfo is None:
        return ""
    value = excinfo.value
    if isinstance(value, pytest.skip.Exception):
        return str(value.msg)
    text = str(value)
    if isinstance(value, AssertionError):
        # pytest's assertion rewriting appends "assert <expression>" after the message: keep the message.
        text = text.split("\nassert ", 1)[0]
    return text or excinfo.exconly()


def _item_node(item: pytest.Item) -> str:
    callspec = getattr(item, "callspec", None)
    return callspec.id if callspec is not None else ""


OnResult = Callable[[CheckResult, int, list[str]], None]
"""``on_result(result, done, planned)``: a check ended; ``done`` checks so far of ``len(planned)``, ``planned``
the node id of every check to run."""


class _Collector:
    """pytest plugin object: one CheckResult per item (the first non-passing phase wins)."""

    def __init__(self, on_result: OnResult | None = None) -> None:
        self.results: dict[str, CheckResult] = {}
        self.order: list[str] = []
        self.on_result = on_result
        self.planned: list[str] = []  # the node id of every collected item, in run order
        self.done = 0

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.planned = [_item_node(item) for item in session.items]

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        """Every phase of the item is over: its result is final (for progress)."""
        self.done += 1
        result = self.results.get(nodeid)
        if self.on_result is not None and result is not None:
            self.on_result(result, self.done, self.planned)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
        outcome = yield
        report = outcome.get_result()
        node = _item_node(item)
        check = getattr(item, "originalname", item.name)
        if item.nodeid not in self.order:
            self.order.append(item.nodeid)
        if report.when == "call" or report.outcome != "passed":
            if report.skipped:
                state = "skipped"
                if call.excinfo is None and isinstance(report.longrepr, tuple):
                    message = str(report.longrepr[2]).removeprefix("Skipped: ")
                else:
                    message = _message(call.excinfo)
            elif report.failed:
                state = "failed" if report.when == "call" else "error"
                message = _message(call.excinfo)
            else:
                state, message = "passed", ""
            previous = self.results.get(item.nodeid)
            if previous is None or previous.outcome == "passed":
                self.results[item.nodeid] = CheckResult(node, check, state, message)


def run_checks(
    stack: str | Path | None,
    *,
    junit: str | Path | None = None,
    nodes: list[str] | None = None,
    hosts: str | None = None,
    extra_args: list[str] | None = None,
    on_result: OnResult | None = None,
) -> CheckRun:
    """Run every packaged check for ``stack`` (or testinfra ``hosts``) and return the results. pytest's own
    terminal output is discarded; the junit XML file is written when asked for. ``on_result`` is called as
    each check ends (progress); it runs while sys.stdout is redirected."""
    # --noconftest: the checks need no conftest, and a project's own conftest.py (picked up from the current
    # directory) must not change them (a test suite's conftest may repoint GPUFLEET_LAB_DIR, for instance).
    args = [
        "--pyargs",
        PACKAGE,
        "--noconftest",
        "-p",
        "no:cacheprovider",
        "-q",
        "-o",
        "addopts=",
        "-o",
        "python_files=test_*.py",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    ]
    if not _plugin_installed():
        args += ["-p", PLUGIN]
    if stack is not None:
        args += ["--stack", str(stack)]
    for name in nodes or []:
        args += ["--gpufleet-node", name]
    if hosts:
        args += ["--hosts", hosts]
    if junit is not None:
        args += [f"--junitxml={junit}", "-o", "junit_family=xunit2", "-o", "junit_suite_name=gpufleet-verify"]
    args += extra_args or []
    collector = _Collector(on_result)
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        status = pytest.main(args, plugins=[collector])
    run = CheckRun(
        int(status),
        [collector.results[k] for k in collector.order if k in collector.results],
        str(junit) if junit else None,
    )
    if status in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.INTERRUPTED):
        lines = [line for line in sink.getvalue().splitlines() if line.strip()]
        run.usage_error = "\n".join(lines[-15:]) or f"pytest exited {int(status)}"
    return run
