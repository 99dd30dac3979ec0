"""Legacy: ``HostDriver``, ``HostGraphics``, ``HostMigMode``, ``HostAts`` (one provider class,
``HostStepProvider(step)``), the per-step host resources of stacks deployed before ``HostPreparation``.

``pulumi up`` no longer creates them: a host is one ``HostPreparation`` (components/providers/host_prepare.py), so
it gets one maintenance window and one reboot for all its steps. The classes stay, at this module path, because a
stack's state refers to them: on the first ``pulumi up`` after the upgrade the engine deletes them (a no-op: the
host stays prepared) and creates each host's ``HostPreparation``, which finds nothing left to do. Until then
``read`` reports the step's own check and ``create`` / ``update`` run the whole host through ``HostPreparation``'s
run, never a per-step choreography of their own.
"""

from __future__ import annotations

from typing import Any

from pulumi import Input, ResourceOptions
from pulumi.dynamic import CheckResult, CreateResult, DiffResult, ReadResult, Resource, UpdateResult

from components.providers.host_prepare import HostPreparationProvider, check_host_inputs, diff_host_inputs
from gpufleet.hosts.steps import STEPS

INPUT_KEYS = ("vcenter", "cluster", "host", "rollout")
STEP_NAMES = tuple(step.name for step in STEPS)  # driver, graphics, mig, ats


class HostStepProvider(HostPreparationProvider):
    """The provider of the legacy HostDriver / HostGraphics / HostMigMode / HostAts (module path fixed)."""

    def __init__(self, step: str) -> None:
        super().__init__()
        if step not in STEP_NAMES:
            raise ValueError(f"unknown host step {step!r} (valid: {', '.join(STEP_NAMES)})")
        self.step = step

    def _outputs(self, props: dict[str, Any], observed: dict[str, Any]) -> dict[str, Any]:
        mine = observed["steps"][self.step]
        return {k: props.get(k) for k in INPUT_KEYS} | {
            "inSync": mine["inSync"],
            "detail": mine["detail"],
            "lastActions": observed.get("lastRun", []),
        }

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return check_host_inputs(news)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return diff_host_inputs(olds, news, INPUT_KEYS)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(f"{props['host']['name']}/{self.step}", self._outputs(props, self.prepare(props)))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._outputs(news, self.prepare(news)))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, {**props, **self._outputs(props, self.observe(props))})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """The host stays prepared."""


class _HostStep(Resource):
    inSync: Any
    detail: Any
    lastActions: Any
    STEP = ""

    def __init__(self, name: str, props: dict[str, Input[Any]], opts: ResourceOptions | None = None) -> None:
        outputs = {"inSync": None, "detail": None, "lastActions": None}
        super().__init__(HostStepProvider(self.STEP), name, {**props, **outputs}, opts)


class HostDriver(_HostStep, module="vsphere", name="HostDriver"):
    """Legacy: the NVIDIA vGPU host driver step."""

    STEP = "driver"


class HostGraphics(_HostStep, module="vsphere", name="HostGraphics"):
    """Legacy: the default graphics type step."""

    STEP = "graphics"


class HostMigMode(_HostStep, module="vsphere", name="HostMigMode"):
    """Legacy: the MIG mode step."""

    STEP = "mig"


class HostAts(_HostStep, module="vsphere", name="HostAts"):
    """Legacy: the ATS step."""

    STEP = "ats"
