"""What installing the NVIDIA guest stack does to a guest persona: the package manager (dpkg/apt, the persona is
Ubuntu), the NVIDIA ``.run`` installer, nouveau, kernel parameters, ``nvidia-ctk runtime configure``, Docker's
daemon.json and restart, and reboot.

State (``state.json``, see lab.guest.state): ``driver`` {installed, version, loaded, method, dkms}, ``packages``
{name: version} (the dpkg database), ``nouveau`` {present, loaded}, ``boot`` {id, down_until, cmdline,
next_cmdline}, ``container`` {toolkit, docker, nvidia_runtime (what the running dockerd has)}; files in the guest's
root: /etc/modprobe.d/blacklist-nouveau.conf, /etc/docker/daemon.json, /etc/default/grub.

Facts followed: the vGPU guest driver ships as ``NVIDIA-Linux-x86_64-<version>-grid.run`` and installs with
``sh FILE --silent --dkms``; with nouveau loaded the NVIDIA module cannot load until nouveau is blacklisted and
the guest rebooted; ``nvidia-ctk runtime configure --runtime=docker`` writes the nvidia runtime into
/etc/docker/daemon.json, which dockerd reads when it restarts.

Faults (``lab.guest.faults``): ``package-conflict`` (apt refuses NVIDIA packages: an installed package conflicts),
``depot-unreachable`` (apt cannot reach the package mirror), ``reboot-needed`` (the NVIDIA module does not load
after the install until the guest reboots).
"""

from __future__ import annotations

import json
import posixpath
import re
import time
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lab.guest.commands import Guest, Input, Result

BLACKLIST_FILE = "/etc/modprobe.d/blacklist-nouveau.conf"
DAEMON_JSON = "/etc/docker/daemon.json"
GRUB_DEFAULT = "/etc/default/grub"
MIRROR = "http://mirror.lab.local/nvidia"
RUN_HEADER = re.compile(r"gpufleet-lab-nvidia-run version=(\S+)")
DEB_HEADER = re.compile(r"gpufleet-lab-deb name=(\S+) version=(\S+)")
# What the lab mirror (the guest's configured apt repository) offers: NVIDIA Container Toolkit releases and
# their libraries (every one at the toolkit's version), dkms.
TOOLKIT_PACKAGES = (
    "nvidia-container-toolkit",
    "nvidia-container-toolkit-base",
    "libnvidia-container-tools",
    "libnvidia-container1",
)
MIRROR_VERSIONS = {name: ("1.16.2-1", "1.17.0-1") for name in TOOLKIT_PACKAGES} | {"dkms": ("2.8.7-2ubuntu2.2",)}
CONFLICT = "nvidia-container-runtime"  # what the package-conflict fault pretends is installed


def _ok(out: str = "", err: str = "", rc: int = 0) -> Result:
    return rc, out.encode(), err.encode()


def _fault(g: Guest, kind: str) -> bool:
    return bool(g.state.get("faults", {}).get(kind))


def run_version(data: bytes) -> str | None:
    m = RUN_HEADER.search(data[:4096].decode(errors="replace"))
    return m.group(1) if m else None


# ---------------------------------------------------------------- the .run installer
def run_installer(g: Guest, path: str, args: list[str]) -> Result:
    from lab.guest.commands import read_file

    data, error = read_file(g, path)
    if data is None:
        return _ok(err=f"sh: 0: cannot open {path}: {error}\n", rc=2)
    version = run_version(data)
    if version is None:
        return _ok(err=f"{path}: not an NVIDIA driver package (no installer header)\n", rc=1)
    if "--silent" not in args and "-s" not in args:
        return _ok(err="ERROR: the lab's installer runs only with --silent (no terminal UI over SSH)\n", rc=1)
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
    return _ok("\n".join(log) + "\n")


