"""The lab's generated vSphere host licence key, handed to lab stacks through env.json ``"secrets"``.

``vcenter.lab: true`` stacks name ``licensing.hostLicense: {env: GPUFLEET_HOST_LICENSE}``; with that variable unset,
gpufleet uses this key (gpufleet.connections.resolve_stack_secret). The lab vcsim accepts any key of the vSphere
format (lab/vcsim/license.go) and reports it as vSphere 8 Enterprise Plus.
"""

from __future__ import annotations

import secrets
import string

HOST_LICENSE_ENV = "GPUFLEET_HOST_LICENSE"  # the lab stack's SecretRef env for the host licence key
LAB_PREFIX = "GFLAB"  # first group: tells a lab key apart at a glance (never the evaluation key)
_ALPHABET = string.ascii_uppercase + string.digits


def generate_host_license() -> str:
    """A fresh lab licence key: ``GFLAB-XXXXX-XXXXX-XXXXX-XXXXX`` (vSphere format, 20 random letters/digits)."""
    groups = ["".join(secrets.choice(_ALPHABET) for _ in range(5)) for _ in range(4)]
    return "-".join([LAB_PREFIX, *groups])


def lab_license_secrets() -> dict[str, str]:
    """The licence entries of env.json ``"secrets"``."""
    return {HOST_LICENSE_ENV: generate_host_license()}
