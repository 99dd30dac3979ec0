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
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpufleet.spec.models import RolloutPolicy
from host_setup.model import Desired, HostReport, StepState
from host_setup.plan import HostPlan, check_bundles, check_inputs, plan_host
from host_setup.prepare import prepare_host
from host_setup.ssh import Runner
from host_setup.steps import StepContext
from host_setup.steps.driver import stage_bundle
from host_setup.vcenter import HostApi

EventSink = Callable[[str, str], None]  # (host, message)


@dataclass(frozen=True)
class RolloutOptions:
    max_unavailable: int
    failure_threshold: int
    dry_run: bool = False
    plan_workers: int = 8
    stage_workers: int = 2  # concurrent bundle uploads ahead of the hosts' turns
    install_timeout: float = 900.0


@dataclass
class RolloutReport:
    """The whole run: ``gpufleet hosts prepare --json``."""

    hosts: list[HostReport]
    dry_run: bool
    max_unavailable: int
    failure_threshold: int
    stopped: str | None = None
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
        """0 all done (or, dry run, nothing to do); 1 a host failed or could not be read; 2 dry run with changes."""
        if self.failed:
            return 1
        if self.dry_run and self.pending:
            return 2
        return 0

    def to_json(self) -> dict[str, Any]:
        changed = [h for h in self.hosts if h.changed]
        skipped = [h for h in self.hosts if h.error and h.error.get("step") == "skipped"]
        return {
            "dry_run": self.dry_run,
            "max_unavailable": self.max_unavailable,
            "failure_threshold": self.failure_threshold,
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
            "peak_in_maintenance": self.peak_in_maintenance,
            "seconds": round(self.seconds, 2),
            "exit_code": self.exit_code,
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
    ) -> None:
        self.desired = desired
        self.policy = policy
        self.options = options
        self.api = api
        self.runner_for = runner_for
        self.local_bundles = local_bundles or {}
        self.on_event = on_event or (lambda host, message: None)
        self._runners: dict[str, Runner] = {}
        self._staged: dict[str, Future[None]] = {}
        self._lock = threading.Lock()

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
            report = self._dry_run(plans) if self.options.dry_run else self._execute(plans)
        finally:
            self.close()
        report.seconds = time.monotonic() - started
        return report

    def _new_report(self, plan: HostPlan) -> HostReport:
        return HostReport(name=plan.name, cluster=plan.cluster, in_maintenance=plan.in_maintenance)

    def _dry_run(self, plans: list[HostPlan]) -> RolloutReport:
        reports = []
        for plan in plans:
            report = self._new_report(plan)
            report.steps = plan.step_reports()
            if plan.error:
                report.error = plan.error
            reports.append(report)
        return RolloutReport(reports, True, self.options.max_unavailable, self.options.failure_threshold)

    def _execute(self, plans: list[HostPlan]) -> RolloutReport:
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
            if plan.error:
                reports[plan.name].steps = plan.step_reports()
                reports[plan.name].fail(plan.error["step"], plan.error["message"])
                failures += 1
            elif not plan.needs_work:
                reports[plan.name].steps = plan.step_reports()
        # Hosts a failed run left in maintenance first: they already hold a slot.
        queue = sorted((p for p in plans if p.needs_work), key=lambda p: not p.in_maintenance)
        stopped = self._threshold(failures)
        running: dict[Future[HostReport], HostPlan] = {}
        pool_size = max(1, min(len(queue), opts.max_unavailable * max(1, len({p.cluster for p in queue}))))
        stager = ThreadPoolExecutor(max_workers=opts.stage_workers, thread_name_prefix="stage")
        with stager, ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="host") as pool:
            while queue or running:
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
                # The next hosts in line get their bundle uploaded while they wait for their turn, so their
                # maintenance window holds the install, not the copy.
                for plan in queue[:pool_size]:
                    if plan.name not in self._staged and self._needs_upload(plan):
                        self._staged[plan.name] = stager.submit(self._stage, plan)
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    plan = running.pop(future)
                    report = future.result()
                    if report.in_maintenance is False:
                        gate.release(plan.cluster, plan.name)
                    if report.error:
                        failures += 1
                    self.on_event(plan.name, f"failed at {report.error['step']}" if report.error else "done")
                stopped = stopped or self._threshold(failures)
                if stopped:
                    for future in self._staged.values():
                        future.cancel()
        for plan in queue:  # never started
            report = reports[plan.name]
            report.steps = plan.step_reports()
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
            peak_in_maintenance=dict(gate.peak),
        )

    def _threshold(self, failures: int) -> str | None:
        if failures >= self.options.failure_threshold:
            return f"stopped after {failures} failed host(s) (failure threshold {self.options.failure_threshold})"
        return None

    def _needs_upload(self, plan: HostPlan) -> bool:
        driver = plan.checks.get("driver")
        local = self.local_bundles.get(plan.name)
        return bool(driver and driver.needed and plan.facts and not plan.facts.bundle_on_host and local)

    def _stage(self, plan: HostPlan) -> None:
        if stage_bundle(self._context(plan.desired)):
            self.on_event(plan.name, "bundle staged on the datastore")

    def _prepare(self, plan: HostPlan, report: HostReport) -> HostReport:
        staged = self._staged.get(plan.name)
        if staged is not None:
            try:
                staged.result()
            except Exception as exc:  # noqa: BLE001 - the driver step uploads again and reports the error
                self.on_event(plan.name, f"staging the bundle failed ({exc}); uploading at install time")
        report.steps = []
        return prepare_host(self._context(plan.desired), report)
