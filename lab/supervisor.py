"""The lab supervisor: owns one sshd per lab endpoint, and makes ESXi hosts reboot.

Started by ``lab up`` in its own session (``python -m lab.supervisor --lab-dir DIR``); stopped by ``lab down``.
It reads ``run/units.json`` (lab.sshd.SshdUnit list), starts every sshd (foreground, so it is their parent and
knows their pids), restarts one that dies unexpectedly, and answers JSON requests on the unix socket
``run/supervisor.sock`` (one request line, one answer line):

* ``{"op": "ping"}`` / ``{"op": "status"}``
* ``{"op": "reboot", "host": NAME}`` (sent by the simulated ``reboot``): vCenter shows the host notResponding at
  once; ~0.3 s later its sshd and every open session are killed (connections drop, new ones are refused); after
  the away time (lab default, or the ``slow-reboot`` fault's) pending changes apply (driver loads, MIG mode,
  kernel settings, NIC firmware), sshd comes back, then vCenter shows it connected with the driver state.
  With the ``no-return`` fault the host stays down until the fault is cleared (or the host is reset).
* ``{"op": "reset", "host": NAME}``: back to the freshly installed state (used between tests).
* ``{"op": "stop"}``: stop everything and exit.

It also starts (and restarts) the fork server (lab.forkserver) that every SSH command of the lab runs in.

It also watches vCenter for maintenance mode changes made through the vSphere API and records them in the
events log (``via: "vcenter"``), so rollout tests see every maintenance window whichever face opened it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from lab import control, forkserver, sshd
from lab.esxi import events
from lab.esxi.state import HostStore, apply_reboot, initial_state, reset_fs
from lab.esxi.vcface import VcenterClient, VcenterUnavailable
from lab.paths import LabPaths

log = logging.getLogger("lab.supervisor")

KILL_DELAY_S = 0.3  # lets the `reboot` command's exit status reach the client before the connection drops


def _children(pid: int) -> list[int]:
    """All descendants of ``pid`` (from /proc), deepest last."""
    by_parent: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        by_parent.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in by_parent.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class Supervisor:
    def __init__(self, paths: LabPaths) -> None:
        self.paths = paths
        doc = json.loads(paths.units_file.read_text())
        self.units = {u["name"]: sshd.SshdUnit.from_dict(u) for u in doc["units"]}
        self.reboot_seconds = float(doc.get("reboot_seconds", 2.0))
        self.initial_vcenter: dict[str, dict[str, Any]] = doc.get("initial_vcenter", {})
        self.procs: dict[str, subprocess.Popen] = {}
        self.forkserver: subprocess.Popen | None = None
        self.power: dict[str, str] = {name: "on" for name in self.units}
        self.generation: dict[str, int] = {name: 0 for name in self.units}  # bumps cancel a running reboot
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.topology = json.loads(paths.topology_file.read_text()) if paths.topology_file.exists() else {"hosts": []}

    # -- sshd processes ---------------------------------------------------------------------------------------
    def _log_file(self, name: str) -> Path:
        return self.paths.logs_dir / f"sshd-{name}.log"

    def start_unit(self, name: str) -> None:
        unit = self.units[name]
        proc = sshd.start(unit, self._log_file(name))
        self.procs[name] = proc
        deadline = time.time() + 10
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"sshd of {name} exited with {proc.returncode}; see {self._log_file(name)}")
            if sshd.owns_listener(proc.pid, unit.address, unit.port):
                break
            time.sleep(0.02)
        else:
            raise RuntimeError(f"sshd of {name} did not listen on {unit.address}:{unit.port} within 10 s")
        self._write_state()

    # -- the fork server (lab.forkserver: every SSH command runs in a fork of one warm simulator) ------------------
    def start_forkserver(self) -> None:
        """Start it and wait for its socket. If it does not come up, commands run as before (``python -m``, slower)."""
        modules = sorted({u.module for u in self.units.values()})
        argv = [sys.executable, "-I", "-m", "lab.forkserver", "--lab-dir", str(self.paths.root)]
        argv += [arg for module in modules for arg in ("--module", module)]
        log_file = open(self.paths.logs_dir / "forkserver.log", "ab")  # noqa: SIM115 - handed to the child
        with log_file:
            self.forkserver = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT
            )
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.forkserver.poll() is not None:
                log.warning(
                    "the fork server exited with %s: commands start their own simulator", self.forkserver.returncode
                )
                self.forkserver = None  # it cannot start: not restarted in a loop by monitor()
                return
            if forkserver.socket_path(self.paths).exists():
                return
            time.sleep(0.02)
        log.warning("the fork server did not open its socket within 20 s: commands start their own simulator")

    def stop_forkserver(self) -> None:
        proc, self.forkserver = self.forkserver, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    def stop_unit(self, name: str) -> None:
        """Kill the unit's sshd listener and every session it spawned (connections drop)."""
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        victims = _children(proc.pid)
        for pid in [proc.pid, *victims]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=5)
        self._write_state()

    def _write_state(self) -> None:
        doc = {
            "pid": os.getpid(),
            "ready": True,
            "sshd_pids": {n: p.pid for n, p in self.procs.items()},
            "power": dict(self.power),
        }
        tmp = self.paths.supervisor_state.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, self.paths.supervisor_state)

    # -- reboot -------------------------------------------------------------------------------------------------
    def reboot(self, host: str) -> dict[str, Any]:
        with self.lock:
            unit = self.units.get(host)
            if unit is None or unit.kind != "esxi":
                return {"ok": False, "error": f"unknown host {host!r}"}
            if self.power[host] != "on":
                return {"ok": False, "error": f"host {host} is {self.power[host]}"}
            self.power[host] = "rebooting"
            self.generation[host] += 1
            gen = self.generation[host]
            store = HostStore(self.paths, host)
            with store.edit() as state:
                state["power"] = "rebooting"
                slow = state.get("faults", {}).get("slow-reboot")
            away = float(slow["seconds"]) if slow else self.reboot_seconds
        events.record(self.paths, host, "reboot_start", awaySeconds=away)
        if slow:
            events.record(self.paths, host, "fault_fired", kind="slow-reboot", seconds=away)
        self._vc_update(host, connectionState="notResponding")
        threading.Thread(target=self._reboot_thread, args=(host, gen, away), daemon=True, name=f"reboot-{host}").start()
        return {"ok": True, "away_seconds": away}

    def _current(self, host: str, gen: int) -> bool:
        return self.generation[host] == gen and not self.stopping.is_set()

    def _reboot_thread(self, host: str, gen: int, away: float) -> None:
        try:
            started = time.time()
            time.sleep(KILL_DELAY_S)
            with self.lock:
                if not self._current(host, gen):
                    return
                self.stop_unit(host)
                self._write_state()
            time.sleep(max(0.0, started + away - time.time()))
            store = HostStore(self.paths, host)
            announced = False
            while self._current(host, gen) and "no-return" in store.read().get("faults", {}):
                if not announced:
                    with self.lock:
                        self.power[host] = "down"
                        self._write_state()
                    with store.edit() as state:
                        state["power"] = "down"
                    events.record(self.paths, host, "reboot_no_return")
                    events.record(self.paths, host, "fault_fired", kind="no-return")
                    announced = True
                time.sleep(0.2)
            with self.lock:
                if not self._current(host, gen):
                    return
                with store.edit() as state:
                    apply_reboot(state)
                    driver_active = state["driver_loaded"] is not None
                self.start_unit(host)
                self.power[host] = "on"
                self._write_state()
            self._vc_update(host, connectionState="connected", driverActive=driver_active)
            events.record(
                self.paths, host, "reboot_done", driver_active=driver_active, seconds=round(time.time() - started, 3)
            )
        except Exception:  # noqa: BLE001 - a supervisor thread must log, not die silently
            log.exception("reboot of %s failed", host)

    # -- reset (tests) ------------------------------------------------------------------------------------------
    def reset(self, host: str) -> dict[str, Any]:
        topo_host = next((h for h in self.topology["hosts"] if h["name"] == host), None)
        if topo_host is None or host not in self.units:
            return {"ok": False, "error": f"unknown host {host!r}"}
        with self.lock:
            self.generation[host] += 1  # cancels a reboot in progress
            HostStore(self.paths, host).write(initial_state(topo_host))
            reset_fs(self.paths.host_fs(host))
            if host not in self.procs:
                self.start_unit(host)
            self.power[host] = "on"
            self._write_state()
        fields = {"inMaintenanceMode": False, "connectionState": "connected", "driverActive": False}
        fields.update(
            {k: v for k, v in self.initial_vcenter.get(host, {}).items() if k in ("graphicsType", "assignmentPolicy")}
        )
        self._vc_update(host, **fields)
        events.record(self.paths, host, "host_reset")
        return {"ok": True}

    # -- vCenter ------------------------------------------------------------------------------------------------
    def _vc_update(self, host: str, **fields: Any) -> None:
        try:
            client = VcenterClient(self.paths)
            client.update_host(host, **fields)
            client.close()
        except VcenterUnavailable as exc:
            log.warning("vCenter update of %s %s failed: %s", host, fields, exc)

    # -- control socket -----------------------------------------------------------------------------------------
    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "ping":
            return {"ok": True, "pid": os.getpid()}
        if op == "status":
            with self.lock:
                return {
                    "ok": True,
                    "pid": os.getpid(),
                    "forkserver_pid": self.forkserver.pid
                    if self.forkserver and self.forkserver.poll() is None
                    else None,
                    "units": {
                        n: {
                            "kind": u.kind,
                            "address": u.address,
                            "port": u.port,
                            "power": self.power[n],
                            "sshd_pid": self.procs[n].pid if n in self.procs else None,
                        }
                        for n, u in self.units.items()
                    },
                }
        if op == "reboot":
            return self.reboot(str(request.get("host")))
        if op == "reset":
            return self.reset(str(request.get("host")))
        if op == "stop":
            threading.Thread(target=self.shutdown, daemon=True).start()
            return {"ok": True}
        return {"ok": False, "error": f"unknown op {op!r}; valid: ping, status, reboot, reset, stop"}

    def serve(self, server: socket.socket) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve_one, args=(conn,), daemon=True).start()

    def _serve_one(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(10)
                answer = self.handle(json.loads(control.read_line(conn) or b"{}"))
            except Exception as exc:  # noqa: BLE001
                log.exception("request failed")
                answer = {"ok": False, "error": str(exc)}
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps(answer).encode() + b"\n")

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def monitor(self) -> None:
        """Restart an sshd that died while its host is supposed to be up."""
        while not self.stopping.wait(0.5):
            if self.forkserver is not None and self.forkserver.poll() is not None:
                log.warning("the fork server exited with %s; restarting", self.forkserver.returncode)
                self.start_forkserver()
            with self.lock:
                for name, proc in list(self.procs.items()):
                    if proc.poll() is not None and self.power.get(name) == "on":
                        log.warning("sshd of %s exited with %s; restarting", name, proc.returncode)
                        self.procs.pop(name, None)
                        try:
                            self.start_unit(name)
                        except RuntimeError:
                            log.exception("restart of %s failed", name)

    def shutdown(self) -> None:
        if self.stopping.is_set():
            return
        self.stopping.set()
        with self.lock:
            for name in list(self.procs):
                self.stop_unit(name)
        self.stop_forkserver()
        with contextlib.suppress(FileNotFoundError):
            self.paths.supervisor_socket.unlink()
        os._exit(0)

    def run(self) -> None:
        self.paths.run_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.paths.supervisor_socket.unlink()
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(self.paths.supervisor_socket))
        os.chmod(self.paths.supervisor_socket, 0o600)
        server.listen(64)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: threading.Thread(target=self.shutdown, daemon=True).start())
        self.start_forkserver()
        for name in self.units:
            self.start_unit(name)
        threading.Thread(target=self.monitor, daemon=True, name="monitor").start()
        # Maintenance transitions made through vCenter are recorded by vcsim itself (-events), exactly.
        log.info("supervisor ready: %d units", len(self.units))
        self.serve(server)
        self.stopping.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.supervisor")
    parser.add_argument("--lab-dir", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    Supervisor(LabPaths.resolve(args.lab_dir)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
