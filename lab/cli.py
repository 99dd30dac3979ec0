"""``gpufleet lab up|down|status|env|fault|events|reset``: the embedded lab (vcsim + simulated ESXi hosts + guests).

The lab lives in ``$GPUFLEET_LAB_DIR`` (default ``<repo>/.lab``). ``--json`` prints one JSON document:
- up:     ``{"reused", "seconds", "timings", "env": <lab env>}``
- down:   ``{"root", "stopped": [pids], "leftovers": [], "removed"}``
- status: ``{"running", "root", "shape", "vcenter", "supervisor", "hosts": [...], "guests": [...]}``
- env:    ``{"vcenter": {"url","host","port","user","password","ca_file","thumbprint"}, "hosts": [...], "guests": [...]}``
- fault:  ``{"host", "kind", "armed" | "cleared"}``
- events: ``[{"ts", "host", "event", ...}]``
Exit codes: 0 ok, 1 error (bad input, the lab could not start/stop), 2 for ``status`` when the lab is not running.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.table import Table

from gpufleet.cli.output import ExitCode, console, err_console, esc, handle_errors, json_key, print_json, progress
from gpufleet.errors import GpufleetError

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout")]

lab_app = typer.Typer(
    name="lab",
    help="The embedded lab: a vCenter (vcsim) and simulated ESXi hosts and guests on loopback, for the demo and tests.",
    no_args_is_help=True,
)


class _BadInput(GpufleetError):
    pass


@lab_app.command("up")
@handle_errors
def up_cmd(
    hosts: Annotated[int | None, typer.Option("--hosts", help="Number of ESXi hosts (default 4)")] = None,
    vms_per_host: Annotated[int | None, typer.Option("--vms-per-host", help="Extra VMs per host (default 0)")] = None,
    reboot_seconds: Annotated[
        float | None, typer.Option("--reboot-seconds", help="How long a rebooting host is away (default 2)")
    ] = None,
    ssh_port: Annotated[
        int | None, typer.Option("--ssh-port", help="SSH port of every host and guest (default 22)")
    ] = None,
    vcenter_port: Annotated[
        int | None, typer.Option("--vcenter-port", help="vCenter HTTPS port on 127.0.0.1 (default 8989)")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Start the lab, or reuse the running one (idempotent); print how to reach it."""
    from lab import manager

    given = {
        "hosts": hosts,
        "vms_per_host": vms_per_host,
        "reboot_seconds": reboot_seconds,
        "ssh_port": ssh_port,
        "vcenter_port": vcenter_port,
    }
    shape = (
        manager.LabShape(**{k: v for k, v in given.items() if v is not None})
        if any(v is not None for v in given.values())
        else None
    )
    if json_out:
        result = manager.up(shape)
        print_json(
            {
                "reused": result.reused,
                "seconds": round(result.seconds, 3),
                "timings": {json_key(k): v for k, v in result.timings.items()},  # phases, named as fields
                "env": result.env.to_document(),
            }
        )
        return
    with progress(console, "lab up") as update:
        result = manager.up(shape, progress=update)
    _print_env(result.env, title=f"lab {'reused' if result.reused else 'started'} in {result.seconds:.1f} s")


def _print_env(env: Any, title: str) -> None:
    from lab.paths import LabPaths

    vc = env.vcenter
    console.print(f"[bold green]{title}[/]  ({esc(LabPaths.resolve().root)})", emoji=False)
    console.print(f"vCenter  [cyan]{vc.url}[/]  user [cyan]{vc.user}[/]  CA {vc.ca_file}", emoji=False)
    console.print(f"         SHA-256 thumbprint {vc.thumbprint}", emoji=False, markup=False)
    console.print("         password: in the lab env file (0600); `gpufleet lab env --json` prints it")
    table = Table(title="SSH endpoints (key auth, pinned host keys)", title_justify="left")
    for col in ("name", "kind", "address", "port", "user"):
        table.add_column(col, style="cyan" if col == "name" else None)
    for h in env.hosts:
        table.add_row(h.name, "ESXi host", h.address, str(h.port), h.user)
    for g in env.guests:
        table.add_row(g.name, "guest", g.address, str(g.port), g.user)
    console.print(table)
    if env.hosts:
        h = env.hosts[0]
        console.print(
            f"try: ssh -i {h.key_file} -o UserKnownHostsFile={h.known_hosts} -o StrictHostKeyChecking=yes "
            f"-p {h.port} {h.user}@{h.address} esxcli software vib list"
        )


@lab_app.command("down")
@handle_errors
def down_cmd(json_out: JsonOpt = False) -> None:
    """Stop every process of the lab, verify none is left, and remove the lab state."""
    from lab import manager

    report = manager.down()
    if json_out:
        print_json(
            {"root": report.root, "stopped": report.stopped, "leftovers": report.leftovers, "removed": report.removed}
        )
        return
    console.print(
        f"[bold]lab down[/]: stopped {len(report.stopped)} process(es); nothing left running; state {'removed' if report.removed else 'kept'} ({report.root})"
    )


