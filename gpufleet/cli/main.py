"""Entry point of the ``gpufleet`` console script. Each verb lives in its own module with a ``register``.

Verbs from outside the product (the embedded lab's ``gpufleet lab``) come in through the ``gpufleet.commands``
entry-point group, so the product never imports the simulator."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Annotated

import typer

from gpufleet.cli import (
    audit_cmd,
    guests_cmd,
    hosts_cmd,
    promote_cmd,
    pulumi_cmd,
    spec_cmd,
    verify_cmd,
    vms_cmd,
)
from gpufleet.cli.output import GpufleetGroup, console, gpufleet_version

app = typer.Typer(
    name="gpufleet",
    cls=GpufleetGroup,  # usage errors exit 1 (and print a JSON error document under --json)
    help="NVIDIA GPUs on VMware vSphere as code: validate, plan, prepare hosts, apply VMs, audit, verify.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        console.print(f"gpufleet {gpufleet_version()}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print gpufleet's version and exit"),
    ] = False,
) -> None:
    """NVIDIA GPUs on VMware vSphere as code: validate, plan, prepare hosts, apply VMs, audit, verify."""


for module in (spec_cmd, hosts_cmd, vms_cmd, guests_cmd, audit_cmd, verify_cmd, promote_cmd, pulumi_cmd):
    module.register(app)
for plugin in entry_points(group="gpufleet.commands"):
    plugin.load()(app)  # each entry point is a ``register(app)``, like the modules above


def main() -> None:
    app()


if __name__ == "__main__":
    main()
