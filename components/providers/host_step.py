"""The host preparation steps of ``host_setup`` as resources: ``HostDriver``, ``HostGraphics``, ``HostMigMode``,
``HostAts`` (one provider class, ``HostStepProvider(step)``).

Each resource runs one ``host_setup.steps`` step with the same check/apply/assert as ``gpufleet hosts prepare``:

- ``check``: the host's spec re-validated through the fleet spec (one ``CheckFailure`` per bad field).
- ``create`` / ``update``: read the host's facts; nothing to do -> nothing touched. Otherwise enter maintenance
  (with evacuation, marked as gpufleet's), apply the step, assert it took, reboot once if the host says a change
  waits for a boot (driver loaded, MIG pending on Ampere, ATS), restart xorg for a graphics change without a
  reboot, assert again, and leave maintenance if gpufleet entered it. A refused step (a driver downgrade, MIG on a
  GPU without MIG) fails before anything is touched; a failure after that leaves the host in maintenance, named
  in the error, and the next ``pulumi up`` continues from what the host shows.
- ``read``: the step's check against the host now (``inSync``, ``detail``), so ``pulumi refresh`` sees drift.
- ``diff``: another host is a replace; a changed spec or a host out of sync, an update.
- ``delete``: leaves the host as prepared (removing a driver or MIG mode would be a new maintenance window and
  reboot, not a cleanup): the step owns no object to remove.

Inputs: ``vcenter``, ``cluster``, ``host`` (the HostSpec, camelCase, its driver resolved), ``rollout`` (the
fleet's RolloutPolicy: timeouts, vGPU vMotion during evacuation), ``mayPowerOff`` (the fleet's VMs whose
``allowPowerCycle`` lets evacuation power them off when they cannot move).
"""

from __future__ import annotations

import sys
from contextlib import closing
from dataclasses import replace
from typing import Any

from pulumi import Input, ResourceOptions
from pulumi.dynamic import CheckResult, CreateResult, DiffResult, ReadResult, Resource, UpdateResult
from pydantic import ValidationError

from components.providers.base import GpufleetProvider, failures_from_issues, is_unknown
from gpufleet.spec.models import Fleet
from gpufleet.spec.stack import issues_from_validation
from gpufleet.spec.validate import validate_fleet
from host_setup.facts import gather
from host_setup.model import Desired
from host_setup.ssh import SshRunner
from host_setup.steps import STEPS, Check, Step, StepContext, StepFailed, maintenance
from host_setup.steps.graphics import restart_xorg
from host_setup.steps.reboot import reboot_and_wait, reboot_reasons
from host_setup.vcenter import VsphereHostApi

INPUT_KEYS = ("vcenter", "cluster", "host", "rollout", "mayPowerOff")
STEP_NAMES = tuple(step.name for step in STEPS)  # driver, graphics, mig, ats


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


