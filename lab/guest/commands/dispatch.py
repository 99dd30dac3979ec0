"""The guest's dispatcher: a command line parsed like bash (lab.guest.shell: lists, pipelines, redirections), each
simple command run by the handler the registry holds for its name; unknown or not installed: exit 127
"command not found", as bash says."""

from __future__ import annotations

import posixpath
import re
from typing import BinaryIO

from lab.guest.commands.base import Guest, Input, Result, SharedInput, installed, not_found, ok
from lab.guest.commands.registry import COMMANDS
from lab.guest.commands.vfs import read_file, write_file
from lab.guest.shell import ShellSyntaxError, SimpleCommand, parse


def run_argv(g: Guest, argv: list[str], stdin: Input) -> Result:
    while argv and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", argv[0]):
        argv = argv[1:]  # NAME=value prefixes (LANG=C ...) change nothing here
    if not argv:
        return ok()
    name = posixpath.basename(argv[0]) if argv[0].startswith("/") else argv[0]
    if name.endswith(".run") and "/" in argv[0]:
        return COMMANDS["sh"](g, ["sh", *argv], stdin)  # a .run package runs as `sh FILE`
    if name in ("exit",):
        return ok(rc=int(argv[1]) if len(argv) > 1 else 0)
    func = COMMANDS.get(name)
    if func is None or not installed(g, name):
        return not_found(argv[0])
    return func(g, [name, *argv[1:]], stdin)


def _run_simple(g: Guest, cmd: SimpleCommand, stdin: Input) -> Result:
    for r in cmd.redirects:
        if r.fd == 0 and r.op == "<":
            data, error = read_file(g, r.target)
            if data is None:
                return ok(err=f"bash: line 1: {r.target}: {error}\n", rc=1)
            stdin = Input(data)
    rc, out, err = run_argv(g, cmd.argv, stdin)
    for r in cmd.redirects:
        if r.op == ">&":
            if r.fd == 2 and r.target == "1":
                out, err = out + err, b""
            elif r.fd == 1 and r.target == "2":
                out, err = b"", err + out
        elif r.op in (">", ">>") and r.fd in (1, 2):
            data = out if r.fd == 1 else err
            error = write_file(g, r.target, data, append=r.op == ">>")
            if error:
                return ok(err=f"bash: line 1: {r.target}: {error}\n", rc=1)
            if r.fd == 1:
                out = b""
            else:
                err = b""
    return rc, out, err


def run_line(g: Guest, line: str, stdin: BinaryIO | None = None, stdin_input: Input | None = None) -> Result:
    """Run a command line; returns (exit status, stdout, stderr) of the whole line."""
    try:
        program = parse(line)
    except ShellSyntaxError as exc:
        return ok(err=f"bash: line 1: {exc}\n", rc=2)
    shared = stdin_input or SharedInput(stdin)
    rc, out_all, err_all = 0, b"", b""
    for connector, pipeline in program:
        if (connector == "&&" and rc != 0) or (connector == "||" and rc == 0):
            continue
        data: Input = shared
        for i, cmd in enumerate(pipeline):
            rc, out, err = _run_simple(g, cmd, data)
            err_all += err
            if i < len(pipeline) - 1:
                data = Input(out)
            else:
                out_all += out
    return rc, out_all, err_all
