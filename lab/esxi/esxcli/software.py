"""``esxcli software``: ``vib list|get|install|update|remove`` and ``component list|apply`` on the host's image
(the VIB records in the host state), from offline bundles and bare VIBs in the host's file system (lab.esxi.bundle).
Errors print like esxcli's exceptions (``[InstallationError]``, ``[NoMatchError]``, ``[MetadataDownloadError]``...).
Real shapes: shared/reference/esxi_vib_list_and_vib_names.txt, esxi_nvaie_vib_install_and_maintenance_mode.txt."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from lab.esxi import events
from lab.esxi.context import Ctx
from lab.esxi.esxcli.hostd import host_view
from lab.esxi.esxcli.registry import COMMANDS, EsxcliError, Opt, Output, esxcli
from lab.esxi.esxfmt import Field, Struct, render_table


def _today() -> str:
    return datetime.date.today().isoformat()


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


@esxcli("software vib list", "Lists the installed VIB packages on the host and the managed DPU(s).", _REBOOTING)
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


@esxcli(
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
        if needs_mm and not host_view(ctx)["inMaintenanceMode"]:
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


@esxcli(
    "software vib install",
    "Installs VIB packages from a URL or depot. VIBs may be installed, upgraded, or downgraded.",
    *_INSTALL_OPTS,
)
def vib_install(ctx: Ctx, opts: dict[str, Any]) -> Output:
    return _software_install(ctx, opts, "install")


@esxcli(
    "software vib update",
    "Update installed VIBs to newer VIB packages. No new VIBs will be installed, only updates.",
    *_INSTALL_OPTS,
)
def vib_update(ctx: Ctx, opts: dict[str, Any]) -> Output:
    return _software_install(ctx, opts, "update")


@esxcli(
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


def _components(state: dict[str, Any]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for v in state["vibs"]:
        seen.setdefault(v["component"], v)
    return [seen[k] for k in sorted(seen, key=str.lower)]


def _mmddyyyy(date: str) -> str:
    y, m, d = date.split("-")
    return f"{m}-{d}-{y}"


@esxcli("software component list", "List the installed components on the host.", _REBOOTING)
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


@esxcli(
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
