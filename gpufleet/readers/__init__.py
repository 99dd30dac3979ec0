"""Readers of what the NVIDIA stack prints, on ESXi hosts (esxcli, nvidia-smi, mlxconfig) and in guests
(``/proc/driver/nvidia``, ``lsmod``, nvidia-smi's XML): typed results, parse errors that name the command. They run
commands through ``gpufleet.remote`` and change nothing."""
