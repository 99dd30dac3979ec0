"""Bring the embedded lab up and down: vcsim (lab.vcenter) + one sshd per ESXi host and guest (lab.supervisor).

``up`` is idempotent: a running lab of the same shape is reused (checked healthy); a stale record (processes
gone, e.g. after a machine restart) is cleaned first. ``down`` stops every process the lab started - by the pids
it recorded, then by a scan of /proc for anything still tied to this lab's directory - verifies none is left,
and removes the lab state. Both are serialized by a lock file (parallel test workers share one lab).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gpufleet.errors import GpufleetError
from lab import control, sshd
from lab.env import LabEnv, SshEndpoint, VcenterEndpoint, load_lab_env, write_lab_env
from lab.esxi import events
from lab.esxi.bundle import build_depot
from lab.esxi.state import HostStore, initial_state, prepare_host_fs
from lab.licenses import lab_license_secrets
from lab.paths import LabPaths

VCENTER_USER = "administrator@vsphere.local"
DEFAULT_SSH_PORT = 22
DEFAULT_VCENTER_PORT = 8989
DEFAULT_REBOOT_SECONDS = 2.0
SUPERVISOR_START_TIMEOUT_S = 120.0

Progress = Callable[[str], None]


class LabError(GpufleetError):
    """The lab could not be started, reused or stopped."""


@dataclass(frozen=True)
class LabShape:
    hosts: int = 4
    vms_per_host: int = 0
    reboot_seconds: float = DEFAULT_REBOOT_SECONDS
    ssh_port: int = DEFAULT_SSH_PORT
    vcenter_port: int = DEFAULT_VCENTER_PORT

    def validate(self) -> None:
        problems = []
        if not 1 <= self.hosts <= 200:
            problems.append(f"hosts must be between 1 and 200 (got {self.hosts})")
        if not 0 <= self.vms_per_host <= 100:
            problems.append(f"vms_per_host must be between 0 and 100 (got {self.vms_per_host})")
        if not 0 <= self.reboot_seconds <= 600:
            problems.append(f"reboot_seconds must be between 0 and 600 (got {self.reboot_seconds})")
        for name in ("ssh_port", "vcenter_port"):
            port = getattr(self, name)
            if not 1 <= port <= 65535:
                problems.append(f"{name} must be a TCP port 1..65535 (got {port})")
        if problems:
            raise LabError("invalid lab shape: " + "; ".join(problems))


@dataclass
class UpResult:
    env: LabEnv
    reused: bool
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class DownReport:
    root: str
    stopped: list[int]
    leftovers: list[str]
    removed: bool


# -- small process helpers ------------------------------------------------------------------------------------


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def _ancestors() -> set[int]:
    out, pid = set(), os.getpid()
    while pid > 1:
        out.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            break
    return out


def lab_processes(paths: LabPaths) -> list[tuple[int, str]]:
    """Processes this lab started: vcsim (``-topology DIR/...``), the supervisor (``--lab-dir DIR``), sshd
    (``-f DIR/...``), and the SSH sessions' simulators (sshd's SetEnv puts GPUFLEET_LAB_HOST and this GPUFLEET_LAB_DIR in their environment)."""
    root = str(paths.root)
    mine = _ancestors()
    marker = f"GPUFLEET_LAB_DIR={root}\0".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in mine:
            continue
        pid = int(entry)
        cmd = _cmdline(pid)
        if not cmd:
            continue
        if f"-f {root}/" in cmd or f"-topology {root}/" in cmd or f"--lab-dir {root}" in cmd:
            found.append((pid, cmd.strip()))
            continue
        env = _environ(pid)
        if marker in env and b"GPUFLEET_LAB_HOST=" in env:
            found.append((pid, cmd.strip()))
    return found


def _kill(pid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return not _alive(pid)


@contextlib.contextmanager
def lab_lock(paths: LabPaths) -> Iterator[None]:
    with open(paths.lock_file, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def supervisor_request(paths: LabPaths, request: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    try:
        return control.request(paths.supervisor_socket, request, timeout)
    except OSError as exc:
        raise LabError(f"the lab supervisor at {paths.supervisor_socket} does not answer: {exc}") from exc


def _port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def read_record(paths: LabPaths) -> dict[str, Any] | None:
    try:
        return json.loads(paths.state_file.read_text())
    except (OSError, ValueError):
        return None


def _write_record(paths: LabPaths, record: dict[str, Any]) -> None:
    tmp = paths.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, paths.state_file)


# -- up ----------------------------------------------------------------------------------------------------------


def _healthy(paths: LabPaths, record: dict[str, Any]) -> str | None:
    """None when every part of a recorded lab answers; else what is wrong."""
    pids = record.get("pids", {})
    if not _alive(pids.get("vcsim")):
        return "vcsim is not running"
    if not _alive(pids.get("supervisor")):
        return "the supervisor is not running"
    try:
        status = supervisor_request(paths, {"op": "status"}, timeout=5)
    except LabError as exc:
        return str(exc)
    try:
        from lab.vcenter import LabAdmin

        env = load_lab_env(paths.root)
        if not LabAdmin(
            env.vcenter.url, env.vcenter.user, env.vcenter.password, env.vcenter.ca_file, timeout=5
        ).health():
            return "vcsim /lab/health is not ok"
    except GpufleetError as exc:
        return f"vcsim does not answer: {exc}"
    down = [
        n
        for n, u in status.get("units", {}).items()
        if u["power"] == "on" and not (u["sshd_pid"] and sshd.owns_listener(u["sshd_pid"], u["address"], u["port"]))
    ]
    if down:
        return f"sshd not listening for {', '.join(down[:5])}"
    return None


def up(shape: LabShape | None = None, paths: LabPaths | None = None, progress: Progress | None = None) -> UpResult:
    """Start the lab (or reuse the running one) and return how to reach it.

    ``shape=None``: reuse whatever lab runs, else start the default shape. A given shape must match the running
    lab's (else LabError: run ``lab down`` first)."""
    wanted = shape
    shape = shape or LabShape()
    shape.validate()
    paths = paths or LabPaths.resolve()
    say = progress or (lambda _msg: None)
    started = time.monotonic()
    with lab_lock(paths):
        record = read_record(paths)
        if record is not None:
            running = LabShape(**record["shape"])
            problem = _healthy(paths, record)
            if problem is None:
                if wanted is not None and running != wanted:
                    raise LabError(
                        f"a lab of another shape runs at {paths.root} ({_shape_text(running)}); "
                        f"wanted {_shape_text(shape)}. Run `gpufleet lab down` first."
                    )
                return UpResult(
                    load_lab_env(paths.root),
                    True,
                    time.monotonic() - started,
                    {"reuse_check": time.monotonic() - started},
                )
            say(f"cleaning a stale lab at {paths.root} ({problem})")
            _teardown(paths, record)
        elif paths.env_file.exists() or paths.hosts_dir.exists():
            say(f"cleaning leftovers of an earlier lab at {paths.root}")
            _teardown(paths, None)
        try:
            return _create(shape, paths, say, started)
        except BaseException:
            _teardown(paths, read_record(paths))
            raise


