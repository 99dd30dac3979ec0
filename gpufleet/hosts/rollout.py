"""Rolling host preparation across a fleet: plan every host first, then prepare hosts in parallel with never
more than ``max_unavailable`` hosts per cluster in maintenance mode, stopping at the failure threshold.

Safety rules (the README's "hosts prepare" section says the same to users):

- **Bounded disruption.** A host takes a maintenance slot of its cluster before entering maintenance and gives
  it back only once vCenter shows it out of maintenance. Hosts already in maintenance (an operator's, or one a
  failed run left) hold a slot from the start; a failed host keeps its slot (it stays in maintenance).
- **Failure threshold.** After ``failure_threshold`` failed hosts no new host starts; hosts already started
  finish; the rest are reported ``skipped``.
- **Nothing half-done unnoticed.** A failed host stays in maintenance and is reported with its step and error.
- **Resumable.** Nothing is remembered between runs except what the hosts and vCenter show; a rerun plans again
  from that and continues (hosts a failed run left in maintenance go first).
- **Bad input fails before any host is touched**: unknown hosts, missing driver bundles (``plan.check_inputs``,
  ``plan.check_bundles``); planning itself only reads.
- **Pre-staged bundles.** Before the first host enters maintenance, every host that needs the driver gets its
  bundle uploaded and proven (size, SHA-256, esxcli ``--dry-run``) in parallel (``gpufleet.hosts.stage``); a host
  whose bundle cannot be staged fails untouched (counting toward the threshold), so a maintenance window holds
  only the install, the reboot and the verification.
- **Interruptible.** ``request_stop`` (the CLI calls it on SIGINT): no new host starts, hosts already in their
  window finish it (install, reboot, verify, leave maintenance, VMs back), the rest are reported ``skipped``
  with the reason, and the report says the run was interrupted (exit 130).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpufleet.hosts.model import Desired, HostReport, StepReport, StepState
from gpufleet.hosts.plan import HostPlan, check_bundles, check_inputs, plan_host
from gpufleet.hosts.prepare import prepare_host
from gpufleet.hosts.stage import stage_bundle
from gpufleet.hosts.steps import StepContext
from gpufleet.hosts.vcenter import HostApi
from gpufleet.remote.ssh import Runner
from gpufleet.spec.models import RolloutPolicy

EventSink = Callable[[str, str], None]  # (host, message)


@dataclass(frozen=True)
class RolloutOptions:
    max_unavailable: int
    failure_threshold: int
    dry_run: bool = False
    plan_workers: int = 8
    stage_workers: int = 8  # concurrent bundle uploads and checks before the first maintenance
    install_timeout: float = 900.0


@dataclass
class RolloutReport:
    """The whole run: ``gpufleet hosts prepare --json``."""

    hosts: list[HostReport]
    dry_run: bool
    max_unavailable: int
    failure_threshold: int
    stopped: str | None = None
    interrupted: bool = False
    seconds: float = 0.0
    peak_in_maintenance: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> list[HostReport]:
        return [h for h in self.hosts if h.error is not None]

    @property
    def pending(self) -> list[HostReport]:
        return [h for h in self.hosts if h.pending]

    @property
    def exit_code(self) -> int:
        """0 all done (or, dry run, nothing to do); 1 a host failed or could not be read; 2 dry run with changes;
        130 interrupted (SIGINT) before every host was done."""
        if self.interrupted and any(h.error and h.error.get("step") == "skipped" for h in self.hosts):
            return 130
        if self.failed:
            return 1
        if self.dry_run and self.pending:
            return 2
        return 0

    def to_json(self) -> dict[str, Any]:
        changed = [h for h in self.hosts if h.changed]
        skipped = [h for h in self.hosts if h.error and h.error.get("step") == "skipped"]
        return {
            "dryRun": self.dry_run,
            "maxUnavailable": self.max_unavailable,
            "failureThreshold": self.failure_threshold,
            "hosts": [h.to_json() for h in self.hosts],
            "summary": {
                "hosts": len(self.hosts),
                "changed": len(changed),
                "pending": len(self.pending),
                "failed": len(self.failed) - len(skipped),
                "skipped": len(skipped),
                "unchanged": len([h for h in self.hosts if not h.changed and not h.error and not h.pending]),
            },
            "stopped": self.stopped,
            "interrupted": self.interrupted,
            "peakInMaintenance": self.peak_in_maintenance,
            "seconds": round(self.seconds, 2),
            "exitCode": self.exit_code,
        }


class MaintenanceGate:
    """Per-cluster count of hosts in maintenance, with the peak seen (what the rollout promises to bound)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.inside: dict[str, set[str]] = defaultdict(set)
        self.peak: dict[str, int] = defaultdict(int)

    def hold(self, cluster: str, host: str) -> None:
        self.inside[cluster].add(host)
        self.peak[cluster] = max(self.peak[cluster], len(self.inside[cluster]))

    def has_room(self, cluster: str) -> bool:
        return len(self.inside[cluster]) < self.limit

    def release(self, cluster: str, host: str) -> None:
        self.inside[cluster].discard(host)


