"""Read what each ESXi host shows over SSH, many hosts at once with a bound on parallel connections.

Per host, with gpufleet.remote's runner (host keys verified) and its typed readers: the NVIDIA host driver (component
or VIB list), ATS (kernel setting ``atsSupport`` and the ConnectX ``ATS_ENABLED``, running values), ``nvidia-smi -q
-x`` (driver loaded, GPUs, MIG mode current and pending), ``nvidia-smi mig -lgi`` (the GPU instances: placements on
the memory slices) and why the host waits for a reboot. Read-only: nothing is changed.

A host that cannot be reached (refused host key, login, timeout) is returned as ``Unreachable`` with the reason;
the others are still read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from gpufleet.audit.state import GpuSshState, HostSshState, Unreachable
from gpufleet.connections import SshSettings
from gpufleet.errors import GpufleetError
from gpufleet.hosts.facts import gather_ssh
from gpufleet.hosts.model import Desired
from gpufleet.hosts.steps.reboot import reboot_reasons
from gpufleet.readers import esxcli, nvidia_smi
from gpufleet.readers.nvidia_smi import GpuInstance
from gpufleet.remote.ssh import Runner, SshRunner

DEFAULT_PARALLEL = 8


@dataclass(frozen=True)
class HostTarget:
    """One host to read: its SSH settings and what host preparation wants of it (``gpufleet.hosts.model.Desired``:
    which driver package kind to list, which NICs carry ATS)."""

    name: str
    ssh: SshSettings
    desired: Desired


def read_host(runner: Runner, target: HostTarget) -> HostSshState:
    """Everything the audit compares, read from one host (read-only commands). Pending reboots are judged by
    host preparation's own rule (``reboot_reasons``: a driver in the boot bank not running, a MIG mode pending,
    ATS configured but not in effect), so the audit and ``hosts prepare`` agree."""
    desired = target.desired
    kind = desired.driver.kind if desired.driver else "component"
    facts = gather_ssh(desired, runner, bundle=False, driver_kind=kind)  # the host's own facts, as prepare reads them
    installed, smi, nic_ats = facts.driver_installed, facts.smi, facts.nic_ats
    ats_kernel = facts.ats_kernel
    reasons = reboot_reasons(desired, facts)
    running = smi.driver_version if smi else None
    if (
        installed
        and running
        and esxcli.compare_versions(installed, running)
        and not any("driver" in r for r in reasons)
    ):
        # Another driver than the spec's was installed behind gpufleet's back: it too waits for a reboot.
        reasons.append(f"driver {installed} installed, {running} running")
    gpus: list[GpuSshState] = []
    if smi is not None:
        instances: dict[int, list[GpuInstance]] = {}
        if any(g.mig_current == "Enabled" for g in smi.gpus):
            instances = nvidia_smi.gpu_instances(runner)
        for index, g in enumerate(smi.gpus):
            gpus.append(
                GpuSshState(
                    pci=g.pci,
                    name=g.name,
                    mig_current=None if g.mig_current in ("", "N/A") else g.mig_current == "Enabled",
                    mig_pending=None if g.mig_pending in ("", "N/A") else g.mig_pending == "Enabled",
                    instances=tuple(instances.get(index, ())),
                )
            )
    ats = None
    if desired.ats_nics:
        ats = bool(ats_kernel and ats_kernel.runtime_on) and all(n.current for n in nic_ats.values())
    return HostSshState(
        name=target.name,
        driver_version=installed,
        driver_package=kind,
        reboot_pending=bool(reasons),
        reboot_reasons=tuple(reasons),
        ats_enabled=ats,
        nvidia_smi_ok=smi is not None,
        gpus=tuple(gpus),
    )


def _read_one(target: HostTarget, runner_factory: Callable[[SshSettings], Runner]) -> HostSshState | Unreachable:
    runner = runner_factory(target.ssh)
    try:
        return read_host(runner, target)
    except GpufleetError as exc:  # ConnectError, HostKeyError, CommandFailed, parse errors: name it, go on
        return Unreachable(target=target.name, reason=str(exc), kind="host")
    finally:
        runner.close()


def _ssh_runner(settings: SshSettings) -> Runner:
    # Few retries: an audit reports an unreachable host rather than waiting long for it.
    return SshRunner(settings, connect_timeout=10.0, command_timeout=120.0, connect_attempts=2, backoff_max=1.0)


def read_hosts(
    targets: Mapping[str, HostTarget],
    parallel: int = DEFAULT_PARALLEL,
    runner_factory: Callable[[SshSettings], Runner] = _ssh_runner,
) -> tuple[dict[str, HostSshState], list[Unreachable]]:
    """Read every host, at most ``parallel`` at a time. Returns the states read and the hosts not reached."""
    if parallel < 1:
        raise ValueError("parallel must be at least 1")
    states: dict[str, HostSshState] = {}
    unreachable: list[Unreachable] = []
    if not targets:
        return states, unreachable
    with ThreadPoolExecutor(max_workers=min(parallel, len(targets)), thread_name_prefix="audit-ssh") as pool:
        for outcome in pool.map(lambda t: _read_one(t, runner_factory), targets.values()):
            if isinstance(outcome, Unreachable):
                unreachable.append(outcome)
            else:
                states[outcome.name] = outcome
    return states, unreachable
