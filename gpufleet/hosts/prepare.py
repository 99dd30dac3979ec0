"""Prepare one host: check, and only if something is to do, maintenance -> steps -> one reboot -> verify -> exit.

The order of one host's run:

1. read the facts and check every step (read-only). Nothing to do: the host is not touched (no maintenance, no
   reboot). A refused step (a driver downgrade, MIG on a GPU without MIG) fails the host untouched.
2. enter maintenance (evacuating, or refusing when the cluster cannot take the VMs);
3. apply the needed steps in order (driver, graphics, MIG, ATS), then re-read the facts: each applied step's
   check must now pass (or only wait for the reboot);
4. reboot once for everything pending. After it the same reasons are read again; one still pending fails the
   host (no reboot loop). A step that could not run before (MIG needs the new driver loaded) runs now, and if it
   in turn needs a reboot, that is the one allowed second reboot (a fresh Ampere host: driver, then MIG);
5. verify (nvidia-smi answers with the wanted driver, every check passes, nothing pending);
6. exit maintenance, if gpufleet entered it.

Any failure stops the host where it is: it stays in maintenance, and the report names the step and the error.
A rerun starts again at 1 from what the host really shows, so it continues where this one stopped.
"""

from __future__ import annotations

import logging
import time

from gpufleet.errors import GpufleetError
from gpufleet.hosts.facts import gather
from gpufleet.hosts.model import HostFacts, HostReport, StepState
from gpufleet.hosts.steps import STEPS, Check, StepContext, StepFailed, maintenance
from gpufleet.hosts.steps.graphics import restart_xorg
from gpufleet.hosts.steps.reboot import reboot_and_wait, reboot_reasons
from gpufleet.hosts.steps.verify import verify_problems, verify_summary

log = logging.getLogger(__name__)

MAX_REBOOTS = 2


def check_all(ctx: StepContext, facts: HostFacts) -> dict[str, Check]:
    return {step.name: step.check(ctx.desired, facts) for step in STEPS}


def needs_work(checks: dict[str, Check], reasons: list[str], facts: HostFacts) -> bool:
    """Anything to do on this host (a step, a pending reboot, or finishing an earlier run's maintenance)?"""
    return any(c.needed for c in checks.values()) or bool(reasons) or facts.marked


