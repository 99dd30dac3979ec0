"""File commands (coreutils): cat, test / [, stat, ls, mkdir, chmod, chown, rm, mv, cp, touch, tee, sha256sum,
readlink, on the guest's file system (the licensing step and testinfra use them)."""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import stat as stat_mod

from lab.guest.commands.base import Guest, Input, Result, ok
from lab.guest.commands.registry import command
from lab.guest.commands.vfs import read_file, virtual_list, virtual_read, write_file


@command("cat")
def cmd_cat(g: Guest, argv: list[str], stdin: Input) -> Result:
    files = [a for a in argv[1:] if a != "--"]
    if not files or files == ["-"]:
        return 0, stdin.read(), b""
    out, err, rc = b"", b"", 0
    for f in files:
        data, error = read_file(g, f)
        if data is None:
            err += f"cat: {f}: {error}\n".encode()
            rc = 1
        else:
            out += data
    return rc, out, err


@command("test", "[")
def cmd_test(g: Guest, argv: list[str], stdin: Input) -> Result:
    args = argv[1:]
    if argv[0] == "[":
        if not args or args[-1] != "]":
            return ok(err="bash: [: missing `]'\n", rc=2)
        args = args[:-1]
    negate = False
    if args and args[0] == "!":
        negate, args = True, args[1:]
    result = _evaluate_test(g, args)
    if result is None:
        return ok(err=f"bash: test: {' '.join(args)}: unary operator expected\n", rc=2)
    return ok(rc=0 if result != negate else 1)


def _evaluate_test(g: Guest, args: list[str]) -> bool | None:
    if len(args) == 1:
        return args[0] != ""
    if len(args) == 2:
        op, arg = args
        if op == "-n":
            return arg != ""
        if op == "-z":
            return arg == ""
        handled, content, _ = virtual_read(g, arg)
        listing = virtual_list(g, arg)
        if handled or listing is not None:
            exists_file, exists_dir = content is not None, listing is not None
        else:
            p = g.host_path(arg)
            exists_file, exists_dir = p.is_file(), p.is_dir()
        if op == "-e":
            return exists_file or exists_dir
        if op == "-f":
            return exists_file
        if op == "-d":
            return exists_dir
        if op == "-s":
            return exists_file and bool(read_file(g, arg)[0])
        if op in ("-r", "-w"):
            return exists_file or exists_dir
        if op == "-x":
            return exists_dir or (exists_file and bool(g.host_path(arg).stat().st_mode & 0o111))
        if op == "-L":
            return g.host_path(arg).is_symlink()
        return None
    if len(args) == 3:
        a, op, b = args
        if op in ("=", "=="):
            return a == b
        if op == "!=":
            return a != b
        try:
            x, y = int(a), int(b)
        except ValueError:
            return None
        return {"-eq": x == y, "-ne": x != y, "-gt": x > y, "-lt": x < y, "-ge": x >= y, "-le": x <= y}.get(op)
    return None


def _mode_string(mode: int) -> str:
    return stat_mod.filemode(mode)


@command("stat")
def cmd_stat(g: Guest, argv: list[str], stdin: Input) -> Result:
    fmt = None
    files: list[str] = []
    args = argv[1:]
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("--format", "--printf") or (a.startswith("-") and not a.startswith("--") and a.endswith("c")):
            fmt = args[i + 1] if i + 1 < len(args) else None  # -c FORMAT, also combined as -Lc FORMAT
            i += 2
            continue
        if a.startswith(("--format=", "--printf=")):
            fmt = a.split("=", 1)[1]
        elif a.startswith("-") and a != "-":
            pass  # -L (follow links: the lab's files are no links), --dereference
        else:
            files.append(a)
        i += 1
    if not files:
        return ok(err="stat: missing operand\n", rc=1)
    out, err, rc = [], [], 0
    import grp
    import pwd

    for f in files:
        p = g.host_path(f)
        try:
            st = p.stat()
        except FileNotFoundError:
            err.append(f"stat: cannot statx '{f}': No such file or directory")
            rc = 1
            continue
        try:
            user = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            user = str(st.st_uid)
        try:
            group = grp.getgrgid(st.st_gid).gr_name
        except KeyError:
            group = str(st.st_gid)
        kind = "directory" if stat_mod.S_ISDIR(st.st_mode) else ("regular file" if st.st_size else "regular empty file")
        values = {
            "a": f"{stat_mod.S_IMODE(st.st_mode):o}",
            "A": _mode_string(st.st_mode),
            "U": user,
            "G": group,
            "u": str(st.st_uid),
            "g": str(st.st_gid),
            "s": str(st.st_size),
            "n": f,
            "F": kind,
            "Y": str(int(st.st_mtime)),
            "f": f"{st.st_mode:x}",
        }
        if fmt is None:
            out.append(
                f"  File: {f}\n  Size: {st.st_size}\n Access: ({stat_mod.S_IMODE(st.st_mode):04o}/{_mode_string(st.st_mode)})  Uid: ( {st.st_uid}/ {user})   Gid: ( {st.st_gid}/ {group})"
            )
        else:
            out.append(
                re.sub(
                    r"%(.)", lambda m, v=values: v.get(m.group(1), "%" + m.group(1)) if m.group(1) != "%" else "%", fmt
                )
            )
    return ok("".join(o + "\n" for o in out), "".join(e + "\n" for e in err), rc)


