"""``GuestPreparation``: the guest side of one GPU VM (NVIDIA guest driver of the host's branch, nouveau, kernel
parameters, Container Toolkit, Docker's nvidia runtime, at most one reboot, the assert) through
``gpufleet.guest.prepare.prepare_guest``, the same per-guest run as ``gpufleet guests prepare``.

- ``check``: ``vmName`` given, the ``guest`` block re-validated (``GuestSpec``), a driver version known when there is
  a driver block, and the guest driver able to pair with the host's vGPU Manager (both versions named).
- ``diff``: another VM is a replace; changed inputs, or a guest whose last known state is not ``converged`` (a
  failed run, or drift ``pulumi refresh`` found), an update.
- ``create`` / ``update``: ``prepare_guest``; a guest that does not end ``converged`` fails the resource naming its
  state, step and output (``pulumi up`` stops there; the next ``up`` continues from what the guest shows).
- ``read``: the check half only (``prepare_guest(dry_run=True)``): ``state`` ``converged`` or ``changes-pending``
  with the ``pending`` steps, so ``pulumi refresh`` sees guest drift; an unreachable guest is ``unknown: ...``.
- ``delete``: leaves the guest's software installed (uninstalling a driver from a running guest is not a cleanup);
  the resource owns no object to remove.

NVIDIA licensing stays ``GuestNvidiaLicensing``'s (it depends on this resource through the VM). Inputs: ``vcenter``
(``lab: true``: SSH settings and ``lab-depot://`` from the lab), ``vmName``, ``ssh`` (the VM's SshSpec or None),
``guest`` (the GuestSpec, camelCase), ``where`` (its spec path, for messages), ``driverVersion``, ``hostDriver``,
``vgpu``, ``gpuCount``.
"""

from __future__ import annotations

from contextlib import closing
from typing import Any

from pulumi import Input, ResourceOptions
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, Resource, UpdateResult
from pydantic import ValidationError

from components.providers.base import GpufleetProvider, is_unknown, vcenter_input
from gpufleet.connections import lab_dir, resolve_local_path
from gpufleet.errors import GpufleetError
from gpufleet.guest.prepare import GuestReport, GuestTarget, prepare_guest
from gpufleet.licensing.guest import GuestSshRunner
from gpufleet.spec.dump import stack_form
from gpufleet.spec.guest_desired import GuestDesired, guest_desired
from gpufleet.spec.guest_models import GuestSpec
from gpufleet.spec.models import Fleet, VcenterSpec, VmSpec

INPUT_KEYS = ("vcenter", "vmName", "ssh", "guest", "where", "driverVersion", "hostDriver", "vgpu", "gpuCount")
OUTPUT_KEYS = ("state", "pending", "steps", "changed", "reboots", "driverLoaded", "toolkit", "dockerRuntimes")


def guest_inputs(fleet: Fleet, vm: VmSpec, vcenter: VcenterSpec) -> dict[str, Any] | None:
    """The resource's inputs for ``vm`` (None: no ``guest:`` block), from the spec's one ``guest_desired``."""
    desired = guest_desired(fleet, vm)
    if desired is None:
        return None
    return {
        "vcenter": vcenter_input(vcenter),
        "vmName": vm.name,
        "ssh": stack_form(vm.ssh) if vm.ssh else None,
        "guest": stack_form(desired.spec),
        "where": desired.where,
        "driverVersion": desired.driver_version,
        "hostDriver": desired.host_driver,
        "vgpu": desired.vgpu,
        "gpuCount": len(vm.vgpu) + len(vm.passthrough),
    }


def _fleet(props: dict[str, Any]) -> Fleet:
    vm: dict[str, Any] = {"name": props["vmName"], "template": "-"}
    if props.get("ssh"):
        vm["ssh"] = props["ssh"]
    return Fleet.model_validate({"version": "v1", "datacenter": "-", "cluster": "-", "vms": [vm]})


def _desired(props: dict[str, Any]) -> GuestDesired:
    return GuestDesired(
        vm=str(props["vmName"]),
        spec=GuestSpec.model_validate(props["guest"]),
        where=str(props.get("where") or "guest"),
        host_driver=props.get("hostDriver"),
        driver_version=props.get("driverVersion"),
        vgpu=bool(props.get("vgpu")),
    )


