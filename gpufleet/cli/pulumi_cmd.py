"""``gpufleet pulumi ARGS...``: the Pulumi CLI built from its Go modules, run hermetically (``gpufleet.engine.workspace``).

Everything after ``pulumi`` goes to the real ``pulumi`` unchanged (``gpufleet pulumi up --stack lab --yes``), run in
the engine's project dir (``gpufleet.engine.workspace.sync_workspace``: the repository's program and stack files, this
machine's passphrase salt and secrets); its exit code is pulumi's. One option is gpufleet's own: ``--take-over``
(``gpufleet pulumi up --take-over``) lets the program take over a cluster's rollout lease from a run that is gone. ``scripts/pulumi`` is the same command for
people who type ``pulumi``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from gpufleet.cli.output import handle_errors
from gpufleet.engine.workspace import (
    PROVIDER_COMMANDS,
    engine_environ,
    pulumi_binary,
    selected_stack,
    stack_of_args,
    state_dir,
    sync_workspace,
    trust_environ,
)

POLICY_PACK = "--policy-pack"
POLICY_PACK_CONFIG = "--policy-pack-config"
PACK_LAUNCHER = "gpufleet-policy"  # policy/gpufleet-policy: why the pack starts through it, see that file
TAKE_OVER = "--take-over"
TAKE_OVER_ENV = "GPUFLEET_TAKE_OVER"  # read by the program (components.rollout_lease)


@handle_errors
def pulumi_cmd(
    ctx: typer.Context,
    args: Annotated[list[str] | None, typer.Argument(help="Arguments for pulumi, e.g. up --stack lab")] = None,
) -> None:
    """Run the Pulumi CLI built by `make engine` (local file backend, generated passphrase, no downloads)."""
    binary = pulumi_binary()
    passed = pulumi_args(sys.argv, [*(args or []), *ctx.args])
    env = engine_environ()
    if TAKE_OVER in passed:  # ours, not pulumi's: the program reads it (components.rollout_lease)
        passed = [a for a in passed if a != TAKE_OVER]
        env[TAKE_OVER_ENV] = "1"
    state = state_dir(env)
    project = sync_workspace(state)
    # pulumi-vsphere trusts what the stack says (gpufleet.engine.provider_trust): which stack, the command line tells,
    # else the one selected in the workspace.
    stack = stack_of_args(passed, env)
    if stack is None:
        command = next((a for a in passed if not a.startswith("-")), "")
        stack = selected_stack(env, project) if command in PROVIDER_COMMANDS else ""
    passed = path_args(passed, Path.cwd(), stack)
    argv = [str(binary), *passed]
    os.chdir(project)
    env.update(trust_environ(stack, env, state))
    os.execve(binary, argv, env)


PATH_OPTIONS = ("-C", "--cwd", POLICY_PACK, POLICY_PACK_CONFIG, "--config-file")


def path_args(args: list[str], cwd: Path, stack: str) -> list[str]:
    """The command line as the engine here can run it: path options made absolute against ``cwd`` (pulumi runs in
    the engine's project dir); ``--policy-pack DIR`` of a pack with gpufleet's launcher replaced by the launcher;
    for one pack without a ``--policy-pack-config``, the stage's ``policy/config/<stack>.json`` when it exists
    (what ``gpufleet validate --policy`` reads too)."""
    out: list[str] = []
    packs: list[Path] = []
    configs = 0
    i = 0
    while i < len(args):
        name, eq, value = args[i].partition("=")
        if name not in PATH_OPTIONS or (not eq and i + 1 >= len(args)):
            out.append(args[i])
            i += 1
            continue
        if not eq:
            value, i = args[i + 1], i + 1
        i += 1
        path = (cwd / value).resolve()
        if name == POLICY_PACK:
            if path.is_dir() and (path / PACK_LAUNCHER).is_file():
                path = path / PACK_LAUNCHER
            packs.append(path)
        configs += name == POLICY_PACK_CONFIG
        out += [name, str(path)]
    if len(packs) == 1 and configs == 0 and stack:
        pack_dir = packs[0].parent if packs[0].name == PACK_LAUNCHER else packs[0]
        config = pack_dir / "config" / f"{stack}.json"
        if config.is_file():
            out += [POLICY_PACK_CONFIG, str(config)]
    return out


def pulumi_args(command_line: list[str], parsed: list[str]) -> list[str]:
    """What follows ``pulumi`` on the command line as typed (click would eat a literal ``--``, which pulumi uses,
    e.g. ``pulumi config set -- key -value``); ``parsed`` when not run as ``gpufleet pulumi ...`` (tests)."""
    if command_line[1:2] == ["pulumi"]:
        return list(command_line[2:])
    return parsed


def register(app: typer.Typer) -> None:
    app.command(
        "pulumi",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
        add_help_option=False,
    )(pulumi_cmd)
