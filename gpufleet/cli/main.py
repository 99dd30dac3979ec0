"""Entry point of the ``gpufleet`` console script. Each verb lives in its own module with a ``register``."""

from __future__ import annotations

import typer

from gpufleet.cli import audit_cmd, guests_cmd, hosts_cmd, lab_cmd, pulumi_cmd, spec_cmd, verify_cmd, vms_cmd
from gpufleet.cli.output import GpufleetGroup

app = typer.Typer(
    name="gpufleet",
    cls=GpufleetGroup,  # usage errors exit 1 (and print a JSON error document under --json)
    help="NVIDIA GPUs on VMware vSphere as code: validate, plan, prepare hosts, apply VMs, audit, verify.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for module in (spec_cmd, lab_cmd, hosts_cmd, vms_cmd, guests_cmd, audit_cmd, verify_cmd, pulumi_cmd):
    module.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
