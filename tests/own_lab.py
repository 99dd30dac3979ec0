"""A lab of a test module's own (its dir and ports), for the modules that need every host and VM for themselves or
restart the lab: the end-to-end story, the policy pack, the pipeline flow, the GPU pool stack.

``own_lab("POLICY", "/tmp/gpufleet-policy-lab", 3122, 19943)`` reads ``GPUFLEET_POLICY_LAB_DIR`` /
``_SSH_PORT`` / ``_VCENTER_PORT`` (two people on one machine set their own), starts the lab clean (a lab left by a
killed run is stopped first), and stops it afterwards unless ``GPUFLEET_LAB_KEEP`` is set. A missing tool is an
explicit skip naming it; so is an engine not built, for ``engine_built()``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

LAB_SECRET_VARIABLES = ("GPUFLEET_HOST_LICENSE", "GPUFLEET_NVIDIA_CLIENT_TOKEN")


@dataclass(frozen=True)
class OwnLab:
    dir: Path
    ssh_port: int
    vcenter_port: int
    paths: Any  # lab.paths.LabPaths

    def environ(self, **extra: str) -> dict[str, str]:
        """The environment a test runs gpufleet and the engine with on this lab: ``GPUFLEET_LAB_DIR`` set, the lab
        secrets' variables unset (a lab stack then reads the running lab's generated values), ``extra`` on top."""
        env = dict(os.environ, GPUFLEET_LAB_DIR=str(self.dir), PYTHONUNBUFFERED="1")
        for name in LAB_SECRET_VARIABLES:
            env.pop(name, None)
        return {**env, **extra}

    def restart(self, hosts: int = 4, reboot_seconds: float = 1.0) -> None:
        """The lab fresh again: nothing deployed."""
        from lab import manager

        manager.down(self.paths)
        manager.up(_shape(self, hosts, reboot_seconds), self.paths)


def _shape(lab: OwnLab, hosts: int, reboot_seconds: float) -> Any:
    from lab import manager

    return manager.LabShape(
        hosts=hosts, vms_per_host=0, reboot_seconds=reboot_seconds, ssh_port=lab.ssh_port, vcenter_port=lab.vcenter_port
    )


def missing_tools() -> list[str]:
    missing = [tool for tool in ("/usr/sbin/sshd", "/usr/bin/ssh-keygen", "/usr/bin/ssh") if not Path(tool).exists()]
    if shutil.which("go") is None:
        missing.append("go (Go >= 1.26 on PATH, for the Go module lab/vcsim)")
    return missing


def engine_built() -> None:
    """Skip, saying how to build it, when the Pulumi engine is not built."""
    from gpufleet.engine import workspace as engine

    try:
        engine.pulumi_binary()
    except engine.EngineMissing as exc:
        pytest.skip(f"{exc} (make test builds it)")


@contextlib.contextmanager
def own_lab(
    name: str, default_dir: str, ssh_port: int, vcenter_port: int, hosts: int = 4, reboot_seconds: float = 1.0
) -> Iterator[OwnLab]:
    missing = missing_tools()
    if missing:
        pytest.skip(f"the embedded lab needs {', '.join(missing)} (apt-get install -y openssh-server openssh-client)")
    from lab import manager
    from lab.paths import LabPaths

    prefix = f"GPUFLEET_{name}_LAB"
    lab_dir = Path(os.environ.get(f"{prefix}_DIR", default_dir))
    lab = OwnLab(
        lab_dir,
        int(os.environ.get(f"{prefix}_SSH_PORT", str(ssh_port))),
        int(os.environ.get(f"{prefix}_VCENTER_PORT", str(vcenter_port))),
        LabPaths.resolve(lab_dir),
    )
    lab.restart(hosts, reboot_seconds)
    try:
        yield lab
    finally:
        if not os.environ.get("GPUFLEET_LAB_KEEP"):
            manager.down(lab.paths)