class _Run:
    """One host's run; ``current`` is the step to blame when something raises."""

    def __init__(self, ctx: StepContext, report: HostReport) -> None:
        self.ctx = ctx
        self.report = report
        self.current = "check"
        self.graphics_changed = False

    def facts(self, bundle: bool = False) -> HostFacts:
        return gather(self.ctx.desired, self.ctx.runner, self.ctx.api, bundle=bundle)

    def apply_ready_steps(self, facts: HostFacts) -> list[tuple[str, Check]]:
        """Apply every needed, non-deferred step; returns (step, its check) for those applied."""
        applied: list[tuple[str, Check]] = []
        for step in STEPS:
            check = step.check(self.ctx.desired, facts)
            if check.refused:
                self.current = step.name
                raise StepFailed(check.refused)
            if not check.needed or check.deferred:
                continue
            self.current = step.name
            self.ctx.note(f"{step.name}: {check.detail}")
            started = time.monotonic()
            detail = step.apply(self.ctx, facts)
            state = StepState.PENDING if check.reboot else StepState.DONE
            self.report.step(step.name, state, detail, time.monotonic() - started)
            self.graphics_changed |= step.name == "graphics"
            applied.append((step.name, check))
        return applied

    def assert_applied(self, facts: HostFacts, names: set[str]) -> None:
        """After applying (and the reboot they waited for): each of these steps' checks passes."""
        for step in STEPS:
            if step.name not in names:
                continue
            check = step.check(self.ctx.desired, facts)
            if check.needed:
                self.current = step.name
                raise StepFailed(f"applied, but the host still shows: {check.detail}")

    def run(self) -> None:
        ctx, report = self.ctx, self.report
        facts = self.facts(bundle=True)
        checks = check_all(ctx, facts)
        for name, check in checks.items():
            if check.refused:
                report.fail(name, check.refused)
                return
            report.step(name, StepState.OK if not check.needed else StepState.NEEDED, check.detail)
        reasons = reboot_reasons(ctx.desired, facts)
        report.facts = facts
        if not needs_work(checks, reasons, facts):
            if facts.in_maintenance:
                report.step("maintenance", StepState.OK, "in maintenance, not entered by gpufleet: left as is")
            return

        self.current = "maintenance"
        entered = maintenance.enter(ctx, facts)
        report.step("maintenance", StepState.DONE if entered.startswith("entered") else StepState.OK, entered)

        # Apply, then reboot once for everything pending. Changes known to wait for a reboot (a driver install,
        # MIG on Ampere, ATS) go straight to the reboot, whose facts assert them; others are asserted at once.
        pending = reasons
        applied = self.apply_ready_steps(facts)
        while True:
            if not pending and not any(check.reboot for _, check in applied):
                if not applied:
                    break
                facts = self.facts()
                pending = reboot_reasons(ctx.desired, facts)
                # Unexpectedly pending (a change that said it applies at once): reboot for it, assert after.
                if not pending:
                    self.assert_applied(facts, {name for name, _ in applied})
                    break
            self.current = "reboot"
            if report.reboots >= MAX_REBOOTS:
                raise StepFailed(f"{MAX_REBOOTS} reboots done and still something to reboot for: {'; '.join(pending)}")
            why = pending + [f"{name}: {check.detail}" for name, check in applied if check.reboot]
            waiting = {name for name, _ in applied}
            started = time.monotonic()
            detail, facts = reboot_and_wait(ctx, why, self.facts)
            report.reboots += 1
            detail = detail if report.reboots == 1 else f"{report.reboots} reboots; {detail}"
            report.step("reboot", StepState.DONE, detail, time.monotonic() - started)
            survived = reboot_reasons(ctx.desired, facts)
            if survived:  # a reboot was what it needed: another one would not help (no reboot loop)
                raise StepFailed(f"still pending after a reboot: {'; '.join(survived)}; not rebooting again")
            self.assert_applied(facts, waiting)
            for step_report in report.steps:  # what waited for this reboot is in effect now
                if step_report.state == StepState.PENDING:
                    step_report.state = StepState.DONE
            # Steps deferred until the driver was loaded (MIG) run now; if they need a reboot, loop once more.
            pending, applied = [], self.apply_ready_steps(facts)

        if self.graphics_changed and report.reboots == 0:
            self.current = "graphics"
            ctx.note("graphics: restarting xorg (no reboot in this run)")
            restart_xorg(ctx)

        self.current = "verify"
        problems = verify_problems(ctx.desired, facts, check_all(ctx, facts))
        if problems:
            raise StepFailed("; ".join(problems))
        report.step("verify", StepState.DONE, verify_summary(ctx.desired, facts))
        report.facts = facts

        self.current = "maintenance"
        if maintenance.owned(ctx):
            ctx.note("exiting maintenance")
            left = maintenance.leave(ctx)
            first = next(s for s in report.steps if s.name == "maintenance")
            report.step("maintenance", StepState.DONE, f"{first.detail}; {left}")


def prepare_host(ctx: StepContext, report: HostReport) -> HostReport:
    """Run one host to its wanted state, recording everything in ``report`` (never raises for host errors)."""
    started = time.monotonic()
    run = _Run(ctx, report)
    try:
        run.run()
    except GpufleetError as exc:
        report.fail(run.current, str(exc))
    except Exception as exc:  # noqa: BLE001 - a bug must fail this host, not hang the rollout
        log.exception("%s: unexpected error in step %s", ctx.desired.name, run.current)
        report.fail(run.current, f"unexpected {type(exc).__name__}: {exc}")
    finally:
        report.seconds = time.monotonic() - started
        try:
            report.in_maintenance = ctx.api.state(ctx.desired.name).in_maintenance
        except Exception:  # noqa: BLE001 - the report must still come back
            report.in_maintenance = None
    return report
