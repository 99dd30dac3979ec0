"""``BundleStaging``: the NVIDIA driver bundle put on one host's datastore and proven (size, SHA-256 against the
local file, esxcli ``--dry-run``) — ``gpufleet.hosts.stage``, the pre-staging of ``gpufleet hosts prepare``.

``components.fleet`` makes every ``HostPreparation`` of a cluster wait for the ``BundleStaging`` of every host of
that cluster, so under ``pulumi up`` too no host enters maintenance before every bundle of its cluster is staged
(they run in parallel: staging changes nothing on the host), and a bad bundle fails its host untouched.

- ``create`` / ``update``: nothing to stage when the host already runs the wanted driver; else ``stage_bundle``.
- ``diff``: only the host's name (a replace) and its driver (an update) matter; other host settings do not.
- ``read``: what was staged (a bundle removed from the datastore after the install is no drift).
- ``delete``: the bundle stays on the datastore (a later host reinstall may want it).
"""

from __future__ import annotations

from typing import Any

from pulumi import Input, ResourceOptions
from pulumi.dynamic import CheckResult, CreateResult, DiffResult, ReadResult, Resource, UpdateResult

from components.providers.host_prepare import HostPreparationProvider, check_host_inputs
from gpufleet.hosts.facts import gather
from gpufleet.hosts.stage import stage_bundle
from gpufleet.hosts.steps.driver import DriverStep

INPUT_KEYS = ("vcenter", "cluster", "host", "rollout")


class BundleStagingProvider(HostPreparationProvider):
    """The provider of ``BundleStaging`` (module path fixed: stacks' state refers to it)."""

    def stage(self, props: dict[str, Any]) -> dict[str, Any]:
        with self._context(props) as ctx:
            facts = gather(ctx.desired, ctx.runner, ctx.api, bundle=False)
            check = DriverStep().check(ctx.desired, facts)
            detail = stage_bundle(ctx) if check.needed and not check.refused else f"not needed: {check.detail}"
        return {k: props.get(k) for k in INPUT_KEYS} | {"staged": detail}

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return check_host_inputs(news)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        old, new = olds.get("host") or {}, news.get("host") or {}
        if old.get("name") != new.get("name"):
            return DiffResult(changes=True, replaces=["host"], delete_before_replace=False)
        return DiffResult(changes=old.get("driver") != new.get("driver"), replaces=[])

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(props["host"]["name"], self.stage(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self.stage(news))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, props)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """The bundle stays on the datastore."""


class BundleStaging(Resource, module="vsphere", name="BundleStaging"):
    """The driver bundle staged and proven on one host's datastore, before any host of its cluster is prepared."""

    staged: Any

    def __init__(self, name: str, props: dict[str, Input[Any]], opts: ResourceOptions | None = None) -> None:
        super().__init__(BundleStagingProvider(), name, {**props, "staged": None}, opts)