def _outputs(report: GuestReport) -> dict[str, Any]:
    """What the state keeps of a run: no timings (they would show as a change on every refresh)."""
    facts = report.facts or {}
    return {
        "state": report.state,
        "pending": [s.name for s in report.steps if s.state in ("needed", "pending-reboot", "failed")],
        "steps": [{"name": s.name, "state": s.state, "detail": s.detail} for s in report.steps],
        "changed": report.changed,
        "reboots": report.reboots,
        "driverLoaded": facts.get("driverLoaded"),
        "toolkit": facts.get("containerToolkit"),
        "dockerRuntimes": sorted(facts.get("dockerRuntimes") or []),
    }


class GuestPreparationProvider(GpufleetProvider):
    """The provider of ``GuestPreparation`` (module path fixed: stacks' state refers to it)."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = [CheckFailure(k, "required") for k in ("vcenter", "vmName", "guest") if not news.get(k)]
        guest = news.get("guest")
        if failures or is_unknown(guest):
            return CheckResult(news, failures)
        try:
            desired = _desired(news)
        except ValidationError as exc:
            for err in exc.errors():
                path = ".".join(["guest", *(str(p) for p in err["loc"])])
                failures.append(CheckFailure(path, err["msg"]))
            return CheckResult(news, failures)
        if desired.spec.driver is not None and not desired.driver_version:
            failures.append(
                CheckFailure(
                    "driverVersion",
                    f"no guest driver version for {desired.vm}: set {desired.where}.driver.version "
                    "(no host driver to pair a default with)",
                )
            )
        problem = desired.pairing_problem
        if problem:
            failures.append(CheckFailure("driverVersion", f"{desired.vm}: {problem}"))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        if olds.get("vmName") != news.get("vmName"):
            return DiffResult(changes=True, replaces=["vmName"])
        changed = olds.get("state") != "converged" or any(olds.get(k) != news.get(k) for k in INPUT_KEYS)
        return DiffResult(changes=changed, replaces=[])

    def _runner(self, props: dict[str, Any]) -> GuestSshRunner:
        conns = self.connections(props["vcenter"], _fleet(props))
        return GuestSshRunner(conns.guest(props["vmName"]))

    def _run(self, props: dict[str, Any], dry_run: bool) -> GuestReport:
        lab = lab_dir() if VcenterSpec.model_validate(dict(props["vcenter"])).lab else None
        target = GuestTarget(_desired(props), gpu_count=int(props.get("gpuCount") or 0), license_feature=None)
        with closing(self._runner(props)) as runner:
            return prepare_guest(target, runner, lambda path: resolve_local_path(path, lab), dry_run=dry_run)

    def _apply(self, props: dict[str, Any]) -> dict[str, Any]:
        report = self._run(props, dry_run=False)
        if report.state != "converged":
            error = report.error or {"step": "-", "message": ""}
            # The engine shows this message: the named state, the step and its output, as `guests prepare` does.
            raise GpufleetError(f"guest {report.name}: {report.state} at step {error['step']}: {error['message']}")
        return {k: props.get(k) for k in INPUT_KEYS} | _outputs(report)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(f"{props['vmName']}/guest", self._apply(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._apply(news))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        try:
            report = self._run(props, dry_run=True)
        except GpufleetError as exc:  # no SSH settings, say: not known to be prepared (drift; `up` retries)
            return ReadResult(id_, {**props, "state": f"unknown: {exc}", "pending": ["check"]})
        if report.state == "failed":
            error = report.error or {}
            state = f"unknown: {error.get('step')}: {error.get('message')}"
            return ReadResult(id_, {**props, "state": state, "pending": [str(error.get("step"))]})
        pending = [s.name for s in report.steps if s.state == "needed"]
        if report.state == "converged":
            # Nothing to do: keep what the last run recorded (its steps and facts), so a refresh shows no change.
            return ReadResult(id_, {**props, "state": "converged", "pending": []})
        return ReadResult(id_, {**props, "state": report.state, "pending": pending or ["reboot"]})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """The guest keeps its software: see the module docstring."""


class GuestPreparation(Resource, module="vsphere", name="GuestPreparation"):
    """The guest side of one GPU VM (driver, toolkit, Docker runtime), prepared and asserted."""

    state: Any
    pending: Any
    steps: Any
    changed: Any
    reboots: Any
    driverLoaded: Any
    toolkit: Any

    def __init__(self, name: str, props: dict[str, Input[Any]], opts: ResourceOptions | None = None) -> None:
        super().__init__(GuestPreparationProvider(), name, {**props, **dict.fromkeys(OUTPUT_KEYS)}, opts)
