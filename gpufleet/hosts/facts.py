"""Read a host's facts in one read-only pass: what the checks of every step look at.

All the host-side reads go in one SSH round trip (``Runner.run_many``); vCenter gives maintenance mode, the
connection state and gpufleet's maintenance note.
"""

from __future__ import annotations

from dataclasses import fields

from gpufleet.hosts.model import ATS_KERNEL_SETTING, Desired, HostFacts, SshHostFacts, VcenterHostFacts
from gpufleet.hosts.vcenter import HostApi
from gpufleet.readers import esxcli, mlxconfig, nvidia_smi
from gpufleet.remote.ssh import Runner


def gather_ssh(
    desired: Desired, runner: Runner, *, bundle: bool = True, driver_kind: str | None = None
) -> SshHostFacts:
    """Everything a host shows over SSH that the steps compare, in one round trip; changes nothing.
    ``bundle=False`` skips looking for the driver bundle on the datastore; ``driver_kind`` lists that driver
    package kind when the spec names no driver (the audit reports what is installed all the same)."""
    kind = desired.driver.kind if desired.driver else driver_kind
    reads: dict[str, list[str]] = {}
    if kind:
        reads["driver"] = esxcli.driver_list_argv(kind)
    if desired.driver and bundle:
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

    return SshHostFacts(
        driver_installed=esxcli.nvidia_driver_from(value("driver"), kind) if kind else None,
        smi=nvidia_smi.report_from(results["smi"]),
        graphics=esxcli.graphics_from(value("graphics")),
        ats_kernel=esxcli.kernel_setting_from(value("ats"), ATS_KERNEL_SETTING) if desired.ats_nics else None,
        nic_ats={pci: mlxconfig.nic_ats_from(results[f"nic {pci}"], host) for pci in desired.ats_nics},
        bundle_on_host=results["bundle"].ok if "bundle" in results else None,
        uptime=esxcli.uptime_from(results["uptime"]),
    )


def gather_vcenter(name: str, api: HostApi) -> VcenterHostFacts:
    """What vCenter says of host ``name``: maintenance mode, gpufleet's maintenance marker, connection, cluster."""
    state = api.state(name)
    return VcenterHostFacts(
        in_maintenance=state.in_maintenance,
        marked=bool(state.in_maintenance and api.marker(name)),
        connection_state=state.connection_state,
        cluster=state.cluster,
    )


def gather(desired: Desired, runner: Runner, api: HostApi, *, bundle: bool = True) -> HostFacts:
    """Everything the steps check, read from vCenter and over SSH; changes nothing. ``bundle=False`` skips
    looking for the driver bundle on the datastore."""
    vcenter = gather_vcenter(desired.name, api)
    ssh = gather_ssh(desired, runner, bundle=bundle)
    return HostFacts(**{f.name: getattr(ssh, f.name) for f in fields(ssh)}, vcenter=vcenter)
