"""``hosts prepare`` end to end, from a stack file: validate, resolve connections, connect, plan, roll out.

Shared by ``gpufleet hosts prepare`` (gpufleet.cli.hosts_cmd) and ``python -m host_setup prepare``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

from gpufleet.connections import resolve_connections
from gpufleet.errors import SpecError, SpecIssue
from gpufleet.hosts.model import Desired
from gpufleet.hosts.rollout import EventSink, Rollout, RolloutOptions, RolloutReport, stop_on_sigint
from gpufleet.hosts.vcenter import VsphereHostApi
from gpufleet.remote.ssh import SshRunner
from gpufleet.spec.stack import load_stack
from gpufleet.spec.validate import validated
from gpufleet.vsphere.connect import connect
from gpufleet.vsphere.lease import claimed_leases


def prepare_stack(
    stack_path: str | Path,
    *,
    max_unavailable: int | None = None,
    failure_threshold: int | None = None,
    dry_run: bool = False,
    only: Sequence[str] = (),
    on_event: EventSink | None = None,
    take_over: bool = False,
) -> RolloutReport:
    """Prepare the stack's hosts (``only``: just these). Bad input raises ``SpecError`` before any host is
    touched; host failures are in the report (``exit_code`` 1), never raised. A real run holds its clusters'
    rollout lease (``gpufleet.vsphere.lease``): another run on them is refused (``LeaseHeld``) unless gone or
    ``take_over``; the lease is written before planning and confirmed before the first change. SIGINT during a
    real run stops it cleanly (``rollout.stop_on_sigint``; exit code 130)."""
    stack = validated(load_stack(stack_path))
    fleet = stack.fleet
    hosts = list(fleet.hosts)
    if only:
        names = {h.name for h in hosts}
        unknown = [n for n in only if n not in names]
        if unknown:
            raise SpecError(
                [SpecIssue(f"--host {n}", "not a host of this stack", tuple(sorted(names))) for n in unknown]
            )
        hosts = [h for h in hosts if h.name in set(only)]
    if max_unavailable is not None and max_unavailable < 1:
        raise SpecError([SpecIssue("--max-unavailable", f"{max_unavailable}: must be at least 1")])
    if failure_threshold is not None and failure_threshold < 1:
        raise SpecError([SpecIssue("--failure-threshold", f"{failure_threshold}: must be at least 1")])
    conns = resolve_connections(stack)
    desired = [Desired.of(fleet, h) for h in hosts]
    local_bundles = {
        d.name: conns.local_path(d.driver.local_path) if d.driver and d.driver.local_path else None for d in desired
    }
    policy = fleet.rollout
    options = RolloutOptions(
        max_unavailable=max_unavailable or policy.max_unavailable,
        failure_threshold=failure_threshold or policy.failure_threshold,
        dry_run=dry_run,
    )
    with connect(conns.vcenter) as si, contextlib.ExitStack() as held:
        # A real run writes its clusters' leases first and plans (read-only) while they settle; the rollout
        # confirms them before its first change (gpufleet.vsphere.lease.claimed_leases).
        claim = (
            None
            if dry_run
            else held.enter_context(claimed_leases(si, sorted({d.cluster for d in desired}), take_over=take_over))
        )
        rollout = Rollout(
            desired,
            policy,
            options,
            VsphereHostApi(si),
            runner_for=lambda d: SshRunner(conns.host(d.name)),
            local_bundles=local_bundles,
            on_event=on_event,
            before_changes=claim.confirm if claim is not None else None,
        )
        if dry_run:
            return rollout.run()
        with stop_on_sigint(rollout):
            return rollout.run()
