"""Read a host's facts in one read-only pass: what the checks of every step look at."""

from __future__ import annotations

from host_setup import esxcli, mlxconfig, nvidia_smi
from host_setup.model import ATS_KERNEL_SETTING, Desired, HostFacts
from host_setup.ssh import Runner
from host_setup.vcenter import HostApi


def gather(desired: Desired, runner: Runner, api: HostApi, *, bundle: bool = True) -> HostFacts:
    """Everything the steps check, read over SSH and from vCenter; changes nothing. ``bundle=False`` skips
    looking for the driver bundle on the datastore (asked only when an install is coming)."""
    state = api.state(desired.name)
    installed = esxcli.nvidia_driver(runner, desired.driver.kind) if desired.driver else None
    smi = nvidia_smi.query(runner)
    graphics = esxcli.graphics_host(runner)
    ats_kernel = esxcli.kernel_setting(runner, ATS_KERNEL_SETTING) if desired.ats_nics else None
    nic_ats = {pci: mlxconfig.nic_ats(runner, pci) for pci in desired.ats_nics}
    bundle_on_host = None
    if bundle and desired.driver and installed != desired.driver.version:
        bundle_on_host = runner.remote_size(desired.driver.bundle) is not None
    return HostFacts(
        in_maintenance=state.in_maintenance,
        marked=bool(state.in_maintenance and api.marker(desired.name)),
        connection_state=state.connection_state,
        driver_installed=installed,
        smi=smi,
        graphics=graphics,
        ats_kernel=ats_kernel,
        nic_ats=nic_ats,
        bundle_on_host=bundle_on_host,
    )
