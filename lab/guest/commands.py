"""The commands a guest persona answers: nvidia-smi, nvidia-ctk, docker, ibv_devices, rdma, uname, lsmod,
systemctl/journalctl for nvidia-gridd, and the file operations the licensing step and testinfra use
(cat, test, stat, ls, mkdir, chmod, rm, mv, tee, sha256sum...), on the guest's state directory.

Unknown commands and options fail the way bash and the real tools do (exit 127 "command not found", 2 for
bad usage), so a check that sends something the lab does not know fails instead of passing by accident.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import stat as stat_mod
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from lab.guest.shell import ShellSyntaxError, SimpleCommand, parse
from lab.guest.state import GuestState

if TYPE_CHECKING:
    from lab.guest.gpus import GuestView

# nvidia-smi, gridd and the GPU view import the catalog: loaded only by the commands that need them, because
# every SSH command is a fresh process (``uname`` or ``cat`` should not pay for them).

Result = tuple[int, bytes, bytes]


class Input:
    """A command's stdin: bytes from a pipe, or the SSH channel, read only if the command wants it (reading
    an SSH channel the client never closes would hang)."""

    def __init__(self, data: bytes | None = None, stream: BinaryIO | None = None) -> None:
        self._data = data
        self._stream = stream

    def read(self) -> bytes:
        if self._data is None:
            self._data = self._stream.read() if self._stream is not None else b""
        return self._data


class SharedInput(Input):
    """The command line's own stdin: the first command that reads it gets it all, later ones get nothing."""

    def __init__(self, stream: BinaryIO | None) -> None:
        super().__init__(stream=stream)
        self._consumed = False

    def read(self) -> bytes:
        if self._consumed:
            return b""
        self._consumed = True
        return super().read()


class Guest:
    """One guest persona: its state, its filesystem root and (lazily) the GPUs it sees."""

    def __init__(self, directory: Path) -> None:
        self.store = GuestState(directory)
        self.root = self.store.root
        self.state = self.store.read()
        self.name: str = self.state["name"]
        self.umask = 0o022
        self._view: GuestView | None = None

    @property
    def view(self) -> GuestView:
        if self._view is None:
            from lab.guest.gpus import guest_view

            self._view = guest_view(self.state)
        return self._view

    def vgpu_series(self) -> str | None:
        series = [g.series for g in self.view.gpus if g.kind == "vgpu" and g.series]
        return series[0] if series else None

    def host_path(self, guest_path: str) -> Path:
        """Map an absolute guest path into the state directory (relative paths start at /root)."""
        if not guest_path.startswith("/"):
            guest_path = "/root/" + guest_path
        norm = posixpath.normpath(guest_path)
        return self.root / norm.lstrip("/")


# ---------------------------------------------------------------- helpers
def _ok(out: str = "", err: str = "", rc: int = 0) -> Result:
    return rc, out.encode(), err.encode()


def _not_found(name: str) -> Result:
    return _ok(err=f"bash: line 1: {name}: command not found\n", rc=127)


COMMAND_PATHS = {
    "nvidia-smi": "/usr/bin/nvidia-smi",
    "nvidia-ctk": "/usr/bin/nvidia-ctk",
    "docker": "/usr/bin/docker",
    "ibv_devices": "/usr/bin/ibv_devices",
    "rdma": "/usr/sbin/rdma",
    "ibv_devinfo": "/usr/bin/ibv_devinfo",
    "show_gids": "/usr/sbin/show_gids",
    "cma_roce_mode": "/usr/sbin/cma_roce_mode",
    "bitfusion": "/usr/bin/bitfusion",
    "systemctl": "/usr/bin/systemctl",
    "journalctl": "/usr/bin/journalctl",
}


def _installed(g: Guest, name: str) -> bool:
    if name == "nvidia-smi":
        return bool(g.state.get("driver", {}).get("installed", True))
    if name in ("dkms",):
        return name in g.state.get("packages", {"dkms": ""})
    if name == "nvidia-ctk":
        return bool(g.state.get("container", {}).get("toolkit"))
    if name == "docker":
        return bool(g.state.get("container", {}).get("docker"))
    if name == "bitfusion":
        return str(g.state.get("persona", "")).startswith("bitfusion-")
    return True


# ---------------------------------------------------------------- virtual files (/proc, /sys)
def _driver_version_file(g: Guest) -> str | None:
    version = g.view.driver_version
    if version is None:
        return None
    if version.startswith("580"):
        return (
            f"NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  {version}  Release Build  (dvs-builder@U16-I3-B03-4-3)  \n"
            "GCC version:  gcc version 12.3.0 (Ubuntu 12.3.0-1ubuntu1~22.04) \n"
        )
    return (
        f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {version}  Fri May 31 09:35:42 UTC 2024\n"
        "GCC version:  gcc version 12.3.0 (Ubuntu 12.3.0-1ubuntu1~22.04) \n"
    )


