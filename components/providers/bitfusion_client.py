"""``BitfusionClientConfig``: the Bitfusion client configuration of one GPU pool client (servers list, CA, client
token) through ``gpufleet.checks.bitfusion.configure_client``, the same code path as ``gpufleet guests prepare``.

- ``check``: ``vmName``, ``pool``, ``servers`` (the server VMs' SSH addresses), ``ca`` and ``clientToken`` given.
- ``diff``: another VM is a replace; changed inputs (the secrets included: they are Pulumi secrets in the state), or
  a last known state other than ``configured`` (drift found by ``refresh``), an update.
- ``create`` / ``update``: the files placed (secrets 0600, fed on stdin); a rerun changes nothing.
- ``read``: the dry run: ``configured``, or ``changes-pending`` with the files that differ.
- ``delete``: leaves the files (a client without them just stops reaching the pool: nothing to roll back to).
Inputs: ``vcenter`` (``lab: true``: SSH settings from the lab), ``vmName``, ``ssh`` (the VM's SshSpec or None),
``pool``, ``servers``, ``ca``, ``clientToken`` (secrets).
"""

from __future__ import annotations

from contextlib import closing
from typing import Any

from pulumi import Input, ResourceOptions
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, Resource, UpdateResult

from components.providers.base import GpufleetProvider
from gpufleet.checks.bitfusion import ClientConfigResult, client_files, configure_client
from gpufleet.connections import Secret
from gpufleet.errors import GpufleetError
from gpufleet.licensing.guest import GuestSshRunner
from gpufleet.spec.models import Fleet, GpuPool

INPUT_KEYS = ("vcenter", "vmName", "ssh", "pool", "servers", "ca", "clientToken")
SECRET_KEYS = ("ca", "clientToken")


def _fleet(props: dict[str, Any]) -> Fleet:
    vm: dict[str, Any] = {"name": props["vmName"], "template": "-"}
    if props.get("ssh"):
        vm["ssh"] = props["ssh"]
    return Fleet.model_validate({"version": "v1", "datacenter": "-", "cluster": "-", "vms": [vm]})


class BitfusionClientConfigProvider(GpufleetProvider):
    """The provider of ``BitfusionClientConfig`` (module path fixed: stacks' state refers to it)."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = [
            CheckFailure(k, "required") for k in ("vcenter", "vmName", "pool", "ca", "clientToken") if not news.get(k)
        ]
        if not news.get("servers"):
            failures.append(CheckFailure("servers", "required: the addresses of the pool's servers"))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        if olds.get("vmName") != news.get("vmName"):
            return DiffResult(changes=True, replaces=["vmName"])
        changed = olds.get("state") != "configured" or any(olds.get(k) != news.get(k) for k in INPUT_KEYS)
        return DiffResult(changes=changed, replaces=[])

    def _run(self, props: dict[str, Any], dry_run: bool) -> ClientConfigResult:
        files = client_files(list(props["servers"]), Secret(str(props["ca"])), Secret(str(props["clientToken"])))
        pool = GpuPool.model_construct(name=str(props["pool"]))
        conns = self.connections(props["vcenter"], _fleet(props))
        with closing(GuestSshRunner(conns.guest(props["vmName"]))) as runner:
            return configure_client(runner, pool, files, dry_run=dry_run)

    def _apply(self, props: dict[str, Any]) -> dict[str, Any]:
        result = self._run(props, dry_run=False)
        return {k: props.get(k) for k in INPUT_KEYS} | {
            "state": "configured",
            "changed": result.changed,
            "files": [{"path": p, "state": s} for p, s in result.files],
        }

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(f"{props['vmName']}/bitfusion", self._apply(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._apply(news))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        try:
            result = self._run(props, dry_run=True)
        except GpufleetError as exc:
            return ReadResult(id_, {**props, "state": f"unknown: {exc}"})
        return ReadResult(id_, {**props, "state": "changes-pending" if result.pending else "configured"})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """The files stay: see the module docstring."""


class BitfusionClientConfig(Resource, module="vsphere", name="BitfusionClientConfig"):
    """The Bitfusion client configuration (servers, CA, token) of one GPU pool client."""

    state: Any
    changed: Any
    files: Any

    def __init__(self, name: str, props: dict[str, Input[Any]], opts: ResourceOptions | None = None) -> None:
        opts = ResourceOptions.merge(opts, ResourceOptions(additional_secret_outputs=list(SECRET_KEYS)))
        super().__init__(
            BitfusionClientConfigProvider(), name, {**props, "state": None, "changed": None, "files": None}, opts
        )
