"""A lab guest persona run in-process for the checks' unit tests: the lab's guest command simulator behind a
testinfra backend (``sim_host``) and behind the GuestRunner interface of licensing and guest preparation
(``SimRunner``), no sshd. Shared by the fixtures (conftest) and the tests that build their own guests."""

from __future__ import annotations

import io
import shlex
from collections.abc import Sequence
from pathlib import Path

import testinfra.host
from testinfra.backend.base import BaseBackend, CommandResult

from gpufleet.remote.ssh import CommandResult as RunnerResult
from lab.guest.commands import Guest, run_line


class SimBackend(BaseBackend):
    """A testinfra backend that runs commands in a lab guest persona's simulator, in this process."""

    NAME = "sim"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        super().__init__("sim")

    def run(self, command: str, *args: str, **kwargs: object) -> CommandResult:
        cmd = self.get_command(command, *args)
        rc, out, err = run_line(Guest(self.directory), cmd)
        return self.result(rc, self.encode(cmd), out, err)


class SimRunner:
    """A licensing GuestRunner over the simulator (records every command line it was given)."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.directory = directory
        self.commands: list[str] = []
        self.inputs: list[bytes] = []

    def run(self, argv: Sequence[str], *, timeout: float | None = None) -> RunnerResult:
        command = shlex.join(argv)
        self.commands.append(command)
        rc, out, err = run_line(Guest(self.directory), command, stdin=io.BytesIO(b""))
        return RunnerResult(command, rc, (out + err).decode())

    def run_input(self, argv: Sequence[str], data: bytes, *, timeout: float | None = None) -> RunnerResult:
        command = shlex.join(argv)
        self.commands.append(command)
        self.inputs.append(data)
        rc, out, err = run_line(Guest(self.directory), command, stdin=io.BytesIO(data))
        return RunnerResult(command, rc, (out + err).decode())

    def close(self) -> None:
        pass


def sim_host(directory: Path) -> testinfra.host.Host:
    backend = SimBackend(directory)
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host
