"""The simulated ``esxcli``: namespaces, option parsing and errors the way ESXi prints them, and the commands the
product uses (software vib/component, system maintenanceMode/settings kernel/version, graphics, hardware pci,
rdma, network nic).

Real output shapes: shared/reference/esxi_*.txt. Option names and result field sets follow the esxcli command
model (govmomi simulator ``command_info.go``, captured with ``govc host.esxcli.model``) where it covers a command.
Errors of the software namespace print like esxcli's exceptions (``[InstallationError]`` block, exit 1); parse
errors print ``Error: ...`` and the command's usage (exit 1).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.esxi import events
from lab.esxi.context import Ctx, Result
from lab.esxi.esxfmt import STRUCTURED, Field, Struct, render_simple, render_table


class EsxcliError(Exception):
    """An esxcli failure: ``kind`` set -> exception block (`` [Kind]\\n message\\n Please refer...``)."""

    def __init__(self, message: str, kind: str | None = None, usage: Command | None = None) -> None:
        self.kind = kind
        self.usage = usage
        super().__init__(message)

    def render(self) -> str:
        if self.kind:
            body = "\n".join(" " + line if not line.startswith(" ") else line for line in str(self).split("\n"))
            return f" [{self.kind}]\n{body}\n Please refer to the log file for more details.\n"
        text = f"Error: {self}\n"
        if self.usage is not None:
            text += "\n" + self.usage.usage()
        return text


@dataclass
class Opt:
    name: str
    aliases: tuple[str, ...]
    kind: str = "string"  # string | boolean | long | flag
    required: bool = False
    multi: bool = False
    help: str = ""


@dataclass
class Output:
    value: Any
    text: Callable[[Any], str] = render_simple


@dataclass
class Command:
    path: str
    help: str
    opts: list[Opt]
    handler: Callable[[Ctx, dict[str, Any]], Output | None]
    opt_index: dict[str, Opt] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for o in self.opts:
            for a in o.aliases:
                self.opt_index[a] = o

    def usage(self) -> str:
        name = self.path.split()[-1]
        lines = [f"Usage: esxcli {self.path} [cmd options]", "", "Description: ", f"  {name:<22}{self.help}", ""]
        if self.opts:
            lines.append("Cmd options:")
            for o in self.opts:
                meta = (
                    "" if o.kind == "flag" else f"=<{ {'string': 'str', 'boolean': 'bool', 'long': 'long'}[o.kind] }>"
                )
                spec = "|".join(o.aliases) + meta
                req = " (required)" if o.required else ""
                lines.append(f"  {spec:<22}{o.help}{req}")
        return "\n".join(lines) + "\n"


COMMANDS: dict[str, Command] = {}


def command(path: str, help: str, *opts: Opt) -> Callable:
    def deco(fn: Callable[[Ctx, dict[str, Any]], Output | None]) -> Callable:
        COMMANDS[path] = Command(path, help, list(opts), fn)
        return fn

    return deco


def _namespaces() -> dict[str, set[str]]:
    tree: dict[str, set[str]] = {}
    for path in COMMANDS:
        parts = path.split()
        for i in range(len(parts)):
            tree.setdefault(" ".join(parts[:i]), set()).add(parts[i])
    return tree


# -- parsing ---------------------------------------------------------------------------------------------------

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


def _parse_opts(cmd: Command, args: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        name, _, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        opt = cmd.opt_index.get(name)
        if opt is None and arg.startswith("-") and not arg.startswith("--") and len(arg) > 2:
            opt = cmd.opt_index.get(arg[:2])
            inline, name = arg[2:], arg[:2]
        if opt is None or not arg.startswith("-"):
            raise EsxcliError(f"Invalid option {arg}" if arg.startswith("-") else f"Unknown argument {arg}", usage=cmd)
        if opt.kind == "flag":
            values[opt.name] = True
            i += 1
            continue
        if inline:
            raw = inline
            i += 1
        else:
            if i + 1 >= len(args):
                raise EsxcliError(f"Missing value for option {name}", usage=cmd)
            raw = args[i + 1]
            i += 2
        value: Any = raw
        if opt.kind == "boolean":
            low = raw.lower()
            if low not in _TRUE | _FALSE:
                raise EsxcliError(
                    f"Invalid data constraint for parameter '{opt.name}'. Expected a boolean (true, false, 1, 0).",
                    usage=cmd,
                )
            value = low in _TRUE
        elif opt.kind == "long":
            try:
                value = int(raw)
            except ValueError as exc:
                raise EsxcliError(
                    f"Invalid data constraint for parameter '{opt.name}'. Expected an integer, got '{raw}'.", usage=cmd
                ) from exc
        if opt.multi:
            values.setdefault(opt.name, []).append(value)
        else:
            values[opt.name] = value
    for o in cmd.opts:
        if o.required and o.name not in values:
            raise EsxcliError(f"Missing required parameter {'|'.join(o.aliases)}", usage=cmd)
    return values


def run(ctx: Ctx, argv: list[str]) -> Result:
    """``esxcli`` entry point: ``argv`` excludes the program name."""
    formatter = None
    args = list(argv)
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        if opt.startswith("--formatter="):
            formatter = opt.split("=", 1)[1]
        elif opt in ("--formatter", "-f") and args:
            formatter = args.pop(0)
        elif opt == "--debug":
            continue
        elif opt in ("--help", "-h"):
            return Result(0, _namespace_usage("", _namespaces()))
        else:
            return Result(1, err=f"Error: Invalid option {opt}\n")
    if formatter is not None and formatter not in STRUCTURED and formatter not in ("table", "simple"):
        return Result(
            1,
            err=f"Error: Invalid formatter: {formatter}. Valid formatters: csv, html, json, keyvalue, python, table, tree, xml\n",
        )
    tree = _namespaces()
    prefix: list[str] = []
    while args and not args[0].startswith("-"):
        key = " ".join(prefix)
        if " ".join([*prefix, args[0]]) in COMMANDS:
            prefix.append(args.pop(0))
            break
        if args[0] in tree.get(key, set()):
            prefix.append(args.pop(0))
            continue
        return Result(1, err=f"Error: Unknown command or namespace {' '.join([*prefix, args[0]])}\n")
    path = " ".join(prefix)
    cmd = COMMANDS.get(path)
    if cmd is None:
        if args and args[0] not in ("--help", "-h"):
            return Result(1, err=f"Error: Invalid option {args[0]}\n\n" + _namespace_usage(path, tree))
        return Result(0, _namespace_usage(path, tree))
    if "--help" in args or "-h" in args and "-h" not in cmd.opt_index:
        return Result(0, cmd.usage())
    try:
        values = _parse_opts(cmd, args)
        output = cmd.handler(ctx, values)
    except EsxcliError as exc:
        return Result(1, err=exc.render())
    if output is None:
        return Result(0)
    if formatter in STRUCTURED:
        return Result(0, STRUCTURED[formatter](output.value))
    return Result(0, output.text(output.value))


def _namespace_usage(path: str, tree: dict[str, set[str]]) -> str:
    children = sorted(tree.get(path, set()))
    lines = [f"Usage: esxcli {path + ' ' if path else ''}{{cmd}} [cmd options]", ""]
    namespaces = [c for c in children if " ".join(filter(None, [path, c])) not in COMMANDS]
    commands = [c for c in children if " ".join(filter(None, [path, c])) in COMMANDS]
    if namespaces:
        lines += ["Available Namespaces:", *[f"  {c}" for c in namespaces], ""]
    if commands:
        lines += [
            "Available Commands:",
            *[f"  {c:<22}{COMMANDS[' '.join(filter(None, [path, c]))].help}" for c in commands],
            "",
        ]
    return "\n".join(lines) + "\n"


# -- helpers ---------------------------------------------------------------------------------------------------


def _vcenter(ctx: Ctx):  # noqa: ANN202 - lazy import keeps `esxcli software vib list` free of it
    from lab.esxi.vcface import VcenterClient, VcenterUnavailable

    try:
        return VcenterClient(ctx.paths)
    except VcenterUnavailable as exc:
        raise EsxcliError(f"Unable to reach hostd: {exc}") from exc


def _host_view(ctx: Ctx) -> dict[str, Any]:
    from lab.esxi.vcface import VcenterUnavailable

    try:
        return _vcenter(ctx).host_view(ctx.host)
    except VcenterUnavailable as exc:
        raise EsxcliError(f"Unable to reach hostd: {exc}") from exc


def _update_host(ctx: Ctx, **fields: Any) -> dict[str, Any]:
    from lab.esxi.vcface import VcenterUnavailable

    try:
        return _vcenter(ctx).update_host(ctx.host, **fields)
    except VcenterUnavailable as exc:
        raise EsxcliError(f"Unable to reach hostd: {exc}") from exc


def _today() -> str:
    return datetime.date.today().isoformat()


# -- software vib -------------------------------------------------------------------------------------------------


def _vib_summary(v: dict[str, Any]) -> Struct:
    return Struct(
        "VIBSummaryExt",
        [
            Field("Name", v["name"]),
            Field("Version", v["version"]),
            Field("Vendor", v["vendor"]),
            Field("AcceptanceLevel", v["acceptance"]),
            Field("InstallDate", v["install_date"]),
            Field("Platforms", "host"),
            Field("CreationDate", v["release_date"], hidden=True),
            Field("ID", v["id"], hidden=True),
            Field("Status", "", hidden=True),
        ],
    )


def _tf(flag: bool) -> str:
    return "True" if flag else "False"


def _vib_ext(v: dict[str, Any]) -> Struct:
    return Struct(
        "VIBExt",
        [
            Field("Name", v["name"]),
            Field("Version", v["version"]),
            Field("Type", v["vib_type"]),
            Field("Vendor", v["vendor"]),
            Field("AcceptanceLevel", v["acceptance"]),
            Field("Summary", v["summary"]),
            Field("Description", v["description"]),
            Field("ReferenceURLs", [], label="ReferenceURLs"),
            Field("CreationDate", v["release_date"]),
            Field("Depends", list(v["depends"])),
            Field("Conflicts", []),
            Field("Replaces", []),
            Field("Provides", []),
            Field("MaintenanceModeRequired", _tf(v["maintenance_mode"])),
            Field("HardwarePlatformsRequired", []),
            Field("LiveInstallAllowed", _tf(v["live_install"])),
            Field("LiveRemoveAllowed", _tf(v["live_remove"])),
            Field("StatelessReady", _tf(v["stateless_ready"])),
            Field("Overlay", _tf(v["overlay"])),
            Field("Tags", list(v["tags"])),
            Field("Payloads", list(v["payloads"])),
            Field("Platforms", ["host"]),
            Field("ID", v["id"], hidden=True),
            Field("InstallDate", v["install_date"], hidden=True),
            Field("Status", "", hidden=True),
        ],
        header=v["id"],
    )


_REBOOTING = Opt(
    "rebootingimage",
    ("--rebooting-image",),
    "flag",
    help="Displays information for the ESXi image which becomes active after a reboot.",
)


@command("software vib list", "Lists the installed VIB packages on the host and the managed DPU(s).", _REBOOTING)
def vib_list(ctx: Ctx, opts: dict[str, Any]) -> Output:
    state = ctx.store.read()
    rows = [_vib_summary(v) for v in sorted(state["vibs"], key=lambda v: v["name"].lower())]
    return Output(
        rows, lambda r: render_table(r, ["Name", "Version", "Vendor", "AcceptanceLevel", "InstallDate", "Platforms"])
    )


def _match_vibs(vibs: list[dict[str, Any]], spec: str) -> list[dict[str, Any]]:
    parts = spec.split(":")
    out = []
    for v in vibs:
        if (
            len(parts) == 1
            and v["name"] == parts[0]
            or len(parts) == 2
            and ((v["name"], v["version"]) == tuple(parts) or (v["vendor"], v["name"]) == tuple(parts))
            or len(parts) == 3
            and (v["vendor"], v["name"], v["version"]) == tuple(parts)
        ):
            out.append(v)
    return out


def _no_match(spec: str) -> EsxcliError:
    return EsxcliError(f"No VIB matching VIB search specification '{spec}'.", kind="NoMatchError")


@command(
    "software vib get",
    "Displays detailed information about one or more installed VIBs on the host and the managed DPU(s).",
    _REBOOTING,
    Opt(
        "vibname",
        ("-n", "--vibname"),
        multi=True,
        help="Specifies one or more installed VIBs to display more information about.",
    ),
)
def vib_get(ctx: Ctx, opts: dict[str, Any]) -> Output:
    vibs = ctx.store.read()["vibs"]
    selected: list[dict[str, Any]] = []
    for spec in opts.get("vibname", []):
        found = _match_vibs(vibs, spec)
        if not found:
            raise _no_match(spec)
        selected.extend(found)
    return Output([_vib_ext(v) for v in (selected if opts.get("vibname") else vibs)])


def _install_result(
    header: str,
    message: str,
    installed: list[str],
    removed: list[str],
    skipped: list[str],
    reboot: bool,
    noun: str = "VIBs",
) -> Output:
    s = Struct(
        "InstallationResult",
        [
            Field("Message", message),
            Field(f"{noun}Installed", installed, label=f"{noun} Installed"),
            Field(f"{noun}Removed", removed, label=f"{noun} Removed"),
            Field(f"{noun}Skipped", skipped, label=f"{noun} Skipped"),
            Field("RebootRequired", reboot),
            Field("DPUResults", [], label="DPU Results"),
        ],
        header=header,
    )
    return Output(s)


def _resolve_depot(ctx: Ctx, depot: str) -> tuple[Path, str]:
    """Depot argument -> (file in the host fs, esxcli's url). esxcli resolves relative paths against its own
    working directory, /var/log/vmware, which is why they fail on a real host."""
    from lab.esxi.state import host_fs_path

    if depot.startswith(("http://", "https://", "ftp://")):
        raise EsxcliError(
            f"Could not download from depot at {depot}, skipping (('{depot}', '', '<urlopen error [Errno -3] Temporary failure in name resolution>'))\n        url = {depot}",
            kind="MetadataDownloadError",
        )
    raw = depot[len("file://") :] if depot.startswith("file://") else depot
    abs_path = raw if raw.startswith("/") else f"/var/log/vmware/{raw}"
    url = f"zip:{abs_path}?index.xml"
    try:
        path = host_fs_path(ctx.paths, ctx.host, abs_path)
    except ValueError:
        path = Path("/nonexistent")
    if not path.is_file():
        raise EsxcliError(
            f"Could not download from depot at {url}, skipping (('{url}', '', \"Error extracting index.xml from {abs_path}: "
            f"[Errno 2] No such file or directory: '{abs_path}'\"))\n        url = {url}",
            kind="MetadataDownloadError",
        )
    return path, url


def _resolve_vib(ctx: Ctx, url: str) -> Path:
    from lab.esxi.state import host_fs_path

    raw = (
        url[len("file://") :] if url.startswith("file://") else url[len("file:") :] if url.startswith("file:") else url
    )
    if raw.startswith(("http://", "https://", "ftp://")):
        raise EsxcliError(
            f"('{url}', '', '<urlopen error [Errno -3] Temporary failure in name resolution>')\n        url = {url}",
            kind="VibDownloadError",
        )
    abs_path = raw if raw.startswith("/") else f"/var/log/vmware/{raw}"
    try:
        path = host_fs_path(ctx.paths, ctx.host, abs_path)
    except ValueError:
        path = Path("/nonexistent")
    if not path.is_file():
        raise EsxcliError(
            f"('{url}', '', \"[Errno 2] No such file or directory: '{abs_path}'\")\n        url = {url}",
            kind="VibDownloadError",
        )
    return path


def _load_metas(ctx: Ctx, opts: dict[str, Any]) -> list[Any]:
    from lab.esxi.bundle import BundleError, read_bundle, read_vib

    depots, urls = opts.get("depot", []), opts.get("viburl", [])
    if not depots and not urls:
        raise EsxcliError("Either --viburl or --depot must be specified.", kind="ValueError")
    metas = []
    try:
        for d in depots:
            path, url = _resolve_depot(ctx, d)
            metas.extend(read_bundle(path, url))
        for u in urls:
            metas.append(read_vib(_resolve_vib(ctx, u)))
    except BundleError as exc:
        raise EsxcliError(str(exc), kind=exc.kind) from exc
    names = opts.get("vibname", [])
    if names:
        chosen = [m for m in metas if m.name in names or f"{m.vendor}:{m.name}" in names]
        missing = [n for n in names if not any(n in (m.name, f"{m.vendor}:{m.name}") for m in metas)]
        if missing:
            raise EsxcliError(f"No VIB matching VIB search specification '{missing[0]}'.", kind="NoMatchError")
        metas = chosen
    return metas


def _fire_fault(ctx: Ctx, state: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """Consume one shot of an injected fault if active; returns its parameters."""
    fault = state.get("faults", {}).get(kind)
    if fault is None:
        return None
    remaining = fault.get("remaining")
    if remaining is not None:
        if remaining <= 1:
            del state["faults"][kind]
        else:
            fault["remaining"] = remaining - 1
    events.record(ctx.paths, ctx.host, "fault_fired", kind=kind)
    return fault


def _software_install(ctx: Ctx, opts: dict[str, Any], mode: str) -> Output:
    """vib install / vib update / component apply. ``mode``: install | update | component.

    Faults (never on ``--dry-run``): ``vib-install-error`` fails the transaction after the packages were read (nothing changes);
    ``ssh-drop`` cuts the connection - with ``when=after`` (default) once the install is committed to the image
    (the caller never sees the result, a retry must find it installed), with ``when=before`` before any change."""
    from lab.esxi.bundle import version_key

    metas = _load_metas(ctx, opts)
    install_error = drop = None
    if not opts.get("dryrun"):  # the faults are the install's: a dry run writes nothing for them to break
        with ctx.store.edit() as state:
            install_error = _fire_fault(ctx, state, "vib-install-error")
            drop = _fire_fault(ctx, state, "ssh-drop")
    if install_error is not None:
        raise EsxcliError(
            "There was an error checking file system on altbootbank, please see log for detail.",
            kind="InstallationError",
        )
    drop_when = drop.get("when", "after") if drop is not None else None
    if drop_when == "before":
        ctx.drop_connection()
    dry = opts.get("dryrun", False)
    installed: list[str] = []
    removed: list[str] = []
    skipped: list[str] = []
    with ctx.store.edit() as state:
        plan: list[tuple[Any, dict[str, Any] | None]] = []
        for m in metas:
            current = next((v for v in state["vibs"] if v["name"] == m.name), None)
            unchanged = current is not None and current["version"] == m.version
            not_update = mode == "update" and (
                current is None or version_key(m.version) <= version_key(current["version"])
            )
            if unchanged or not_update:
                skipped.append(_id(m, mode))
            else:
                plan.append((m, current))
        needs_mm = [
            m.vib_id for m, _ in plan if m.maintenance_mode and m.live_install and not opts.get("maintenancemode")
        ]
        if needs_mm and not _host_view(ctx)["inMaintenanceMode"]:
            raise EsxcliError(
                f"MaintenanceMode is required to remove: []; install: [{', '.join(needs_mm)}].",
                kind="MaintenanceModeError",
            )
        for m, current in plan:
            installed.append(_id(m, mode))
            if current is not None:
                removed.append(
                    f"{current['component']}_{current['component_version']}" if mode == "component" else current["id"]
                )
            if not dry:
                if current is not None:
                    state["vibs"].remove(current)
                record = m.to_dict()
                record.update(id=m.vib_id, install_date=_today())
                state["vibs"].append(record)
        # Live-installable packages report no reboot (the NVIDIA driver still loads only at boot).
        reboot = any(not m.live_install or (cur is not None and not cur.get("live_remove", True)) for m, cur in plan)
        if plan and not dry:
            events.record(
                ctx.paths,
                ctx.host,
                "component_apply" if mode == "component" else "vib_install",
                installed=installed,
                removed=removed,
            )
    if dry:
        message = "Dryrun only, host not changed. The following installers will be applied: [BootBankInstaller]"
    elif not plan:
        message = "Host is not changed."
    elif reboot:
        message = (
            "The update completed successfully, but the system needs to be rebooted for the changes to be effective."
        )
    else:
        message = "Operation finished successfully."
    if drop_when == "after":
        ctx.drop_connection()
    noun = "Components" if mode == "component" else "VIBs"
    return _install_result("Installation Result", message, installed, removed, skipped, reboot, noun)


def _id(m: Any, mode: str) -> str:
    return f"{m.component}_{m.component_version}" if mode == "component" else m.vib_id


_INSTALL_OPTS = (
    Opt(
        "depot",
        ("-d", "--depot"),
        multi=True,
        help="Specifies full remote URLs of the depot index.xml or server file path pointing to an offline bundle .zip file.",
    ),
    Opt(
        "dryrun",
        ("--dry-run",),
        "flag",
        help="Performs a dry-run only. Report the VIB-level operations that would be performed, but do not change anything in the system.",
    ),
    Opt(
        "force",
        ("-f", "--force"),
        "flag",
        help="Bypasses checks for package dependencies, conflicts, obsolescence, and acceptance levels.",
    ),
    Opt("maintenancemode", ("--maintenance-mode",), "flag", help="Pretends that maintenance mode is in effect."),
    Opt(
        "noliveinstall",
        ("--no-live-install",),
        "flag",
        help="Forces an install to /altbootbank even if the VIBs are eligible for live installation or removal.",
    ),
    Opt("nosigcheck", ("--no-sig-check",), "flag", help="Bypasses acceptance level verification, including signing."),
    Opt("proxy", ("--proxy",), help="Specifies a proxy server to use for HTTP, FTP, and HTTPS connections."),
    Opt(
        "vibname",
        ("-n", "--vibname"),
        multi=True,
        help="Specifies VIBs from a depot, using one of the following forms: name, name:version, vendor:name, or vendor:name:version.",
    ),
    Opt(
        "viburl",
        ("-v", "--viburl"),
        multi=True,
        help="Specifies one or more URLs to VIB packages to install. If 'file:' is used, then the file path must be an absolute path on the ESXi host.",
    ),
)


@command(
    "software vib install",
    "Installs VIB packages from a URL or depot. VIBs may be installed, upgraded, or downgraded.",
    *_INSTALL_OPTS,
)
def vib_install(ctx: Ctx, opts: dict[str, Any]) -> Output:
    return _software_install(ctx, opts, "install")


@command(
    "software vib update",
    "Update installed VIBs to newer VIB packages. No new VIBs will be installed, only updates.",
    *_INSTALL_OPTS,
)
def vib_update(ctx: Ctx, opts: dict[str, Any]) -> Output:
    return _software_install(ctx, opts, "update")


@command(
    "software vib remove",
    "Removes VIB packages from the host.",
    Opt("dryrun", ("--dry-run",), "flag", help="Performs a dry-run only."),
    Opt("force", ("-f", "--force"), "flag", help="Bypasses checks for package dependencies."),
    Opt("maintenancemode", ("--maintenance-mode",), "flag", help="Pretends that maintenance mode is in effect."),
    Opt("noliveinstall", ("--no-live-install",), "flag", help="Forces an remove to /altbootbank."),
    Opt(
        "vibname",
        ("-n", "--vibname"),
        required=True,
        multi=True,
        help="Specifies one or more VIBs on the host to remove.",
    ),
)
def vib_remove(ctx: Ctx, opts: dict[str, Any]) -> Output:
    with ctx.store.edit() as state:
        targets = []
        for spec in opts["vibname"]:
            found = _match_vibs(state["vibs"], spec)
            if not found:
                raise _no_match(spec)
            targets.extend(found)
        reboot = any(not v.get("live_remove", False) for v in targets)
        if not opts.get("dryrun"):
            for v in targets:
                state["vibs"].remove(v)
            events.record(ctx.paths, ctx.host, "vib_remove", removed=[v["id"] for v in targets])
    message = (
        "Dryrun only, host not changed. The following installers will be applied: [BootBankInstaller]"
        if opts.get("dryrun")
        else "The update completed successfully, but the system needs to be rebooted for the changes to be effective."
        if reboot
        else "Operation finished successfully."
    )
    return _install_result("Removal Result", message, [], [v["id"] for v in targets], [], reboot)


# -- software component -----------------------------------------------------------------------------------------


def _components(state: dict[str, Any]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for v in state["vibs"]:
        seen.setdefault(v["component"], v)
    return [seen[k] for k in sorted(seen, key=str.lower)]


def _mmddyyyy(date: str) -> str:
    y, m, d = date.split("-")
    return f"{m}-{d}-{y}"


@command("software component list", "List the installed components on the host.", _REBOOTING)
def component_list(ctx: Ctx, opts: dict[str, Any]) -> Output:
    rows = [
        Struct(
            "ComponentSummary",
            [
                Field("Name", v["component"]),
                Field("DisplayName", v["component_display"]),
                Field("Version", v["component_version"]),
                Field("DisplayVersion", v["component_display_version"]),
                Field("Vendor", v["vendor"]),
                Field("ReleaseDate", _mmddyyyy(v["release_date"])),
                Field("AcceptanceLevel", v["acceptance"]),
                Field("Platforms", "host"),
            ],
        )
        for v in _components(ctx.store.read())
    ]
    return Output(rows, render_table)


@command(
    "software component apply",
    "Installs Component packages from a depot. Components may be installed, upgraded.",
    Opt(
        "depot",
        ("-d", "--depot"),
        multi=True,
        help="Specifies full remote URLs of the depot index.xml or server file path pointing to an offline bundle .zip file.",
    ),
    Opt("dryrun", ("--dry-run",), "flag", help="Performs a dry-run only."),
    Opt(
        "force",
        ("-f", "--force"),
        "flag",
        help="Bypasses checks for package dependencies, conflicts, obsolescence, and acceptance levels.",
    ),
    Opt("maintenancemode", ("--maintenance-mode",), "flag", help="Pretends that maintenance mode is in effect."),
    Opt("noliveinstall", ("--no-live-install",), "flag", help="Forces an install to /altbootbank."),
    Opt("nosigcheck", ("--no-sig-check",), "flag", help="Bypasses acceptance level verification, including signing."),
    Opt("proxy", ("--proxy",), help="Specifies a proxy server to use for HTTP, FTP, and HTTPS connections."),
    Opt(
        "component",
        ("-n", "--component"),
        multi=True,
        help="Specifies components from a depot, using one of the following forms: name, name:version.",
    ),
)
def component_apply(ctx: Ctx, opts: dict[str, Any]) -> Output:
    if not opts.get("depot"):
        raise EsxcliError("Missing required parameter -d|--depot", usage=COMMANDS["software component apply"])
    return _software_install(ctx, opts, "component")


# -- system --------------------------------------------------------------------------------------------------------


@command("system maintenanceMode get", "Get the maintenance mode state of the system.")
def mm_get(ctx: Ctx, opts: dict[str, Any]) -> Output:
    return Output("Enabled" if _host_view(ctx)["inMaintenanceMode"] else "Disabled")


@command(
    "system maintenanceMode set",
    "Enable or disable the maintenance mode of the system.",
    Opt("enable", ("-e", "--enable"), "boolean", required=True, help="enable maintenance mode"),
    Opt("timeout", ("-t", "--timeout"), "long", help="Time to perform operation in seconds (default 0 seconds)"),
    Opt(
        "vsanmode",
        ("-m", "--vsanmode"),
        help="Action the VSAN service must take before the host can enter maintenance mode (default ensureObjectAccessibility).",
    ),
)
def mm_set(ctx: Ctx, opts: dict[str, Any]) -> None:
    enable = opts["enable"]
    if _host_view(ctx)["inMaintenanceMode"] == enable:
        raise EsxcliError(f"Maintenance mode is already {'enabled' if enable else 'disabled'}.")
    _update_host(ctx, inMaintenanceMode=enable)
    events.record(ctx.paths, ctx.host, "maintenance_enter" if enable else "maintenance_exit", via="esxcli")
    return None


@command("system version get", "Display the product name, version and build information.")
def version_get(ctx: Ctx, opts: dict[str, Any]) -> Output:
    from lab.esxi.state import ESXI_BUILD, ESXI_VERSION

    return Output(
        Struct(
            "VersionGet",
            [
                Field("Product", "VMware ESXi"),
                Field("Version", ESXI_VERSION),
                Field("Build", f"Releasebuild-{ESXI_BUILD}"),
                Field("Update", "3"),
                Field("Patch", "55"),
            ],
        )
    )


@command("system stats uptime get", "Display the number of microseconds the system has been running.")
def uptime_get(ctx: Ctx, opts: dict[str, Any]) -> Output:
    import time

    return Output(int((time.time() - ctx.store.read()["boot"]["booted_at"]) * 1_000_000))


@command("system hostname get", "Get the host, domain or fully qualified name of the ESX host.")
def hostname_get(ctx: Ctx, opts: dict[str, Any]) -> Output:
    short, _, domain = ctx.host.partition(".")
    return Output(
        Struct(
            "FullHostname",
            [
                Field("DomainName", domain or "localdomain", label="Domain Name"),
                Field("FullyQualifiedDomainName", ctx.host, label="Fully Qualified Domain Name"),
                Field("HostName", short, label="Host Name"),
            ],
        )
    )


def _kernel_rows(settings: dict[str, Any], only: str | None) -> list[Struct]:
    rows = []
    for name in sorted(settings, key=str.lower):
        if only is not None and name != only:
            continue
        s = settings[name]
        rows.append(
            Struct(
                "KernelSetting",
                [
                    Field("Name", name),
                    Field("Type", s["type"]),
                    Field("Configured", s["configured"]),
                    Field("Runtime", s["runtime"]),
                    Field("Default", s["default"]),
                    Field("Description", s["description"]),
                ],
            )
        )
    return rows


@command(
    "system settings kernel list",
    "List VMkernel kernel settings.",
    Opt("delta", ("-d", "--delta"), "flag", help="Only display options whose values differ from their default."),
    Opt("option", ("-o", "--option"), help="The name of the VMKernel kernel setting to get."),
)
def kernel_list(ctx: Ctx, opts: dict[str, Any]) -> Output:
    settings = ctx.store.read()["kernel"]
    only = opts.get("option")
    if only is not None and only not in settings:
        raise EsxcliError(f"Invalid Key Name: {only}")
    rows = _kernel_rows(settings, only)
    if opts.get("delta"):
        rows = [r for r in rows if str(r.get("Configured")).upper() != str(r.get("Default")).upper()]
    return Output(rows, render_table)


@command(
    "system settings kernel set",
    "Set a VMKernel setting.",
    Opt("setting", ("-s", "--setting"), required=True, help="The name of the VMKernel setting to set."),
    Opt("value", ("-v", "--value"), required=True, help="The value to set the VMKernel setting to."),
)
def kernel_set(ctx: Ctx, opts: dict[str, Any]) -> None:
    name, value = opts["setting"], opts["value"]
    with ctx.store.edit() as state:
        setting = state["kernel"].get(name)
        if setting is None:
            raise EsxcliError(f"Invalid Key Name: {name}")
        if setting["type"] == "Bool" and value.lower() not in _TRUE | _FALSE:
            raise EsxcliError(f"Invalid value {value} for setting {name}: expected TRUE or FALSE")
        if setting["type"] != "Bool" and not value.isdigit():
            raise EsxcliError(f"Invalid value {value} for setting {name}: expected an integer")
        setting["configured"] = value  # echoes the user's spelling, as ESXi does; Runtime changes at boot
    events.record(ctx.paths, ctx.host, "kernel_set", setting=name, value=value)
    return None


# -- graphics --------------------------------------------------------------------------------------------------------

_GRAPHICS_TYPES = {"shared": "shared", "sharedpassthru": "sharedDirect"}
_POLICIES = {"performance": "performance", "consolidation": "consolidation"}


@command("graphics host get", "Get host graphics properties.")
def graphics_get(ctx: Ctx, opts: dict[str, Any]) -> Output:
    from lab.esxi.vcface import GRAPHICS_TO_ESXCLI, POLICY_TO_ESXCLI

    view = _host_view(ctx)
    return Output(
        Struct(
            "HostGraphicsConfig",
            [
                Field("DefaultGraphicsType", GRAPHICS_TO_ESXCLI.get(view["graphicsType"], view["graphicsType"])),
                Field(
                    "SharedPassthruAssignmentPolicy",
                    POLICY_TO_ESXCLI.get(view["assignmentPolicy"], view["assignmentPolicy"]),
                ),
            ],
        )
    )


@command(
    "graphics host set",
    "Set host graphics properties.",
    Opt(
        "defaulttype",
        ("-d", "--default-type"),
        help="Host default graphics type. Allowed values: Shared, SharedPassthru",
    ),
    Opt(
        "sharedpassthruassignmentpolicy",
        ("-p", "--shared-passthru-assignment-policy"),
        help="Shared passthru GPU assignment policy. Allowed values: Performance, Consolidation",
    ),
)
def graphics_set(ctx: Ctx, opts: dict[str, Any]) -> None:
    fields: dict[str, str] = {}
    if "defaulttype" in opts:
        t = _GRAPHICS_TYPES.get(opts["defaulttype"].lower())
        if t is None:
            raise EsxcliError(
                f"Invalid value for default type: {opts['defaulttype']}. Allowed values: Shared, SharedPassthru"
            )
        fields["graphicsType"] = t
    if "sharedpassthruassignmentpolicy" in opts:
        p = _POLICIES.get(opts["sharedpassthruassignmentpolicy"].lower())
        if p is None:
            raise EsxcliError(
                f"Invalid value for shared passthru assignment policy: {opts['sharedpassthruassignmentpolicy']}. Allowed values: Performance, Consolidation"
            )
        fields["assignmentPolicy"] = p
    if not fields:
        raise EsxcliError("At least one option must be specified.", usage=COMMANDS["graphics host set"])
    _update_host(ctx, **fields)
    events.record(ctx.paths, ctx.host, "graphics_host_set", **fields)
    return None


@command("graphics host refresh", "Refresh host graphics properties.")
def graphics_refresh(ctx: Ctx, opts: dict[str, Any]) -> None:
    return None


@command("graphics device list", "List all graphics devices.")
def graphics_devices(ctx: Ctx, opts: dict[str, Any]) -> Output:
    from lab.esxi.gpu_models import SMI_MODELS

    state = ctx.store.read()
    loaded = state.get("driver_loaded") is not None
    default_type = "Basic"
    if loaded:
        from lab.esxi.vcface import GRAPHICS_TO_ESXCLI

        default_type = GRAPHICS_TO_ESXCLI.get(_host_view(ctx)["graphicsType"], "Shared")
    rows = []
    for g in state["gpus"]:
        model = SMI_MODELS[g["model"]]
        rows.append(
            Struct(
                "GraphicsDevice",
                [
                    Field("DeviceID", g["pci_id"], hidden=True),
                    Field("VendorName", "NVIDIA Corporation"),
                    Field("DeviceName", g["device_name"]),
                    Field("ModuleName", "nvidia" if loaded else "None"),
                    Field("GraphicsType", default_type),
                    Field("MemorySizeinKB", model.fb_mib * 1024 if loaded else 0, label="Memory Size in KB"),
                    Field("NumberofVMs", 0, label="Number of VMs"),
                ],
                header=g["pci_id"],
            )
        )
    return Output(rows)


@command("graphics vm list", "List active VMs associated with graphics devices.")
def graphics_vms(ctx: Ctx, opts: dict[str, Any]) -> Output:
    return Output([], lambda r: "")


# -- hardware pci --------------------------------------------------------------------------------------------------


def _pci_struct(
    addr: str,
    vmk: str,
    vendor: str,
    device: str,
    vid: int,
    did: int,
    svid: int,
    sdid: int,
    cls: int,
    cls_name: str,
    module: str,
    slot: int,
    passthru_capable: bool,
) -> Struct:
    seg, bus, rest = addr.split(":")
    dev, fn = rest.split(".")
    return Struct(
        "PCIDevice",
        [
            Field("Address", addr),
            Field("Segment", int(seg, 16), printf="0x%04x"),
            Field("Bus", int(bus, 16), printf="0x%02x"),
            Field("Slot", int(dev, 16), printf="0x%02x"),
            Field("Function", int(fn, 16), printf="0x%01x"),
            Field("VMkernelName", vmk, label="VMkernel Name"),
            Field("VendorName", vendor),
            Field("DeviceName", device),
            Field("ConfiguredOwner", "VMkernel"),
            Field("CurrentOwner", "VMkernel"),
            Field("VendorID", vid, label="Vendor ID", printf="0x%04x"),
            Field("DeviceID", did, label="Device ID", printf="0x%04x"),
            Field("SubVendorID", svid, label="SubVendor ID", printf="0x%04x"),
            Field("SubDeviceID", sdid, label="SubDevice ID", printf="0x%04x"),
            Field("DeviceClass", cls, printf="0x%04x"),
            Field("DeviceClassName", cls_name),
            Field("ProgrammingInterface", 0, printf="0x%02x"),
            Field("RevisionID", 0xA1, label="Revision ID", printf="0x%02x"),
            Field("InterruptLine", 0xFF, printf="0x%02x"),
            Field("IRQ", 255, label="IRQ"),
            Field("InterruptVector", 0, printf="0x%02x"),
            Field("PCIPin", 0, label="PCI Pin", printf="0x%02x"),
            Field("SpawnedBus", 0, printf="0x%02x"),
            Field("Flags", 0x3001, printf="0x%04x"),
            Field("ModuleID", 0 if module == "None" else 40 + slot, label="Module ID"),
            Field("ModuleName", module),
            Field("Chassis", 0),
            Field("PhysicalSlot", slot),
            Field("SlotDescription", f"PCIe Slot {slot}"),
            Field("PassthruCapable", passthru_capable),
            Field("ParentDevice", f"PCI 0:{int(bus, 16) - 1}:0:0"),
            Field("DependentDevice", f"PCI 0:{int(bus, 16)}:{int(dev, 16)}:{int(fn, 16)}"),
            Field("ResetMethod", "Bridge reset" if cls == 0x0302 else "Function reset"),
            Field("FPTSharable", True, label="FPT Sharable"),
        ],
        header=addr,
    )


def pci_devices(state: dict[str, Any]) -> list[Struct]:
    from lab.esxi.gpu_models import SMI_MODELS

    loaded = state.get("driver_loaded") is not None
    rows = []
    for i, g in enumerate(state["gpus"]):
        sub = SMI_MODELS[g["model"]].subsystem_id
        rows.append(
            _pci_struct(
                g["pci_id"],
                "",
                "NVIDIA Corporation",
                g["device_name"],
                0x10DE,
                g["device_id"],
                0x10DE,
                sub,
                0x0302,
                "3D controller",
                "nvidia" if loaded else "None",
                i + 1,
                True,
            )
        )
    for j, n in enumerate(state["nics"]):
        rows.append(
            _pci_struct(
                n["pci_id"],
                n["vmnic"],
                "Mellanox Technologies",
                n["device_name"],
                0x15B3,
                n["device_id"],
                0x15B3,
                0x0016,
                0x0200,
                "Ethernet controller",
                "nmlx5_core",
                10 + j,
                True,
            )
        )
    return sorted(rows, key=lambda s: s.header or "")


@command(
    "hardware pci list",
    "List all of the PCI devices on this host.",
    Opt("class", ("-c", "--class"), help="Filter the PCI devices by their class-code."),
    Opt("mask", ("-m", "--mask"), help="The mask to apply to the class-code filter."),
)
def pci_list(ctx: Ctx, opts: dict[str, Any]) -> Output:
    rows = pci_devices(ctx.store.read())
    if "class" in opts:
        try:
            cls = int(opts["class"], 16)
            mask = int(opts.get("mask", "0xffff"), 16)
        except ValueError as exc:
            raise EsxcliError(f"Invalid class or mask: {opts['class']}", usage=COMMANDS["hardware pci list"]) from exc
        rows = [r for r in rows if (r.get("DeviceClass") & mask) == (cls & mask)]
    return Output(rows)


@command("hardware pci pcipassthru list", "Display PCI device passthru configuration.")
def pcipassthru_list(ctx: Ctx, opts: dict[str, Any]) -> Output:
    state = ctx.store.read()
    rows = [
        Struct("PcipassthruDevice", [Field("DeviceID", a, label="Device ID"), Field("Enabled", False)])
        for a in sorted([g["pci_id"] for g in state["gpus"]] + [n["pci_id"] for n in state["nics"]])
    ]
    return Output(rows, render_table)


# -- rdma / network ------------------------------------------------------------------------------------------------


@command("rdma device list", "List the logical RDMA devices currently registered on the system.")
def rdma_list(ctx: Ctx, opts: dict[str, Any]) -> Output:
    state = ctx.store.read()
    rows = [
        Struct(
            "RdmaDevice",
            [
                Field("Name", n["vmrdma"]),
                Field("Driver", "nmlx5_rdma"),
                Field("State", "Active"),
                Field("MTU", 4096, label="MTU"),
                Field("Speed", "100 Gbps"),
                Field("PairedUplink", n["vmnic"]),
                Field("Description", n["device_name"]),
            ],
        )
        for n in state["nics"]
    ]
    return Output(rows, render_table)


@command("rdma device protocol list", "List the RDMA protocols supported by the RDMA devices.")
def rdma_protocols(ctx: Ctx, opts: dict[str, Any]) -> Output:
    state = ctx.store.read()
    rows = [
        Struct(
            "RdmaProtocol",
            [
                Field("Device", n["vmrdma"]),
                Field("RoCEv1", True, label="RoCE v1"),
                Field("RoCEv2", True, label="RoCE v2"),
                Field("iWARP", False),
            ],
        )
        for n in state["nics"]
    ]
    return Output(rows, render_table)


@command("rdma device vmknic list", "List the vmknics associated with RDMA devices.")
def rdma_vmknics(ctx: Ctx, opts: dict[str, Any]) -> Output:
    state = ctx.store.read()
    rows = [
        Struct(
            "RdmaVmknic",
            [Field("Device", n["vmrdma"]), Field("Vmknic", f"vmk{i + 1}"), Field("NetStack", "defaultTcpipStack")],
        )
        for i, n in enumerate(state["nics"])
    ]
    return Output(rows, render_table)


def _mac(host: str, idx: int) -> str:
    import hashlib

    h = hashlib.sha256(f"{host}/{idx}".encode()).digest()
    return "b8:ce:f6:" + ":".join(f"{b:02x}" for b in h[:3])


@command("network nic list", "This command will list the Physical NICs currently installed and loaded on the system.")
def nic_list(ctx: Ctx, opts: dict[str, Any]) -> Output:
    state = ctx.store.read()
    nics = [("vmnic0", "0000:18:00.0", "i40en", 10000, "Intel(R) Ethernet Controller X710 for 10GbE SFP+")]
    nics += [
        (n["vmnic"], n["pci_id"], "nmlx5_core", 100000, f"Mellanox Technologies {n['device_name']}")
        for n in state["nics"]
    ]
    rows = [
        Struct(
            "PhysicalNic",
            [
                Field("Name", name),
                Field("PCIDevice", pci, label="PCI Device"),
                Field("Driver", drv),
                Field("AdminStatus", "Up"),
                Field("LinkStatus", "Up"),
                Field("Speed", speed),
                Field("Duplex", "Full"),
                Field("MACAddress", _mac(ctx.host, i), label="MAC Address"),
                Field("MTU", 9000 if drv.startswith("nmlx") else 1500, label="MTU"),
                Field("Description", desc),
            ],
        )
        for i, (name, pci, drv, speed, desc) in enumerate(nics)
    ]
    return Output(rows, render_table)


# Used by tests and docs: every command path the simulator knows.
def command_paths() -> list[str]:
    return sorted(COMMANDS)