# ---------------------------------------------------------------- dpkg / apt
def cmd_dpkg_query(g: Guest, argv: list[str], stdin: Input) -> Result:
    fmt = "${Package}\t${Version}\n"
    names: list[str] = []
    args = argv[1:]
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-f", "--showformat"):
            fmt, i = args[i + 1], i + 2
            continue
        if a.startswith("--showformat=") or a.startswith("-f="):
            fmt = a.split("=", 1)[1]
        elif a in ("-W", "--show"):
            pass
        elif a.startswith("-"):
            return _ok(err=f"dpkg-query: unknown option {a}\n", rc=2)
        else:
            names.append(a)
        i += 1
    fmt = fmt.encode().decode("unicode_escape")
    packages = g.state.get("packages", {})
    out, err, rc = [], [], 0
    for name in names or sorted(packages):
        if name not in packages:
            err.append(f"dpkg-query: no packages found matching {name}")
            rc = 1
            continue
        values = {
            "Package": name,
            "Version": packages[name],
            "db:Status-Abbrev": "ii ",
            "Status": "install ok installed",
        }
        out.append(re.sub(r"\$\{([^}]+)\}", lambda m, v=values: v.get(m.group(1), ""), fmt))
    return _ok("".join(out), "".join(e + "\n" for e in err), rc)


def _local_deb(g: Guest, path: str) -> tuple[str, str] | str:
    from lab.guest.commands import read_file

    data, error = read_file(g, path)
    if data is None:
        return f"E: Unsupported file {path} given on commandline ({error})"
    m = DEB_HEADER.search(data[:4096].decode(errors="replace"))
    if not m:
        return f"E: {path}: not a Debian package"
    return m.group(1), m.group(2)


def cmd_apt_get(g: Guest, argv: list[str], stdin: Input) -> Result:
    args = [a for a in argv[1:] if not a.startswith("-")]
    if not args:
        return _ok(err="E: the lab's apt-get needs a verb (update, install)\n", rc=100)
    verb, targets = args[0], args[1:]
    unreachable = _fault(g, "depot-unreachable")
    if verb == "update":
        if unreachable:
            return _ok(
                f"Err:1 {MIRROR} jammy InRelease\n  Temporary failure resolving 'mirror.lab.local'\n",
                f"W: Failed to fetch {MIRROR}/dists/jammy/InRelease  Temporary failure resolving 'mirror.lab.local'\n"
                "W: Some index files failed to download. They have been ignored, or old ones used instead.\n",
                rc=0,  # apt-get update exits 0 with warnings on a fetch failure, as the real one does
            )
        return _ok(f"Hit:1 {MIRROR} jammy InRelease\nReading package lists... Done\n")
    if verb != "install":
        return _ok(err=f"E: Invalid operation {verb}\n", rc=100)
    wanted: dict[str, str] = {}
    for target in targets:
        if target.startswith(("/", "./")) or target.endswith(".deb"):
            found = _local_deb(g, target)
            if isinstance(found, str):
                return _ok(err=found + "\n", rc=100)
            wanted[found[0]] = found[1]
            continue
        name, _, version = target.partition("=")
        offered = MIRROR_VERSIONS.get(name)
        if offered is None:
            return _ok(err=f"E: Unable to locate package {name}\n", rc=100)
        if unreachable:
            return _ok(
                err=f"E: Failed to fetch {MIRROR}/pool/main/{name}_{version or offered[-1]}_amd64.deb  "
                "Temporary failure resolving 'mirror.lab.local'\n"
                "E: Unable to fetch some archives, maybe run apt-get update or try with --fix-missing?\n",
                rc=100,
            )
        if version and version not in offered:
            return _ok(err=f"E: Version '{version}' for '{name}' was not found\n", rc=100)
        wanted[name] = version or offered[-1]
    if _fault(g, "package-conflict") and any("nvidia" in n for n in wanted):
        first = next(n for n in wanted if "nvidia" in n)
        return _ok(
            "Reading package lists... Done\nSome packages could not be installed.\n"
            "The following packages have unmet dependencies:\n"
            f" {first} : Conflicts: {CONFLICT} but 3.5.0-1 is to be installed\n",
            "E: Unable to correct problems, you have held broken packages.\n",
            rc=100,
        )
    with g.store.update() as state:
        packages = state.setdefault("packages", {})
        packages.update(wanted)
        toolkit = packages.get("nvidia-container-toolkit")
        state.setdefault("container", {})["toolkit"] = toolkit.split("-")[0] if toolkit else None
        for name, version in wanted.items():
            if name.startswith("nvidia-linux-grid-"):
                nouveau = state.setdefault("nouveau", {}).get("loaded", False)
                fault = bool(state.get("faults", {}).get("reboot-needed"))
                state["driver"] = {
                    "installed": True,
                    "version": version.split("-")[0],
                    "loaded": not nouveau and not fault,
                    "method": "deb",
                    "dkms": True,
                }
        g.state = state
    lines = [f"Setting up {n} ({v}) ..." for n, v in wanted.items()]
    return _ok("Reading package lists... Done\n" + "".join(line + "\n" for line in lines))


