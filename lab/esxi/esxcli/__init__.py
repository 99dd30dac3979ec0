"""The simulated ``esxcli``, the govmomi simulator's way: one module per namespace (software, system, graphics,
hardware, rdma, network), each registering its commands with ``@esxcli(path, help, *opts)`` in one registry
(:mod:`.registry`), and one dispatcher that reads it (:mod:`.dispatch`: global options, namespace walk, option
parsing, errors and formatters the way ESXi prints them; table and structured formats in lab.esxi.esxfmt).

Real output shapes: shared/reference/esxi_*.txt. Option names and result field sets follow the esxcli command
model (govmomi simulator ``command_info.go``, captured with ``govc host.esxcli.model``) where it covers a command.
"""

from __future__ import annotations

from lab.esxi.esxcli.dispatch import command_paths, run
from lab.esxi.esxcli.registry import COMMANDS
from lab.registry import Registry

# Every namespace module registers its commands when imported: a new module is found without editing this file.
MODULES = Registry.load(__name__)

__all__ = ["COMMANDS", "command_paths", "run"]
