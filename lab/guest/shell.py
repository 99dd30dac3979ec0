"""A small POSIX-shell subset for the guest personas: what SSH clients (testinfra, gpufleet's runner) send.

sshd runs ``python -m lab.guest.shell`` as the forced command of a guest; the command line arrives in
``SSH_ORIGINAL_COMMAND``. Supported: quoting ('', "", \\), ``;`` ``&&`` ``||`` ``|``, redirections
(``>`` ``>>`` ``<`` ``2>`` ``2>&1`` ``>&2`` ``&>``), leading ``NAME=value`` assignments, ``sh -c`` /
``bash -c``. Anything else (``$(...)``, globbing, variables) fails loudly instead of being half-understood.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

OPERATORS = ("&&", "||", ";", "|")


class ShellSyntaxError(Exception):
    pass


@dataclass
class Redirect:
    fd: int  # 0 stdin, 1 stdout, 2 stderr
    op: str  # ">", ">>", "<", ">&"
    target: str


@dataclass
class SimpleCommand:
    argv: list[str] = field(default_factory=list)
    redirects: list[Redirect] = field(default_factory=list)


def tokenize(line: str) -> list[tuple[str, str]]:
    """Split a command line into ("word", text) and ("op", operator) tokens."""
    tokens: list[tuple[str, str]] = []
    i, n = 0, len(line)
    word: list[str] = []
    in_word = False

    def flush() -> None:
        nonlocal in_word
        if in_word:
            tokens.append(("word", "".join(word)))
            word.clear()
            in_word = False

    while i < n:
        c = line[i]
        if c in " \t\n":
            flush()
            i += 1
        elif c == "'":
            end = line.find("'", i + 1)
            if end < 0:
                raise ShellSyntaxError("unterminated quoted string")
            word.append(line[i + 1 : end])
            in_word = True
            i = end + 1
        elif c == '"':
            i += 1
            in_word = True
            while True:
                if i >= n:
                    raise ShellSyntaxError("unterminated quoted string")
                c = line[i]
                if c == '"':
                    i += 1
                    break
                if c == "\\" and i + 1 < n and line[i + 1] in '"\\$`\n':
                    word.append(line[i + 1])
                    i += 2
                    continue
                if c in "$`":
                    raise ShellSyntaxError("expansions ($, `) are not supported by the lab guest shell")
                word.append(c)
                i += 1
        elif c == "\\":
            if i + 1 < n:
                word.append(line[i + 1])
                in_word = True
            i += 2
        elif c in "$`":
            raise ShellSyntaxError("expansions ($, `) are not supported by the lab guest shell")
        elif c in ";|&<>":
            # "2>" / "2>>" / "2>&1": a word of digits glued to the redirection is its file descriptor.
            if c in "<>" and in_word and "".join(word).isdigit():
                fd = "".join(word)
                word.clear()
                in_word = False
                op, i = _read_redirect(line, i)
                tokens.append(("op", fd + op))
                continue
            flush()
            if c in "<>":
                op, i = _read_redirect(line, i)
                tokens.append(("op", op))
            elif line.startswith("&&", i) or line.startswith("||", i):
                tokens.append(("op", line[i : i + 2]))
                i += 2
            elif line.startswith("&>", i):
                tokens.append(("op", "&>"))
                i += 2
            elif c == "&":
                raise ShellSyntaxError("background jobs (&) are not supported by the lab guest shell")
            else:
                tokens.append(("op", c))
                i += 1
        elif c == "#" and not in_word:
            break
        else:
            word.append(c)
            in_word = True
            i += 1
    flush()
    return tokens


def _read_redirect(line: str, i: int) -> tuple[str, int]:
    for op in (">>", ">&", "<", ">"):
        if line.startswith(op, i):
            return op, i + len(op)
    raise ShellSyntaxError(f"bad redirection at {line[i:]!r}")


def parse(line: str) -> list[tuple[str, list[SimpleCommand]]]:
    """A list of (connector, pipeline): connector is ";" "&&" "||" ("" for the first)."""
    result: list[tuple[str, list[SimpleCommand]]] = []
    connector = ""
    pipeline: list[SimpleCommand] = []
    cmd = SimpleCommand()
    tokens = tokenize(line)
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        if kind == "word":
            cmd.argv.append(text)
        elif text in ("&&", "||", ";", "|"):
            if not cmd.argv and not cmd.redirects:
                if text == ";" and not pipeline:
                    i += 1
                    continue
                raise ShellSyntaxError(f"syntax error near unexpected token `{text}'")
            pipeline.append(cmd)
            cmd = SimpleCommand()
            if text != "|":
                result.append((connector, pipeline))
                pipeline, connector = [], text
        else:
            if i + 1 >= len(tokens) or tokens[i + 1][0] != "word":
                raise ShellSyntaxError("syntax error near unexpected token `newline'")
            target = tokens[i + 1][1]
            fd_text = text.rstrip("<>&")
            op = text[len(fd_text) :]
            if op == "&>":
                cmd.redirects.append(Redirect(1, ">", target))
                cmd.redirects.append(Redirect(2, ">&", "1"))
            else:
                fd = int(fd_text) if fd_text else (0 if op == "<" else 1)
                cmd.redirects.append(Redirect(fd, op, target))
            i += 1
        i += 1
    if cmd.argv or cmd.redirects:
        pipeline.append(cmd)
    elif pipeline or connector in ("&&", "||", "|"):
        raise ShellSyntaxError("syntax error: unexpected end of file")
    if pipeline:
        result.append((connector, pipeline))
    return result


def _refused_while_off(state: dict) -> str | None:
    """What ssh prints when the guest's VM is not running (vCenter shows it powered off or suspended), else None.
    Only personas backed by vCenter (``gpu_source`` "vcenter") have a VM to ask; a VM vCenter does not know keeps
    answering (with no devices), as before."""
    if state.get("gpu_source") != "vcenter":
        return None
    from lab.guest.vcenter_devices import vm_power_state

    power = vm_power_state(state["vm"])
    if power is None or power == "poweredOn":
        return None
    # sshd sets SSH_CONNECTION to "client-ip client-port server-ip server-port".
    conn = os.environ.get("SSH_CONNECTION", "").split()
    address, port = (conn[2], conn[3]) if len(conn) == 4 else (state.get("name", "guest"), "22")
    return f"ssh: connect to host {address} port {port}: Connection refused ({state['vm']} is {power} in vCenter)\n"


def main() -> int:
    """Entry point of the forced command: run SSH_ORIGINAL_COMMAND against this guest's state."""
    from lab.guest.commands import Guest, run_line

    state_dir = os.environ.get("GPUFLEET_GUEST_DIR") or (sys.argv[1] if len(sys.argv) > 1 else "")
    if not state_dir:
        sys.stderr.write("lab guest shell: GPUFLEET_GUEST_DIR is not set\n")
        return 255
    line = os.environ.get("SSH_ORIGINAL_COMMAND")
    if line is None:
        sys.stderr.write("This lab guest accepts commands only (no interactive shell).\n")
        return 1
    guest = Guest(Path(state_dir))
    from lab.guest.install import down_message

    refused = _refused_while_off(guest.state) or down_message(guest.state)
    if refused:
        sys.stderr.write(refused)
        return 255
    if line.strip() in ("internal-sftp", "/usr/lib/openssh/sftp-server", "/usr/libexec/sftp-server", "sftp-server"):
        from lab.esxi.sftp import serve_stdio

        return serve_stdio(guest.root)  # SFTP into the guest's file system (packages uploaded by guests prepare)
    rc, out, err = run_line(guest, line, stdin=sys.stdin.buffer)
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    sys.stderr.buffer.write(err)
    sys.stderr.flush()
    return rc


if __name__ == "__main__":
    sys.exit(main())
