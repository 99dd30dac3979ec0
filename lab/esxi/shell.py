"""The simulated ESXi shell every lab host's sshd runs (``labexec`` -> a fork of lab.forkserver, else ``python -I -m lab.esxi.shell``).

Reads the client's command from ``SSH_ORIGINAL_COMMAND`` (an interactive session gets a prompt), the host's
identity from ``GPUFLEET_LAB_HOST`` and the lab from ``GPUFLEET_LAB_DIR`` (both set by sshd's SetEnv), and runs
it like ESXi's busybox ``sh -c`` would: pipelines (``|``), lists (``;``, ``&&``, ``||``), redirections (``>``,
``>>``, ``2>``, ``2>&1``), quotes, ``*`` globs in the host's file system. Unknown commands answer
``sh: NAME: not found`` with status 127. ``internal-sftp`` serves SFTP rooted in the host's file system.

Imports are lazy: a command pays only for the modules it uses.
"""

from __future__ import annotations

import fnmatch
import os
import select
import sys
import time
from pathlib import Path

from lab.esxi.context import Ctx, Result, session_sshd_pids
from lab.paths import HOST_ENV, LAB_DIR_ENV, LabPaths

SFTP_COMMANDS = {"internal-sftp", "/usr/lib/openssh/sftp-server", "/usr/libexec/sftp-server", "sftp-server"}
_READS_STDIN = {"cat", "grep", "head", "tail", "wc", "sha256sum", "md5sum", "sha1sum"}
_OPERATORS = ("2>&1", "&&", "||", ">>", "2>", "|", ";", ">", "<")


class ShellSyntaxError(Exception):
    pass


def tokenize(line: str) -> list[tuple[str, str]]:
    """Split a command line into ("word", text) / ("op", operator) tokens; ("glob", text) for unquoted globs."""
    tokens: list[tuple[str, str]] = []
    i, n = 0, len(line)
    word: list[str] = []
    in_word = quoted = False

    def flush() -> None:
        nonlocal word, in_word, quoted
        if in_word:
            text = "".join(word)
            tokens.append(("word" if quoted or not any(c in text for c in "*?") else "glob", text))
        word, in_word, quoted = [], False, False

    while i < n:
        c = line[i]
        if c in " \t\n":
            flush()
            i += 1
            continue
        op = next((o for o in _OPERATORS if line.startswith(o, i)), None)
        if op is not None and not (op[0] == "2" and in_word):
            flush()
            tokens.append(("op", op))
            i += len(op)
            continue
        if c == "'":
            end = line.find("'", i + 1)
            if end < 0:
                raise ShellSyntaxError("sh: syntax error: unterminated quoted string")
            word.append(line[i + 1 : end])
            in_word = quoted = True
            i = end + 1
            continue
        if c == '"':
            i += 1
            buf = []
            while i < n and line[i] != '"':
                if line[i] == "\\" and i + 1 < n and line[i + 1] in '"\\$`':
                    i += 1
                buf.append(line[i])
                i += 1
            if i >= n:
                raise ShellSyntaxError("sh: syntax error: unterminated quoted string")
            word.append("".join(buf))
            in_word = quoted = True
            i += 1
            continue
        if c == "\\" and i + 1 < n:
            word.append(line[i + 1])
            in_word = quoted = True
            i += 2
            continue
        word.append(c)
        in_word = True
        i += 1
    flush()
    return tokens


def _expand_glob(ctx: Ctx, pattern: str) -> list[str]:
    from lab.esxi.state import host_fs_path

    absolute = pattern if pattern.startswith("/") else f"{ctx.cwd.rstrip('/')}/{pattern}"
    parent, _, leaf = absolute.rpartition("/")
    try:
        real = host_fs_path(ctx.paths, ctx.host, parent or "/")
        names = sorted(n for n in os.listdir(real) if fnmatch.fnmatch(n, leaf))
    except (OSError, ValueError):
        return [pattern]
    if not names:
        return [pattern]
    prefix = pattern.rpartition("/")[0]
    return [f"{prefix}/{n}" if "/" in pattern else n for n in names]


