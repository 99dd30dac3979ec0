"""The plan: which host needs which steps, read from the hosts without changing anything.

``plan_host`` reads one host's facts and runs every step's check; ``check_inputs`` refuses bad input before any
host is touched (a host vCenter does not know, a driver bundle that is neither on the host nor available
locally). A host that cannot be read (SSH down, unknown host key) gets a plan with ``error``: the rollout
reports it failed and never touches it — except a host that does not answer SSH while in a maintenance window
gpufleet opened (its marker is set: a run killed mid-reboot), which is waited for up to
``rollout.rebootTimeoutSeconds``, as the reboot step would have.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gpufleet.errors import ConnectError, GpufleetError, SpecError, SpecIssue
from gpufleet.hosts.facts import gather
from gpufleet.hosts.model import Desired, HostFacts, StepReport, StepState
from gpufleet.hosts.prepare import check_all, needs_work
from gpufleet.hosts.steps import Check, StepContext
from gpufleet.hosts.steps.reboot import reboot_reasons


@dataclass
class HostPlan:
    desired: Desired
    facts: HostFacts | None = None
    checks: dict[str, Check] = field(default_factory=dict)
    reboot: list[str] = field(default_factory=list)  # reboot reasons already pending on the host
    error: dict[str, str] | None = None  # {"step", "message"}: cannot be read, or a refused step

    @property
    def name(self) -> str:
        return self.desired.name

    @property
    def cluster(self) -> str:
        """The cluster vCenter puts the host in (what the maintenance bound counts), else the spec's."""
        return (self.facts.cluster if self.facts else None) or self.desired.cluster

    @property
    def needs_work(self) -> bool:
        return self.error is None and self.facts is not None and needs_work(self.checks, self.reboot, self.facts)

    @property
    def in_maintenance(self) -> bool:
        return bool(self.facts and self.facts.in_maintenance)

    def step_reports(self) -> list[StepReport]:
        """The plan as report lines: each step ok or needed, plus the maintenance and reboot it implies."""
        out = [
            StepReport(
                name,
                StepState.NEEDED if c.needed else StepState.OK,
                c.detail + (" (after the reboot)" if c.deferred else ""),
            )
            for name, c in self.checks.items()
        ]
        if self.needs_work:
            reboot = self.reboot or [
                f"{n}: {c.detail}" for n, c in self.checks.items() if c.needed and (c.reboot or c.deferred)
            ]
            if reboot:
                out.append(StepReport("reboot", StepState.NEEDED, "; ".join(reboot)))
            verb = (
                "finish the earlier run"
                if self.facts and self.facts.marked and not any(c.needed for c in self.checks.values())
                else "enter"
            )
            out.insert(
                0,
                StepReport(
                    "maintenance",
                    StepState.NEEDED,
                    verb if not self.in_maintenance else f"already in maintenance; {verb}",
                ),
            )
        return out


def plan_host(ctx: StepContext) -> HostPlan:
    """Read one host and check every step (read-only). Errors become ``HostPlan.error``."""
    plan = HostPlan(ctx.desired)
    try:
        try:
            plan.facts = gather(ctx.desired, ctx.runner, ctx.api, bundle=True)
        except ConnectError:
            if not _rebooting_in_our_window(ctx):
                raise
            # A run killed mid-window may have left the host rebooting: wait for it as the reboot step would.
            timeout = float(ctx.policy.reboot_timeout_seconds)
            ctx.note(f"not answering SSH, in gpufleet's maintenance (rebooting?): waiting up to {timeout:.0f} s")
            ctx.runner.reconnect(timeout=timeout)
            plan.facts = gather(ctx.desired, ctx.runner, ctx.api, bundle=True)
        plan.checks = check_all(ctx, plan.facts)
        plan.reboot = reboot_reasons(ctx.desired, plan.facts)
    except GpufleetError as exc:
        plan.error = {"step": "check", "message": str(exc)}
        return plan
    for name, check in plan.checks.items():
        if check.refused:
            plan.error = {"step": name, "message": check.refused}
            break
    return plan


def _rebooting_in_our_window(ctx: StepContext) -> bool:
    """In maintenance with gpufleet's marker (an earlier run's window): an SSH refusal may be its reboot."""
    try:
        return ctx.api.state(ctx.desired.name).in_maintenance and bool(ctx.api.marker(ctx.desired.name))
    except GpufleetError:
        return False


def check_inputs(desired: list[Desired], vcenter_hosts: list[str], local_bundles: dict[str, Path | None]) -> None:
    """Bad input that needs no host: hosts vCenter does not know, local bundles named but missing."""
    issues: list[SpecIssue] = []
    known = set(vcenter_hosts)
    for i, d in enumerate(desired):
        if d.name not in known:
            issues.append(SpecIssue(f"hosts[{i}].name", f"{d.name!r}: no such host in vCenter", tuple(sorted(known))))
    reported: set[Path] = set()
    for d in desired:
        local = local_bundles.get(d.name)
        if d.driver and d.driver.local_path and local is not None and not local.is_file() and local not in reported:
            reported.add(local)
            issues.append(SpecIssue("driver.localPath", f"{d.driver.local_path}: no such file ({local})"))
    if issues:
        raise SpecError(issues)


def check_bundles(plans: list[HostPlan], local_bundles: dict[str, Path | None]) -> None:
    """After reading the hosts: every host that will install a driver can get the bundle (already on its
    datastore, or a local file to upload). Refused before any host is touched."""
    issues = []
    for plan in plans:
        driver_check = plan.checks.get("driver")
        if plan.error or not driver_check or not driver_check.needed or plan.facts is None:
            continue
        if plan.facts.bundle_on_host:
            continue
        local = local_bundles.get(plan.name)
        if local is None or not local.is_file():
            driver = plan.desired.driver
            assert driver is not None
            hint = f" (local {local} missing)" if local is not None else " and no driver.localPath to upload from"
            issues.append(SpecIssue(f"{plan.name}: driver.bundle", f"{driver.bundle} is not on the host{hint}"))
    if issues:
        raise SpecError(issues)