def _shape_text(s: LabShape) -> str:
    return f"hosts={s.hosts} vms_per_host={s.vms_per_host} reboot_seconds={s.reboot_seconds:g} ssh_port={s.ssh_port} vcenter_port={s.vcenter_port}"


def _create(shape: LabShape, paths: LabPaths, say: Progress, started: float) -> UpResult:
    from lab import vcenter
    from lab.topology import build_topology, write_topology

    timings: dict[str, float] = {}

    def mark(name: str, since: float) -> float:
        now = time.monotonic()
        timings[name] = round(now - since, 3)
        return now

    missing = [
        f"{tool} ({pkg})"
        for tool, pkg in ((sshd.SSHD_BINARY, "openssh-server"), (sshd.SSH_KEYGEN, "openssh-client"))
        if not Path(tool).exists()
    ]
    if missing:
        raise LabError(
            f"the lab's ESXi hosts need {', '.join(missing)}; install with: apt-get install -y openssh-server openssh-client"
        )
    t = time.monotonic()
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.root.chmod(0o700)
    for d in (paths.logs_dir, paths.run_dir, paths.ssh_dir, paths.hosts_dir):
        d.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "shape": asdict(shape),
        "pids": {},
        "started_at": time.time(),
        "run_id": os.environ.get("GPUFLEET_LAB_RUN_ID", ""),
    }
    _write_record(paths, record)

    say("building the lab vCenter (vcsim; cached after the first build)")
    binary = vcenter.build_vcsim()
    t = mark("vcsim_build", t)
    tls = vcenter.make_lab_ca(paths.tls_dir)
    password = secrets.token_urlsafe(18)
    topology = build_topology(shape.hosts, shape.vms_per_host)
    write_topology(topology, paths.topology_file)
    topo_doc = json.loads(paths.topology_file.read_text())
    t = mark("ca_topology", t)

    say("starting vCenter (vcsim)")
    proc = vcenter.start_vcsim(
        binary,
        paths.topology_file,
        tls,
        shape.vcenter_port,
        VCENTER_USER,
        password,
        paths.logs_dir / "vcsim.log",
        events_file=paths.events_file,
    )
    record["pids"]["vcsim"] = proc.pid
    _write_record(paths, record)
    t = mark("vcsim_start", t)
    vc = VcenterEndpoint(
        url=f"https://127.0.0.1:{shape.vcenter_port}/sdk",
        host="127.0.0.1",
        port=shape.vcenter_port,
        user=VCENTER_USER,
        password=password,
        ca_file=str(tls.ca_cert),
        thumbprint=tls.thumbprint,
    )

    say(f"preparing {shape.hosts} ESXi hosts (keys, state, sshd configs)")
    client_pub = sshd.generate_key(paths.client_key, "gpufleet-lab-client")
    authorized = f"restrict,pty {sshd.public_key_body(client_pub)} gpufleet-lab-client\n"
    paths.authorized_keys.write_text(authorized)
    paths.authorized_keys.chmod(0o600)
    build_depot(paths.depot_dir)
    units: list[sshd.SshdUnit] = []
    known: list[str] = []
    hosts_env: list[SshEndpoint] = []
    for h in topo_doc["hosts"]:
        store = HostStore(paths, h["name"])
        store.write(initial_state(h))
        prepare_host_fs(paths, h["name"], topo_doc["datastore"])
        unit = sshd.SshdUnit(
            name=h["name"],
            kind="esxi",
            address=h["address"],
            port=shape.ssh_port,
            state_dir=str(paths.host_dir(h["name"])),
            module="lab.esxi.shell",
        )
        pub = sshd.generate_key(unit.host_key_path, f"gpufleet-lab-{h['name']}")
        sshd.write_config(unit, paths.root, paths.authorized_keys, sys.executable)
        units.append(unit)
        known.append(sshd.known_hosts_entry(unit.address, unit.port, pub))
        hosts_env.append(
            SshEndpoint(
                name=h["name"],
                address=h["address"],
                port=shape.ssh_port,
                user="root",
                key_file=str(paths.client_key),
                known_hosts=str(paths.known_hosts),
            )
        )
    sshd.check_config(units[0].config_path)
    t = mark("hosts_prepare", t)

    guests_env, guest_raw, lab_secrets = _prepare_guests(paths, topology, shape, units, known, say)
    lab_secrets.update(lab_license_secrets())  # the host licence key lab stacks use (env.json "secrets", 0600)
    t = mark("guests_prepare", t)

    env = LabEnv(vcenter=vc, hosts=hosts_env, guests=guests_env)
    sshd.write_known_hosts(paths.known_hosts, known)
    write_lab_env(env, paths.env_file)
    if guest_raw or lab_secrets:
        doc = json.loads(paths.env_file.read_text())
        if guest_raw:
            doc["guests"] = guest_raw  # the guest module's entries keep their extra fields (persona, host_key)
        if lab_secrets:
            doc["secrets"] = lab_secrets
        fd = os.open(paths.env_file, os.O_WRONLY | os.O_TRUNC)
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh, indent=2)

    admin = vcenter.LabAdmin(vc.url, vc.user, vc.password, vc.ca_file)
    initial_vc = {}
    for h in topo_doc["hosts"]:
        view = admin.host(h["name"])
        initial_vc[h["name"]] = {"graphicsType": view["graphicsType"], "assignmentPolicy": view["assignmentPolicy"]}
    paths.units_file.write_text(
        json.dumps(
            {
                "units": [u.to_dict() for u in units],
                "reboot_seconds": shape.reboot_seconds,
                "initial_vcenter": initial_vc,
            },
            indent=1,
        )
    )
    t = mark("env_write", t)

    busy = [f"{u.address}:{u.port} ({who})" for u in units if (who := sshd.port_user(u.address, u.port))]
    if busy:
        raise LabError(
            f"SSH address(es) already in use: {'; '.join(busy[:4])}{' ...' if len(busy) > 4 else ''}; choose another --ssh-port"
        )
    say(f"starting {len(units)} sshd (ESXi hosts and guests) under the lab supervisor")
    record["pids"]["supervisor"] = _start_supervisor(paths)
    _write_record(paths, record)
    t = mark("supervisor_start", t)
    for h in topo_doc["hosts"]:
        events.record(paths, h["name"], "host_up")
    record["timings"] = timings
    _write_record(paths, record)
    return UpResult(load_lab_env(paths.root), False, time.monotonic() - started, timings)


