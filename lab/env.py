"""How to reach a running lab: the contract printed by ``gpufleet lab env --json`` and read by tests and tools.

``env.json`` (mode 0600, it holds the lab's generated vCenter password)::

    {"vcenter": {"url", "host", "port", "user", "password", "ca_file", "thumbprint"},
     "hosts":  [{"name", "address", "port", "user", "key_file", "known_hosts"}],
     "guests": [{"name", "address", "port", "user", "key_file", "known_hosts"}],
     "secrets": {"GPUFLEET_NVIDIA_CLIENT_TOKEN": ..., "GPUFLEET_HOST_LICENSE": ...}}

``secrets`` are the lab's generated stand-ins for a stack's secret variables: gpufleet reads them for
``vcenter.lab: true`` stacks whose variable is unset (gpufleet.connections.resolve_stack_secret).

Host names are the vCenter HostSystem names (esxi-01.lab, ...); guest names are the VM names.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from gpufleet.errors import ConnectError
from lab.paths import LabPaths


class VcenterEndpoint(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    url: str
    host: str
    port: int
    user: str
    password: str = Field(repr=False)  # the lab's generated password: kept out of reprs and logs
    ca_file: str
    thumbprint: str


class SshEndpoint(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    address: str
    port: int
    user: str
    key_file: str
    known_hosts: str


class LabEnv(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    vcenter: VcenterEndpoint
    hosts: list[SshEndpoint]
    guests: list[SshEndpoint] = []

    def host(self, name: str) -> SshEndpoint:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(f"{name!r} is not a lab host; lab hosts: {', '.join(h.name for h in self.hosts)}")

    def guest(self, name: str) -> SshEndpoint:
        for g in self.guests:
            if g.name == name:
                return g
        raise KeyError(f"{name!r} is not a lab guest; lab guests: {', '.join(g.name for g in self.guests) or '(none)'}")

    def to_document(self) -> dict:
        """The contract's JSON document (with the password in clear: it is the lab's own generated one)."""
        return self.model_dump(mode="json")


def write_lab_env(env: LabEnv, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(env.to_document(), fh, indent=2)
    os.chmod(path, 0o600)


def load_lab_env(lab_dir: Path | str | None = None) -> LabEnv:
    """The running lab's env (``$GPUFLEET_LAB_DIR`` or ``<repo>/.lab`` unless ``lab_dir`` is given)."""
    paths = LabPaths.resolve(lab_dir)
    try:
        doc = json.loads(paths.env_file.read_text())
    except FileNotFoundError as exc:
        raise ConnectError(
            f"no lab is running at {paths.root} (no {paths.env_file.name}); start one with `gpufleet lab up`"
        ) from exc
    except (OSError, ValueError) as exc:
        raise ConnectError(f"the lab env file {paths.env_file} is unreadable: {exc}") from exc
    return LabEnv.model_validate(doc)