def _virtual_read(g: Guest, path: str) -> tuple[bool, str | None, str | None]:
    """(handled, content, error) for /proc/driver/nvidia and /sys/class/infiniband paths."""
    norm = posixpath.normpath(path)
    if norm == "/proc/modules":
        rows = [line.split() for line in _module_rows(g)]
        return (
            True,
            "".join(
                f"{r[0]} {r[1]} {r[2]} {','.join(r[3:]) + ',' if len(r) > 3 else '-'} Live 0x0000000000000000\n"
                for r in rows
            ),
            None,
        )
    if norm == "/proc/cmdline":
        from lab.guest.install import proc_cmdline

        return True, proc_cmdline(g), None
    if norm == "/proc/sys/kernel/random/boot_id":
        from lab.guest.install import boot_id

        return True, boot_id(g), None
    if norm.startswith("/proc/driver/nvidia"):
        if norm == "/proc/driver/nvidia/version":
            content = _driver_version_file(g)
            return True, content, None if content else "No such file or directory"
        return True, None, "No such file or directory"
    if norm.startswith("/sys/class/infiniband"):
        parts = norm.split("/")[4:]
        devices = {d.name: d for d in g.view.rdma}
        if not parts:
            return True, None, "Is a directory"
        dev = devices.get(parts[0])
        if dev is None:
            return True, None, "No such file or directory"
        rest = "/".join(parts[1:])
        if rest == "ports/1/state":
            return True, ("4: ACTIVE\n" if dev.state == "ACTIVE" else "1: DOWN\n"), None
        if rest == "node_guid":
            guid = dev.node_guid
            return True, ":".join(guid[i : i + 4] for i in range(0, 16, 4)) + "\n", None
        if rest == "ports/1/gid_attrs/types/0":
            return True, "IB/RoCE v1\n", None
        if rest == "ports/1/gid_attrs/types/1":
            return (True, "RoCE v2\n", None) if dev.roce == "v2" else (True, None, "Invalid argument")
        return True, None, "No such file or directory"
    return False, None, None


def _virtual_list(g: Guest, path: str) -> list[str] | None:
    norm = posixpath.normpath(path)
    if norm == "/sys/class/infiniband":
        return sorted(d.name for d in g.view.rdma)
    if norm == "/proc/driver/nvidia":
        return ["version", "gpus", "params", "registry"] if g.view.driver_version else None
    return None


def read_file(g: Guest, path: str) -> tuple[bytes | None, str | None]:
    handled, content, error = _virtual_read(g, path)
    if handled:
        return (content.encode() if content is not None else None), error
    p = g.host_path(path)
    if p.is_dir():
        return None, "Is a directory"
    try:
        return p.read_bytes(), None
    except FileNotFoundError:
        return None, "No such file or directory"
    except PermissionError:
        return None, "Permission denied"


def write_file(g: Guest, path: str, data: bytes, append: bool = False) -> str | None:
    """Write (or append) to a guest file; returns an error text or None."""
    if path == "/dev/null":
        return None
    norm = posixpath.normpath(path if path.startswith("/") else "/root/" + path)
    if norm.startswith(("/proc", "/sys")):
        return "Read-only file system"
    p = g.host_path(norm)
    if not p.parent.is_dir():
        return "No such file or directory"
    if p.is_dir():
        return "Is a directory"
    existed = p.exists()
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC), 0o666 & ~g.umask)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    if not existed:
        os.chmod(p, 0o666 & ~g.umask)
    return None


# ---------------------------------------------------------------- file commands
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


def cmd_test(g: Guest, argv: list[str], stdin: Input) -> Result:
    args = argv[1:]
    if argv[0] == "[":
        if not args or args[-1] != "]":
            return _ok(err="bash: [: missing `]'\n", rc=2)
        args = args[:-1]
    negate = False
    if args and args[0] == "!":
        negate, args = True, args[1:]
    result = _evaluate_test(g, args)
    if result is None:
        return _ok(err=f"bash: test: {' '.join(args)}: unary operator expected\n", rc=2)
    return _ok(rc=0 if result != negate else 1)


def _evaluate_test(g: Guest, args: list[str]) -> bool | None:
    if len(args) == 1:
        return args[0] != ""
    if len(args) == 2:
        op, arg = args
        if op == "-n":
            return arg != ""
        if op == "-z":
            return arg == ""
        handled, content, _ = _virtual_read(g, arg)
        listing = _virtual_list(g, arg)
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
        return _ok(err="stat: missing operand\n", rc=1)
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
    return _ok("".join(o + "\n" for o in out), "".join(e + "\n" for e in err), rc)


def cmd_ls(g: Guest, argv: list[str], stdin: Input) -> Result:
    flags = "".join(a[1:] for a in argv[1:] if a.startswith("-") and a != "--")
    paths = [a for a in argv[1:] if not a.startswith("-")] or ["/root"]
    out, err, rc = [], [], 0
    for path in paths:
        listing = _virtual_list(g, path)
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
    return _ok("".join(o + "\n" for o in out), "".join(e + "\n" for e in err), rc)


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
            return _ok(err=f"mkdir: cannot create directory '{d}': Read-only file system\n", rc=1)
        p = g.host_path(d)
        try:
            p.mkdir(parents=parents, exist_ok=parents)
        except FileExistsError:
            return _ok(err=f"mkdir: cannot create directory '{d}': File exists\n", rc=1)
        except FileNotFoundError:
            return _ok(err=f"mkdir: cannot create directory '{d}': No such file or directory\n", rc=1)
        os.chmod(p, mode if mode is not None else 0o777 & ~g.umask)
    return _ok()


