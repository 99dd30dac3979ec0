"""``HostPreparation``: one ESXi host prepared for NVIDIA GPUs: the per-host run of ``gpufleet hosts prepare``
(``gpufleet.hosts.prepare.prepare_host``) as one resource, so both faces share one choreography.

- ``check``: the host's spec re-validated through the fleet spec (one ``CheckFailure`` per bad field).
- ``create`` / ``update``: refused (not started) once this run has ``rollout.failureThreshold`` failed hosts in the
  cluster (counted in vCenter beside the rollout lease, ``gpufleet.vsphere.lease``); else ``prepare_host``: every step checked first (driver, graphics, MIG, ATS); nothing to do ->
  the host is not touched. Otherwise ONE maintenance window (evacuating; VMs that cannot move are powered off when
  ``mayPowerOff`` names them), every needed step applied, ONE reboot for everything pending (a fresh Ampere host may
  need the allowed second one: MIG can only be set once the new driver is loaded), verify, leave maintenance and put
  the evacuated VMs back. A failed host raises naming its step and error and stays in maintenance, as in
  ``hosts prepare``; the next ``pulumi up`` continues from what the host shows.
- ``read``: every step's check against the host now (``steps.<step>.inSync|detail``) and what waits for a reboot,
  so ``pulumi refresh`` sees drift.
- ``diff``: another host is a replace; changed inputs or a host out of sync, an update.
- ``delete``: leaves the host as prepared (removing a driver or MIG mode would be a new maintenance window and
  reboot, not a cleanup): the resource owns no object to remove.

Inputs: ``vcenter``, ``cluster``, ``host`` (the HostSpec, camelCase, its driver resolved), ``rollout`` (the fleet's
RolloutPolicy: timeouts, vGPU vMotion during evacuation), ``mayPowerOff`` (the fleet's VMs whose
``allowPowerCycle`` lets evacuation power them off when they cannot move).
"""

from __future__ import annotations

import sys
from contextlib import closing, contextmanager
from dataclasses import replace
from typing import Any

from pulumi import Input, ResourceOptions
from pulumi.dynamic import CheckResult, CreateResult, DiffResult, ReadResult, Resource, UpdateResult
from pydantic import ValidationError

from components.providers.base import GpufleetProvider, failures_from_issues, is_unknown
from gpufleet.hosts.facts import gather
from gpufleet.hosts.model import Desired, HostReport
from gpufleet.hosts.prepare import check_all, prepare_host
from gpufleet.hosts.steps import StepContext, StepFailed
from gpufleet.hosts.steps.reboot import reboot_reasons
from gpufleet.hosts.vcenter import VsphereHostApi
from gpufleet.remote.ssh import SshRunner
from gpufleet.spec.models import Fleet
from gpufleet.spec.stack import issues_from_validation
from gpufleet.spec.validate import validate_fleet
from gpufleet.vsphere.lease import failed_hosts, record_failure

INPUT_KEYS = ("vcenter", "cluster", "host", "rollout", "mayPowerOff")


def fleet_of(props: dict[str, Any]) -> Fleet:
    """The one-host fleet the inputs describe (pydantic's ValidationError on a bad shape)."""
    return Fleet.model_validate(
        {
            "version": "v1",
            "datacenter": "-",
            "cluster": props.get("cluster"),
            "hosts": [props.get("host")],
            "rollout": props.get("rollout") or {},
        }
    )


def check_host_inputs(news: dict[str, Any]) -> CheckResult:
    """The host's spec through the fleet spec's rules: one CheckFailure per bad field (``host.gpus[0].model``)."""
    if is_unknown(news.get("host")):
        return CheckResult(news, [])
    try:
        fleet = fleet_of(news)
    except ValidationError as exc:
        return CheckResult(news, failures_from_issues(issues_from_validation(exc), {"hosts[0]": "host"}))
    issues = [i for i in validate_fleet(fleet) if i.path.startswith("hosts[0]")]
    return CheckResult(news, failures_from_issues(issues, {"hosts[0]": "host"}))


def diff_host_inputs(olds: dict[str, Any], news: dict[str, Any], keys: tuple[str, ...]) -> DiffResult:
    old_name = (olds.get("host") or {}).get("name")
    new_name = (news.get("host") or {}).get("name") if not is_unknown(news.get("host")) else None
    if old_name != new_name:
        return DiffResult(changes=True, replaces=["host"], delete_before_replace=False)
    changed = olds.get("inSync") is False or any(olds.get(k) != news.get(k) for k in keys)
    return DiffResult(changes=changed, replaces=[])


