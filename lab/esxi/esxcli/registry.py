"""esxcli's command model and its one registry: a command path (``software vib install``), its help, its options
(names, aliases, kinds, as in esxcli's command model) and its handler. A namespace module registers a command with
``@esxcli("software vib install", "help...", Opt(...), ...)``; :mod:`lab.esxi.esxcli.dispatch` reads the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lab.esxi.context import Ctx
from lab.esxi.esxfmt import render_simple
from lab.registry import Registry


class EsxcliError(Exception):
    """An esxcli failure: ``kind`` set -> exception block (`` [Kind]\\n message\\n Please refer...``)."""

    def __init__(self, message: str, kind: str | None = None, usage: Command | None = None) -> None:
        self.kind = kind
        self.usage = usage
        super().__init__(message)

    def render(self) -> str:
        if self.kind:
            body = "\n".join(" " + line if not line.startswith(" ") else line for line in str(self).split("\n"))
            return f" [{self.kind}]\n{body}\n Please refer to the log file for more details.\n"
        text = f"Error: {self}\n"
        if self.usage is not None:
            text += "\n" + self.usage.usage()
        return text


@dataclass
class Opt:
    name: str
    aliases: tuple[str, ...]
    kind: str = "string"  # string | boolean | long | flag
    required: bool = False
    multi: bool = False
    help: str = ""


@dataclass
class Output:
    value: Any
    text: Callable[[Any], str] = render_simple


Handler = Callable[[Ctx, dict[str, Any]], Output | None]


@dataclass
class Command:
    path: str
    help: str
    opts: list[Opt]
    handler: Handler
    opt_index: dict[str, Opt] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for o in self.opts:
            for a in o.aliases:
                self.opt_index[a] = o

    def usage(self) -> str:
        name = self.path.split()[-1]
        lines = [f"Usage: esxcli {self.path} [cmd options]", "", "Description: ", f"  {name:<22}{self.help}", ""]
        if self.opts:
            lines.append("Cmd options:")
            for o in self.opts:
                meta = (
                    "" if o.kind == "flag" else f"=<{ {'string': 'str', 'boolean': 'bool', 'long': 'long'}[o.kind] }>"
                )
                spec = "|".join(o.aliases) + meta
                req = " (required)" if o.required else ""
                lines.append(f"  {spec:<22}{o.help}{req}")
        return "\n".join(lines) + "\n"


COMMANDS: Registry[Command] = Registry("esxcli command")

# The spellings esxcli accepts for a boolean option (and ``system settings kernel set`` for a Bool setting).
TRUE = {"true", "1", "yes", "y", "on"}
FALSE = {"false", "0", "no", "n", "off"}


def esxcli(path: str, help: str, *opts: Opt) -> Callable[[Handler], Handler]:
    """Register the handler of ``esxcli PATH`` (words separated by spaces); a path registered twice fails."""

    def deco(fn: Handler) -> Handler:
        COMMANDS.add(path, Command(path, help, list(opts), fn), fn.__module__)
        return fn

    return deco