def cmd_chmod(g: Guest, argv: list[str], stdin: Input) -> Result:
    args = [a for a in argv[1:] if a not in ("-R", "--")]
    if len(args) < 2:
        return _ok(err="chmod: missing operand\n", rc=1)
    mode_text, files = args[0], args[1:]
    if not re.fullmatch(r"[0-7]{3,4}", mode_text):
        return _ok(err=f"chmod: invalid mode: '{mode_text}' (the lab guest takes octal modes)\n", rc=1)
    for f in files:
        p = g.host_path(f)
        if not p.exists():
            return _ok(err=f"chmod: cannot access '{f}': No such file or directory\n", rc=1)
        os.chmod(p, int(mode_text, 8))
    return _ok()


def cmd_chown(g: Guest, argv: list[str], stdin: Input) -> Result:
    files = [a for a in argv[2:] if not a.startswith("-")]
    for f in files:
        if not g.host_path(f).exists():
            return _ok(err=f"chown: cannot access '{f}': No such file or directory\n", rc=1)
    return _ok()  # every lab file belongs to the lab's user; ownership changes are accepted as no-ops


def cmd_rm(g: Guest, argv: list[str], stdin: Input) -> Result:
    flags = "".join(a[1:] for a in argv[1:] if a.startswith("-") and a != "--")
    files = [a for a in argv[1:] if not a.startswith("-")]
    for f in files:
        p = g.host_path(f)
        if p.is_dir():
            if "r" not in flags:
                return _ok(err=f"rm: cannot remove '{f}': Is a directory\n", rc=1)
            import shutil

            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
        elif "f" not in flags:
            return _ok(err=f"rm: cannot remove '{f}': No such file or directory\n", rc=1)
    return _ok()


def cmd_mv(g: Guest, argv: list[str], stdin: Input) -> Result:
    args = [a for a in argv[1:] if not a.startswith("-")]
    if len(args) != 2:
        return _ok(err="mv: the lab guest takes exactly a source and a destination\n", rc=1)
    src, dst = g.host_path(args[0]), g.host_path(args[1])
    if not src.exists():
        return _ok(err=f"mv: cannot stat '{args[0]}': No such file or directory\n", rc=1)
    if dst.is_dir():
        dst = dst / src.name
    src.replace(dst)
    return _ok()


def cmd_cp(g: Guest, argv: list[str], stdin: Input) -> Result:
    args = [a for a in argv[1:] if not a.startswith("-")]
    if len(args) != 2:
        return _ok(err="cp: the lab guest takes exactly a source and a destination\n", rc=1)
    data, error = read_file(g, args[0])
    if data is None:
        return _ok(err=f"cp: cannot stat '{args[0]}': {error}\n", rc=1)
    dst = args[1].rstrip("/") + "/" + posixpath.basename(args[0]) if g.host_path(args[1]).is_dir() else args[1]
    error = write_file(g, dst, data)
    return _ok(err=f"cp: cannot create regular file '{args[1]}': {error}\n", rc=1) if error else _ok()


def cmd_touch(g: Guest, argv: list[str], stdin: Input) -> Result:
    for f in [a for a in argv[1:] if not a.startswith("-")]:
        p = g.host_path(f)
        if p.exists():
            p.touch()
        else:
            error = write_file(g, f, b"")
            if error:
                return _ok(err=f"touch: cannot touch '{f}': {error}\n", rc=1)
    return _ok()


def cmd_tee(g: Guest, argv: list[str], stdin: Input) -> Result:
    append = "-a" in argv[1:]
    data = stdin.read()
    for f in [a for a in argv[1:] if not a.startswith("-")]:
        error = write_file(g, f, data, append=append)
        if error:
            return 1, data, f"tee: {f}: {error}\n".encode()
    return 0, data, b""


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
    return _ok(out, err, rc)


def cmd_readlink(g: Guest, argv: list[str], stdin: Input) -> Result:
    paths = [a for a in argv[1:] if not a.startswith("-")]
    if not paths:
        return _ok(err="readlink: missing operand\n", rc=1)
    known = {"/sbin/init": "/usr/lib/systemd/systemd"}
    out = []
    for path in paths:
        if path in known:
            out.append(known[path])
        elif g.host_path(path).exists() or "-f" in argv:
            out.append(posixpath.normpath(path))
        else:
            return _ok(rc=1)
    return _ok("".join(o + "\n" for o in out))


def cmd_echo(g: Guest, argv: list[str], stdin: Input) -> Result:
    args = argv[1:]
    newline = True
    if args and args[0] == "-n":
        newline, args = False, args[1:]
    return _ok(" ".join(args) + ("\n" if newline else ""))


def cmd_grep(g: Guest, argv: list[str], stdin: Input) -> Result:
    flags, rest = "", []
    for a in argv[1:]:
        if a.startswith("-") and len(a) > 1 and not rest:
            flags += a[1:]
        else:
            rest.append(a)
    if not rest:
        return _ok(err="Usage: grep [OPTION]... PATTERNS [FILE]...\n", rc=2)
    pattern, files = rest[0], rest[1:]
    data = stdin.read() if not files else b"".join(read_file(g, f)[0] or b"" for f in files)
    regex = re.compile(
        pattern if "E" in flags or "P" in flags else pattern.replace(r"\|", "|"), re.I if "i" in flags else 0
    )
    lines = [ln for ln in data.decode(errors="replace").splitlines() if bool(regex.search(ln)) != ("v" in flags)]
    if "q" in flags:
        return _ok(rc=0 if lines else 1)
    if "c" in flags:
        return _ok(f"{len(lines)}\n", rc=0 if lines else 1)
    return _ok("".join(ln + "\n" for ln in lines), rc=0 if lines else 1)


