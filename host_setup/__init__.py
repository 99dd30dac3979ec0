"""The documented entry point of ESXi host preparation: ``python -m host_setup prepare STACK``.

The code lives in ``gpufleet.hosts`` (the per-host run, its steps and the rolling fleet run), on top of
``gpufleet.remote`` (SSH) and ``gpufleet.readers`` (esxcli, nvidia-smi, mlxconfig). This package only re-exports the
names a caller of host preparation needs, so ``from host_setup import prepare_stack`` keeps working.
"""

from gpufleet.hosts.command import prepare_stack
from gpufleet.hosts.rollout import RolloutReport
from gpufleet.hosts.steps import STEPS

__all__ = ["STEPS", "RolloutReport", "prepare_stack"]