@command("ls")
def cmd_ls(g: Guest, argv: list[str], stdin: Input) -> Result:
    flags = "".join(a[1:] for a in argv[1:] if a.startswith("-") and a != "--")
    paths = [a for a in argv[1:] if not a.startswith("-")] or ["/root"]
    out, err, rc = [], [], 0
    for path in paths:
        listing = virtual_list(g, path)
        if listing is None:
            p = g.host_path(path)
            if p.is_dir():
                listing = sorted(e.name for e in p.iterdir())
            elif p.exists():
                listing = [path]
            else:
                err.append(f"ls: cannot access '{path}': No such file or directory")
                rc = 2
                continue
        if "a" not in flags and "A" not in flags:
            listing = [n for n in listing if not n.startswith(".")]
        elif "a" in flags:
            listing = [".", "..", *listing]
        if "l" in flags:
            lines = []
            for name in listing:
                st = (g.host_path(path) / name).stat() if name not in (".", "..") else g.host_path(path).stat()
                lines.append(f"{_mode_string(st.st_mode)} 1 root root {st.st_size:>6} Jan  1 00:00 {name}")
            out.extend(lines)
        else:
            out.extend(listing)
    return ok("".join(o + "\n" for o in out), "".join(e + "\n" for e in err), rc)


@command("mkdir")
def cmd_mkdir(g: Guest, argv: list[str], stdin: Input) -> Result:
    parents, mode, dirs = False, None, []
    args = argv[1:]
    i = 0
    while i < len(args):
        a = args[i]
        if a == "-p":
            parents = True
        elif a == "-m":
            mode = int(args[i + 1], 8)
            i += 1
        elif a.startswith("-") and set(a[1:]) <= {"p"}:
            parents = True
        else:
            dirs.append(a)
        i += 1
    for d in dirs:
        if posixpath.normpath(d).startswith(("/proc", "/sys")):
            return ok(err=f"mkdir: cannot create directory '{d}': Read-only file system\n", rc=1)
        p = g.host_path(d)
        try:
            p.mkdir(parents=parents, exist_ok=parents)
        except FileExistsError:
            return ok(err=f"mkdir: cannot create directory '{d}': File exists\n", rc=1)
        except FileNotFoundError:
            return ok(err=f"mkdir: cannot create directory '{d}': No such file or directory\n", rc=1)
        os.chmod(p, mode if mode is not None else 0o777 & ~g.umask)
    return ok()


@command("chmod")
def cmd_chmod(g: Guest, argv: list[str], stdin: Input) -> Result:
    args = [a for a in argv[1:] if a not in ("-R", "--")]
    if len(args) < 2:
        return ok(err="chmod: missing operand\n", rc=1)
    mode_text, files = args[0], args[1:]
    if not re.fullmatch(r"[0-7]{3,4}", mode_text):
        return ok(err=f"chmod: invalid mode: '{mode_text}' (the lab guest takes octal modes)\n", rc=1)
    for f in files:
        p = g.host_path(f)
        if not p.exists():
            return ok(err=f"chmod: cannot access '{f}': No such file or directory\n", rc=1)
        os.chmod(p, int(mode_text, 8))
    return ok()