def _count_arg(argv: list[str], default: int = 10) -> int:
    for i, a in enumerate(argv):
        if a == "-n" and i + 1 < len(argv):
            return int(argv[i + 1])
        if re.fullmatch(r"-\d+", a):
            return int(a[1:])
    return default


def cmd_head(g: Guest, argv: list[str], stdin: Input) -> Result:
    lines = stdin.read().decode(errors="replace").splitlines(keepends=True)
    return _ok("".join(lines[: _count_arg(argv)]))


def cmd_tail(g: Guest, argv: list[str], stdin: Input) -> Result:
    lines = stdin.read().decode(errors="replace").splitlines(keepends=True)
    n = _count_arg(argv)
    return _ok("".join(lines[-n:] if n else []))


def cmd_wc(g: Guest, argv: list[str], stdin: Input) -> Result:
    data = stdin.read()
    lines = data.count(b"\n")
    if "-l" in argv:
        return _ok(f"{lines}\n")
    return _ok(f"{lines} {len(data.split())} {len(data)}\n")


# ---------------------------------------------------------------- system commands
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
        return _ok(err=f"uname: invalid option -- '{sorted(bad)[0]}'\n", rc=1)
    return _ok(" ".join(fields[f] for f in "snrvmpio" if f in flags) + "\n")


def cmd_getconf(g: Guest, argv: list[str], stdin: Input) -> Result:
    if argv[1:] == ["LONG_BIT"]:
        return _ok("64\n" if g.state.get("arch", "x86_64") in ("x86_64", "aarch64") else "32\n")
    return _ok(err=f"getconf: Unrecognized variable '{' '.join(argv[1:])}'\n", rc=1)


def cmd_hostname(g: Guest, argv: list[str], stdin: Input) -> Result:
    return _ok(g.name + "\n")


def cmd_id(g: Guest, argv: list[str], stdin: Input) -> Result:
    if "-u" in argv:
        return _ok("0\n")
    return _ok("uid=0(root) gid=0(root) groups=0(root)\n")


def cmd_lsmod(g: Guest, argv: list[str], stdin: Input) -> Result:
    return _ok("\n".join(["Module                  Size  Used by", *_module_rows(g)]) + "\n")


def _module_rows(g: Guest) -> list[str]:
    rows: list[str] = []
    if g.view.driver_version:
        rows += [
            "nvidia_uvm           1540096  0",
            "nvidia_drm             77824  0",
            "nvidia_modeset       1306624  1 nvidia_drm",
            "nvidia              56713216  2 nvidia_uvm,nvidia_modeset",
        ]
    if any(d.name.startswith("vmw_pvrdma") for d in g.view.rdma):
        rows += [
            "vmw_pvrdma             69632  0",
            "ib_uverbs             163840  1 vmw_pvrdma",
            "ib_core               425984  2 vmw_pvrdma,ib_uverbs",
        ]
    if any(d.name.startswith("mlx5") for d in g.view.rdma):
        rows += [
            "mlx5_ib               409600  0",
            "mlx5_core            1900544  1 mlx5_ib",
            "ib_core               425984  1 mlx5_ib",
        ]
    if g.state.get("nouveau", {}).get("loaded"):
        rows += ["nouveau              2433024  0", "drm_ttm_helper         16384  1 nouveau"]
    rows += ["vmw_vmci               98304  1", "vmxnet3                77824  0"]
    return rows


def cmd_sleep(g: Guest, argv: list[str], stdin: Input) -> Result:
    try:
        time.sleep(min(float(argv[1]), 5.0))
    except (IndexError, ValueError):
        return _ok(err="sleep: missing operand\n", rc=1)
    return _ok()


def cmd_true(g: Guest, argv: list[str], stdin: Input) -> Result:
    return _ok()


def cmd_false(g: Guest, argv: list[str], stdin: Input) -> Result:
    return _ok(rc=1)


def cmd_umask(g: Guest, argv: list[str], stdin: Input) -> Result:
    if len(argv) == 1:
        return _ok(f"{g.umask:04o}\n")
    g.umask = int(argv[1], 8)
    return _ok()


def cmd_command(g: Guest, argv: list[str], stdin: Input) -> Result:
    if len(argv) >= 3 and argv[1] == "-v":
        name = argv[2]
        if name in COMMANDS and _installed(g, name):
            return _ok(COMMAND_PATHS.get(name, f"/usr/bin/{name}") + "\n")
        return _ok(rc=1)
    if len(argv) >= 2:
        return run_argv(g, argv[1:], Input(b""))
    return _ok()


def cmd_which(g: Guest, argv: list[str], stdin: Input) -> Result:
    found = [COMMAND_PATHS.get(a, f"/usr/bin/{a}") for a in argv[1:] if a in COMMANDS and _installed(g, a)]
    return _ok("".join(f + "\n" for f in found), rc=0 if len(found) == len(argv[1:]) else 1)


