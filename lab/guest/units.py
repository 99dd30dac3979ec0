"""Setting up the guest personas of a lab: state directories, one SSH endpoint each (lab.sshd mechanics), the
lab's NVIDIA client configuration token, and the env.json entries that say how to reach them.

The lab manager (lab.manager) calls :func:`guest_units` while it brings the lab up and hands the units to the
supervisor with the ESXi hosts' units; :func:`start_guests` / :func:`stop_guests` run the guests' sshd processes
directly (tests, or a lab without the supervisor).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from lab.guest import bitfusion
from lab.guest.state import GuestState, initial_state
from lab.paths import LabPaths
from lab.sshd import SshdUnit, generate_key, known_hosts_entry, write_config
from lab.topology import Topology

TOKEN_ENV = "GPUFLEET_NVIDIA_CLIENT_TOKEN"  # the lab stack's SecretRef env for the NVIDIA client token
GUEST_MODULE = "lab.guest.shell"
TOKEN_FILE = "client_configuration_token.tok"


@dataclass
class GuestsSetup:
    """What the lab manager needs from the guests: their sshd units, env.json entries and lab secrets."""

    units: list[SshdUnit]
    env_entries: list[dict]  # env.json "guests": {"name","address","port","user","key_file","known_hosts",
    #                          "host_key","persona"}
    secrets: dict[str, str] = field(default_factory=dict)  # env.json "secrets" (lab-generated; 0600 file)
    host_keys: dict[str, str] = field(default_factory=dict)  # guest name -> its public host key line


def _lab_token(guests_dir: Path) -> str:
    """The lab's client configuration token: generated once per lab (a JWT-shaped random string), kept 0600."""
    path = guests_dir / TOKEN_FILE
    if path.exists():
        return path.read_text().strip()

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    header = b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "gpufleet-lab"}).encode())
    body = b64(json.dumps({"iss": "dls.lab.local", "lab": True, "nonce": secrets.token_hex(16)}).encode())
    token = f"{header}.{body}.{b64(secrets.token_bytes(64))}"
    guests_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


GUEST_DRIVERS = ("550.90.07", "550.127.05", "570.124.06")


def run_file_name(version: str) -> str:
    return f"NVIDIA-Linux-x86_64-{version}-grid.run"


def build_guest_depot(directory: Path) -> list[Path]:
    """The lab's guest packages: NVIDIA vGPU guest driver ``.run`` installers and ``.deb`` packages of a few
    versions. Their payload is a header the simulated installer reads (nothing executes them)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for version in GUEST_DRIVERS:
        run = directory / run_file_name(version)
        if not run.exists():
            run.write_text(
                "#!/bin/sh\n# gpufleet-lab-nvidia-run version=" + version + "\n"
                "# NVIDIA Accelerated Graphics Driver for Linux-x86_64 (vGPU guest), simulated by the gpufleet lab\n"
                + "# payload\n"
                * 64
            )
        branch = version.split(".")[0]
        deb = directory / f"nvidia-linux-grid-{branch}_{version}_amd64.deb"
        if not deb.exists():
            deb.write_text(f"!<arch>\n# gpufleet-lab-deb name=nvidia-linux-grid-{branch} version={version}\n")
        written += [run, deb]
    return written


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.strip().encode()).hexdigest()


def prepare_guests(
    paths: LabPaths,
    topology: Topology,
    *,
    port: int = 22,
    gpu_source: str = "vcenter",
    python: str | None = None,
) -> GuestsSetup:
    """Create (or keep) each guest's state and host key, write its sshd_config; no process is started."""
    guests_dir = paths.guests_dir
    build_guest_depot(paths.depot_dir)
    token = _lab_token(guests_dir)
    digest = token_sha256(token)
    pool = bitfusion.lab_secrets(guests_dir)
    pool_digests = {
        "token_sha256": token_sha256(pool[bitfusion.TOKEN_ENV]),
        "ca_sha256": token_sha256(pool[bitfusion.CA_ENV]),
    }
    host_of = {vm.name: vm.host for vm in topology.vms}
    units: list[SshdUnit] = []
    entries: list[dict] = []
    host_keys: dict[str, str] = {}
    for guest in topology.guests:
        directory = guests_dir / guest.name
        GuestState.create(
            directory,
            initial_state(
                guest.name,
                guest.persona,
                host_of.get(guest.name),
                digest,
                gpu_source,
                address=guest.address,
                bitfusion=pool_digests,
            ),
        )
        unit = SshdUnit(
            name=guest.name,
            kind="guest",
            address=guest.address,
            port=port,
            state_dir=str(directory),
            module=GUEST_MODULE,
            env={"GPUFLEET_GUEST_DIR": str(directory)},
        )
        pub = generate_key(unit.host_key_path, f"gpufleet-lab-guest-{guest.name}")
        write_config(unit, paths.root, paths.authorized_keys, python)
        units.append(unit)
        host_keys[guest.name] = pub
        entries.append(
            {
                "name": guest.name,
                "address": guest.address,
                "port": port,
                "user": unit.user,
                "key_file": str(paths.client_key),
                "known_hosts": str(paths.known_hosts),
                "host_key": " ".join(pub.split()[:2]),  # for the lab's known_hosts (lab.manager)
                "persona": guest.persona,
            }
        )
    return GuestsSetup(units=units, env_entries=entries, secrets={TOKEN_ENV: token, **pool}, host_keys=host_keys)


