"""vCenter advanced settings (``content.setting``, an OptionManager), read and written through the API.

gpufleet sets one: ``vgpu.hotmigrate.enabled``, which lets vCenter vMotion (and suspend/resume-migrate) VMs with
vGPUs, so training can run at night and interactive work by day on the same GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyVmomi import vim, vmodl

from gpufleet.errors import TaskError
from gpufleet.vsphere.tasks import fault_message

VGPU_HOTMIGRATE = "vgpu.hotmigrate.enabled"

SettingValue = bool | int | str


@dataclass(frozen=True)
class SettingChange:
    """The outcome of ``ensure_setting``: the value before (None: the key did not exist) and after."""

    key: str
    before: str | None
    after: str
    changed: bool


def normalise(value: SettingValue | None) -> str | None:
    """Setting values as text, booleans as ``true``/``false`` whatever their wire type."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip()
    return text.lower() if text.lower() in ("true", "false") else text


def _wire(value: SettingValue) -> SettingValue:
    # vCenter types its options; a boolean setting wants xsd:boolean, not the string "true".
    text = normalise(value)
    if text in ("true", "false"):
        return text == "true"
    return value


def read_setting(si: vim.ServiceInstance, key: str) -> str | None:
    """The value of vCenter advanced setting ``key`` (normalised text), or None when it is not set."""
    manager = si.RetrieveContent().setting
    try:
        options = manager.QueryOptions(name=key)
    except vim.fault.InvalidName:
        return None
    for option in options or []:
        if option.key == key:
            return normalise(option.value)
    return None


def write_setting(si: vim.ServiceInstance, key: str, value: SettingValue) -> None:
    """Set vCenter advanced setting ``key``; a refusal becomes ``TaskError`` naming the key."""
    manager = si.RetrieveContent().setting
    try:
        manager.UpdateOptions(changedValue=[vim.option.OptionValue(key=key, value=_wire(value))])
    except vmodl.MethodFault as exc:
        raise TaskError(
            f"vCenter refused advanced setting {key}={value!r}: {fault_message(exc)}", type(exc).__name__
        ) from exc


def ensure_setting(si: vim.ServiceInstance, key: str, value: SettingValue, *, dry_run: bool = False) -> SettingChange:
    """Make ``key`` equal ``value``; writes only when it differs (idempotent), nothing in a dry run."""
    before = read_setting(si, key)
    after = normalise(value)
    assert after is not None
    if before == after:
        return SettingChange(key, before, after, changed=False)
    if not dry_run:
        write_setting(si, key, value)
    return SettingChange(key, before, after, changed=True)
