"""System and shell commands: uname, getconf, hostname, id, lsmod, sleep, true, false, umask, command -v, which,
sh / bash -c (and ``sh FILE.run``: the NVIDIA installer), sudo, reboot."""

from __future__ import annotations

import time

from lab.guest.commands import dispatch
from lab.guest.commands.base import COMMAND_PATHS, Guest, Input, Result, installed, ok
from lab.guest.commands.registry import COMMANDS, command
from lab.guest.commands.vfs import module_rows


@command("uname")
def cmd_uname(g: Guest, argv: list[str], stdin: Input) -> Result:
    arch, kernel = g.state.get("arch", "x86_64"), g.state.get("kernel", "5.15.0-119-generic")
    fields = {
        "s": "Linux",
        "n": g.name,
        "r": kernel,
        "v": "#129-Ubuntu SMP Fri Aug 2 19:25:20 UTC 2024",
        "m": arch,
        "p": arch,
        "i": arch,
        "o": "GNU/Linux",
    }
    flags = "".join(a[1:] for a in argv[1:] if a.startswith("-"))
    if "a" in flags:
        flags = "snrvmpio"
    flags = flags or "s"
    bad = set(flags) - set(fields)
    if bad:
        return ok(err=f"uname: invalid option -- '{sorted(bad)[0]}'\n", rc=1)
    return ok(" ".join(fields[f] for f in "snrvmpio" if f in flags) + "\n")


@command("getconf")
def cmd_getconf(g: Guest, argv: list[str], stdin: Input) -> Result:
    if argv[1:] == ["LONG_BIT"]:
        return ok("64\n" if g.state.get("arch", "x86_64") in ("x86_64", "aarch64") else "32\n")
    return ok(err=f"getconf: Unrecognized variable '{' '.join(argv[1:])}'\n", rc=1)


@command("hostname")
def cmd_hostname(g: Guest, argv: list[str], stdin: Input) -> Result:
    return ok(g.name + "\n")


@command("id")
def cmd_id(g: Guest, argv: list[str], stdin: Input) -> Result:
    if "-u" in argv:
        return ok("0\n")
    return ok("uid=0(root) gid=0(root) groups=0(root)\n")


@command("lsmod")
def cmd_lsmod(g: Guest, argv: list[str], stdin: Input) -> Result:
    return ok("\n".join(["Module                  Size  Used by", *module_rows(g)]) + "\n")


@command("sleep")
def cmd_sleep(g: Guest, argv: list[str], stdin: Input) -> Result:
    try:
        time.sleep(min(float(argv[1]), 5.0))
    except (IndexError, ValueError):
        return ok(err="sleep: missing operand\n", rc=1)
    return ok()


@command("true")
def cmd_true(g: Guest, argv: list[str], stdin: Input) -> Result:
    return ok()


@command("false")
def cmd_false(g: Guest, argv: list[str], stdin: Input) -> Result:
    return ok(rc=1)


@command("umask")
def cmd_umask(g: Guest, argv: list[str], stdin: Input) -> Result:
    if len(argv) == 1:
        return ok(f"{g.umask:04o}\n")
    g.umask = int(argv[1], 8)
    return ok()


@command("command")
def cmd_command(g: Guest, argv: list[str], stdin: Input) -> Result:
    if len(argv) >= 3 and argv[1] == "-v":
        name = argv[2]
        if name in COMMANDS and installed(g, name):
            return ok(COMMAND_PATHS.get(name, f"/usr/bin/{name}") + "\n")
        return ok(rc=1)
    if len(argv) >= 2:
        return dispatch.run_argv(g, argv[1:], Input(b""))
    return ok()


@command("which")
def cmd_which(g: Guest, argv: list[str], stdin: Input) -> Result:
    found = [COMMAND_PATHS.get(a, f"/usr/bin/{a}") for a in argv[1:] if a in COMMANDS and installed(g, a)]
    return ok("".join(f + "\n" for f in found), rc=0 if len(found) == len(argv[1:]) else 1)


@command("sh", "bash")
def cmd_sh(g: Guest, argv: list[str], stdin: Input) -> Result:
    from lab.guest.install import is_run_package, run_installer

    if len(argv) >= 2 and is_run_package(argv[1]):
        return run_installer(g, argv[1], argv[2:])
    if len(argv) >= 3 and argv[1] == "-c":
        return dispatch.run_line(g, argv[2], stdin=None, stdin_input=stdin)
    return ok(err=f"{argv[0]}: the lab guest runs only '{argv[0]} -c COMMAND'\n", rc=2)


@command("sudo")
def cmd_sudo(g: Guest, argv: list[str], stdin: Input) -> Result:
    args = argv[1:]
    while args and args[0].startswith("-"):
        args = args[2:] if args[0] in ("-u", "-g") else args[1:]
    return dispatch.run_argv(g, args, stdin) if args else ok(err="usage: sudo command\n", rc=1)


@command("reboot")
def cmd_reboot(g: Guest, argv: list[str], stdin: Input) -> Result:
    from lab.guest.install import reboot

    return reboot(g)