class Rollout:
    """Plan and prepare hosts. ``runner_for`` opens the SSH runner of a host (one per host, kept for the run)."""

    def __init__(
        self,
        desired: list[Desired],
        policy: RolloutPolicy,
        options: RolloutOptions,
        api: HostApi,
        runner_for: Callable[[Desired], Runner],
        local_bundles: dict[str, Path | None] | None = None,
        on_event: EventSink | None = None,
        before_changes: Callable[[], None] | None = None,
    ) -> None:
        self.desired = desired
        self.policy = policy
        self.options = options
        self.api = api
        self.runner_for = runner_for
        self.local_bundles = local_bundles or {}
        self.on_event = on_event or (lambda host, message: None)
        # Called once the plan is made, before the first change (a real run's lease confirmation: planning only
        # reads, so it may overlap the lease's settle time).
        self.before_changes = before_changes or (lambda: None)
        self._runners: dict[str, Runner] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stop_reason = ""

    def request_stop(self, reason: str = "interrupted (SIGINT)") -> None:
        """Start no new host; the hosts already started finish their window. Safe from a signal handler."""
        self._stop_reason = reason
        self._stop.set()

    # -- plumbing -------------------------------------------------------------------------------------------
    def _context(self, desired: Desired) -> StepContext:
        with self._lock:
            runner = self._runners.get(desired.name)
            if runner is None:
                runner = self._runners[desired.name] = self.runner_for(desired)
        return StepContext(
            desired=desired,
            runner=runner,
            api=self.api,
            policy=self.policy,
            local_bundle=self.local_bundles.get(desired.name),
            install_timeout=self.options.install_timeout,
            note=lambda message, host=desired.name: self.on_event(host, message),
        )

    def close(self) -> None:
        with self._lock:
            runners, self._runners = list(self._runners.values()), {}
        for runner in runners:
            runner.close()

    # -- plan -------------------------------------------------------------------------------------------------
    def plan(self) -> list[HostPlan]:
        """Check inputs, then read every host in parallel (read-only) and check the bundles."""
        check_inputs(self.desired, self.api.host_names(), self.local_bundles)
        workers = max(1, min(self.options.plan_workers, len(self.desired)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="plan") as pool:
            plans = list(pool.map(lambda d: plan_host(self._context(d)), self.desired))
        check_bundles(plans, self.local_bundles)
        for plan in plans:
            self.on_event(
                plan.name, f"plan: {'failed' if plan.error else 'changes' if plan.needs_work else 'nothing to do'}"
            )
        return plans

    # -- run ----------------------------------------------------------------------------------------------------
    def run(self) -> RolloutReport:
        started = time.monotonic()
        try:
            plans = self.plan()
            if not self.options.dry_run:
                self.before_changes()
            staged = self.prestage(plans)
            report = self._dry_run(plans, staged) if self.options.dry_run else self._execute(plans, staged)
        finally:
            self.close()
        report.seconds = time.monotonic() - started
        return report

    def _new_report(self, plan: HostPlan) -> HostReport:
        return HostReport(name=plan.name, cluster=plan.cluster, in_maintenance=plan.in_maintenance)

    # -- pre-staging ----------------------------------------------------------------------------------------
    def prestage(self, plans: list[HostPlan]) -> dict[str, StepReport]:
        """Stage the bundle on every host whose driver step is needed, in parallel, before any maintenance (a dry
        run only checks what is there). Returns host -> its ``stage`` step (FAILED ones fail the host)."""
        todo = [p for p in plans if not p.error and self._needs_driver(p)]
        if not todo:
            return {}
        dry = self.options.dry_run

        def stage(plan: HostPlan) -> StepReport:
            if self._stop.is_set():
                return StepReport("stage", StepState.SKIPPED, self._stop_reason)
            started = time.monotonic()
            try:
                present = plan.facts.bundle_on_host if plan.facts else None
                detail = stage_bundle(self._context(plan.desired), dry_run=dry, present=present)
            except Exception as exc:  # noqa: BLE001 - any failure here fails this host, untouched
                self.on_event(plan.name, f"staging failed: {exc}")
                return StepReport("stage", StepState.FAILED, str(exc), time.monotonic() - started)
            self.on_event(plan.name, f"staged: {detail}")
            state = StepState.NEEDED if dry and detail.startswith("would") else StepState.DONE
            return StepReport("stage", state, detail, time.monotonic() - started)

        workers = max(1, min(self.options.stage_workers, len(todo)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stage") as pool:
            return dict(zip((p.name for p in todo), pool.map(stage, todo), strict=True))

    def _needs_driver(self, plan: HostPlan) -> bool:
        driver = plan.checks.get("driver")
        return bool(driver and driver.needed and not driver.refused)

    def _dry_run(self, plans: list[HostPlan], staged: dict[str, StepReport]) -> RolloutReport:
        reports = []
        for plan in plans:
            report = self._new_report(plan)
            report.steps = ([staged[plan.name]] if plan.name in staged else []) + plan.step_reports()
            if plan.error:
                report.error = plan.error
            elif plan.name in staged and staged[plan.name].state == StepState.FAILED:
                report.error = {"step": "stage", "message": staged[plan.name].detail}
            reports.append(report)
        return RolloutReport(reports, True, self.options.max_unavailable, self.options.failure_threshold)

    def _execute(self, plans: list[HostPlan], staged: dict[str, StepReport]) -> RolloutReport:
        opts = self.options
        reports = {plan.name: self._new_report(plan) for plan in plans}
        gate = MaintenanceGate(opts.max_unavailable)
        ours = {plan.name for plan in plans}
        for state in self.api.in_maintenance():
            if state.name not in ours and state.cluster:
                gate.hold(state.cluster, state.name)  # someone else's: counts against the bound, never released
        failures = 0
        for plan in plans:
            if plan.in_maintenance:
                gate.hold(plan.cluster, plan.name)
            stage = staged.get(plan.name)
            if stage is not None:
                reports[plan.name].steps = [stage]
            if plan.error:
                reports[plan.name].steps = plan.step_reports()
                reports[plan.name].fail(plan.error["step"], plan.error["message"])
                failures += 1
            elif stage is not None and stage.state == StepState.FAILED:
                reports[plan.name].steps += plan.step_reports()
                reports[plan.name].error = {"step": "stage", "message": stage.detail}
                failures += 1
            elif not plan.needs_work:
                reports[plan.name].steps = plan.step_reports()
        # Hosts a failed run left in maintenance first: they already hold a slot.
        queue = sorted(
            (p for p in plans if p.needs_work and not reports[p.name].error), key=lambda p: not p.in_maintenance
        )
        stopped = self._threshold(failures) or self._interrupted()
        running: dict[Future[HostReport], HostPlan] = {}
        pool_size = max(1, min(len(queue), opts.max_unavailable * max(1, len({p.cluster for p in queue}))))
        with ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="host") as pool:
            while queue or running:
                stopped = stopped or self._interrupted()
                if not stopped:
                    for plan in list(queue):
                        cluster = plan.cluster
                        if plan.in_maintenance or gate.has_room(cluster):
                            gate.hold(cluster, plan.name)
                            queue.remove(plan)
                            self.on_event(plan.name, "started")
                            running[pool.submit(self._prepare, plan, reports[plan.name])] = plan
                if not running:
                    break  # nothing runs and nothing can start: no room left
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    plan = running.pop(future)
                    report = future.result()
                    if report.in_maintenance is False:
                        gate.release(plan.cluster, plan.name)
                    if report.error:
                        failures += 1
                    self.on_event(plan.name, f"failed at {report.error['step']}" if report.error else "done")
                stopped = stopped or self._threshold(failures) or self._interrupted()
        for plan in queue:  # never started
            report = reports[plan.name]
            report.steps = report.steps + plan.step_reports()
            why = stopped or (
                f"no maintenance slot: {', '.join(sorted(gate.inside[plan.cluster]))} are in maintenance in "
                f"{plan.cluster} and max-unavailable is {opts.max_unavailable}"
            )
            report.error = {"step": "skipped", "message": why}
            report.step("skipped", StepState.SKIPPED, why)
            self.on_event(plan.name, f"skipped: {why}")
        return RolloutReport(
            [reports[p.name] for p in plans],
            False,
            opts.max_unavailable,
            opts.failure_threshold,
            stopped=stopped,
            interrupted=self._stop.is_set(),
            peak_in_maintenance=dict(gate.peak),
        )

    def _interrupted(self) -> str | None:
        return f"{self._stop_reason}: no new host started" if self._stop.is_set() else None

    def _threshold(self, failures: int) -> str | None:
        if failures >= self.options.failure_threshold:
            return f"stopped after {failures} failed host(s) (failure threshold {self.options.failure_threshold})"
        return None

    def _prepare(self, plan: HostPlan, report: HostReport) -> HostReport:
        report.steps = [s for s in report.steps if s.name == "stage"]  # the pre-staging stays in the report
        return prepare_host(self._context(plan.desired), report)


@contextlib.contextmanager
def stop_on_sigint(rollout: Rollout) -> Iterator[None]:
    """While the rollout runs, a first SIGINT (Ctrl-C) asks it to stop cleanly (``Rollout.request_stop``: hosts in
    their window finish it, no new host starts); a second one aborts at once (KeyboardInterrupt; the journal in
    vCenter lets the next run finish what was left). Only from the main thread (signals reach only it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def first(signum: int, frame: object) -> None:
        rollout.request_stop("interrupted (SIGINT)")
        sys.stderr.write(
            "\ngpufleet: SIGINT: the hosts in their maintenance window finish it, no new host starts; "
            "Ctrl-C again aborts now\n"
        )
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
