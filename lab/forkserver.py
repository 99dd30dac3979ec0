"""The lab's fork server: every SSH command of a lab endpoint runs in a fork of one warm simulator process.

Why: each command used to start a fresh ``python -m lab.esxi.shell`` (interpreter, site, the lab's imports): about
90 ms of CPU for a command whose own work takes a few ms. On a 2-core machine running 24 simulated hosts, that CPU is
taken from the process under test, so the lab's own cost showed up as the rollout's (a real ESXi host runs its
esxcli on its own CPUs). A forked copy of a process that has already imported everything costs about 3 ms
(``benchmarks/lab_exec_bench.py``: 18 ms against 90 ms of the lab's CPU per command, sshd included).

How: sshd's ForceCommand runs ``labexec`` (the Go program in lab/execclient, about 1 ms to start), which connects
to ``run/exec.sock`` and sends its stdin/stdout/stderr (SCM_RIGHTS) with its environment, working directory and its
parent's pid (the sshd session). The server forks; the child takes those descriptors as 0/1/2 and that environment, and runs the unit's
``MODULE.main()`` exactly as ``python -m MODULE`` would; the server answers ``+PID`` at once and ``=STATUS`` when
the child exits, and the client exits with it. Each command is still its own process with the simulator's own
file locks, so nothing about the simulation changes. When a client goes away before its command ends (its sshd
session was killed: a reboot, ``ssh-drop``), the server kills the command, as the session's death did before.

It is single-threaded (a ``selectors`` loop over the socket, the clients and each child's pidfd), so forking is
safe. Started and restarted by the supervisor (``python -m lab.forkserver --lab-dir DIR --module M ...``).
"""

from __future__ import annotations

import argparse
import array
import contextlib
import importlib
import os
import pkgutil
import selectors
import signal
import socket
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from lab.esxi.context import SSH_PARENT_ENV
from lab.paths import LabPaths

SOCKET_NAME = "exec.sock"
_WARM_PACKAGES = ("lab.esxi", "lab.guest")  # imported before the first fork: every command finds them loaded
_MAX_REQUEST = 1 << 20
_FIRST_READ = 1 << 16


def socket_path(paths: LabPaths) -> Path:
    return paths.run_dir / SOCKET_NAME


def warm(modules: list[str]) -> None:
    """Import the units' modules, every module of the simulator packages, and paramiko (the SFTP server)."""
    for module in modules:
        importlib.import_module(module)
    for package_name in _WARM_PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.walk_packages(package.__path__, package_name + "."):
            with contextlib.suppress(Exception):  # a module that cannot load here is imported by its command
                importlib.import_module(info.name)
    importlib.import_module("paramiko")


def parse_request(body: bytes) -> dict:
    """What labexec sends (lab/execclient/main.go, ``request``): NUL-separated module, cwd, parent pid, argument
    count, the arguments, then the environment as KEY=VALUE."""
    fields = body.decode("utf-8", "surrogateescape").split("\0")
    if len(fields) < 4 or not fields[3].isdigit():
        raise ValueError("malformed request")
    argc = int(fields[3])
    env = dict(entry.partition("=")[::2] for entry in fields[4 + argc :] if "=" in entry)
    return {"module": fields[0], "cwd": fields[1], "parent": fields[2], "argv": fields[4 : 4 + argc], "env": env}


def receive_request(conn: socket.socket) -> tuple[dict, list[int]]:
    """One request and the three descriptors sent with it (ValueError: not a well-formed request)."""
    fds = array.array("i")
    head, ancillary, _, _ = conn.recvmsg(_FIRST_READ, socket.CMSG_LEN(3 * fds.itemsize))
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    if len(head) < 4:
        raise ValueError("short request")
    size = int.from_bytes(head[:4], "big")
    if size > _MAX_REQUEST:
        raise ValueError("request too large")
    body = head[4:]
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            raise ValueError("request cut short")
        body += chunk
    return parse_request(body), list(fds)


@dataclass
class _Command:
    conn: socket.socket
    pid: int
    pidfd: int


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code  # killed by signal N: a shell's 128+N