def _step_states(checks: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: {"inSync": not check.needed, "detail": check.detail} for name, check in checks.items()}


class HostPreparationProvider(GpufleetProvider):
    """The provider of ``HostPreparation`` (module path fixed: stacks' state refers to it)."""

    @contextmanager
    def _context(self, props: dict[str, Any]) -> Any:
        fleet = fleet_of(props)
        desired = replace(Desired.of(fleet, fleet.hosts[0]), may_power_off=frozenset(props.get("mayPowerOff") or ()))
        conns = self.connections(props["vcenter"], fleet)
        name = desired.name
        with self.session(props["vcenter"]) as si, closing(SshRunner(conns.host(name))) as runner:
            local = desired.driver.local_path if desired.driver else None
            yield StepContext(
                desired,
                runner,
                VsphereHostApi(si),
                fleet.rollout,
                local_bundle=conns.local_path(local) if local else None,
                note=lambda message: print(f"gpufleet: {name}: {message}", file=sys.stderr),
            )

    def observe(self, props: dict[str, Any]) -> dict[str, Any]:
        """Every step's check now, and what waits for a reboot (read-only)."""
        with self._context(props) as ctx:
            facts = gather(ctx.desired, ctx.runner, ctx.api, bundle=False)
            steps = _step_states(check_all(ctx, facts))
            pending = reboot_reasons(ctx.desired, facts)
        return {
            "steps": steps,
            "rebootPending": pending,
            "inSync": all(s["inSync"] for s in steps.values()) and not pending,
        }

    def prepare(self, props: dict[str, Any]) -> dict[str, Any]:
        """The per-host run; StepFailed naming the step and error when the host failed, or when this run has
        already reached ``rollout.failureThreshold`` failed hosts in the cluster (then it is not started)."""
        with self._context(props) as ctx:
            assert isinstance(ctx.api, VsphereHostApi)
            si, cluster, name = ctx.api.si, ctx.desired.cluster, ctx.desired.name
            failed = failed_hosts(si, cluster)
            if len(failed) >= ctx.policy.failure_threshold:
                raise StepFailed(
                    f"{name}: not started: this run has {len(failed)} failed host(s) in {cluster} "
                    f"({', '.join(failed)}), rollout.failureThreshold is {ctx.policy.failure_threshold}"
                )
            report = prepare_host(ctx, HostReport(name=name, cluster=cluster))
            if report.error is None:
                steps = _step_states(check_all(ctx, report.facts or gather(ctx.desired, ctx.runner, ctx.api)))
            else:
                record_failure(si, cluster, name)
        if report.error is not None:
            where = "it stays in maintenance; " if report.in_maintenance else ""
            raise StepFailed(
                f"{report.name}: {report.error['step']}: {report.error['message']} ({where}the next `pulumi up` "
                "continues from what the host shows)"
            )
        return {k: props.get(k) for k in INPUT_KEYS} | {
            "steps": steps,
            "rebootPending": [],
            "inSync": all(s["inSync"] for s in steps.values()),
            "lastRun": [f"{s.name}: {s.state.value}: {s.detail}" for s in report.steps if s.detail],
            "reboots": report.reboots,
        }

    # -- the dynamic provider contract ---------------------------------------------------------------------
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return check_host_inputs(news)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return diff_host_inputs(olds, news, INPUT_KEYS)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(props["host"]["name"], self.prepare(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self.prepare(news))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, {**props, **self.observe(props)})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """The host stays prepared: see the module docstring."""


class HostPreparation(Resource, module="vsphere", name="HostPreparation"):
    """The whole preparation of one host (driver, graphics, MIG, ATS) in one maintenance window."""

    steps: Any
    rebootPending: Any
    inSync: Any
    lastRun: Any
    reboots: Any

    def __init__(self, name: str, props: dict[str, Input[Any]], opts: ResourceOptions | None = None) -> None:
        outputs = {"steps": None, "rebootPending": None, "inSync": None, "lastRun": None, "reboots": None}
        super().__init__(HostPreparationProvider(), name, {**props, **outputs}, opts)
