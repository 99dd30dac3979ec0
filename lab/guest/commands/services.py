"""systemd: systemctl and journalctl for nvidia-gridd (its licence state and journal: lab.guest.gridd), docker,
ssh and nvidia-persistenced."""

from __future__ import annotations

import time

from lab.guest.commands.base import Guest, Input, Result, ok
from lab.guest.commands.registry import command
from lab.guest.commands.text import count_arg

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


@command("systemctl")
def cmd_systemctl(g: Guest, argv: list[str], stdin: Input) -> Result:
    from lab.guest import gridd

    args = [a for a in argv[1:] if not a.startswith("--")]
    if not args:
        return ok(err="systemctl: the lab guest needs a verb\n", rc=1)
    verb, units = args[0], [_unit(u) for u in args[1:]]
    if verb == "daemon-reload":
        return ok()
    if verb == "reboot":
        from lab.guest.install import reboot

        return reboot(g)
    if verb == "list-unit-files":
        return ok(
            "UNIT FILE                    STATE   VENDOR PRESET\n"
            + "".join(f"{u}.service    enabled enabled\n" for u in UNITS)
        )
    for unit in units:
        if unit not in UNITS:
            if verb in ("is-active",):
                return ok("inactive\n", rc=3)
            if verb == "is-enabled":
                return ok(err=f"Failed to get unit file state for {unit}.service: No such file or directory\n", rc=1)
            return ok(
                err=f"Failed to {verb} {unit}.service: Unit {unit}.service not found.\n",
                rc=5 if verb != "status" else 4,
            )
    gridd_state = g.state.get("gridd", {})
    if verb == "is-active":
        active = all(gridd_state.get("active") if u == "nvidia-gridd" else True for u in units)
        return ok("active\n" if active else "inactive\n", rc=0 if active else 3)
    if verb == "is-enabled":
        return ok("enabled\n")
    if verb in ("restart", "start", "reload-or-restart", "try-restart"):
        if "nvidia-gridd" in units:
            if verb == "start" and gridd_state.get("active"):
                return ok()
            _gridd_restart(g)
        if "docker" in units and verb != "start":
            from lab.guest.install import docker_restart

            docker_restart(g)
        return ok()
    if verb == "stop":
        if "nvidia-gridd" in units:
            with g.store.update() as state:
                gridd.stop(state)
                g.state = state
        return ok()
    if verb in ("enable", "disable"):
        return ok()
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
        return ok("\n".join(lines) + "\n", rc=0 if active else 3)
    return ok(err=f"Unknown command verb {verb}.\n", rc=1)


@command("journalctl")
def cmd_journalctl(g: Guest, argv: list[str], stdin: Input) -> Result:
    from lab.guest import gridd

    unit = None
    for i, a in enumerate(argv):
        if a == "-u" and i + 1 < len(argv):
            unit = _unit(argv[i + 1])
        elif a.startswith("--unit="):
            unit = _unit(a.split("=", 1)[1])
    lines = gridd.journal(g.state, g.name) if unit in (None, "nvidia-gridd") else []
    n = count_arg(argv, default=len(lines) or 1)
    return ok("".join(ln + "\n" for ln in lines[-n:]) if lines else "-- No entries --\n")