# ---------------------------------------------------------------- kernel: dkms, update-grub, /proc/cmdline
def cmd_dkms(g: Guest, argv: list[str], stdin: Input) -> Result:
    if "dkms" not in g.state.get("packages", {}):
        from lab.guest.commands import _not_found

        return _not_found("dkms")
    if argv[1:2] != ["status"]:
        return _ok(err="Error! the lab's dkms answers only `dkms status`\n", rc=2)
    driver = g.state.get("driver", {})
    if driver.get("installed") and driver.get("dkms"):
        return _ok(f"nvidia/{driver['version']}, {g.state.get('kernel')}, x86_64: installed\n")
    return _ok()


def cmd_modinfo(g: Guest, argv: list[str], stdin: Input) -> Result:
    """``modinfo -F version nvidia``: the installed (not necessarily loaded) module's version."""
    module = argv[-1] if len(argv) > 1 else ""
    driver = g.state.get("driver", {})
    if module == "nvidia" and driver.get("installed", True):
        from lab.guest.gpus import guest_view

        version = driver.get("version") or guest_view({**g.state, "driver": {**driver, "loaded": True}}).driver_version
        if version:
            return _ok(
                f"{version}\n"
                if "-F" in argv
                else f"filename: /lib/modules/{g.state.get('kernel')}/updates/dkms/nvidia.ko\nversion:        {version}\n"
            )
    return _ok(err=f"modinfo: ERROR: Module {module} not found.\n", rc=1)


def grub_cmdline(text: str) -> list[str]:
    m = re.search(r'^GRUB_CMDLINE_LINUX_DEFAULT="([^"]*)"', text, re.M)
    return m.group(1).split() if m else []


def cmd_update_grub(g: Guest, argv: list[str], stdin: Input) -> Result:
    from lab.guest.commands import read_file

    data, _ = read_file(g, GRUB_DEFAULT)
    params = grub_cmdline((data or b"").decode())
    with g.store.update() as state:
        state.setdefault("boot", {})["next_cmdline"] = params
        g.state = state
    return _ok(err="Sourcing file `/etc/default/grub'\nGenerating grub configuration file ...\ndone\n")


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
        return _ok(err=f'time="2024-09-02T10:00:00Z" level=error msg="unable to parse {DAEMON_JSON}"\n', rc=1)
    config.setdefault("runtimes", {})["nvidia"] = {"args": [], "path": "nvidia-container-runtime"}
    if "--set-as-default" in args:
        config["default-runtime"] = "nvidia"
    g.host_path("/etc/docker").mkdir(parents=True, exist_ok=True)
    error = write_file(g, DAEMON_JSON, (json.dumps(config, indent=4) + "\n").encode())
    if error:
        return _ok(err=f'level=error msg="{error}"\n', rc=1)
    return _ok(
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
    return _ok()


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