@lab_app.command("status")
@handle_errors
def status_cmd(json_out: JsonOpt = False) -> None:
    """What runs: vCenter, the supervisor, each host's sshd, power, maintenance mode, driver, armed faults."""
    from lab import manager

    doc = manager.status()
    # The record's shape and phase timings are named by Python fields (vms_per_host, vcsim_build): the key rule.
    for part in ("shape", "timings"):
        if doc.get(part):
            doc[part] = {json_key(k): v for k, v in doc[part].items()}
    if json_out:
        print_json(doc)
    elif not doc.get("shape"):
        console.print(f"no lab at {doc['root']} (start one with `gpufleet lab up`)")
    else:
        state = "[green]running[/]" if doc["running"] else "[red]not healthy[/]"
        console.print(f"lab {state} at {doc['root']}")
        console.print(
            f"vCenter pid {doc['vcenter']['pid']} ({'up' if doc['vcenter']['alive'] else 'down'}) {doc['vcenter'].get('url', '')}"
        )
        console.print(f"supervisor pid {doc['supervisor']['pid']} ({'up' if doc['supervisor']['alive'] else 'down'})")
        table = Table(title="ESXi hosts", title_justify="left")
        for col in ("host", "address", "GPUs", "power", "ssh", "vCenter", "maintenance", "driver", "faults"):
            table.add_column(col)
        for h in doc["hosts"]:
            table.add_row(
                h["name"],
                f"{h['address']}:{h['port']}",
                h["gpus"],
                h["power"],
                _word(bool(h["ssh"])),
                _word(h["connectionState"]),
                _word(h["maintenance"]),
                h["driver"] or "-",
                ", ".join(h["faults"]) or "-",
            )
        console.print(table)
        if doc["guests"]:
            console.print(
                "guests: "
                + ", ".join(f"{g['name']} ({g['persona']}, {g['address']}:{g['port']})" for g in doc["guests"])
            )
    if not doc["running"]:
        raise typer.Exit(ExitCode.NO)


def _word(value: Any) -> str:
    """A status value in words: yes / no, "unknown" where vCenter did not say (never Python's True/None)."""
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


@lab_app.command("env")
@handle_errors
def env_cmd(json_out: JsonOpt = False) -> None:
    """How to reach the running lab (the contract other tools read)."""
    from lab.env import load_lab_env

    env = load_lab_env()
    if json_out:
        print_json(env.to_document())
    else:
        _print_env(env, title="lab environment")


@lab_app.command("fault")
@handle_errors
def fault_cmd(
    host: Annotated[str, typer.Argument(help="Lab host, e.g. esxi-01.lab")],
    kind: Annotated[str | None, typer.Argument(help="vib-install-error | ssh-drop | no-return | slow-reboot")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Disarm KIND (or every fault of HOST without KIND)")] = False,
    seconds: Annotated[
        float | None, typer.Option("--seconds", help="slow-reboot: how long the host stays away")
    ] = None,
    times: Annotated[int | None, typer.Option("--times", help="Fire this many times, then disarm")] = None,
    when: Annotated[
        str | None, typer.Option("--when", help="ssh-drop: 'after' the install is done (default) or 'before'")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Inject (or clear) a fault on a lab host (or guest: package-conflict | depot-unreachable | reboot-needed)."""
    from lab import faults
    from lab.guest import faults as guest_faults

    if guest_faults.is_guest(host):
        try:
            if clear:
                cleared = guest_faults.clear(host, kind)
                doc_g: dict[str, Any] = {"host": host, "kind": kind, "cleared": cleared}
                message = f"{host}: cleared {', '.join(cleared) or 'nothing (no fault armed)'}"
            else:
                if kind is None:
                    raise _BadInput(
                        f"KIND is required unless --clear; valid kinds: {', '.join(guest_faults.GUEST_FAULT_KINDS)}"
                    )
                doc_g = {"host": host, "kind": kind, "armed": guest_faults.inject(host, kind)}
                message = f"{host}: {kind} armed ({guest_faults.GUEST_FAULT_KINDS[kind]})"
        except guest_faults.GuestFaultError as exc:
            raise _BadInput(str(exc)) from exc
        print_json(doc_g) if json_out else console.print(esc(message))
        return
    try:
        if clear:
            cleared = faults.clear(host, kind)
            doc: dict[str, Any] = {"host": host, "kind": kind, "cleared": cleared}
            message = f"{host}: cleared {', '.join(cleared) or 'nothing (no fault armed)'}"
        else:
            if kind is None:
                raise _BadInput(f"KIND is required unless --clear; valid kinds: {', '.join(faults.FAULT_KINDS)}")
            armed = faults.inject(host, kind, times=times, seconds=seconds, when=when)
            doc = {"host": host, "kind": kind, "armed": armed}
            message = f"{host}: {kind} armed ({faults.FAULT_KINDS[kind]}) {json.dumps(armed)}"
    except faults.FaultError as exc:
        raise _BadInput(str(exc)) from exc
    if json_out:
        print_json(doc)
    else:
        console.print(esc(message))


@lab_app.command("events")
@handle_errors
def events_cmd(
    host: Annotated[str | None, typer.Option("--host", help="Only this host's events")] = None,
    json_out: JsonOpt = False,
) -> None:
    """What happened in the lab: maintenance windows, reboots, installs, faults."""
    from lab.esxi.events import read_events

    events = read_events(None, host=host)
    if json_out:
        print_json(events)
        return
    table = Table(title="lab events", title_justify="left")
    for col in ("time", "host", "event", "details"):
        table.add_column(col)
    for e in events:
        details = {k: v for k, v in e.items() if k not in ("ts", "host", "event")}
        table.add_row(
            time.strftime("%H:%M:%S", time.localtime(e["ts"])) + f".{int(e['ts'] * 1000) % 1000:03d}",
            esc(e["host"]),
            esc(e["event"]),
            esc(json.dumps(details)) if details else "",
        )
    console.print(table)


@lab_app.command("reset")
@handle_errors
def reset_cmd(host: Annotated[str, typer.Argument(help="Lab host to put back to its freshly installed state")]) -> None:
    """Put a host back to its freshly installed state (no NVIDIA driver, MIG off, no faults, not in maintenance)."""
    from lab import manager

    manager.reset_host(host)
    err_console.print(f"{esc(host)}: reset")


def register(app: typer.Typer) -> None:
    """Add the ``lab`` verbs to the gpufleet app."""
    app.add_typer(lab_app, name="lab")
