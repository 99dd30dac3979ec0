"""``VcenterAdvancedSetting``: one vCenter advanced setting (``content.setting``), e.g. ``vgpu.hotmigrate.enabled``.

- ``check``: ``key`` is a non-empty setting name, ``value`` a boolean, number or text.
- ``diff``: another ``key`` is a replace; another ``value``, or an ``actual`` value that drifted, an update.
- ``create``: remembers the value before (``previous``), writes, reads back; a refused write changes nothing.
- ``read``: the value vCenter has now (``actual``), so ``pulumi refresh`` sees a change made behind its back.
- ``delete``: puts ``previous`` back when there was one (vCenter cannot delete an advanced setting).

Inputs: ``vcenter`` (non-secret part of ``gpufleet:vcenter``), ``key``, ``value``.
"""

from __future__ import annotations

from typing import Any

from pulumi import Input, ResourceOptions
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, Resource, UpdateResult

from components.providers.base import GpufleetProvider, is_unknown
from gpufleet.vsphere.settings import normalise, read_setting, write_setting

INPUT_KEYS = ("vcenter", "key", "value")


class VcenterAdvancedSettingProvider(GpufleetProvider):
    """The provider of ``VcenterAdvancedSetting`` (module path fixed: stacks' state refers to it)."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        if not news.get("vcenter"):
            failures.append(CheckFailure("vcenter", "required: the vCenter connection (gpufleet:vcenter)"))
        key = news.get("key")
        if not is_unknown(key) and (not isinstance(key, str) or not key.strip() or " " in key):
            failures.append(
                CheckFailure("key", f"{key!r} is not a vCenter advanced setting name (e.g. vgpu.hotmigrate.enabled)")
            )
        value = news.get("value")
        if not is_unknown(value) and not isinstance(value, bool | int | float | str):
            failures.append(CheckFailure("value", f"must be a boolean, number or text, not {type(value).__name__}"))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        if olds.get("key") != news.get("key"):
            return DiffResult(changes=True, replaces=["key"], delete_before_replace=False)
        drifted = "actual" in olds and olds.get("actual") != normalise(news.get("value"))
        changed = drifted or any(olds.get(k) != news.get(k) for k in INPUT_KEYS)
        return DiffResult(changes=changed, replaces=[])

    def _write(self, props: dict[str, Any], previous: Any = None, first: bool = False) -> dict[str, Any]:
        key, value = props["key"], props["value"]
        with self.session(props["vcenter"]) as si:
            before = read_setting(si, key)
            if before != normalise(value):
                write_setting(si, key, value)
            actual = read_setting(si, key)
        return {k: props.get(k) for k in INPUT_KEYS} | {
            "previous": before if first else previous,
            "actual": actual,
        }

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(props["key"], self._write(props, first=True))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._write(news, previous=olds.get("previous")))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with self.session(props["vcenter"]) as si:
            actual = read_setting(si, props.get("key") or id_)
        return ReadResult(id_, {**props, "actual": actual})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        previous = props.get("previous")
        if previous is None:
            return  # the key did not exist before us; vCenter has no way to delete it
        with self.session(props["vcenter"]) as si:
            if read_setting(si, props.get("key") or id_) != previous:
                write_setting(si, props.get("key") or id_, previous)


class VcenterAdvancedSetting(Resource, module="vsphere", name="VcenterAdvancedSetting"):
    """One vCenter advanced setting, set and read through the API."""

    actual: Any
    previous: Any

    def __init__(self, name: str, props: dict[str, Input[Any]], opts: ResourceOptions | None = None) -> None:
        super().__init__(VcenterAdvancedSettingProvider(), name, {**props, "actual": None, "previous": None}, opts)