@command("chown")
def cmd_chown(g: Guest, argv: list[str], stdin: Input) -> Result:
    files = [a for a in argv[2:] if not a.startswith("-")]
    for f in files:
        if not g.host_path(f).exists():
            return ok(err=f"chown: cannot access '{f}': No such file or directory\n", rc=1)
    return ok()  # every lab file belongs to the lab's user; ownership changes are accepted as no-ops


@command("rm")
def cmd_rm(g: Guest, argv: list[str], stdin: Input) -> Result:
    flags = "".join(a[1:] for a in argv[1:] if a.startswith("-") and a != "--")
    files = [a for a in argv[1:] if not a.startswith("-")]
    for f in files:
        p = g.host_path(f)
        if p.is_dir():
            if "r" not in flags:
                return ok(err=f"rm: cannot remove '{f}': Is a directory\n", rc=1)
            import shutil

            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
        elif "f" not in flags:
            return ok(err=f"rm: cannot remove '{f}': No such file or directory\n", rc=1)
    return ok()


@command("mv")
def cmd_mv(g: Guest, argv: list[str], stdin: Input) -> Result:
    args = [a for a in argv[1:] if not a.startswith("-")]
    if len(args) != 2:
        return ok(err="mv: the lab guest takes exactly a source and a destination\n", rc=1)
    src, dst = g.host_path(args[0]), g.host_path(args[1])
    if not src.exists():
        return ok(err=f"mv: cannot stat '{args[0]}': No such file or directory\n", rc=1)
    if dst.is_dir():
        dst = dst / src.name
    src.replace(dst)
    return ok()


@command("cp")
def cmd_cp(g: Guest, argv: list[str], stdin: Input) -> Result:
    args = [a for a in argv[1:] if not a.startswith("-")]
    if len(args) != 2:
        return ok(err="cp: the lab guest takes exactly a source and a destination\n", rc=1)
    data, error = read_file(g, args[0])
    if data is None:
        return ok(err=f"cp: cannot stat '{args[0]}': {error}\n", rc=1)
    dst = args[1].rstrip("/") + "/" + posixpath.basename(args[0]) if g.host_path(args[1]).is_dir() else args[1]
    error = write_file(g, dst, data)
    return ok(err=f"cp: cannot create regular file '{args[1]}': {error}\n", rc=1) if error else ok()


@command("touch")
def cmd_touch(g: Guest, argv: list[str], stdin: Input) -> Result:
    for f in [a for a in argv[1:] if not a.startswith("-")]:
        p = g.host_path(f)
        if p.exists():
            p.touch()
        else:
            error = write_file(g, f, b"")
            if error:
                return ok(err=f"touch: cannot touch '{f}': {error}\n", rc=1)
    return ok()


@command("tee")
def cmd_tee(g: Guest, argv: list[str], stdin: Input) -> Result:
    append = "-a" in argv[1:]
    data = stdin.read()
    for f in [a for a in argv[1:] if not a.startswith("-")]:
        error = write_file(g, f, data, append=append)
        if error:
            return 1, data, f"tee: {f}: {error}\n".encode()
    return 0, data, b""


@command("sha256sum")
def cmd_sha256sum(g: Guest, argv: list[str], stdin: Input) -> Result:
    files = [a for a in argv[1:] if not a.startswith("-") or a == "-"] or ["-"]
    out, err, rc = "", "", 0
    for f in files:
        data = stdin.read() if f == "-" else read_file(g, f)[0]
        if data is None:
            err += f"sha256sum: {f}: No such file or directory\n"
            rc = 1
            continue
        out += f"{hashlib.sha256(data).hexdigest()}  {f}\n"
    return ok(out, err, rc)


@command("readlink")
def cmd_readlink(g: Guest, argv: list[str], stdin: Input) -> Result:
    paths = [a for a in argv[1:] if not a.startswith("-")]
    if not paths:
        return ok(err="readlink: missing operand\n", rc=1)
    known = {"/sbin/init": "/usr/lib/systemd/systemd"}
    out = []
    for path in paths:
        if path in known:
            out.append(known[path])
        elif g.host_path(path).exists() or "-f" in argv:
            out.append(posixpath.normpath(path))
        else:
            return ok(rc=1)
    return ok("".join(o + "\n" for o in out))