def _run_child(module: str, argv: list[str], env: dict[str, str], cwd: str) -> int:
    """In the fork: become ``python -m module`` on descriptors 0/1/2 (already in place) and return its status."""
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ.clear()
    os.environ.update(env)
    with contextlib.suppress(OSError):
        os.chdir(cwd)
    sys.argv = [module, *argv]
    # Fresh standard streams on the new 0/1/2, as a new interpreter would open them (UTF-8 under sshd's C locale).
    sys.stdin = open(0, encoding="utf-8", errors="surrogateescape", closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", encoding="utf-8", errors="surrogateescape", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)  # noqa: SIM115
    try:
        code = importlib.import_module(module).main()
    except SystemExit as exc:
        code = exc.code
    except BaseException:  # noqa: BLE001 - what `python -m` would print, then status 1
        traceback.print_exc()
        code = 1
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    return code


class ForkServer:
    def __init__(self, paths: LabPaths, modules: list[str]) -> None:
        self.paths = paths
        self.modules = set(modules)
        self.selector = selectors.DefaultSelector()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.commands: dict[int, _Command] = {}  # pid -> command

    def bind(self) -> None:
        path = socket_path(self.paths)
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        tmp = path.with_name(path.name + ".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        self.listener.bind(str(tmp))
        os.chmod(tmp, 0o600)  # only the lab's user: the SSH keys stay the way in
        self.listener.listen(256)
        os.replace(tmp, path)  # clients see the socket only once it accepts
        self.selector.register(self.listener, selectors.EVENT_READ, ("accept", None))

    def serve_forever(self) -> None:
        while True:
            for key, _ in self.selector.select():
                kind, data = key.data
                if kind == "accept":
                    self._accept()
                elif kind == "exited":
                    self._reap(data)
                else:  # the client closed its end (or sent more): if its command still runs, it dies with it
                    self._client_gone(data)

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        try:
            conn.settimeout(5)
            request, fds = receive_request(conn)
        except (OSError, ValueError) as exc:
            with contextlib.suppress(OSError):
                conn.sendall(f"-{exc}\n".encode())
            conn.close()
            return
        module = request.get("module")
        refused = (
            f"unknown module {module!r}"
            if module not in self.modules
            else f"{len(fds)} descriptors sent, 3 wanted"
            if len(fds) != 3
            else ""
        )
        if refused:
            for fd in fds:
                os.close(fd)
            with contextlib.suppress(OSError):
                conn.sendall(f"-{refused}\n".encode())
            conn.close()
            return
        env = {str(k): str(v) for k, v in request.get("env", {}).items()}
        env[SSH_PARENT_ENV] = str(request.get("parent", ""))
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the command
            code = 1
            try:
                self.listener.close()
                conn.close()
                for target, fd in enumerate(fds):
                    os.dup2(fd, target)
                for fd in fds:
                    if fd > 2:
                        os.close(fd)
                code = _run_child(module, list(request.get("argv", [])), env, str(request.get("cwd", "/")))
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        command = _Command(conn, pid, pidfd)
        self.commands[pid] = command
        self.selector.register(pidfd, selectors.EVENT_READ, ("exited", command))
        self.selector.register(conn, selectors.EVENT_READ, ("client", command))
        with contextlib.suppress(OSError):
            conn.sendall(f"+{pid}\n".encode())

    def _reap(self, command: _Command) -> None:
        _, status = os.waitpid(command.pid, 0)
        self._forget(command)
        with contextlib.suppress(OSError):
            command.conn.sendall(f"={_exit_code(status)}\n".encode())
        command.conn.close()

    def _client_gone(self, command: _Command) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(command.pid, signal.SIGKILL)
        self.selector.unregister(command.conn)  # the pidfd still reaps it

    def _forget(self, command: _Command) -> None:
        self.commands.pop(command.pid, None)
        self.selector.unregister(command.pidfd)
        os.close(command.pidfd)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(command.conn)

    def shutdown(self, *_: object) -> None:
        for command in list(self.commands.values()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(command.pid, signal.SIGKILL)
        with contextlib.suppress(FileNotFoundError):
            socket_path(self.paths).unlink()
        os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.forkserver")
    parser.add_argument("--lab-dir", required=True)
    parser.add_argument("--module", action="append", required=True, help="a unit's simulator module (repeatable)")
    args = parser.parse_args(argv)
    warm(args.module)
    server = ForkServer(LabPaths.resolve(args.lab_dir), args.module)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, server.shutdown)
    server.bind()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
