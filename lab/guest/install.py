"""What installing the NVIDIA guest stack does to a guest persona: the NVIDIA ``.run`` installer, nouveau, kernel
parameters, ``nvidia-ctk runtime configure``, Docker's daemon.json and restart, and reboot (the package manager's
commands, dpkg-query / apt-get / dkms / modinfo / update-grub: lab.guest.commands.packages).

State (``state.json``, see lab.guest.state): ``driver`` {installed, version, loaded, method, dkms}, ``packages``
{name: version} (the dpkg database), ``nouveau`` {present, loaded}, ``boot`` {id, down_until, cmdline,
next_cmdline}, ``container`` {toolkit, docker, nvidia_runtime (what the running dockerd has)}; files in the guest's
root: /etc/modprobe.d/blacklist-nouveau.conf, /etc/docker/daemon.json, /etc/default/grub.

Facts followed: the vGPU guest driver ships as ``NVIDIA-Linux-x86_64-<version>-grid.run`` and installs with
``sh FILE --silent --dkms``; with nouveau loaded the NVIDIA module cannot load until nouveau is blacklisted and
the guest rebooted; ``nvidia-ctk runtime configure --runtime=docker`` writes the nvidia runtime into
/etc/docker/daemon.json, which dockerd reads when it restarts.

Faults (``lab.guest.faults``): ``reboot-needed`` (the NVIDIA module does not load after the install until the guest
reboots); apt's faults: lab.guest.commands.packages.
"""

from __future__ import annotations

import json
import posixpath
import re
import time
import uuid
from typing import TYPE_CHECKING

from lab.guest.commands.base import ok

if TYPE_CHECKING:
    from lab.guest.commands import Guest, Result

BLACKLIST_FILE = "/etc/modprobe.d/blacklist-nouveau.conf"
DAEMON_JSON = "/etc/docker/daemon.json"
RUN_HEADER = re.compile(r"gpufleet-lab-nvidia-run version=(\S+)")


def run_version(data: bytes) -> str | None:
    m = RUN_HEADER.search(data[:4096].decode(errors="replace"))
    return m.group(1) if m else None


# ---------------------------------------------------------------- the .run installer
def run_installer(g: Guest, path: str, args: list[str]) -> Result:
    from lab.guest.commands import read_file

    data, error = read_file(g, path)
    if data is None:
        return ok(err=f"sh: 0: cannot open {path}: {error}\n", rc=2)
    version = run_version(data)
    if version is None:
        return ok(err=f"{path}: not an NVIDIA driver package (no installer header)\n", rc=1)
    if "--silent" not in args and "-s" not in args:
        return ok(err="ERROR: the lab's installer runs only with --silent (no terminal UI over SSH)\n", rc=1)
    with g.store.update() as state:
        dkms = "--dkms" in args and "dkms" in state.get("packages", {})
        nouveau = state.setdefault("nouveau", {}).get("loaded", False)
        fault = bool(state.get("faults", {}).get("reboot-needed"))
        state["driver"] = {
            "installed": True,
            "version": version,
            "loaded": not nouveau and not fault,
            "method": "run",
            "dkms": dkms,
        }
        g.state = state
    log = [
        "Verifying archive integrity... OK",
        f"Uncompressing NVIDIA Accelerated Graphics Driver for Linux-x86_64 {version}",
    ]
    if "--dkms" in args and not dkms:
        log.append("WARNING: dkms is not installed: the kernel module is built for the running kernel only.")
    if nouveau:
        log.append(
            "WARNING: The Nouveau kernel driver is currently in use by your system. The NVIDIA kernel module "
            "will load after a reboot with nouveau blacklisted."
        )
    elif fault:
        log.append("WARNING: the NVIDIA kernel module could not be loaded now; reboot to load it.")
    return ok("\n".join(log) + "\n")


# ---------------------------------------------------------------- kernel: /proc/cmdline, boot id


def proc_cmdline(g: Guest) -> str:
    params = g.state.get("boot", {}).get("cmdline") or []
    return " ".join([f"BOOT_IMAGE=/vmlinuz-{g.state.get('kernel')}", "root=/dev/sda2", "ro", *params]) + "\n"