def guest_units(ctx: object) -> list[SshdUnit]:
    """The guests' sshd units for the lab manager. ``ctx`` carries ``paths`` (LabPaths) and ``topology``; its
    optional ``guest_port`` / ``python`` / ``guest_gpu_source`` are honoured."""
    setup = prepare_guests(
        ctx.paths,  # type: ignore[attr-defined]
        ctx.topology,  # type: ignore[attr-defined]
        port=getattr(ctx, "guest_port", 22),
        gpu_source=getattr(ctx, "guest_gpu_source", "vcenter"),
        python=getattr(ctx, "python", None),
    )
    return setup.units


def known_hosts_lines(setup: GuestsSetup) -> list[str]:
    """known_hosts entries of the guests (``[addr]:port key``) for the lab's known_hosts file."""
    return [known_hosts_entry(e["address"], e["port"], setup.host_keys[e["name"]]) for e in setup.env_entries]


@dataclass
class RunningGuests:
    """Guests whose sshd processes this module started (see :func:`start_guests`)."""

    setup: GuestsSetup
    processes: list[subprocess.Popen]

    def stop(self, timeout: float = 5.0) -> None:
        stop_guests(self.processes, timeout)


def start_guests(
    paths: LabPaths,
    topology: Topology,
    *,
    port: int = 22,
    gpu_source: str = "vcenter",
    python: str | None = None,
) -> RunningGuests:
    """Prepare the guests and start one sshd per guest (foreground children of this process; stop them with
    :func:`stop_guests`). The caller writes known_hosts (``known_hosts_lines``) and env.json."""
    from lab.sshd import check_config, start

    setup = prepare_guests(paths, topology, port=port, gpu_source=gpu_source, python=python)
    processes: list[subprocess.Popen] = []
    try:
        for unit in setup.units:
            check_config(unit.config_path)
            processes.append(start(unit, paths.logs_dir / f"sshd-guest-{unit.name}.log"))
    except BaseException:
        stop_guests(processes)
        raise
    return RunningGuests(setup, processes)


def stop_guests(processes: list[subprocess.Popen], timeout: float = 5.0) -> None:
    """Stop the sshd processes start_guests started (by their own Popen handles), then reap them."""
    for proc in processes:
        if proc.poll() is None:
            proc.terminate()
    for proc in processes:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


def reset_guest(paths: LabPaths, name: str, bare: bool = False) -> None:
    """Put a guest back in its first state (driver, toolkit, gridd unlicensed; no token, no gridd.conf); its
    host key and the lab token stay. ``bare``: a fresh guest with no NVIDIA software instead (nouveau loaded,
    Docker without the nvidia runtime), for ``guests prepare``. For tests, like ``lab.manager.reset_host``."""
    import shutil

    directory = paths.guests_dir / name
    store = GuestState(directory)
    old = store.read()
    fresh = initial_state(
        name,
        old["persona"],
        old.get("host"),
        old.get("license_token_sha256"),
        old.get("gpu_source", "vcenter"),
        bare=bare,
        address=old.get("address"),
        bitfusion=old.get("bitfusion"),
    )
    with store.update() as state:
        state.clear()
        state.update(fresh)
    shutil.rmtree(store.root, ignore_errors=True)
    GuestState.create(directory, fresh)