class HostStepProvider(GpufleetProvider):
    """The provider of HostDriver / HostGraphics / HostMigMode / HostAts (module path fixed)."""

    def __init__(self, step: str) -> None:
        super().__init__()
        if step not in STEP_NAMES:
            raise ValueError(f"unknown host step {step!r} (valid: {', '.join(STEP_NAMES)})")
        self.step = step

    def _observe(self, props: dict[str, Any]) -> Check:
        fleet = fleet_of(props)
        desired = Desired.of(fleet, fleet.hosts[0])
        conns = self.connections(props["vcenter"], fleet)
        step = _step(self.step)
        with self.session(props["vcenter"]) as si, closing(SshRunner(conns.host(desired.name))) as runner:
            facts = gather(desired, runner, VsphereHostApi(si), bundle=False)
            return step.check(desired, facts)

    def _converge(self, props: dict[str, Any]) -> dict[str, Any]:
        fleet = fleet_of(props)
        desired = replace(Desired.of(fleet, fleet.hosts[0]), may_power_off=frozenset(props.get("mayPowerOff") or ()))
        conns = self.connections(props["vcenter"], fleet)
        step = _step(self.step)
        name = desired.name
        done: list[str] = []
        with self.session(props["vcenter"]) as si, closing(SshRunner(conns.host(name))) as runner:
            api = VsphereHostApi(si)
            local = desired.driver.local_path if desired.driver else None
            ctx = StepContext(
                desired,
                runner,
                api,
                fleet.rollout,
                local_bundle=conns.local_path(local) if local else None,
                note=lambda message: print(f"gpufleet: {name}: {self.step}: {message}", file=sys.stderr),
            )
            facts = gather(desired, runner, api, bundle=self.step == "driver")
            check = step.check(desired, facts)
            if check.refused:
                raise StepFailed(f"{name}: {self.step}: {check.refused} (nothing changed)")
            if check.deferred:
                raise StepFailed(f"{name}: {self.step}: {check.detail}: the NVIDIA driver must be loaded first")
            if check.needed:
                done.append(maintenance.enter(ctx, facts))
                done.append(step.apply(ctx, facts))
                facts = gather(desired, runner, api, bundle=False)
                after = step.check(desired, facts)
                if after.needed:
                    raise StepFailed(f"{name}: {self.step}: applied, but the host still shows: {after.detail}")
                reasons = reboot_reasons(desired, facts)
                if reasons:
                    detail, facts = reboot_and_wait(ctx, reasons, lambda: gather(desired, runner, api, bundle=False))
                    done.append(detail)
                    left = reboot_reasons(desired, facts)
                    if left:
                        raise StepFailed(f"{name}: still pending after the reboot: {'; '.join(left)}")
                elif self.step == "graphics":
                    done.append(restart_xorg(ctx))
                check = step.check(desired, facts)
                if check.needed:
                    raise StepFailed(f"{name}: {self.step}: not in effect: {check.detail}")
                if maintenance.owned(ctx):
                    done.append(maintenance.leave(ctx))
        return {k: props.get(k) for k in INPUT_KEYS} | {
            "inSync": not check.needed,
            "detail": check.detail,
            "lastActions": done,
        }

    # -- the dynamic provider contract ---------------------------------------------------------------------
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        if is_unknown(news.get("host")):
            return CheckResult(news, [])
        try:
            fleet = fleet_of(news)
        except ValidationError as exc:
            return CheckResult(news, failures_from_issues(issues_from_validation(exc), {"hosts[0]": "host"}))
        issues = [i for i in validate_fleet(fleet) if i.path.startswith("hosts[0]")]
        return CheckResult(news, failures_from_issues(issues, {"hosts[0]": "host"}))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        old_name = (olds.get("host") or {}).get("name")
        new_name = (news.get("host") or {}).get("name") if not is_unknown(news.get("host")) else None
        if old_name != new_name:
            return DiffResult(changes=True, replaces=["host"], delete_before_replace=False)
        changed = olds.get("inSync") is False or any(olds.get(k) != news.get(k) for k in INPUT_KEYS)
        return DiffResult(changes=changed, replaces=[])

    def create(self, props: dict[str, Any]) -> CreateResult:
        outs = self._converge(props)
        return CreateResult(f"{props['host']['name']}/{self.step}", outs)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._converge(news))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        check = self._observe(props)
        return ReadResult(id_, {**props, "inSync": not check.needed, "detail": check.detail})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """The host stays prepared: see the module docstring."""


def _step(name: str) -> Step:
    return next(step for step in STEPS if step.name == name)


class _HostStep(Resource):
    inSync: Any
    detail: Any
    lastActions: Any
    STEP = ""

    def __init__(self, name: str, props: dict[str, Input[Any]], opts: ResourceOptions | None = None) -> None:
        outputs = {"inSync": None, "detail": None, "lastActions": None}
        super().__init__(HostStepProvider(self.STEP), name, {**props, **outputs}, opts)


class HostDriver(_HostStep, module="vsphere", name="HostDriver"):
    """The NVIDIA vGPU host driver (component or VIB) at the wanted version, loaded."""

    STEP = "driver"


class HostGraphics(_HostStep, module="vsphere", name="HostGraphics"):
    """The host's default graphics type (Shared Direct for vGPU) and assignment policy."""

    STEP = "graphics"


class HostMigMode(_HostStep, module="vsphere", name="HostMigMode"):
    """MIG mode on the GPUs the spec runs MIG-backed (off on the others)."""

    STEP = "mig"


class HostAts(_HostStep, module="vsphere", name="HostAts"):
    """ATS for GPUDirect RDMA: ESXi atsSupport and ConnectX ATS_ENABLED."""

    STEP = "ats"