def cmd_sh(g: Guest, argv: list[str], stdin: Input) -> Result:
    from lab.guest.install import is_run_package, run_installer

    if len(argv) >= 2 and is_run_package(argv[1]):
        return run_installer(g, argv[1], argv[2:])
    if len(argv) >= 3 and argv[1] == "-c":
        return run_line(g, argv[2], stdin=None, stdin_input=stdin)
    return _ok(err=f"{argv[0]}: the lab guest runs only '{argv[0]} -c COMMAND'\n", rc=2)


def cmd_sudo(g: Guest, argv: list[str], stdin: Input) -> Result:
    args = argv[1:]
    while args and args[0].startswith("-"):
        args = args[2:] if args[0] in ("-u", "-g") else args[1:]
    return run_argv(g, args, stdin) if args else _ok(err="usage: sudo command\n", rc=1)


# ---------------------------------------------------------------- systemd: nvidia-gridd and friends
UNITS = {
    "nvidia-gridd": "NVIDIA Grid Daemon",
    "docker": "Docker Application Container Engine",
    "ssh": "OpenBSD Secure Shell server",
    "nvidia-persistenced": "NVIDIA Persistence Daemon",
}


def _unit(name: str) -> str:
    return name.removesuffix(".service")


def _gridd_restart(g: Guest) -> None:
    from lab.guest import gridd

    series = g.vgpu_series()
    with g.store.update() as state:
        gridd.start(state, g.root, series)
        g.state = state


def cmd_systemctl(g: Guest, argv: list[str], stdin: Input) -> Result:
    from lab.guest import gridd

    args = [a for a in argv[1:] if not a.startswith("--")]
    if not args:
        return _ok(err="systemctl: the lab guest needs a verb\n", rc=1)
    verb, units = args[0], [_unit(u) for u in args[1:]]
    if verb == "daemon-reload":
        return _ok()
    if verb == "reboot":
        from lab.guest.install import reboot

        return reboot(g)
    if verb == "list-unit-files":
        return _ok(
            "UNIT FILE                    STATE   VENDOR PRESET\n"
            + "".join(f"{u}.service    enabled enabled\n" for u in UNITS)
        )
    for unit in units:
        if unit not in UNITS:
            if verb in ("is-active",):
                return _ok("inactive\n", rc=3)
            if verb == "is-enabled":
                return _ok(err=f"Failed to get unit file state for {unit}.service: No such file or directory\n", rc=1)
            return _ok(
                err=f"Failed to {verb} {unit}.service: Unit {unit}.service not found.\n",
                rc=5 if verb != "status" else 4,
            )
    gridd_state = g.state.get("gridd", {})
    if verb == "is-active":
        active = all(gridd_state.get("active") if u == "nvidia-gridd" else True for u in units)
        return _ok("active\n" if active else "inactive\n", rc=0 if active else 3)
    if verb == "is-enabled":
        return _ok("enabled\n")
    if verb in ("restart", "start", "reload-or-restart", "try-restart"):
        if "nvidia-gridd" in units:
            if verb == "start" and gridd_state.get("active"):
                return _ok()
            _gridd_restart(g)
        if "docker" in units and verb != "start":
            from lab.guest.install import docker_restart

            docker_restart(g)
        return _ok()
    if verb == "stop":
        if "nvidia-gridd" in units:
            with g.store.update() as state:
                gridd.stop(state)
                g.state = state
        return _ok()
    if verb in ("enable", "disable"):
        return _ok()
    if verb == "status":
        unit = units[0] if units else "nvidia-gridd"
        active = gridd_state.get("active") if unit == "nvidia-gridd" else True
        since = time.strftime("%a %Y-%m-%d %H:%M:%S UTC", time.gmtime(gridd_state.get("started_at") or 0))
        lines = [
            f"● {unit}.service - {UNITS[unit]}",
            f"     Loaded: loaded (/lib/systemd/system/{unit}.service; enabled; vendor preset: enabled)",
            f"     Active: active (running) since {since}" if active else "     Active: inactive (dead)",
        ]
        if unit == "nvidia-gridd":
            lines += ["", *gridd.journal(g.state, g.name)[-10:]]
        return _ok("\n".join(lines) + "\n", rc=0 if active else 3)
    return _ok(err=f"Unknown command verb {verb}.\n", rc=1)


def cmd_journalctl(g: Guest, argv: list[str], stdin: Input) -> Result:
    from lab.guest import gridd

    unit = None
    for i, a in enumerate(argv):
        if a == "-u" and i + 1 < len(argv):
            unit = _unit(argv[i + 1])
        elif a.startswith("--unit="):
            unit = _unit(a.split("=", 1)[1])
    lines = gridd.journal(g.state, g.name) if unit in (None, "nvidia-gridd") else []
    n = _count_arg(argv, default=len(lines) or 1)
    return _ok("".join(ln + "\n" for ln in lines[-n:]) if lines else "-- No entries --\n")