def _prepare_guests(
    paths: LabPaths, topology: Any, shape: LabShape, units: list[sshd.SshdUnit], known: list[str], say: Progress
) -> tuple[list[SshEndpoint], list[dict], dict[str, str]]:
    """The guest personas' units (lab.guest owns them); the lab runs without guests if that module is absent."""
    if not topology.guests:
        return [], [], {}
    try:
        from lab.guest import prepare_guests
    except ImportError:
        say("no guest personas (lab.guest not available)")
        return [], [], {}
    setup = prepare_guests(paths, topology, port=shape.ssh_port, python=sys.executable)
    units.extend(setup.units)
    entries: list[SshEndpoint] = []
    for e in setup.env_entries:
        entries.append(SshEndpoint(**{k: e[k] for k in ("name", "address", "port", "user", "key_file", "known_hosts")}))
        if e.get("host_key"):
            known.append(sshd.known_hosts_entry(e["address"], e["port"], e["host_key"]))
    if setup.units:
        sshd.check_config(setup.units[0].config_path)
    return entries, setup.env_entries, dict(setup.secrets)


def _start_supervisor(paths: LabPaths) -> int:
    log = open(paths.logs_dir / "supervisor.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-m", "lab.supervisor", "--lab-dir", str(paths.root)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=str(paths.root),
        )
    finally:
        log.close()
    deadline = time.monotonic() + SUPERVISOR_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (paths.logs_dir / "supervisor.log").read_text(errors="replace").splitlines()[-15:]
            raise LabError(f"the lab supervisor exited with status {proc.returncode}:\n" + "\n".join(tail))
        if paths.supervisor_state.exists() and paths.supervisor_socket.exists():
            try:
                if supervisor_request(paths, {"op": "ping"}, timeout=2).get("ok"):
                    return proc.pid
            except LabError:
                pass
        time.sleep(0.05)
    raise LabError(
        f"the lab supervisor did not get ready within {SUPERVISOR_START_TIMEOUT_S:.0f} s; see {paths.logs_dir / 'supervisor.log'}"
    )


