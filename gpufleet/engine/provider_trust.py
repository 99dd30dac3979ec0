"""What pulumi-vsphere may trust for a stack's vCenter, and the provider process environment that says it.

pulumi-vsphere (the Go provider the engine launches, built on govmomi) has no CA-file or thumbprint setting: it
verifies vCenter against Go's system roots, which on Linux are ``SSL_CERT_FILE`` (that file instead of the system
bundle) plus the directories in ``SSL_CERT_DIR`` (default ``/etc/ssl/certs``). The engine starts every plugin with
its own environment, so the one way to make the provider trust exactly the stack's CA is the engine's environment:
``SSL_CERT_FILE`` = the stack's ``caFile`` (for ``vcenter.lab``, the running lab's CA) and ``SSL_CERT_DIR`` = an
empty directory. ``gpufleet pulumi`` sets both (``gpufleet.engine.workspace.engine_environ``), and the Pulumi program, which
the engine starts with the same environment, refuses to create the provider unless they are set so
(``components.fleet.vsphere_provider``). A stack that pins only a ``thumbprint`` cannot be honoured by the Go
provider: pulumi-vsphere resources are refused for it, and the provider process trusts nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gpufleet.connections import resolve_vcenter
from gpufleet.errors import GpufleetError
from gpufleet.spec.stack import Stack

CERT_FILE_ENV, CERT_DIR_ENV = "SSL_CERT_FILE", "SSL_CERT_DIR"
# Read by pulumi-vsphere as the default of allowUnverifiedSsl: never let it reach the provider.
UNVERIFIED_ENV = "VSPHERE_ALLOW_UNVERIFIED_SSL"


@dataclass(frozen=True)
class ProviderTrust:
    """The CA bundle pulumi-vsphere must trust for a stack (``field`` names it in the stack), or why it cannot."""

    field: str  # "vcenter.caFile", "vcenter.lab", "vcenter.thumbprint"
    ca_file: Path | None = None
    refusal: str | None = None

    def environ(self, empty_dir: Path, nothing: Path) -> dict[str, str]:
        """The provider process variables: the CA alone, or (refused) ``nothing`` (an empty bundle) alone."""
        return {CERT_FILE_ENV: str(self.ca_file or nothing), CERT_DIR_ENV: str(empty_dir)}

    def environ_problem(self, environ: Mapping[str, str]) -> str | None:
        """Why ``environ`` (the program's, so the provider's) does not make pulumi-vsphere trust exactly this CA."""
        if self.refusal:
            return self.refusal
        assert self.ca_file is not None
        cert_file, cert_dir = environ.get(CERT_FILE_ENV), environ.get(CERT_DIR_ENV)
        fix = (
            "run pulumi through `gpufleet pulumi` (scripts/pulumi), which sets it from the stack, or set "
            f"{CERT_FILE_ENV}={self.ca_file} and {CERT_DIR_ENV} to an empty directory"
        )
        if not cert_file or not _same_file(cert_file, self.ca_file):
            have = cert_file or "unset, so the system CAs"
            return (
                f"{self.field}: pulumi-vsphere trusts the CA bundle of its process environment ({CERT_FILE_ENV}: "
                f"{have}), not the stack's {self.ca_file}: {fix}"
            )
        if not cert_dir or _has_files(Path(cert_dir)):
            have = cert_dir or "unset, so /etc/ssl/certs"
            return (
                f"{self.field}: pulumi-vsphere would also trust every CA of {CERT_DIR_ENV} ({have}), not only the "
                f"stack's {self.ca_file}: {fix}"
            )
        if environ.get(UNVERIFIED_ENV, "").strip().lower() in ("1", "true", "yes"):
            return f"{UNVERIFIED_ENV} is set: TLS to vCenter is always verified; unset it"
        return None


def _same_file(a: str, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _has_files(directory: Path) -> bool:
    try:
        return any(directory.iterdir())
    except NotADirectoryError:
        return True  # a file given as a directory: not what it should be
    except OSError:
        return False  # no such directory: Go skips it


def provider_trust(stack: Stack, environ: Mapping[str, str] | None = None) -> ProviderTrust:
    """What pulumi-vsphere may trust for ``stack``'s vCenter (the lab's CA needs the lab running)."""
    spec = stack.vcenter
    if spec.lab:
        try:
            ca = resolve_vcenter(spec, environ).ca_file
        except GpufleetError as exc:
            return ProviderTrust("vcenter.lab", refusal=f"vcenter.lab: {exc}")
        if ca is None:
            return ProviderTrust("vcenter.lab", refusal="vcenter.lab: the lab env file names no CA (ca_file)")
        return ProviderTrust("vcenter.lab", ca_file=ca)
    if spec.ca_file:
        return ProviderTrust("vcenter.caFile", ca_file=Path(spec.ca_file).expanduser().absolute())
    return ProviderTrust(
        "vcenter.thumbprint",
        refusal=(
            "vcenter.thumbprint: this stack pins vCenter's certificate by thumbprint only, and pulumi-vsphere (the Go "
            "provider) cannot pin a thumbprint, only trust CAs: it would trust the system CAs instead. Refusing to "
            "create pulumi-vsphere resources (templates and VMs it builds, vsphere.License keys): add vcenter.caFile "
            "(the CA bundle that signs vCenter's certificate), or use the existing VMs (config gpufleet:brownfield)"
        ),
    )