class Stdin:
    """The session's stdin, read only by commands that consume it (a real process would block the same way)."""

    def __init__(self) -> None:
        self._data: str | None = None

    def read_all(self) -> str:
        if self._data is None:
            chunks = []
            while True:
                try:
                    chunk = os.read(0, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            self._data = b"".join(chunks).decode(errors="replace")
        return self._data

    def read_line(self, timeout: float) -> str:
        ready, _, _ = select.select([0], [], [], timeout)
        if not ready:
            return ""
        data = os.read(0, 4096)
        return data.decode(errors="replace").splitlines()[0] if data else ""


def run_argv(ctx: Ctx, argv: list[str], stdin: str) -> Result:
    from lab.esxi import commands

    return commands.run(ctx, argv, stdin)


def execute(ctx: Ctx, line: str, stdin: Stdin) -> int:
    """Run one command line; write its output to fd 1/2 as each command finishes; return the exit status."""
    try:
        tokens = tokenize(line)
    except ShellSyntaxError as exc:
        os.write(2, f"{exc}\n".encode())
        return 2
    status = 0
    skip = None  # "&&" after failure / "||" after success skip the next pipeline
    pipeline: list[list[tuple[str, str]]] = [[]]
    for tok in [*tokens, ("op", ";")]:
        if tok[0] == "op" and tok[1] in (";", "&&", "||"):
            if pipeline != [[]]:
                if skip is None:
                    status = _run_pipeline(ctx, pipeline, stdin)
                skip = None
            if tok[1] == "&&" and status != 0:
                skip = "&&"
            elif tok[1] == "||" and status == 0:
                skip = "||"
            pipeline = [[]]
        elif tok == ("op", "|"):
            pipeline.append([])
        else:
            pipeline[-1].append(tok)
    return status


def _run_pipeline(ctx: Ctx, pipeline: list[list[tuple[str, str]]], stdin: Stdin) -> int:
    data = ""
    result = Result()
    for pos, tokens in enumerate(pipeline):
        argv: list[str] = []
        out_file: tuple[str, bool] | None = None
        err_mode = "tty"  # tty | null | stdout
        i = 0
        while i < len(tokens):
            kind, text = tokens[i]
            if kind == "op" and text in (">", ">>", "2>", "<"):
                if i + 1 >= len(tokens) or tokens[i + 1][0] == "op":
                    os.write(2, b"sh: syntax error: unexpected newline\n")
                    return 2
                target = tokens[i + 1][1]
                if text == "2>":
                    err_mode = "null" if target == "/dev/null" else "tty"
                elif text in (">", ">>"):
                    out_file = (target, text == ">>")
                i += 2
                continue
            if kind == "op" and text == "2>&1":
                err_mode = "stdout"
            elif kind == "glob":
                argv.extend(_expand_glob(ctx, text))
            elif kind == "word":
                argv.append(text)
            i += 1
        if not argv:
            os.write(2, b'sh: syntax error: unexpected "|"\n')
            return 2
        if pos == 0:
            if argv[0] in _READS_STDIN and len([a for a in argv[1:] if not a.startswith("-")]) <= (
                1 if argv[0] == "grep" else 0
            ):
                data = stdin.read_all()
            elif (
                argv[0] in ("mlxconfig", "/opt/mellanox/bin/mlxconfig")
                and "set" in argv
                and "-y" not in argv
                and "--yes" not in argv
            ):
                data = stdin.read_line(timeout=30.0)
        result = run_argv(ctx, argv, data)
        out, err = result.out, result.err
        if err_mode == "stdout":
            out, err = out + err, ""
        elif err_mode == "null":
            err = ""
        if err:
            os.write(2, err.encode())
        if out_file is not None:
            _write_file(ctx, out_file[0], out, out_file[1])
            out = ""
        last = pos == len(pipeline) - 1
        if last:
            if out:
                os.write(1, out.encode())
        else:
            data = out
    return result.code


def _write_file(ctx: Ctx, target: str, text: str, append: bool) -> None:
    if target == "/dev/null":
        return
    from lab.esxi.state import host_fs_path

    path = target if target.startswith("/") else f"{ctx.cwd.rstrip('/')}/{target}"
    real = host_fs_path(ctx.paths, ctx.host, path)
    with open(real, "a" if append else "w") as fh:
        fh.write(text)


def _log(paths: LabPaths, host: str, line: str, status: int, started: float) -> None:
    try:
        with open(paths.host_dir(host) / "commands.log", "a") as fh:
            fh.write(f"{started:.3f} {time.time() - started:.3f} {status} {line}\n")
    except OSError:
        pass


def interactive(ctx: Ctx) -> int:
    status = 0
    while True:
        cwd = "~" if ctx.cwd == "/" else ctx.cwd
        os.write(1, f"[root@{ctx.short_name}:{cwd}] ".encode())
        line = b""
        while not line.endswith(b"\n"):
            chunk = os.read(0, 1)
            if not chunk:
                return status
            line += chunk
        text = line.decode(errors="replace").strip()
        if text in ("exit", "logout"):
            return status
        if text:
            status = execute(ctx, text, Stdin())


def main() -> int:
    host = os.environ.get(HOST_ENV)
    lab_dir = os.environ.get(LAB_DIR_ENV)
    if not host or not lab_dir:
        sys.stderr.write(f"lab.esxi.shell: {HOST_ENV} and {LAB_DIR_ENV} must be set (run by the lab's sshd)\n")
        return 1
    paths = LabPaths(Path(lab_dir))
    command = os.environ.get("SSH_ORIGINAL_COMMAND")
    if command is not None and command.strip() in SFTP_COMMANDS:
        from lab.esxi.sftp import serve_stdio

        return serve_stdio(paths.host_fs(host))
    ctx = Ctx(paths, host, session_pids=session_sshd_pids())
    if command is None:
        return interactive(ctx)
    started = time.time()
    status = execute(ctx, command, Stdin())
    _log(paths, host, command, status, started)
    return status


if __name__ == "__main__":
    sys.exit(main())
