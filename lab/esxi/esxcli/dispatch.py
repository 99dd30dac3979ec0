"""The ``esxcli`` dispatcher: global options (``--formatter``), the namespace walk over the registry's paths,
option parsing and errors the way ESXi prints them (parse errors: ``Error: ...`` and the command's usage, exit 1;
a handler's :class:`EsxcliError` with a kind: esxcli's exception block, exit 1), then the output formatter."""

from __future__ import annotations

from typing import Any

from lab.esxi.context import Ctx, Result
from lab.esxi.esxcli.registry import COMMANDS, FALSE, TRUE, Command, EsxcliError
from lab.esxi.esxfmt import STRUCTURED


def _namespaces() -> dict[str, set[str]]:
    tree: dict[str, set[str]] = {}
    for path in COMMANDS:
        parts = path.split()
        for i in range(len(parts)):
            tree.setdefault(" ".join(parts[:i]), set()).add(parts[i])
    return tree


def _parse_opts(cmd: Command, args: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        name, _, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        opt = cmd.opt_index.get(name)
        if opt is None and arg.startswith("-") and not arg.startswith("--") and len(arg) > 2:
            opt = cmd.opt_index.get(arg[:2])
            inline, name = arg[2:], arg[:2]
        if opt is None or not arg.startswith("-"):
            raise EsxcliError(f"Invalid option {arg}" if arg.startswith("-") else f"Unknown argument {arg}", usage=cmd)
        if opt.kind == "flag":
            values[opt.name] = True
            i += 1
            continue
        if inline:
            raw = inline
            i += 1
        else:
            if i + 1 >= len(args):
                raise EsxcliError(f"Missing value for option {name}", usage=cmd)
            raw = args[i + 1]
            i += 2
        value: Any = raw
        if opt.kind == "boolean":
            low = raw.lower()
            if low not in TRUE | FALSE:
                raise EsxcliError(
                    f"Invalid data constraint for parameter '{opt.name}'. Expected a boolean (true, false, 1, 0).",
                    usage=cmd,
                )
            value = low in TRUE
        elif opt.kind == "long":
            try:
                value = int(raw)
            except ValueError as exc:
                raise EsxcliError(
                    f"Invalid data constraint for parameter '{opt.name}'. Expected an integer, got '{raw}'.", usage=cmd
                ) from exc
        if opt.multi:
            values.setdefault(opt.name, []).append(value)
        else:
            values[opt.name] = value
    for o in cmd.opts:
        if o.required and o.name not in values:
            raise EsxcliError(f"Missing required parameter {'|'.join(o.aliases)}", usage=cmd)
    return values


def run(ctx: Ctx, argv: list[str]) -> Result:
    """``esxcli`` entry point: ``argv`` excludes the program name."""
    formatter = None
    args = list(argv)
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        if opt.startswith("--formatter="):
            formatter = opt.split("=", 1)[1]
        elif opt in ("--formatter", "-f") and args:
            formatter = args.pop(0)
        elif opt == "--debug":
            continue
        elif opt in ("--help", "-h"):
            return Result(0, _namespace_usage("", _namespaces()))
        else:
            return Result(1, err=f"Error: Invalid option {opt}\n")
    if formatter is not None and formatter not in STRUCTURED and formatter not in ("table", "simple"):
        return Result(
            1,
            err=f"Error: Invalid formatter: {formatter}. Valid formatters: csv, html, json, keyvalue, python, table, tree, xml\n",
        )
    tree = _namespaces()
    prefix: list[str] = []
    while args and not args[0].startswith("-"):
        key = " ".join(prefix)
        if " ".join([*prefix, args[0]]) in COMMANDS:
            prefix.append(args.pop(0))
            break
        if args[0] in tree.get(key, set()):
            prefix.append(args.pop(0))
            continue
        return Result(1, err=f"Error: Unknown command or namespace {' '.join([*prefix, args[0]])}\n")
    path = " ".join(prefix)
    cmd = COMMANDS.get(path)
    if cmd is None:
        if args and args[0] not in ("--help", "-h"):
            return Result(1, err=f"Error: Invalid option {args[0]}\n\n" + _namespace_usage(path, tree))
        return Result(0, _namespace_usage(path, tree))
    if "--help" in args or "-h" in args and "-h" not in cmd.opt_index:
        return Result(0, cmd.usage())
    try:
        values = _parse_opts(cmd, args)
        output = cmd.handler(ctx, values)
    except EsxcliError as exc:
        return Result(1, err=exc.render())
    if output is None:
        return Result(0)
    if formatter in STRUCTURED:
        return Result(0, STRUCTURED[formatter](output.value))
    return Result(0, output.text(output.value))


def _namespace_usage(path: str, tree: dict[str, set[str]]) -> str:
    children = sorted(tree.get(path, set()))
    lines = [f"Usage: esxcli {path + ' ' if path else ''}{{cmd}} [cmd options]", ""]
    namespaces = [c for c in children if " ".join(filter(None, [path, c])) not in COMMANDS]
    commands = [c for c in children if " ".join(filter(None, [path, c])) in COMMANDS]
    if namespaces:
        lines += ["Available Namespaces:", *[f"  {c}" for c in namespaces], ""]
    if commands:
        lines += [
            "Available Commands:",
            *[f"  {c:<22}{COMMANDS[' '.join(filter(None, [path, c]))].help}" for c in commands],
            "",
        ]
    return "\n".join(lines) + "\n"


# Used by tests and docs: every command path the simulator knows.
def command_paths() -> list[str]:
    return sorted(COMMANDS)