def boot_id(g: Guest) -> str:
    return str(g.state.get("boot", {}).get("id") or "00000000-0000-4000-8000-000000000000") + "\n"


# ---------------------------------------------------------------- nvidia-ctk runtime configure, docker restart
def ctk_configure(g: Guest, args: list[str]) -> Result:
    from lab.guest.commands import read_file, write_file

    data, _ = read_file(g, DAEMON_JSON)
    try:
        config = json.loads(data or b"{}")
    except ValueError:
        return ok(err=f'time="2024-09-02T10:00:00Z" level=error msg="unable to parse {DAEMON_JSON}"\n', rc=1)
    config.setdefault("runtimes", {})["nvidia"] = {"args": [], "path": "nvidia-container-runtime"}
    if "--set-as-default" in args:
        config["default-runtime"] = "nvidia"
    g.host_path("/etc/docker").mkdir(parents=True, exist_ok=True)
    error = write_file(g, DAEMON_JSON, (json.dumps(config, indent=4) + "\n").encode())
    if error:
        return ok(err=f'level=error msg="{error}"\n', rc=1)
    return ok(
        "",
        f'time="2024-09-02T10:00:00Z" level=info msg="Wrote updated config to {DAEMON_JSON}"\n'
        'time="2024-09-02T10:00:00Z" level=info msg="It is recommended that docker daemon be restarted."\n',
    )


def daemon_runtimes(g: Guest) -> set[str]:
    from lab.guest.commands import read_file

    data, _ = read_file(g, DAEMON_JSON)
    try:
        return set(json.loads(data or b"{}").get("runtimes", {}))
    except ValueError:
        return set()


def docker_restart(g: Guest) -> None:
    """dockerd reads daemon.json when it starts: the nvidia runtime is there from now on (or gone)."""
    runtimes = daemon_runtimes(g)
    with g.store.update() as state:
        state.setdefault("container", {})["nvidia_runtime"] = "nvidia" in runtimes
        g.state = state


# ---------------------------------------------------------------- reboot
def reboot(g: Guest) -> Result:
    """The guest goes away for ``reboot_seconds`` and boots: nouveau loads unless blacklisted, the NVIDIA module
    loads when installed and nouveau is not in the way, the kernel command line is the one update-grub wrote,
    dockerd reads daemon.json."""
    blacklisted = _blacklisted(g)
    runtimes = daemon_runtimes(g)
    with g.store.update() as state:
        boot = state.setdefault("boot", {})
        boot["id"] = str(uuid.uuid4())
        boot["down_until"] = time.time() + float(state.get("reboot_seconds", 1.0))
        boot["count"] = int(boot.get("count", 0)) + 1
        if "next_cmdline" in boot:
            boot["cmdline"] = boot["next_cmdline"]
        nouveau = state.setdefault("nouveau", {})
        nouveau["loaded"] = bool(nouveau.get("present")) and not blacklisted
        driver = state.setdefault("driver", {})
        driver["loaded"] = bool(driver.get("installed")) and not nouveau["loaded"]
        state.setdefault("container", {})["nvidia_runtime"] = "nvidia" in runtimes
        g.state = state
    return ok()


def _blacklisted(g: Guest) -> bool:
    from lab.guest.commands import read_file

    for path in (BLACKLIST_FILE, "/etc/modprobe.d/nvidia-installer-disable-nouveau.conf"):
        data, _ = read_file(g, path)
        if data and re.search(r"^\s*blacklist\s+nouveau\s*$", data.decode(errors="replace"), re.M):
            return True
    return False


def down_message(state: dict) -> str | None:
    """What ssh prints while the guest reboots (None: it is up)."""
    until = float(state.get("boot", {}).get("down_until") or 0)
    if time.time() < until:
        return f"ssh: connect to host {state.get('name')} port 22: Connection refused (rebooting)\n"
    return None


def is_run_package(path: str) -> bool:
    return posixpath.basename(path).endswith(".run")
