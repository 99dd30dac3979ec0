"""Text filters scripts pipe into: echo, grep, head, tail, wc."""

from __future__ import annotations

import re

from lab.guest.commands.base import Guest, Input, Result, ok
from lab.guest.commands.registry import command
from lab.guest.commands.vfs import read_file


@command("echo")
def cmd_echo(g: Guest, argv: list[str], stdin: Input) -> Result:
    args = argv[1:]
    newline = True
    if args and args[0] == "-n":
        newline, args = False, args[1:]
    return ok(" ".join(args) + ("\n" if newline else ""))


@command("grep")
def cmd_grep(g: Guest, argv: list[str], stdin: Input) -> Result:
    flags, rest = "", []
    for a in argv[1:]:
        if a.startswith("-") and len(a) > 1 and not rest:
            flags += a[1:]
        else:
            rest.append(a)
    if not rest:
        return ok(err="Usage: grep [OPTION]... PATTERNS [FILE]...\n", rc=2)
    pattern, files = rest[0], rest[1:]
    data = stdin.read() if not files else b"".join(read_file(g, f)[0] or b"" for f in files)
    regex = re.compile(
        pattern if "E" in flags or "P" in flags else pattern.replace(r"\|", "|"), re.I if "i" in flags else 0
    )
    lines = [ln for ln in data.decode(errors="replace").splitlines() if bool(regex.search(ln)) != ("v" in flags)]
    if "q" in flags:
        return ok(rc=0 if lines else 1)
    if "c" in flags:
        return ok(f"{len(lines)}\n", rc=0 if lines else 1)
    return ok("".join(ln + "\n" for ln in lines), rc=0 if lines else 1)


def count_arg(argv: list[str], default: int = 10) -> int:
    for i, a in enumerate(argv):
        if a == "-n" and i + 1 < len(argv):
            return int(argv[i + 1])
        if re.fullmatch(r"-\d+", a):
            return int(a[1:])
    return default


@command("head")
def cmd_head(g: Guest, argv: list[str], stdin: Input) -> Result:
    lines = stdin.read().decode(errors="replace").splitlines(keepends=True)
    return ok("".join(lines[: count_arg(argv)]))


@command("tail")
def cmd_tail(g: Guest, argv: list[str], stdin: Input) -> Result:
    lines = stdin.read().decode(errors="replace").splitlines(keepends=True)
    n = count_arg(argv)
    return ok("".join(lines[-n:] if n else []))


@command("wc")
def cmd_wc(g: Guest, argv: list[str], stdin: Input) -> Result:
    data = stdin.read()
    lines = data.count(b"\n")
    if "-l" in argv:
        return ok(f"{lines}\n")
    return ok(f"{lines} {len(data.split())} {len(data)}\n")
