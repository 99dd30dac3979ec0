"""The ``guest:`` block of a template or VM (spec v1): what ``gpufleet guests prepare`` and the ``GuestPreparation``
resource install in the guest OS, matched to the host's vGPU Manager.

    guest:
      driver:
        source: run                     # run: NVIDIA's .run installer | packages: distro packages (.deb / .rpm)
        path: lab-depot://NVIDIA-Linux-x86_64-550.90.07-grid.run   # local file (run) or local depot dir /
                                        #   mirror URL (packages); local files are uploaded over SFTP when missing
        version: 550.90.07              # default: the guest driver paired with the host driver (catalog table)
        dkms: true                      # build the module with DKMS (survives kernel updates)
      containerToolkit: {version: 1.16.2}   # nvidia-container-toolkit from the guest's repositories (or `path`)
      dockerRuntime: nvidia             # nvidia: `nvidia-ctk runtime configure --runtime=docker` | none
      kernelParams: [pci=realloc]       # added to GRUB_CMDLINE_LINUX_DEFAULT (one reboot when it changes)
      allowReboot: true                 # may gpufleet reboot the guest (nouveau, kernel parameters)

A VM's ``guest`` replaces its template's as a whole (``Fleet.guest_for``).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import ConfigDict, Field, StrictBool, field_validator, model_validator
from pydantic.alias_generators import to_camel

from gpufleet.spec.echo import PrintableModel, shown

DRIVER_VERSION = re.compile(r"\d{3}\.\d{1,3}(\.\d{1,3})?")
RUN_FILE = re.compile(r"NVIDIA-Linux-(x86_64|aarch64)-(\d{3}\.\d{1,3}(?:\.\d{1,3})?)(-grid)?\.run$")
TOOLKIT_VERSION = re.compile(r"\d+\.\d+\.\d+(-[0-9A-Za-z.~]+)?")
KERNEL_PARAM = re.compile(r"[A-Za-z0-9_.\-]+(=[A-Za-z0-9_.,:/\-]+)?")


class _GuestModel(PrintableModel):
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True, str_strip_whitespace=True
    )


def run_file_version(path: str) -> str | None:
    """``.../NVIDIA-Linux-x86_64-550.90.07-grid.run`` -> ``550.90.07``."""
    m = RUN_FILE.search(path.rsplit("/", 1)[-1])
    return m.group(2) if m else None


class GuestDriverSpec(_GuestModel):
    """The NVIDIA guest driver (vGPU: the GRID driver of the host's branch)."""

    source: Literal["run", "packages"] = Field("run", description="run: NVIDIA .run installer; packages: .deb/.rpm")
    path: str = Field(
        description="run: local path of NVIDIA-Linux-x86_64-<version>-grid.run (lab-depot:// in the lab); packages: "
        "a local depot directory of .deb/.rpm files, or an http(s):// mirror the guest's package manager reads"
    )
    version: str | None = Field(None, description="Guest driver version; default: the one paired with the host driver")
    dkms: StrictBool = Field(True, description="Build the kernel module with DKMS (the .run's --dkms)")

    @field_validator("version")
    @classmethod
    def _version(cls, value: str | None) -> str | None:
        if value is not None and not DRIVER_VERSION.fullmatch(value):
            raise ValueError(f"{shown(value)} is not an NVIDIA driver version (e.g. 550.90.07)")
        return value

    @model_validator(mode="after")
    def _path_matches(self) -> GuestDriverSpec:
        if self.source == "run":
            named = run_file_version(self.path)
            if named is None:
                raise ValueError(
                    f"path {shown(self.path.rsplit('/', 1)[-1])} is not an NVIDIA .run package "
                    "(NVIDIA-Linux-x86_64-<version>-grid.run)"
                )
            if self.version is not None and named != self.version:
                raise ValueError(
                    f"version {self.version} does not match the package {self.path.rsplit('/', 1)[-1]}, "
                    f"which carries {named}"
                )
        return self

    @property
    def named_version(self) -> str | None:
        """The version the package names (a .run file), else the one written."""
        return self.version or (run_file_version(self.path) if self.source == "run" else None)


class ContainerToolkitSpec(_GuestModel):
    """The NVIDIA Container Toolkit (nvidia-container-toolkit and its libraries, one version)."""

    version: str = Field(description="Package version, e.g. 1.16.2 (apt: 1.16.2-1)")
    path: str | None = Field(
        None,
        description="A local depot directory of the packages (uploaded) or a mirror URL; default: the guest's "
        "configured repositories",
    )

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not TOOLKIT_VERSION.fullmatch(value):
            raise ValueError(f"{shown(value)} is not a package version (e.g. 1.16.2 or 1.16.2-1)")
        return value

    @property
    def upstream(self) -> str:
        """``1.16.2-1`` -> ``1.16.2`` (what nvidia-ctk --version prints)."""
        return self.version.split("-", 1)[0]


class GuestSpec(_GuestModel):
    """What the guest OS of a GPU VM gets installed, matched to its host."""

    driver: GuestDriverSpec | None = Field(None, description="The NVIDIA guest driver")
    container_toolkit: ContainerToolkitSpec | None = Field(None, description="The NVIDIA Container Toolkit")
    docker_runtime: Literal["nvidia", "none"] = Field("nvidia", description="Configure Docker's nvidia runtime")
    kernel_params: list[str] = Field(default_factory=list, description="Kernel parameters to add (GRUB)")
    allow_reboot: StrictBool = Field(True, description="May gpufleet reboot the guest when a change needs it")

    @field_validator("kernel_params")
    @classmethod
    def _params(cls, value: list[str]) -> list[str]:
        for param in value:
            if not KERNEL_PARAM.fullmatch(param):
                raise ValueError(f"{shown(param)} is not a kernel parameter (name or name=value, no spaces or quotes)")
        return value

    @model_validator(mode="after")
    def _runtime_needs_toolkit(self) -> GuestSpec:
        if self.docker_runtime == "nvidia" and self.container_toolkit is None:
            raise ValueError(
                "dockerRuntime: nvidia needs containerToolkit (nvidia-ctk configures the runtime); "
                "give containerToolkit: {version: ...} or dockerRuntime: none"
            )
        return self
