"""Guest personas of the lab: Linux VMs reachable over SSH (one sshd per guest on 127.0.100.11..), each running
a command simulator (``python -m lab.guest.shell``) with its own state: nvidia-smi views for a time-sliced vGPU,
a MIG-backed vGPU or a passthrough GPU (the devices vCenter has attached to the VM), licensed or not
(nvidia-gridd, client configuration token, gridd.conf), nvidia-ctk, docker, RDMA devices.

Entry points for the lab manager (imported lazily: every SSH command imports this package):
``guest_units(ctx)``, ``prepare_guests(paths, topology)``, ``start_guests(...)``, ``stop_guests(...)``.
"""

from __future__ import annotations

from typing import Any


def guest_units(ctx: Any) -> Any:
    from lab.guest.units import guest_units as _guest_units

    return _guest_units(ctx)


def prepare_guests(*args: Any, **kwargs: Any) -> Any:
    from lab.guest.units import prepare_guests as _prepare

    return _prepare(*args, **kwargs)


def start_guests(*args: Any, **kwargs: Any) -> Any:
    from lab.guest.units import start_guests as _start

    return _start(*args, **kwargs)


def stop_guests(*args: Any, **kwargs: Any) -> Any:
    from lab.guest.units import stop_guests as _stop

    return _stop(*args, **kwargs)
