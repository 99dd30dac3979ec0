"""Output conventions of every verb: ``--json`` prints one JSON document on stdout; people get rich output on
stderr-free stdout; errors become a message on stderr and an exit code (0 ok, 1 error, 2 "no")."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from enum import IntEnum
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from gpufleet.errors import GpufleetError

console = Console()
err_console = Console(stderr=True)


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
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(exc.exit_code) from exc

    return wrapper  # type: ignore[return-value]
