"""The commands a guest persona answers, the govmomi simulator's way: one module per command family (files, text,
system, services: systemctl / journalctl for nvidia-gridd, packages: apt / dpkg, nvidia_smi, containers: docker /
nvidia-ctk, rdma, bitfusion), each registering its handlers with ``@command(name, *aliases)`` in one registry
(:mod:`.registry`), and one dispatcher that reads it (:mod:`.dispatch`), on the guest's state directory.

Unknown commands and options fail the way bash and the real tools do (exit 127 "command not found", 2 for
bad usage), so a check that sends something the lab does not know fails instead of passing by accident.
"""

from __future__ import annotations

from lab.guest.commands.base import Guest, Input, Result, SharedInput
from lab.guest.commands.dispatch import run_argv, run_line
from lab.guest.commands.registry import COMMANDS
from lab.guest.commands.vfs import read_file, write_file
from lab.registry import Registry

# Every family module registers its commands when imported: a new module is found without editing this file.
MODULES = Registry.load(__name__)

__all__ = [
    "COMMANDS",
    "MODULES",
    "Guest",
    "Input",
    "Result",
    "SharedInput",
    "read_file",
    "run_argv",
    "run_line",
    "write_file",
]
