"""The fleet spec: one declarative, versioned description of a GPU fleet (pydantic v2, unknown keys rejected).

``load_stack(path)`` reads a Pulumi stack config file (``gpufleet:fleet`` and ``gpufleet:vcenter``) into a
``Stack``; ``validate_fleet`` (in ``gpufleet.spec.validate``) applies the hardware rules of the catalog.
"""

from gpufleet.spec.models import (
    Fleet,
    GpuMode,
    GpuSpec,
    HostSpec,
    LicensingSpec,
    NicSpec,
    PassthroughRequest,
    RdmaNicRequest,
    RolloutPolicy,
    SecretRef,
    SshSpec,
    TemplateSpec,
    VcenterSpec,
    VgpuRequest,
    VmSpec,
)
from gpufleet.spec.stack import Stack, load_stack, parse_stack

__all__ = [
    "Fleet",
    "GpuMode",
    "GpuSpec",
    "HostSpec",
    "LicensingSpec",
    "NicSpec",
    "PassthroughRequest",
    "RdmaNicRequest",
    "RolloutPolicy",
    "SecretRef",
    "SshSpec",
    "Stack",
    "TemplateSpec",
    "VcenterSpec",
    "VgpuRequest",
    "VmSpec",
    "load_stack",
    "parse_stack",
]
