"""Fixtures of the checks' tests: simulated guests run in-process (sim_guests.py) and the lab's guests
(lab_guests.py)."""

from lab_guests import gpufleet_cli, lab_guest, lab_nodes, lab_stack_file, stack
from sim_guests import bare_node, fresh_node, lab_stack, lab_token, license_guest, make_guest, sim_node, sim_runner

__all__ = [
    "bare_node",
    "fresh_node",
    "gpufleet_cli",
    "lab_guest",
    "lab_nodes",
    "lab_stack",
    "lab_stack_file",
    "lab_token",
    "license_guest",
    "make_guest",
    "sim_node",
    "sim_runner",
    "stack",
]
