"""Typed errors of gpufleet. Raised with their cause (``raise ... from``) and translated at the edges:
the CLI turns them into a message and an exit code, components into ``pulumi.RunError`` / ``CheckFailure``."""

from __future__ import annotations

from dataclasses import dataclass


class GpufleetError(Exception):
    """Base of every error gpufleet raises on purpose. ``str(err)`` is a message a person can act on."""

    exit_code: int = 1


@dataclass(frozen=True)
class SpecIssue:
    """One problem in a fleet spec: where (``vms[vm-mig-01].vgpu[1]``), why, and what would be valid; the
    rejected value as echoed (bounded, never a secret's; None: not echoed) and the index form of a named path
    (``vms[3].vgpu[1]``)."""

    path: str
    message: str
    valid: tuple[str, ...] = ()
    value: str | None = None
    index_path: str | None = None
    rule: str | None = None  # the policy rule this issue also is (gpufleet.policy), e.g. "mig-layout-fits"

    @property
    def got(self) -> str:
        """The suffix `` (got 'latest')`` when the value is echoed and the message does not already say it."""
        return f" (got {self.value})" if self.value is not None and self.value not in self.message else ""

    def __str__(self) -> str:
        hint = f" (valid: {', '.join(self.valid)})" if self.valid else ""
        return f"{self.path}: {self.message}{self.got}{hint}"


class SpecError(GpufleetError):
    """The stack file or fleet spec is invalid; carries every issue found, not just the first."""

    def __init__(self, issues: list[SpecIssue], source: str | None = None) -> None:
        self.issues = list(issues)
        self.source = source
        where = f"{source}: " if source else ""
        lines = "\n".join(f"  - {i}" for i in self.issues)
        super().__init__(f"{where}{len(self.issues)} problem(s) in the fleet spec:\n{lines}")


class ConnectError(GpufleetError):
    """A peer (vCenter, an ESXi host, a guest) could not be reached or refused us."""


class HostKeyError(ConnectError):
    """An SSH host key is unknown or changed; never accepted silently."""


class TlsVerificationError(ConnectError):
    """vCenter's TLS certificate did not match the CA bundle or the pinned thumbprint."""


class TaskError(GpufleetError):
    """A vSphere task or a host command failed; ``fault`` names the vSphere fault or the command."""

    def __init__(self, message: str, fault: str | None = None) -> None:
        self.fault = fault
        super().__init__(message)


class Infeasible(GpufleetError):
    """A "no" answer: does not fit, cannot be placed, drift found. Exit code 2."""

    exit_code = 2
