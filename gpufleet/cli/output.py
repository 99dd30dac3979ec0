"""Output conventions of every verb: ``--json`` prints one JSON document on stdout; people get rich output on
stderr-free stdout; errors become a message on stderr and an exit code (0 ok, 1 error, 2 "no")."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from enum import IntEnum
from functools import wraps
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from types import SimpleNamespace
from typing import IO, Any, TypeVar

import click
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from typer.core import TyperGroup

from gpufleet.cli.markup import esc
from gpufleet.errors import GpufleetError
from gpufleet.spec.json_keys import json_key, jsonable

__all__ = [
    "ExitCode",
    "GpufleetGroup",
    "console",
    "err_console",
    "esc",
    "gpufleet_version",
    "handle_errors",
    "json_key",
    "json_text",
    "make_console",
    "print_json",
    "progress",
]

# Not a terminal (a pipe, a file, CI): rows must stay one per line whatever their length, so a log can be grepped.
PLAIN_WIDTH = 4096


def make_console(*, stderr: bool = False, file: IO[str] | None = None) -> Console:
    """A rich console for people on a terminal; plain text elsewhere: no ANSI codes when the stream is not a
    terminal or NO_COLOR is set (https://no-color.org: no colour, and no bold either), no 80-column wrapping when
    the stream is not a terminal. FORCE_COLOR keeps rich's own choice (a CI log that renders colours)."""
    stream = file or (sys.stderr if stderr else sys.stdout)
    tty = _isatty(stream)
    forced = bool(os.environ.get("FORCE_COLOR"))
    plain = bool(os.environ.get("NO_COLOR")) or not (tty or forced)
    return Console(
        file=file,
        stderr=stderr,
        color_system=None if plain else "auto",
        width=None if tty or forced else PLAIN_WIDTH,
        soft_wrap=not tty,
        emoji=False,
    )


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a file (a test's StringIO)
        return False


console = make_console()
err_console = make_console(stderr=True)


def gpufleet_version() -> str:
    """The installed package's version (its metadata: pyproject.toml), or "unknown" in a bare checkout."""
    try:
        return package_version("gpufleet")
    except PackageNotFoundError:
        return "unknown"


@contextlib.contextmanager
def progress(out: Console, what: str, *, counted: bool = False, ticking: bool = True) -> Iterator[Callable[..., None]]:
    """Progress of a long step of a verb. Yields ``update(message, advance=0, log=True, total=None)``. On a
    terminal: a rich spinner (with a bar and N/M when ``counted``) that is cleared at the end; elsewhere: one line
    per update with ``log`` (a step or a host done), so a log shows what is being done without a line per tick.
    The console is bound to the stream in use now (run_checks redirects sys.stdout while the checks run).
    ``ticking=False``: redraw only on updates, from the caller's thread (pytest captures file descriptor 1 while a
    check runs, so a redraw from rich's timer thread then would be lost and garble the next one)."""
    bound = make_console(file=out.file)
    if not bound.is_terminal:

        def say(message: str, advance: int = 0, log: bool = True, total: int | None = None) -> None:
            if log:
                bound.print(f"{what}: {message}", markup=False, highlight=False)

        yield say
        return
    columns: list[Any] = [SpinnerColumn(), TextColumn("[bold]{task.fields[what]}[/]")]
    if counted:
        columns += [BarColumn(), MofNCompleteColumn()]
    columns += [TextColumn("{task.description}"), TimeElapsedColumn()]
    with Progress(*columns, console=bound, transient=True, auto_refresh=ticking) as bar:
        task = bar.add_task("", total=None, what=what)

        def update(message: str, advance: int = 0, log: bool = True, total: int | None = None) -> None:
            bar.update(task, description=esc(message), advance=advance, total=total, refresh=not ticking)

        yield update


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    NO = 2  # does not fit, infeasible, drift found, changes pending (dry run)


def json_text(document: Any) -> str:
    """A verb's JSON document as text: dataclasses by the one key rule (``gpufleet.spec.json_keys``: camelCase field
    names, data keys as they are), indented, in the document's own key order."""
    return json.dumps(jsonable(document), indent=2, sort_keys=False, default=str) + "\n"


def print_json(document: Any) -> None:
    """Exactly one JSON document on stdout."""
    sys.stdout.write(json_text(document))
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
        plain_metavars(self)
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
        if (
            "--json" in argv
            or "--format=json" in argv
            or any(a == "--format" and b == "json" for a, b in zip(argv, argv[1:], strict=False))
        ):
            command = exc.ctx.command_path if exc.ctx is not None else "gpufleet"
            print_json({"error": exc.format_message(), "kind": "usage", "command": command})
        exc._gpufleet_reported = True  # type: ignore[attr-defined]
    return exc


def plain_metavars(command: Any) -> None:
    """Help in click's words, not typer's Python types: a flag shows no value (typer prints ``<bool>``), a value
    option its kind (``--junit FILE``, ``--max-unavailable N``, ``--host HOST``), an argument its name in capitals
    (``STACK``, ``PROFILES...``). One rule for every verb, so no verb spells a metavar of its own."""
    # --help is made on demand per command, from the context's help option names (always ["--help"] here).
    help_option = command.get_help_option(SimpleNamespace(help_option_names=["--help"]))
    for param in [*getattr(command, "params", []), *([help_option] if help_option is not None else [])]:
        if param.metavar is not None:
            continue
        if getattr(param, "is_flag", False):
            param.metavar = ""
            continue
        name = (param.name or "value").upper()
        if param.param_type_name == "argument":
            param.metavar = name  # typer adds "..." to one taking several values
            param.display_type_rich = lambda ctx: None  # the name says it; typer would add <path>, <list[str]>
            continue
        annotation = getattr(getattr(param, "type_descriptor", None), "annotation", str)
        if annotation is int:
            param.metavar = "N"
        elif annotation is float:
            param.metavar = "SECONDS" if "second" in (param.name or "") or param.name == "timeout" else "NUMBER"
        elif "Path" in str(annotation):
            param.metavar = "FILE"
        else:
            param.metavar = name
    for sub in getattr(command, "commands", {}).values():
        plain_metavars(sub)
