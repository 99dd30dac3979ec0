"""One way to register a simulated command, the govmomi simulator's way: a decorator records each handler under
its name in one table per simulator (esxcli's command paths, the ESXi shell's commands, a guest's commands), and
one dispatcher reads that table. A name registered twice is an error at import time, not a silent override.

The tables are filled by importing their package's modules (:meth:`Registry.load`): a new command is one
decorated function in the module of its family, nothing else to edit.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class DuplicateCommand(Exception):
    """Two handlers registered for one command name."""


class Registry(Generic[T]):
    """Name -> handler (or command model), with the module that registered each name."""

    def __init__(self, what: str) -> None:
        self.what = what  # "esxcli command", "ESXi command", "guest command": named in errors
        self._table: dict[str, T] = {}
        self._owner: dict[str, str] = {}

    def add(self, name: str, value: T, owner: str) -> None:
        if name in self._table:
            raise DuplicateCommand(f"{self.what} {name!r} registered twice: by {self._owner[name]} and by {owner}")
        self._table[name] = value
        self._owner[name] = owner

    def get(self, name: str) -> T | None:
        return self._table.get(name)

    def __getitem__(self, name: str) -> T:
        return self._table[name]

    def __contains__(self, name: object) -> bool:
        return name in self._table

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)

    def register(self, *names: str) -> Callable[[T], T]:
        """A decorator registering a handler under each of ``names`` (a command and its aliases or paths)."""

        def deco(fn: T) -> T:
            for n in names:
                self.add(n, fn, getattr(fn, "__module__", "?"))
            return fn

        return deco

    def owner(self, name: str) -> str:
        """The module that registered ``name``."""
        return self._owner[name]

    def names(self) -> list[str]:
        return sorted(self._table)

    @staticmethod
    def load(package: str) -> list[str]:
        """Import every module of ``package`` (each registers its commands on import); returns their names."""
        pkg = importlib.import_module(package)
        modules = [f"{package}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")]
        for name in modules:
            importlib.import_module(name)
        return modules
