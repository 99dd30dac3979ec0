"""The vSphere Bitfusion client CLI (``bitfusion list_gpus | run | health``); the pool itself: lab.guest.bitfusion."""

from __future__ import annotations

from lab.guest.commands.base import Guest, Input, Result
from lab.guest.commands.registry import command


@command("bitfusion")
def cmd_bitfusion(g: Guest, argv: list[str], stdin: Input) -> Result:
    from lab.guest.bitfusion import cmd_bitfusion as run

    return run(g, argv, stdin)
