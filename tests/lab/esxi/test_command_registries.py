"""The lab's three command registries (esxcli's command paths, the ESXi shell's commands, a guest's commands): no
command has two handlers, every handler written in a module is in its registry, and every registered command is
reached through its dispatcher. In-process: no sshd, no vCenter."""

from __future__ import annotations

import ast
import importlib
import io
import pkgutil
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from simhost import SimLab

from lab.esxi import commands as esxi_commands
from lab.esxi import esxcli
from lab.esxi.context import Ctx
from lab.esxi.shell import run_argv
from lab.guest import commands as guest_commands
from lab.guest.state import GuestState, initial_state
from lab.registry import DuplicateCommand, Registry

HOST = "esxi-01.lab"


def _modules(package: str) -> Iterator[Path]:
    pkg = importlib.import_module(package)
    if hasattr(pkg, "__path__"):
        for m in pkgutil.iter_modules(pkg.__path__):
            yield Path(pkg.__path__[0]) / f"{m.name}.py"
    else:
        yield Path(pkg.__file__)


def _registered_in_source(package: str, decorator: str) -> list[str]:
    """Every name a module of ``package`` registers, read from its source: ``@decorator("name", ...)`` and
    ``decorator("name", ...)(handler)``; a name twice in this list is a command written twice."""
    names: list[str] = []
    for path in _modules(package):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == decorator:
                words = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
                # esxcli's decorator takes (path, help, *opts): the path only; the others take (name, *aliases)
                names += words[:1] if decorator == "esxcli" else words
    return names


REGISTRIES = [
    pytest.param(esxcli.COMMANDS, "lab.esxi.esxcli", "esxcli", id="esxcli"),
    pytest.param(esxi_commands.COMMANDS, "lab.esxi.commands", "command", id="esxi-shell"),
    pytest.param(guest_commands.COMMANDS, "lab.guest.commands", "command", id="guest"),
]


@pytest.mark.parametrize(("registry", "package", "decorator"), REGISTRIES)
def test_no_command_has_two_handlers_and_every_written_handler_is_registered(
    registry: Registry[Any], package: str, decorator: str
) -> None:
    written = _registered_in_source(package, decorator)
    twice = sorted(name for name, n in Counter(written).items() if n > 1)
    assert twice == [], f"{package}: registered more than once: {twice}"
    assert written, f"{package}: no registration found in its modules"
    assert sorted(written) == registry.names()  # nothing lost (a module not loaded), nothing registered elsewhere


@pytest.mark.parametrize(("registry", "package", "decorator"), REGISTRIES)
def test_registering_a_command_twice_fails_and_keeps_the_first(
    registry: Registry[Any], package: str, decorator: str
) -> None:
    name = registry.names()[0]
    first = registry[name]
    expected = f"{name!r} registered twice: by {registry.owner(name)} and by here"
    with pytest.raises(DuplicateCommand, match=re.escape(expected)):
        registry.add(name, object(), "here")
    assert registry[name] is first


@pytest.fixture
def sim(tmp_path: Path) -> SimLab:
    return SimLab(tmp_path / "lab")


def _value(kind: str) -> list[str]:
    return {"flag": [], "boolean": ["true"], "long": ["1"]}.get(kind, ["x"])


def test_every_esxcli_command_is_reached_through_the_namespaces_and_the_dispatcher(
    sim: SimLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    for path in esxcli.command_paths():
        words = path.split()
        for depth in range(len(words)):  # each word is listed by its parent namespace's usage
            parent = " ".join(["esxcli", *words[:depth]])
            listing = sim.run(HOST, parent)
            assert listing.code == 0, (parent, listing.err)
            assert f"\n  {words[depth]}" in listing.out, (parent, words[depth])
        cmd = esxcli.COMMANDS[path]
        assert sim.run(HOST, f"esxcli {path} --help").out == cmd.usage()
        calls: list[dict[str, Any]] = []
        monkeypatch.setattr(cmd, "handler", lambda ctx, opts, calls=calls: calls.append(opts))
        required = [w for o in cmd.opts if o.required for w in (o.aliases[-1], *_value(o.kind))]
        result = sim.run(HOST, " ".join(["esxcli", path, *required]))
        assert (result.code, result.err, len(calls)) == (0, "", 1), path


def test_every_esxi_shell_command_is_reached_through_the_dispatcher(
    sim: SimLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in esxi_commands.COMMANDS.names():
        calls: list[list[str]] = []
        monkeypatch.setitem(
            esxi_commands.COMMANDS._table, name, lambda ctx, argv, stdin, calls=calls: calls.append(argv) or "ok"
        )
        assert run_argv(Ctx(sim.paths, HOST), [name, "arg"], "") == "ok", name
        assert calls == [[name, "arg"]]


def test_every_guest_command_is_reached_through_the_dispatcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A Bitfusion client with the NVIDIA stack: every command of the registry is installed on it.
    directory = tmp_path / "guest"
    GuestState.create(directory, initial_state("vm-bf-01", "bitfusion-client", None, None, "static"))
    for name in guest_commands.COMMANDS.names():
        calls: list[list[str]] = []
        monkeypatch.setitem(
            guest_commands.COMMANDS._table,
            name,
            lambda g, argv, stdin, calls=calls: calls.append(argv) or (0, b"ok", b""),
        )
        quoted = name if name != "[" else "'['"
        rc, out, err = guest_commands.run_line(guest_commands.Guest(directory), f"{quoted} arg", stdin=io.BytesIO())
        assert (rc, out, err, calls) == (0, b"ok", b"", [[name, "arg"]]), name