# ---------------------------------------------------------------- NVIDIA
def cmd_nvidia_smi(g: Guest, argv: list[str], stdin: Input) -> Result:
    from lab.guest import gridd, smi

    if not _installed(g, "nvidia-smi"):
        return _not_found("nvidia-smi")
    view = g.view
    if view.driver_version is None:
        return _ok(smi.NO_DRIVER, rc=9)
    args = argv[1:]
    now = time.time()
    status = gridd.license_status(g.state, now)
    if not args:
        return _ok(smi.render_table(view, now))
    if args == ["-L"] or args == ["--list-gpus"]:
        return _ok(smi.render_list(view))
    if args and args[0] == "topo":
        if args[1:] in (["-m"], ["--matrix"]):
            return _ok(smi.render_topo(view, bool(g.state.get("nvlink", True))))
        return _ok(smi.BAD_ARGS, rc=2)
    if args and args[0] == "vgpu":
        return _ok("No supported devices in vGPU mode\n")
    query = {a for a in args if a in ("-q", "--query")}
    xml = any(a in ("-x", "--xml-format") for a in args)
    display = None
    for i, a in enumerate(args):
        if a in ("-d", "--display") and i + 1 < len(args):
            display = args[i + 1].upper()
        elif a.startswith("--display="):
            display = a.split("=", 1)[1].upper()
    query_gpu = next((a.split("=", 1)[1] for a in args if a.startswith("--query-gpu=")), None)
    fmt = next((a.split("=", 1)[1] for a in args if a.startswith("--format=")), None)
    if query_gpu is not None:
        rc, out, err = smi.render_query_gpu(view, query_gpu, fmt)
        return _ok(out, err, rc)
    if query and xml and display is None:
        return _ok(smi.render_xml(view, status, now))
    if query and not xml:
        rc, out = smi.render_query(view, status, now, display)
        return _ok(out, rc=rc)
    return _ok(smi.BAD_ARGS, rc=2)


def cmd_nvidia_ctk(g: Guest, argv: list[str], stdin: Input) -> Result:
    version = g.state.get("container", {}).get("toolkit")
    if not version:
        return _not_found("nvidia-ctk")
    args = argv[1:]
    if args in (["--version"], ["-v"], ["-version"]):
        return _ok(
            f"NVIDIA Container Toolkit CLI version {version}\ncommit: a5a5833c14a15fd9c86bcece85d5ec6621b65652\n"
        )
    if args[:2] == ["cdi", "list"]:
        names = [f"nvidia.com/gpu={i}" for i in range(len(g.view.gpus))]
        names += [f"nvidia.com/gpu={gpu.uuid}" for gpu in g.view.gpus] + (["nvidia.com/gpu=all"] if g.view.gpus else [])
        return _ok(
            "".join(n + "\n" for n in names),
            f'time="2024-09-02T10:00:00Z" level=info msg="Found {len(names)} CDI devices"\n',
        )
    if args[:2] == ["runtime", "configure"] and any(a in ("--runtime=docker", "docker") for a in args):
        from lab.guest.install import ctk_configure

        return ctk_configure(g, args)
    return _ok(err=f'time="2024-09-02T10:00:00Z" level=error msg="unsupported arguments: {" ".join(args)}"\n', rc=1)


def _docker_runtimes(g: Guest) -> dict[str, dict]:
    runtimes: dict[str, dict] = {"io.containerd.runc.v2": {"path": "runc"}, "runc": {"path": "runc"}}
    if g.state.get("container", {}).get("nvidia_runtime"):
        runtimes["nvidia"] = {"path": "nvidia-container-runtime"}
    return runtimes


def cmd_docker(g: Guest, argv: list[str], stdin: Input) -> Result:
    if not g.state.get("container", {}).get("docker"):
        return _not_found("docker")
    args = argv[1:]
    if args in (["--version"], ["-v"]):
        return _ok("Docker version 27.2.0, build 3ab4256\n")
    if args and args[0] == "info":
        runtimes = _docker_runtimes(g)
        fmt = next((args[i + 1] for i, a in enumerate(args) if a in ("--format", "-f") and i + 1 < len(args)), None)
        fmt = fmt or next((a.split("=", 1)[1] for a in args if a.startswith("--format=")), None)
        if fmt is not None:
            if fmt.replace(" ", "") == "{{json.Runtimes}}":
                return _ok(json.dumps(runtimes) + "\n")
            if fmt.replace(" ", "") == "{{.DefaultRuntime}}":
                return _ok("runc\n")
            return _ok(err=f"template: :1: unsupported by the lab guest: {fmt}\n", rc=1)
        return _ok(
            "Client: Docker Engine - Community\n Version:    27.2.0\n Context:    default\n\n"
            "Server:\n Containers: 0\n Images: 1\n Server Version: 27.2.0\n Storage Driver: overlay2\n"
            " Cgroup Driver: systemd\n Cgroup Version: 2\n"
            f" Runtimes: {' '.join(sorted(runtimes))}\n Default Runtime: runc\n"
            f" Kernel Version: {g.state.get('kernel')}\n Operating System: Ubuntu 22.04.4 LTS\n"
            f" Architecture: {g.state.get('arch', 'x86_64')}\n"
        )
    if args and args[0] == "run":
        return _docker_run(g, args[1:])
    return _ok(err=f"docker: '{args[0] if args else ''}' is not a docker command in the lab guest.\n", rc=1)