# -- down ---------------------------------------------------------------------------------------------------------

_LAB_ENTRIES = (
    "env.json",
    "lab.json",
    "lab.tmp",
    "topology.json",
    "events.jsonl",
    "tls",
    "ssh",
    "hosts",
    "guests",
    "depot",
    "run",
    "logs",
)


def _teardown(paths: LabPaths, record: dict[str, Any] | None) -> DownReport:
    before = [pid for pid, _ in lab_processes(paths)]
    stopped: list[int] = []
    pids = (record or {}).get("pids", {})
    sup = pids.get("supervisor")
    if _alive(sup) and paths.supervisor_socket.exists():
        with contextlib.suppress(LabError, ValueError):
            supervisor_request(paths, {"op": "stop"}, timeout=5)
        if _wait_gone(sup, 10):
            stopped.append(sup)
    if _alive(sup) and f"--lab-dir {paths.root}" in _cmdline(sup):
        _kill(sup, signal.SIGTERM)
        if not _wait_gone(sup, 5):
            _kill(sup)
            _wait_gone(sup, 5)
        stopped.append(sup)
    vcsim_pid = pids.get("vcsim")
    if _alive(vcsim_pid):
        from lab.vcenter import stop_vcsim

        if stop_vcsim(vcsim_pid):
            stopped.append(vcsim_pid)
    # Whatever is still tied to this lab (sshd the supervisor could not stop, SSH sessions, guests): by pid.
    for _ in range(3):
        left = lab_processes(paths)
        if not left:
            break
        for pid, _cmd in left:
            _kill(pid)
            stopped.append(pid)
        for pid, _cmd in left:
            _wait_gone(pid, 2)
    leftovers = [f"{pid} {cmd}" for pid, cmd in lab_processes(paths)]
    stopped += [pid for pid in before if not _alive(pid)]  # including what the supervisor stopped itself
    removed = False
    if not leftovers and paths.root.exists():
        for name in _LAB_ENTRIES:
            target = paths.root / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target, ignore_errors=True)
            elif target.exists() or target.is_symlink():
                target.unlink()
        for stale in paths.root.glob("vcsim-ds-*"):
            shutil.rmtree(stale, ignore_errors=True)
        with contextlib.suppress(OSError):
            paths.root.rmdir()  # only when nothing else was put there
    if not leftovers:
        removed = not paths.root.exists() or not any(paths.root.iterdir())
    return DownReport(str(paths.root), sorted(set(stopped)), leftovers, removed)


