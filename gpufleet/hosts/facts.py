"""Read a host's facts in one read-only pass: what the checks of every step look at.

All the host-side reads go in one SSH round trip (``Runner.run_many``); vCenter gives maintenance mode, the
connection state and gpufleet's maintenance note.
"""

from __future__ import annotations

from gpufleet.hosts.model import ATS_KERNEL_SETTING, Desired, HostFacts
from gpufleet.hosts.vcenter import HostApi
from gpufleet.readers import esxcli, mlxconfig, nvidia_smi
from gpufleet.remote.ssh import Runner


def gather(desired: Desired, runner: Runner, api: HostApi, *, bundle: bool = True) -> HostFacts:
    """Everything the steps check, read over SSH and from vCenter; changes nothing. ``bundle=False`` skips
    looking for the driver bundle on the datastore."""
    state = api.state(desired.name)
    reads: dict[str, list[str]] = {}
    if desired.driver:
        reads["driver"] = esxcli.driver_list_argv(desired.driver.kind)
        if bundle:
            reads["bundle"] = ["test", "-f", desired.driver.bundle]
    reads["smi"] = nvidia_smi.QUERY_ARGV
    reads["graphics"] = esxcli.GRAPHICS_GET
    if desired.ats_nics:
        reads["ats"] = esxcli.kernel_setting_argv(ATS_KERNEL_SETTING)
        for pci in desired.ats_nics:
            reads[f"nic {pci}"] = mlxconfig.query_argv(pci)
    reads["uptime"] = esxcli.UPTIME_ARGV
    results = dict(zip(reads, runner.run_many(list(reads.values())), strict=True))
    host = runner.name

    def value(key: str) -> object:
        return esxcli.value_of(results[key], host)

    driver = desired.driver
    return HostFacts(
        in_maintenance=state.in_maintenance,
        marked=bool(state.in_maintenance and api.marker(desired.name)),
        connection_state=state.connection_state,
        cluster=state.cluster,
        driver_installed=esxcli.nvidia_driver_from(value("driver"), driver.kind) if driver else None,
        smi=nvidia_smi.report_from(results["smi"]),
        graphics=esxcli.graphics_from(value("graphics")),
        ats_kernel=esxcli.kernel_setting_from(value("ats"), ATS_KERNEL_SETTING) if desired.ats_nics else None,
        nic_ats={pci: mlxconfig.nic_ats_from(results[f"nic {pci}"], host) for pci in desired.ats_nics},
        bundle_on_host=results["bundle"].ok if "bundle" in results else None,
        uptime=esxcli.uptime_from(results["uptime"]),
    )