def _docker_run(g: Guest, args: list[str]) -> Result:
    gpus = runtime = None
    rest: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--gpus":
            gpus, i = args[i + 1], i + 2
            continue
        if a.startswith("--gpus="):
            gpus = a.split("=", 1)[1]
        elif a == "--runtime":
            runtime, i = args[i + 1], i + 2
            continue
        elif a.startswith("--runtime="):
            runtime = a.split("=", 1)[1]
        elif a in ("--rm", "-t", "-i", "-it", "--init"):
            pass
        elif a in ("-e", "--env", "--name"):
            i += 2
            continue
        else:
            rest = args[i:]
            break
        i += 1
    if not rest:
        return _ok(err='"docker run" requires at least 1 argument.\n', rc=1)
    command = rest[1:]
    if gpus is not None or runtime == "nvidia":
        if not g.state.get("container", {}).get("nvidia_runtime") or not g.state.get("container", {}).get("toolkit"):
            return _ok(
                err='docker: Error response from daemon: could not select device driver "" with capabilities: [[gpu]].\n',
                rc=125,
            )
        if g.view.driver_version is None:
            return _ok(
                err="docker: Error response from daemon: failed to create task for container: failed to create shim task: "
                "OCI runtime create failed: runc create failed: unable to start container process: error during container init: "
                "error running hook #0: error running hook: exit status 1, stdout: , stderr: Auto-detected mode as 'legacy'\n"
                "nvidia-container-cli: initialization error: nvml error: driver not loaded: unknown.\n",
                rc=125,
            )
        if command and command[0] == "nvidia-smi":
            return cmd_nvidia_smi(g, command, Input(b""))
    elif command and command[0] == "nvidia-smi":
        return _ok(
            err='docker: Error response from daemon: failed to create task for container: exec: "nvidia-smi": executable file not found in $PATH: unknown.\n',
            rc=127,
        )
    if not command:
        return _ok()
    return run_argv(g, command, Input(b""))


# ---------------------------------------------------------------- RDMA
def cmd_ibv_devices(g: Guest, argv: list[str], stdin: Input) -> Result:
    lines = ["    device          \t   node GUID", "    ------          \t----------------"]
    lines += [f"    {d.name:<16}\t{d.node_guid}" for d in g.view.rdma]
    return _ok("\n".join(lines) + "\n")


def cmd_rdma(g: Guest, argv: list[str], stdin: Input) -> Result:
    args = [a for a in argv[1:] if not a.startswith("-")]
    if args[:1] == ["link"] and args[1:2] in ([], ["show"]):
        return _ok(
            "".join(
                f"link {d.name}/1 state {d.state} physical_state {'LINK_UP' if d.state == 'ACTIVE' else 'DISABLED'} netdev {d.netdev} \n"
                for d in g.view.rdma
            )
        )
    if args[:1] in (["dev"], ["device"]):
        return _ok(
            "".join(
                f"{i}: {d.name}: node_type ca fw 3.0.000 node_guid {d.node_guid[:4]}:{d.node_guid[4:8]}:{d.node_guid[8:12]}:{d.node_guid[12:]} sys_image_guid {d.node_guid[:4]}:{d.node_guid[4:8]}:{d.node_guid[8:12]}:{d.node_guid[12:]} \n"
                for i, d in enumerate(g.view.rdma)
            )
        )
    return _ok(err=f'Object "{args[0] if args else ""}" is unknown, try "rdma help".\n', rc=1)


def cmd_ibv_devinfo(g: Guest, argv: list[str], stdin: Input) -> Result:
    """``ibv_devinfo [-d DEV]`` (rdma-core's layout; docs/reference/bitfusion_formats.txt)."""
    want = argv[argv.index("-d") + 1] if "-d" in argv[:-1] else None
    devices = [d for d in g.view.rdma if want in (None, d.name)]
    if not devices:
        return _ok(err="No IB devices found\n" if want is None else f"IB device '{want}' wasn't found\n", rc=255)
    out = []
    for d in devices:
        guid = f"{d.node_guid[:4]}:{d.node_guid[4:8]}:{d.node_guid[8:12]}:{d.node_guid[12:]}"
        port_state = "PORT_ACTIVE (4)" if d.state == "ACTIVE" else "PORT_DOWN (1)"
        out.append(
            f"hca_id:\t{d.name}\n\ttransport:\t\t\tInfiniBand (0)\n\tfw_ver:\t\t\t\t3.0.000\n"
            f"\tnode_guid:\t\t\t{guid}\n\tsys_image_guid:\t\t\t{guid}\n\tphys_port_cnt:\t\t\t1\n"
            f"\t\tport:\t1\n\t\t\tstate:\t\t\t{port_state}\n\t\t\tmax_mtu:\t\t4096 (5)\n"
            f"\t\t\tactive_mtu:\t\t1024 (3)\n\t\t\tlink_layer:\t\tEthernet\n\n"
        )
    return _ok("".join(out))


