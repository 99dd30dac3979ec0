"""The guest commands' one registry: a command family's module registers each handler with
``@command(name, *aliases)``; :mod:`lab.guest.commands.dispatch` reads it."""

from __future__ import annotations

from collections.abc import Callable

from lab.guest.commands.base import Guest, Input, Result
from lab.registry import Registry

Handler = Callable[[Guest, list[str], Input], Result]
COMMANDS: Registry[Handler] = Registry("guest command")


def command(*names: str) -> Callable[[Handler], Handler]:
    """Register a handler under each of ``names`` (a command and its aliases, as bash finds them)."""

    def deco(fn: Handler) -> Handler:
        for n in names:
            COMMANDS.add(n, fn, fn.__module__)
        return fn

    return deco
