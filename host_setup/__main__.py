"""``python -m host_setup prepare STACK [--max-unavailable N] [--dry-run] [--json]``: ``gpufleet hosts prepare``
on its own (the same command, from gpufleet.cli.hosts_cmd)."""

from gpufleet.cli.hosts_cmd import standalone_app

if __name__ == "__main__":
    standalone_app()(prog_name="python -m host_setup")
