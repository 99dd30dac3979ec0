"""``GuestNvidiaLicensing``: the NVIDIA License System client configuration token in one guest, FeatureType in
gridd.conf, nvidia-gridd restarted, the vGPU licensed — through the guest step of ``gpufleet.licensing.guest``
(the same one ``gpufleet license apply`` runs).

- ``check``: ``vmName`` given, ``featureType`` one of 0, 1, 2, 4, a token given.
- ``diff``: another VM is a replace; another token or FeatureType, or a guest found unlicensed, an update.
- ``create`` / ``update``: ``apply_licensing`` (idempotent: the token is compared by SHA-256 on the guest, never
  read back; it travels on the command's stdin, never on a command line).
- ``read``: whether the guest's vGPUs are licensed now and the token file is still there (``licensed``, ``status``).
- ``delete``: removes the token file this resource placed and restarts nvidia-gridd; nothing else.

The token is a secret input and a declared secret output (``additional_secret_outputs``). Inputs: ``vcenter``
(for ``lab: true``: the guest's SSH settings come from the lab), ``vmName``, ``ssh`` (the VM's SshSpec, or
None in the lab), ``featureType``, ``token``.
"""

from __future__ import annotations

from contextlib import closing
from typing import Any

from pulumi import Input, ResourceOptions
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, Resource, UpdateResult

from components.providers.base import GpufleetProvider, is_unknown
from gpufleet.catalog.licensing import FEATURE_TYPES
from gpufleet.connections import Secret
from gpufleet.licensing.guest import GuestSshRunner, LicensingError, apply_licensing, read_smi
from gpufleet.spec.models import Fleet

INPUT_KEYS = ("vcenter", "vmName", "ssh", "featureType", "token")
SECRET_OUTPUTS = ["token"]


def _fleet(props: dict[str, Any]) -> Fleet:
    vm: dict[str, Any] = {"name": props["vmName"], "template": "-"}
    if props.get("ssh"):
        vm["ssh"] = props["ssh"]
    return Fleet.model_validate({"version": "v1", "datacenter": "-", "cluster": "-", "vms": [vm]})


def _licensed(runner: GuestSshRunner) -> tuple[bool, str]:
    vgpus = [g for g in read_smi(runner).gpus if g.is_vgpu]
    licensed = bool(vgpus) and all(g.license is not None and g.license.licensed for g in vgpus)
    return licensed, "; ".join(g.license.raw if g.license else "no licence status" for g in vgpus) or "no vGPU"


class GuestNvidiaLicensingProvider(GpufleetProvider):
    """The provider of ``GuestNvidiaLicensing`` (module path fixed: stacks' state refers to it)."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = [CheckFailure(k, "required") for k in ("vcenter", "vmName", "token") if not news.get(k)]
        feature = news.get("featureType", 1)
        if not is_unknown(feature) and feature not in FEATURE_TYPES:
            valid = ", ".join(f"{k} ({v})" for k, v in FEATURE_TYPES.items())
            failures.append(
                CheckFailure("featureType", f"{feature!r} is not a gridd.conf FeatureType (valid: {valid})")
            )
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        if olds.get("vmName") != news.get("vmName"):
            return DiffResult(changes=True, replaces=["vmName"], delete_before_replace=True)
        changed = olds.get("licensed") is False or any(olds.get(k) != news.get(k) for k in INPUT_KEYS)
        return DiffResult(changes=changed, replaces=[])

    def _runner(self, props: dict[str, Any]) -> GuestSshRunner:
        conns = self.connections(props["vcenter"], _fleet(props))
        return GuestSshRunner(conns.guest(props["vmName"]))

    def _apply(self, props: dict[str, Any]) -> dict[str, Any]:
        feature = int(props.get("featureType") or 1)
        with closing(self._runner(props)) as runner:
            result = apply_licensing(runner, Secret(str(props["token"])), feature)
        return {k: props.get(k) for k in INPUT_KEYS} | {
            "licensed": True,
            "status": result.status,
            "tokenFile": result.token_file,
            "changed": result.changed,
        }

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(f"{props['vmName']}/nvidia-licensing", self._apply(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._apply(news))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        try:
            with closing(self._runner(props)) as runner:
                licensed, status = _licensed(runner)
                token_file = props.get("tokenFile")
                present = bool(token_file) and runner.run(["test", "-f", str(token_file)], timeout=60).rc == 0
        except LicensingError as exc:
            # A guest that cannot be read (powered off, no SSH) is not known to be licensed: `pulumi refresh`
            # shows it as drift with the reason, instead of failing the whole refresh; `up` licenses it again.
            return ReadResult(id_, {**props, "licensed": False, "status": f"unknown: {exc}"})
        return ReadResult(id_, {**props, "licensed": licensed and present, "status": status})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        token_file = props.get("tokenFile")
        if not token_file:
            return
        with closing(self._runner(props)) as runner:
            if runner.run(["test", "-f", str(token_file)], timeout=60).rc == 0:
                runner.run(["rm", "-f", str(token_file)], timeout=60).check(runner.name)
                runner.run(["systemctl", "restart", "nvidia-gridd"], timeout=120).check(runner.name)


class GuestNvidiaLicensing(Resource, module="vsphere", name="GuestNvidiaLicensing"):
    """The NVIDIA client configuration token in one guest (the token is a secret)."""

    licensed: Any
    status: Any
    tokenFile: Any

    def __init__(self, name: str, props: dict[str, Input[Any]], opts: ResourceOptions | None = None) -> None:
        outputs = {"licensed": None, "status": None, "tokenFile": None, "changed": None}
        secret = ResourceOptions(additional_secret_outputs=SECRET_OUTPUTS)
        super().__init__(
            GuestNvidiaLicensingProvider(), name, {**props, **outputs}, ResourceOptions.merge(opts, secret)
        )
