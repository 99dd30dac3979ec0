"""The package manager and the kernel's tools (the persona is Ubuntu): dpkg-query, apt-get (update, install from the
lab mirror or a local .deb), dkms status, modinfo, update-grub.

Faults (``lab.guest.faults``): ``package-conflict`` (apt refuses NVIDIA packages: an installed package conflicts),
``depot-unreachable`` (apt cannot reach the package mirror)."""

from __future__ import annotations

import re

from lab.guest.commands.base import Guest, Input, Result, not_found, ok
from lab.guest.commands.registry import command
from lab.guest.commands.vfs import read_file

MIRROR = "http://mirror.lab.local/nvidia"


# What the lab mirror (the guest's configured apt repository) offers: NVIDIA Container Toolkit releases and
# their libraries (every one at the toolkit's version), dkms.
TOOLKIT_PACKAGES = (
    "nvidia-container-toolkit",
    "nvidia-container-toolkit-base",
    "libnvidia-container-tools",
    "libnvidia-container1",
)


MIRROR_VERSIONS = {name: ("1.16.2-1", "1.17.0-1") for name in TOOLKIT_PACKAGES} | {"dkms": ("2.8.7-2ubuntu2.2",)}


DEB_HEADER = re.compile(r"gpufleet-lab-deb name=(\S+) version=(\S+)")


CONFLICT = "nvidia-container-runtime"  # what the package-conflict fault pretends is installed


GRUB_DEFAULT = "/etc/default/grub"


def fault_active(g: Guest, kind: str) -> bool:
    return bool(g.state.get("faults", {}).get(kind))


@command("dpkg-query")
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
            return ok(err=f"dpkg-query: unknown option {a}\n", rc=2)
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
    return ok("".join(out), "".join(e + "\n" for e in err), rc)


def _local_deb(g: Guest, path: str) -> tuple[str, str] | str:
    data, error = read_file(g, path)
    if data is None:
        return f"E: Unsupported file {path} given on commandline ({error})"
    m = DEB_HEADER.search(data[:4096].decode(errors="replace"))
    if not m:
        return f"E: {path}: not a Debian package"
    return m.group(1), m.group(2)


@command("apt-get")
def cmd_apt_get(g: Guest, argv: list[str], stdin: Input) -> Result:
    args = [a for a in argv[1:] if not a.startswith("-")]
    if not args:
        return ok(err="E: the lab's apt-get needs a verb (update, install)\n", rc=100)
    verb, targets = args[0], args[1:]
    unreachable = fault_active(g, "depot-unreachable")
    if verb == "update":
        if unreachable:
            return ok(
                f"Err:1 {MIRROR} jammy InRelease\n  Temporary failure resolving 'mirror.lab.local'\n",
                f"W: Failed to fetch {MIRROR}/dists/jammy/InRelease  Temporary failure resolving 'mirror.lab.local'\n"
                "W: Some index files failed to download. They have been ignored, or old ones used instead.\n",
                rc=0,  # apt-get update exits 0 with warnings on a fetch failure, as the real one does
            )
        return ok(f"Hit:1 {MIRROR} jammy InRelease\nReading package lists... Done\n")
    if verb != "install":
        return ok(err=f"E: Invalid operation {verb}\n", rc=100)
    wanted: dict[str, str] = {}
    for target in targets:
        if target.startswith(("/", "./")) or target.endswith(".deb"):
            found = _local_deb(g, target)
            if isinstance(found, str):
                return ok(err=found + "\n", rc=100)
            wanted[found[0]] = found[1]
            continue
        name, _, version = target.partition("=")
        offered = MIRROR_VERSIONS.get(name)
        if offered is None:
            return ok(err=f"E: Unable to locate package {name}\n", rc=100)
        if unreachable:
            return ok(
                err=f"E: Failed to fetch {MIRROR}/pool/main/{name}_{version or offered[-1]}_amd64.deb  "
                "Temporary failure resolving 'mirror.lab.local'\n"
                "E: Unable to fetch some archives, maybe run apt-get update or try with --fix-missing?\n",
                rc=100,
            )
        if version and version not in offered:
            return ok(err=f"E: Version '{version}' for '{name}' was not found\n", rc=100)
        wanted[name] = version or offered[-1]
    if fault_active(g, "package-conflict") and any("nvidia" in n for n in wanted):
        first = next(n for n in wanted if "nvidia" in n)
        return ok(
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
    return ok("Reading package lists... Done\n" + "".join(line + "\n" for line in lines))


@command("dkms")
def cmd_dkms(g: Guest, argv: list[str], stdin: Input) -> Result:
    if "dkms" not in g.state.get("packages", {}):
        return not_found("dkms")
    if argv[1:2] != ["status"]:
        return ok(err="Error! the lab's dkms answers only `dkms status`\n", rc=2)
    driver = g.state.get("driver", {})
    if driver.get("installed") and driver.get("dkms"):
        return ok(f"nvidia/{driver['version']}, {g.state.get('kernel')}, x86_64: installed\n")
    return ok()


@command("modinfo")
def cmd_modinfo(g: Guest, argv: list[str], stdin: Input) -> Result:
    """``modinfo -F version nvidia``: the installed (not necessarily loaded) module's version."""
    module = argv[-1] if len(argv) > 1 else ""
    driver = g.state.get("driver", {})
    if module == "nvidia" and driver.get("installed", True):
        from lab.guest.gpus import guest_view

        version = driver.get("version") or guest_view({**g.state, "driver": {**driver, "loaded": True}}).driver_version
        if version:
            return ok(
                f"{version}\n"
                if "-F" in argv
                else f"filename: /lib/modules/{g.state.get('kernel')}/updates/dkms/nvidia.ko\nversion:        {version}\n"
            )
    return ok(err=f"modinfo: ERROR: Module {module} not found.\n", rc=1)


def grub_cmdline(text: str) -> list[str]:
    m = re.search(r'^GRUB_CMDLINE_LINUX_DEFAULT="([^"]*)"', text, re.M)
    return m.group(1).split() if m else []


@command("update-grub")
def cmd_update_grub(g: Guest, argv: list[str], stdin: Input) -> Result:
    data, _ = read_file(g, GRUB_DEFAULT)
    params = grub_cmdline((data or b"").decode())
    with g.store.update() as state:
        state.setdefault("boot", {})["next_cmdline"] = params
        g.state = state
    return ok(err="Sourcing file `/etc/default/grub'\nGenerating grub configuration file ...\ndone\n")