def down(paths: LabPaths | None = None) -> DownReport:
    """Stop every process of the lab and remove its state; ``leftovers`` lists anything that would not die."""
    paths = paths or LabPaths.resolve()
    with lab_lock(paths):
        report = _teardown(paths, read_record(paths))
    if report.leftovers:
        raise LabError(f"lab down could not stop: {'; '.join(report.leftovers)}")
    return report


# -- status / reset -------------------------------------------------------------------------------------------------


def status(paths: LabPaths | None = None) -> dict[str, Any]:
    """What runs: vCenter, supervisor, each host's sshd and power state, armed faults, maintenance mode."""
    paths = paths or LabPaths.resolve()
    record = read_record(paths)
    if record is None:
        return {"running": False, "root": str(paths.root), "hosts": [], "guests": []}
    pids = record.get("pids", {})
    doc: dict[str, Any] = {
        "running": False,
        "root": str(paths.root),
        "shape": record.get("shape"),
        "timings": record.get("timings", {}),
        "vcenter": {"pid": pids.get("vcsim"), "alive": _alive(pids.get("vcsim"))},
        "supervisor": {"pid": pids.get("supervisor"), "alive": _alive(pids.get("supervisor"))},
        "hosts": [],
        "guests": [],
    }
    units: dict[str, Any] = {}
    with contextlib.suppress(LabError):
        units = supervisor_request(paths, {"op": "status"}, timeout=5).get("units", {})
    views: dict[str, Any] = {}
    try:
        env = load_lab_env(paths.root)
        doc["vcenter"]["url"] = env.vcenter.url
        from lab.vcenter import LabAdmin

        admin = LabAdmin(env.vcenter.url, env.vcenter.user, env.vcenter.password, env.vcenter.ca_file, timeout=3)
        for h in env.hosts:
            views[h.name] = admin.host(h.name)
    except GpufleetError:
        pass
    topo = json.loads(paths.topology_file.read_text()) if paths.topology_file.exists() else {"hosts": [], "guests": []}
    for h in topo["hosts"]:
        unit = units.get(h["name"], {})
        state: dict[str, Any] = {}
        with contextlib.suppress(Exception):
            state = HostStore(paths, h["name"]).read()
        view = views.get(h["name"], {})
        doc["hosts"].append(
            {
                "name": h["name"],
                "address": h["address"],
                "port": unit.get("port"),
                "gpus": f"{len(h['gpus'])}x {h['gpus'][0]['model']}" if h["gpus"] else "",
                "power": unit.get("power", "unknown"),
                "sshdPid": unit.get("sshd_pid"),
                "ssh": bool(unit.get("sshd_pid")) and _port_open(h["address"], unit.get("port") or 22),
                "connectionState": view.get("connectionState"),
                "maintenance": view.get("inMaintenanceMode"),
                "driver": (state.get("driver_loaded") or "").split("-")[0] or None,
                "faults": sorted(state.get("faults", {})),
            }
        )
    for g in topo.get("guests", []):
        unit = units.get(g["name"], {})
        doc["guests"].append(
            {
                "name": g["name"],
                "address": g["address"],
                "persona": g["persona"],
                "port": unit.get("port"),
                "sshdPid": unit.get("sshd_pid"),
            }
        )
    doc["running"] = (
        doc["vcenter"]["alive"]
        and doc["supervisor"]["alive"]
        and all(h["sshdPid"] for h in doc["hosts"] if h["power"] == "on")
    )
    return doc


def reset_host(name: str, paths: LabPaths | None = None) -> None:
    """Put one host back to its freshly installed state (no driver, MIG off, no faults, not in maintenance)."""
    paths = paths or LabPaths.resolve()
    answer = supervisor_request(paths, {"op": "reset", "host": name})
    if not answer.get("ok"):
        raise LabError(f"reset of {name} failed: {answer.get('error')}")


def reboot_host(name: str, paths: LabPaths | None = None) -> float:
    """Reboot a host as its `reboot` command would; returns the away time in seconds."""
    paths = paths or LabPaths.resolve()
    answer = supervisor_request(paths, {"op": "reboot", "host": name})
    if not answer.get("ok"):
        raise LabError(f"reboot of {name} failed: {answer.get('error')}")
    return float(answer["away_seconds"])
