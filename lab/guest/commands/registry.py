"""The guest commands' one registry: a command family's module registers each handler with
``@command(name, *aliases)``; :mod:`lab.guest.commands.dispatch` reads it."""

from __future__ import annotations

from collections.abc import Callable

from lab.guest.commands.base import Guest, Input, Result
from lab.registry import Registry

Handler = Callable[[Guest, list[str], Input], Result]
COMMANDS: Registry[Handler] = Registry("guest command")
command = COMMANDS.register  # @command("test", "["): a command and its aliases, as bash finds them
