"""Output conventions of every verb: ``--json`` prints one JSON document on stdout; people get rich output on
stderr-free stdout; errors become a message on stderr and an exit code (0 ok, 1 error, 2 "no")."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from enum import IntEnum
from functools import wraps
from typing import Any, TypeVar

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

from gpufleet.errors import GpufleetError
from gpufleet.markup import esc

__all__ = ["ExitCode", "GpufleetGroup", "console", "err_console", "esc", "handle_errors", "print_json"]

# emoji off: a name such as `:fire:` is printed as written; markup stays on for our own styles, values go through esc
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    NO = 2  # does not fit, infeasible, drift found, changes pending (dry run)


def print_json(document: Any) -> None:
    """Exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(func: F) -> F:
    """Translate gpufleet errors into a message and their exit code (no traceback for expected errors)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except GpufleetError as exc:
            err_console.print(f"[bold red]error:[/] {esc(exc)}", highlight=False)
            raise typer.Exit(exc.exit_code) from exc

    return wrapper  # type: ignore[return-value]


# click's UsageError, as typer raises it: typer 0.29 vendors click (typer._click), older typer uses click itself.
USAGE_ERRORS: tuple[type[Exception], ...] = tuple(
    {click.UsageError, *(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")}
)


class GpufleetGroup(TyperGroup):
    """The ``gpufleet`` command group: a usage error (unknown option or command, missing argument, bad value) exits
    1, not click's 2, which gpufleet keeps for "no" (drift, does not fit, changes pending): a typo in a CI job must
    not read as drift. With ``--json`` on the command line, stdout also gets one JSON error document. Every verb
    goes through here; ``gpufleet pulumi`` takes its arguments unparsed, so pulumi's own usage errors and exit codes
    are pulumi's."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        self._argv = list(args)  # what the verb was given, for --json
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except USAGE_ERRORS as exc:
            raise _usage_error(exc, self._argv)  # noqa: B904 - the same exception, re-raised with its exit code

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except USAGE_ERRORS as exc:
            raise _usage_error(exc, getattr(self, "_argv", []))  # noqa: B904 - the same exception


def _usage_error(exc: Any, argv: list[str]) -> Any:
    """The same usage error (typer prints it as usual), with exit code 1 and, under ``--json``, one JSON document
    on stdout naming it."""
    if not getattr(exc, "_gpufleet_reported", False):
        exc.exit_code = ExitCode.ERROR
        if "--json" in argv:
            command = exc.ctx.command_path if exc.ctx is not None else "gpufleet"
            print_json({"error": exc.format_message(), "kind": "usage", "command": command})
        exc._gpufleet_reported = True  # type: ignore[attr-defined]
    return exc
