"""``mlxconfig`` (NVIDIA MFT) on an ESXi host: the ConnectX firmware setting ATS_ENABLED for GPUDirect RDMA.

    nic_ats(runner, "0000:31:00.0")               # NicAts(current=False, next_boot=True): set, waits for a reboot
    set_nic_ats(runner, "0000:31:00.0", True)

The firmware setting takes effect at the next host reboot (a VM reboot is not enough), so ``-e`` is asked to see
both the current and the next-boot value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gpufleet.errors import TaskError
from gpufleet.remote.ssh import CommandResult, Runner


class MlxconfigParseError(TaskError):
    """mlxconfig printed something we cannot read."""


@dataclass(frozen=True)
class NicAts:
    current: bool
    next_boot: bool


def _mlx_bool(value: str) -> bool:
    # "True(1)" / "False(0)" / "1"
    v = value.strip().lower()
    return v.startswith("true") or v == "1" or v.endswith("(1)")


def parse_mlxconfig_query(output: str, name: str = "ATS_ENABLED") -> NicAts:
    """``mlxconfig -d DEV -e q ATS_ENABLED``: columns Default / Current / Next Boot (``-e``), or a single
    value column without ``-e`` (then current and next boot are read as the same)."""
    lines = output.splitlines()
    header_idx = next((i for i, line in enumerate(lines) if line.strip().startswith("Configurations:")), None)
    columns = []
    if header_idx is not None:
        columns = [
            c.strip().lower() for c in re.split(r"\s{2,}", lines[header_idx].split(":", 1)[1].strip()) if c.strip()
        ]
    for line in lines:
        cells = re.split(r"\s{2,}", line.strip().lstrip("*").strip())
        if cells and cells[0] == name:
            values = cells[1:]
            if len(values) >= 3 and columns[-3:] == ["default", "current", "next boot"]:
                return NicAts(current=_mlx_bool(values[-2]), next_boot=_mlx_bool(values[-1]))
            if values:
                return NicAts(current=_mlx_bool(values[-1]), next_boot=_mlx_bool(values[-1]))
    raise MlxconfigParseError(f"{name} not found in mlxconfig output: {output[:300]!r}")


def query_argv(pci: str) -> list[str]:
    return ["mlxconfig", "-d", pci, "-e", "q", "ATS_ENABLED"]


def nic_ats_from(result: CommandResult, host: str = "") -> NicAts:
    return parse_mlxconfig_query(result.check(host).output)


def nic_ats(runner: Runner, pci: str) -> NicAts:
    return nic_ats_from(runner.run(query_argv(pci)), runner.name)


def set_nic_ats(runner: Runner, pci: str, enable: bool) -> None:
    value = "true" if enable else "false"
    runner.run(["mlxconfig", "-y", "-d", pci, "set", f"ATS_ENABLED={value}"]).check(runner.name)