def cmd_show_gids(g: Guest, argv: list[str], stdin: Input) -> Result:
    """Mellanox's ``show_gids``: one row per GID with its RoCE version (v1 / v2)."""
    rows = [
        "DEV\tPORT\tINDEX\tGID\t\t\t\t\tIPv4  \t\tVER\tDEV",
        "---\t----\t-----\t---\t\t\t\t\t------------  \t---\t---",
    ]
    for i, d in enumerate(g.view.rdma):
        ip = f"192.168.{100 + i}.{11 + i}"
        v4 = (
            "0000:0000:0000:0000:0000:ffff:"
            + "".join(f"{int(o):02x}" for o in ip.split(".")[:2])
            + ":"
            + "".join(f"{int(o):02x}" for o in ip.split(".")[2:])
        )
        for index, ver in ((0, "v1"), (1, "v2")):
            if d.roce == "v2" or ver == "v1":
                rows.append(f"{d.name}\t1\t{index}\t{v4}\t{ip}  \t{ver}\t{d.netdev}")
    return _ok("\n".join(rows) + f"\nn_gids_found={len(rows) - 2}\n")


def cmd_cma_roce_mode(g: Guest, argv: list[str], stdin: Input) -> Result:
    """``cma_roce_mode -d DEV -p 1``: the RoCE mode rdma_cm uses on that port."""
    want = argv[argv.index("-d") + 1] if "-d" in argv[:-1] else None
    device = next((d for d in g.view.rdma if d.name == want), None)
    if device is None:
        return _ok(err=f"Device {want} not found\n", rc=1)
    return _ok("RoCE v2\n" if device.roce == "v2" else "IB/RoCE v1\n")


def cmd_bitfusion(g: Guest, argv: list[str], stdin: Input) -> Result:
    from lab.guest.bitfusion import cmd_bitfusion as run

    return run(g, argv, stdin)


def cmd_reboot(g: Guest, argv: list[str], stdin: Input) -> Result:
    from lab.guest.install import reboot

    return reboot(g)


def _install_command(name: str) -> Callable[[Guest, list[str], Input], Result]:
    def run(g: Guest, argv: list[str], stdin: Input) -> Result:
        from lab.guest import install

        return getattr(install, name)(g, argv, stdin)

    return run


COMMANDS: dict[str, Callable[[Guest, list[str], Input], Result]] = {
    "dpkg-query": _install_command("cmd_dpkg_query"),
    "apt-get": _install_command("cmd_apt_get"),
    "dkms": _install_command("cmd_dkms"),
    "update-grub": _install_command("cmd_update_grub"),
    "reboot": cmd_reboot,
    "modinfo": _install_command("cmd_modinfo"),
    "cat": cmd_cat,
    "test": cmd_test,
    "[": cmd_test,
    "stat": cmd_stat,
    "ls": cmd_ls,
    "mkdir": cmd_mkdir,
    "chmod": cmd_chmod,
    "chown": cmd_chown,
    "rm": cmd_rm,
    "mv": cmd_mv,
    "cp": cmd_cp,
    "touch": cmd_touch,
    "tee": cmd_tee,
    "sha256sum": cmd_sha256sum,
    "echo": cmd_echo,
    "readlink": cmd_readlink,
    "grep": cmd_grep,
    "head": cmd_head,
    "tail": cmd_tail,
    "wc": cmd_wc,
    "uname": cmd_uname,
    "getconf": cmd_getconf,
    "hostname": cmd_hostname,
    "id": cmd_id,
    "lsmod": cmd_lsmod,
    "sleep": cmd_sleep,
    "true": cmd_true,
    "false": cmd_false,
    "umask": cmd_umask,
    "command": cmd_command,
    "which": cmd_which,
    "sh": cmd_sh,
    "bash": cmd_sh,
    "sudo": cmd_sudo,
    "systemctl": cmd_systemctl,
    "journalctl": cmd_journalctl,
    "nvidia-smi": cmd_nvidia_smi,
    "nvidia-ctk": cmd_nvidia_ctk,
    "docker": cmd_docker,
    "ibv_devices": cmd_ibv_devices,
    "rdma": cmd_rdma,
    "ibv_devinfo": cmd_ibv_devinfo,
    "show_gids": cmd_show_gids,
    "cma_roce_mode": cmd_cma_roce_mode,
    "bitfusion": cmd_bitfusion,
}


# ---------------------------------------------------------------- execution
def run_argv(g: Guest, argv: list[str], stdin: Input) -> Result:
    while argv and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", argv[0]):
        argv = argv[1:]  # NAME=value prefixes (LANG=C ...) change nothing here
    if not argv:
        return _ok()
    name = posixpath.basename(argv[0]) if argv[0].startswith("/") else argv[0]
    if name.endswith(".run") and "/" in argv[0]:
        return cmd_sh(g, ["sh", *argv], stdin)
    if name in ("exit",):
        return _ok(rc=int(argv[1]) if len(argv) > 1 else 0)
    func = COMMANDS.get(name)
    if func is None or not _installed(g, name):
        return _not_found(argv[0])
    return func(g, [name, *argv[1:]], stdin)


def _run_simple(g: Guest, cmd: SimpleCommand, stdin: Input) -> Result:
    for r in cmd.redirects:
        if r.fd == 0 and r.op == "<":
            data, error = read_file(g, r.target)
            if data is None:
                return _ok(err=f"bash: line 1: {r.target}: {error}\n", rc=1)
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
                return _ok(err=f"bash: line 1: {r.target}: {error}\n", rc=1)
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
        return _ok(err=f"bash: line 1: {exc}\n", rc=2)
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
