"""The simulated host's shell commands, in one registry: ``esxcli`` / ``localcli`` and ``nvidia-smi`` (their own
modules, imported only when called), ``vim-cmd``, ``vmware``, ``uname``, ``reboot``, ``mlxconfig``/``mst``,
``vmkload_mod``, and the few busybox tools scripts pipe into (cd, grep, head, tail, wc, cat, ls, sha256sum, ...).

Every command takes ``(ctx, argv, stdin)`` and returns a :class:`Result`; argv[0] is the command name as typed.
A command registers with ``@command(name, *aliases)``; :func:`run` is the dispatcher (unknown: ``sh: NAME: not
found``, status 127).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable
from typing import Any

from lab import control
from lab.esxi import events
from lab.esxi.context import Ctx, Result
from lab.esxi.state import ESXI_BUILD, ESXI_UPDATE, ESXI_VERSION, host_fs_path
from lab.registry import Registry

Handler = Callable[[Ctx, list[str], str], Result]
COMMANDS: Registry[Handler] = Registry("ESXi command")
command = COMMANDS.register  # @command("vmware", "/bin/vmware"): the command and the paths it is called by


def run(ctx: Ctx, argv: list[str], stdin: str) -> Result:
    """Run one simple command (``argv[0]`` its name)."""
    handler = COMMANDS.get(argv[0])
    if handler is None:
        return not_found(argv[0])
    return handler(ctx, argv, stdin)


def not_found(name: str) -> Result:
    return Result(127, err=f"sh: {name}: not found\n")


# -- esxcli and nvidia-smi: modules of their own, imported only by the commands that need them ------------------


@command("esxcli", "/bin/esxcli", "/sbin/esxcli", "localcli", "/sbin/localcli")
def esxcli(ctx: Ctx, argv: list[str], stdin: str) -> Result:
    from lab.esxi import esxcli

    return esxcli.run(ctx, argv[1:])


@command("nvidia-smi", "/bin/nvidia-smi", "/usr/bin/nvidia-smi", "/opt/nvidia/bin/nvidia-smi")
def nvidia_smi(ctx: Ctx, argv: list[str], stdin: str) -> Result:
    from lab.esxi import nvidia_smi

    return nvidia_smi.run(ctx, argv[1:])


# -- ESXi identity -------------------------------------------------------------------------------------------------


@command("vmware", "/bin/vmware")
def vmware(ctx: Ctx, argv: list[str], stdin: str) -> Result:
    flags = "".join(a.lstrip("-") for a in argv[1:])
    if not flags or set(flags) - {"v", "l"}:
        return Result(1, err="Usage: vmware -v | -l | -vl\n")
    out = []
    if "v" in flags:
        out.append(f"VMware ESXi {ESXI_VERSION} build-{ESXI_BUILD}")
    if "l" in flags:
        out.append(f"VMware ESXi 8.0 {ESXI_UPDATE}")
    return Result(0, "\n".join(out) + "\n")


@command("uname", "/bin/uname")
def uname(ctx: Ctx, argv: list[str], stdin: str) -> Result:
    fields = {
        "s": "VMkernel",
        "n": ctx.host,
        "r": ESXI_VERSION,
        "v": f"#1 SMP Release build-{ESXI_BUILD} Sep 10 2024 09:48:23",
        "m": "x86_64",
        "p": "x86_64",
        "i": "x86_64",
        "o": "ESXi",
    }
    flags = "".join(a.lstrip("-") for a in argv[1:]) or "s"
    if "a" in flags:
        flags = "snrvmpio"
    if set(flags) - set(fields):
        return Result(1, err=f"uname: invalid option -- '{(set(flags) - set(fields)).pop()}'\n")
    return Result(0, " ".join(fields[f] for f in "snrvmpio" if f in flags) + "\n")


@command("hostname", "/bin/hostname")
def hostname(ctx: Ctx, argv: list[str], stdin: str) -> Result:
    return Result(0, (ctx.host if "-f" in argv else ctx.short_name) + "\n")


# -- vim-cmd --------------------------------------------------------------------------------------------------------

_INVALID_STATE = (
    "(vim.fault.InvalidState) {\n"
    "   faultCause = (vmodl.MethodFault) null, \n"
    "   faultMessage = <unset>\n"
    '   msg = "The operation is not allowed in the current state."\n'
    "}\n"
)


@command("vim-cmd", "/bin/vim-cmd")
def vim_cmd(ctx: Ctx, argv: list[str], stdin: str) -> Result:
    from lab.esxi.vcface import VcenterClient, VcenterUnavailable

    if len(argv) < 2:
        return Result(
            0,
            "Commands available under /:\nhbrsvc/       internalsvc/  solo/         vmsvc/\nhostsvc/      proxysvc/     vimsvc/       help\n",
        )
    cmd = argv[1].strip("/")
    try:
        if cmd in ("hostsvc/maintenance_mode_enter", "hostsvc/maintenance_mode_exit"):
            enter = cmd.endswith("enter")
            client = VcenterClient(ctx.paths)
            if client.host_view(ctx.host)["inMaintenanceMode"] == enter:
                return Result(1, err=_INVALID_STATE)
            client.update_host(ctx.host, inMaintenanceMode=enter)
            events.record(ctx.paths, ctx.host, "maintenance_enter" if enter else "maintenance_exit", via="vim-cmd")
            return Result(0)
        if cmd == "hostsvc/hostsummary":
            view = VcenterClient(ctx.paths).host_view(ctx.host)
            return Result(0, _hostsummary(ctx, view))
    except VcenterUnavailable as exc:
        return Result(1, err=f"Failed to login: {exc}\n")
    return Result(1, err=f"Unknown command: '{argv[1]}'\n")


def _hostsummary(ctx: Ctx, view: dict[str, Any]) -> str:
    state = ctx.store.read()
    return (
        "(vim.host.Summary) {\n"
        "   host = 'vim.HostSystem:ha-host', \n"
        "   runtime = (vim.host.RuntimeInfo) {\n"
        f'      connectionState = "{view["connectionState"]}", \n'
        '      powerState = "poweredOn", \n'
        f"      inMaintenanceMode = {str(view['inMaintenanceMode']).lower()}, \n"
        f'      bootTime = "{time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(state["boot"]["booted_at"]))}", \n'
        "   }, \n"
        "   config = (vim.host.Summary.ConfigSummary) {\n"
        f'      name = "{ctx.host}", \n'
        "      product = (vim.AboutInfo) {\n"
        '         name = "VMware ESXi", \n'
        f'         fullName = "VMware ESXi {ESXI_VERSION} build-{ESXI_BUILD}", \n'
        f'         version = "{ESXI_VERSION}", \n'
        f'         build = "{ESXI_BUILD}", \n'
        "      }, \n"
        "   }, \n"
        "}\n"
    )


# -- reboot ---------------------------------------------------------------------------------------------------------


def supervisor_request(ctx: Ctx, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    return control.request(ctx.paths.supervisor_socket, request, timeout)


@command("reboot", "/bin/reboot", "/sbin/reboot")
def reboot(ctx: Ctx, argv: list[str], stdin: str) -> Result:
    for a in argv[1:]:
        if a not in ("-f", "-n", "-d") and not a.isdigit():
            return Result(1, err=f"reboot: invalid option -- '{a.lstrip('-')}'\nUsage: reboot [-d DELAY] [-n] [-f]\n")
    try:
        answer = supervisor_request(ctx, {"op": "reboot", "host": ctx.host})
    except OSError as exc:
        return Result(1, err=f"reboot: {exc}\n")
    if not answer.get("ok"):
        return Result(1, err=f"reboot: {answer.get('error', 'failed')}\n")
    return Result(0)


# -- Mellanox firmware tools ------------------------------------------------------------------------------------------

_MLX_DESCRIPTION = "ConnectX-6 Dx EN adapter card; 100GbE; Dual-port QSFP56; PCIe 4.0/3.0 x16;"


def _mlx_devices(state: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"mt{nic['device_id']}_pciconf{i}", nic) for i, nic in enumerate(state["nics"])]


def _mlx_find(state: dict[str, Any], dev: str) -> dict[str, Any] | None:
    dev = dev.removeprefix("/dev/mst/")
    for name, nic in _mlx_devices(state):
        if dev in (name, nic["pci_id"], nic["pci_id"][5:]):
            return nic
    return None


def _bool_cfg(value: bool) -> str:
    return "True(1)" if value else "False(0)"


def _mlx_header(dev: str) -> list[str]:
    return [
        "",
        "Device #1:",
        "----------",
        "",
        "Device type:        ConnectX6DX",
        "Name:               MCX623106AN-CDA_Ax",
        f"Description:        {_MLX_DESCRIPTION}",
        f"Device:             {dev}",
        "",
    ]


_MLX_STATIC = [
    ("MEMIC_BAR_SIZE", "0"),
    ("MEMIC_SIZE_LIMIT", "_256KB(1)"),
    ("NUM_OF_VFS", "0"),
    ("SRIOV_EN", "False(0)"),
]


@command("mlxconfig", "/opt/mellanox/bin/mlxconfig")
def mlxconfig(ctx: Ctx, argv: list[str], stdin: str) -> Result:
    args = argv[1:]
    dev, yes, verbose = None, False, False
    rest: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-d", "--dev"):
            dev = args[i + 1] if i + 1 < len(args) else None
            i += 2
            continue
        if a in ("-y", "--yes"):
            yes = True
        elif a in ("-e", "--enable_verbosity"):
            verbose = True
        else:
            rest.append(a)
        i += 1
    if dev is None or not rest:
        return Result(
            1,
            err="-E- Missing device, please specify a device with -d. Use mlxconfig -h for help.\n"
            if dev is None
            else "-E- No command found. Use mlxconfig -h for help.\n",
        )
    state = ctx.store.read()
    nic = _mlx_find(state, dev)
    if nic is None:
        return Result(1, err=f"-E- Failed to open device: {dev}. No such file or directory\n")
    op, params = rest[0], rest[1:]
    if op in ("q", "query"):
        lines = _mlx_header(dev)
        if verbose:
            lines.append(
                "Configurations:                                          Default         Current         Next Boot"
            )
            for name, val in _MLX_STATIC:
                lines.append(f"         {name:<44}{val:<16}{val:<16}{val}")
            cur, nxt = nic["ats_current"], nic["ats_next"]
            star = "*" if cur != nxt or nxt else " "
            lines.append(f"{star}        {'ATS_ENABLED':<44}{_bool_cfg(False):<16}{_bool_cfg(cur):<16}{_bool_cfg(nxt)}")
            lines.append("The '*' shows parameters with next value different from default/current value.")
        else:
            lines.append("Configurations:                                          Next Boot")
            for name, val in _MLX_STATIC:
                lines.append(f"        {name:<44}{val}")
            lines.append(f"        {'ATS_ENABLED':<44}{_bool_cfg(nic['ats_next'])}")
        wanted = [p.split("=")[0] for p in params]
        if wanted:
            lines = lines[:9] + [
                line for line in lines[9:] if any(w in line for w in wanted) or line.startswith("Configurations")
            ]
        return Result(0, "\n".join(lines) + "\n")
    if op in ("set", "s"):
        if not params:
            return Result(1, err="-E- No parameters to set. Use mlxconfig -h for help.\n")
        new: bool | None = None
        for p in params:
            key, _, val = p.partition("=")
            if key != "ATS_ENABLED":
                return Result(1, err=f"-E- Unknown Parameter: {key}\n")
            if val.lower() not in ("1", "0", "true", "false"):
                return Result(1, err=f"-E- Bad value for ATS_ENABLED: {val}\n")
            new = val.lower() in ("1", "true")
        lines = _mlx_header(dev)
        lines.append("Configurations:                                          Next Boot       New")
        lines.append(f"         {'ATS_ENABLED':<44}{_bool_cfg(nic['ats_next']):<16}{_bool_cfg(bool(new))}")
        lines.append("")
        if not yes:
            answer = stdin.strip().lower()
            lines.append(" Apply new Configuration? (y/n) [n] : " + answer)
            if answer not in ("y", "yes"):
                lines.append("Aborted by user")
                return Result(1, "\n".join(lines) + "\n")
        else:
            lines.append(" Apply new Configuration? (y/n) [n] : y")
        with ctx.store.edit() as st:
            target = _mlx_find(st, dev)
            assert target is not None
            target["ats_next"] = bool(new)
        events.record(ctx.paths, ctx.host, "mlxconfig_set", device=nic["pci_id"], ATS_ENABLED=bool(new))
        lines.append("Applying... Done!")
        lines.append("-I- Please reboot machine to load new configurations.")
        return Result(0, "\n".join(lines) + "\n")
    return Result(1, err=f"-E- Unknown command: {op}. Use mlxconfig -h for help.\n")


@command("mst", "/opt/mellanox/bin/mst")
def mst(ctx: Ctx, argv: list[str], stdin: str) -> Result:
    if argv[1:2] != ["status"]:
        return Result(1, err="Usage: mst status [-v]\n")
    state = ctx.store.read()
    lines = [
        "PCI devices:",
        "------------",
        "DEVICE_TYPE             MST                           PCI       RDMA            NET                                     NUMA",
    ]
    for name, nic in _mlx_devices(state):
        lines.append(
            f"ConnectX6DX(rev:0)      {name:<30}{nic['pci_id'][5:]:<10}{nic['vmrdma']:<16}net-{nic['vmnic']:<36}{nic['numa_node']}"
        )
    return Result(0, "\n".join(lines) + "\n")


@command("vmkload_mod", "/sbin/vmkload_mod")
def vmkload_mod(ctx: Ctx, argv: list[str], stdin: str) -> Result:
    if argv[1:] not in (["-l"], ["--list"]):
        return Result(1, err="Usage: vmkload_mod -l\n")
    state = ctx.store.read()
    mods = [("vmkernel", 1, 26460), ("nmlx5_core", 38, 1048), ("nmlx5_rdma", 12, 612)]
    if state.get("driver_loaded"):
        mods.append(("nvidia", 51, 35792))
    lines = ["Name                     Used Size (kb)"] + [f"{n:<25}{u:<5}{s}" for n, u, s in mods]
    return Result(0, "\n".join(lines) + "\n")


@command("/etc/init.d/xorg")
def xorg(ctx: Ctx, argv: list[str], stdin: str) -> Result:
    if argv[1:2] not in (["start"], ["stop"], ["restart"], ["status"]):
        return Result(1, err="Usage: /etc/init.d/xorg {start|stop|restart|status}\n")
    if argv[1] == "status":
        return Result(0, "Xorg is running\n")
    return Result(0, "Getting Exclusive access, please wait\u2026\nExclusive access granted.\n")


@command("nv-hostengine", "/bin/nv-hostengine")
def nv_hostengine(ctx: Ctx, argv: list[str], stdin: str) -> Result:
    if not ctx.store.read().get("driver_loaded"):
        return not_found(argv[0])
    if "-t" in argv:
        return Result(0, "Host engine successfully terminated.\n")
    return Result(0, "Started host engine version 1.8.0 using socket path: /tmp/nv-hostengine\n")


# -- busybox subset --------------------------------------------------------------------------------------------------


def _fs(ctx: Ctx, path: str) -> Any:
    full = path if path.startswith("/") else f"{ctx.cwd.rstrip('/')}/{path}"
    return host_fs_path(ctx.paths, ctx.host, full)


@command("cd")
def cd(ctx: Ctx, argv: list[str], stdin: str) -> Result:
    target = argv[1] if len(argv) > 1 else "/"
    new = target if target.startswith("/") else f"{ctx.cwd.rstrip('/')}/{target}"
    try:
        if not host_fs_path(ctx.paths, ctx.host, new).is_dir():
            raise ValueError(new)
    except ValueError:
        return Result(2, err=f"sh: cd: can't cd to {target}: No such file or directory\n")
    ctx.cwd = os.path.normpath(new)
    return Result(0)


@command("echo")
def echo(ctx: Ctx, argv: list[str], stdin: str) -> Result:
    args = argv[1:]
    newline = True
    if args[:1] == ["-n"]:
        newline, args = False, args[1:]
    return Result(0, " ".join(args) + ("\n" if newline else ""))


@command("true")
def true_(ctx: Ctx, argv: list[str], stdin: str) -> Result:
    return Result(0)


@command("false")
def false_(ctx: Ctx, argv: list[str], stdin: str) -> Result:
    return Result(1)


@command("pwd")
def pwd(ctx: Ctx, argv: list[str], stdin: str) -> Result:
    return Result(0, ctx.cwd + "\n")


@command("sleep")
def sleep(ctx: Ctx, argv: list[str], stdin: str) -> Result:
    try:
        time.sleep(min(float(argv[1]), 30.0))
    except (IndexError, ValueError):
        return Result(1, err="Usage: sleep N\n")
    return Result(0)


@command("grep")
def grep(ctx: Ctx, argv: list[str], stdin: str) -> Result:
    flags, args = set(), []
    for a in argv[1:]:
        if a.startswith("-") and len(a) > 1 and not args:
            flags |= set(a[1:])
        else:
            args.append(a)
    if not args:
        return Result(
            2,
            err="BusyBox v1.36.1 multi-call binary.\n\nUsage: grep [-HhnlLoqvsrRiwFE] [-m N] [-A|B|C N] { PATTERN | -e PATTERN... | -f FILE... } [FILE]...\n",
        )
    pattern, files = args[0], args[1:]
    text = stdin
    if files:
        try:
            text = "".join(_fs(ctx, f).read_text() for f in files)
        except (OSError, ValueError):
            return Result(2, err=f"grep: {files[0]}: No such file or directory\n")
    rx = re.compile(re.escape(pattern) if "F" in flags else pattern, re.IGNORECASE if "i" in flags else 0)
    lines = [line for line in text.splitlines() if bool(rx.search(line)) != ("v" in flags)]
    if "q" in flags:
        return Result(0 if lines else 1)
    if "c" in flags:
        return Result(0 if lines else 1, f"{len(lines)}\n")
    return Result(0 if lines else 1, "".join(line + "\n" for line in lines))


def _count_arg(argv: list[str], default: int = 10) -> tuple[int, list[str]]:
    n, rest = default, []
    args = argv[1:]
    i = 0
    while i < len(args):
        a = args[i]
        if a == "-n" and i + 1 < len(args):
            n = int(args[i + 1])
            i += 2
            continue
        if re.fullmatch(r"-\d+", a):
            n = int(a[1:])
        else:
            rest.append(a)
        i += 1
    return n, rest


@command("head")
def head(ctx: Ctx, argv: list[str], stdin: str) -> Result:
    n, _ = _count_arg(argv)
    return Result(0, "".join(line + "\n" for line in stdin.splitlines()[:n]))


@command("tail")
def tail(ctx: Ctx, argv: list[str], stdin: str) -> Result:
    n, _ = _count_arg(argv)
    lines = stdin.splitlines()
    return Result(0, "".join(line + "\n" for line in lines[-n:] if n))


@command("wc")
def wc(ctx: Ctx, argv: list[str], stdin: str) -> Result:
    if "-l" in argv:
        return Result(0, f"{len(stdin.splitlines())}\n")
    return Result(0, f"{len(stdin.splitlines())} {len(stdin.split())} {len(stdin.encode())}\n")


@command("cat")
def cat(ctx: Ctx, argv: list[str], stdin: str) -> Result:
    if len(argv) == 1:
        return Result(0, stdin)
    out = []
    for f in argv[1:]:
        try:
            out.append(_fs(ctx, f).read_text(errors="replace"))
        except (OSError, ValueError):
            return Result(1, "".join(out), f"cat: can't open '{f}': No such file or directory\n")
    return Result(0, "".join(out))


@command("ls")
def ls(ctx: Ctx, argv: list[str], stdin: str) -> Result:
    long = any(a.startswith("-") and "l" in a for a in argv[1:])
    targets = [a for a in argv[1:] if not a.startswith("-")] or [ctx.cwd]
    out = []
    for t in targets:
        try:
            p = _fs(ctx, t)
        except ValueError:
            return Result(1, err=f"ls: {t}: No such file or directory\n")
        if not p.exists():
            return Result(1, err=f"ls: {t}: No such file or directory\n")
        entries = sorted(p.iterdir(), key=lambda e: e.name) if p.is_dir() else [p]
        for e in entries:
            if long:
                kind = "d" if e.is_dir() else "-"
                size = e.stat().st_size
                stamp = time.strftime("%b %e %H:%M", time.localtime(e.stat().st_mtime))
                out.append(f"{kind}rw-r--r--    1 root     root     {size:>10} {stamp} {e.name if p.is_dir() else t}")
            else:
                out.append(e.name if p.is_dir() else t)
    return Result(0, "".join(line + "\n" for line in out))


def _digest(algo: str) -> Handler:
    def run(ctx: Ctx, argv: list[str], stdin: str) -> Result:
        out = []
        for f in argv[1:]:
            try:
                data = _fs(ctx, f).read_bytes()
            except (OSError, ValueError):
                return Result(1, "".join(out), f"{argv[0]}: can't open '{f}': No such file or directory\n")
            out.append(f"{hashlib.new(algo, data).hexdigest()}  {f}\n")
        if len(argv) == 1:
            out.append(f"{hashlib.new(algo, stdin.encode()).hexdigest()}  -\n")
        return Result(0, "".join(out))

    return run


command("sha256sum")(_digest("sha256"))
command("md5sum")(_digest("md5"))
command("sha1sum")(_digest("sha1"))


@command("rm")
def rm(ctx: Ctx, argv: list[str], stdin: str) -> Result:
    force = any(a.startswith("-") and "f" in a for a in argv[1:])
    for f in (a for a in argv[1:] if not a.startswith("-")):
        try:
            p = _fs(ctx, f)
            p.unlink()
        except (OSError, ValueError):
            if not force:
                return Result(1, err=f"rm: can't remove '{f}': No such file or directory\n")
    return Result(0)


@command("mkdir")
def mkdir(ctx: Ctx, argv: list[str], stdin: str) -> Result:
    parents = "-p" in argv
    for d in (a for a in argv[1:] if not a.startswith("-")):
        try:
            _fs(ctx, d).mkdir(parents=parents, exist_ok=parents)
        except (OSError, ValueError):
            return Result(1, err=f"mkdir: can't create directory '{d}': File exists\n")
    return Result(0)


@command("test", "[")
def test_(ctx: Ctx, argv: list[str], stdin: str) -> Result:
    args = argv[1:]
    if argv[0] == "[":
        if args[-1:] != ["]"]:
            return Result(2, err="sh: missing ]\n")
        args = args[:-1]
    if len(args) == 2 and args[0] in ("-f", "-e", "-d", "-s"):
        try:
            p = _fs(ctx, args[1])
        except ValueError:
            return Result(1)
        ok = {"-f": p.is_file(), "-e": p.exists(), "-d": p.is_dir(), "-s": p.is_file() and p.stat().st_size > 0}[
            args[0]
        ]
        return Result(0 if ok else 1)
    if len(args) == 3 and args[1] in ("=", "!="):
        return Result(0 if (args[0] == args[2]) == (args[1] == "=") else 1)
    return Result(2, err="sh: test: syntax error\n")
