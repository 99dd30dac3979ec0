"""Reboot a host and wait for it: SSH back and vCenter showing it connected, within the reboot timeout.

Whether a reboot is due is read from the host, never from what an install printed (``reboot_reasons``):
a driver in the boot bank that is not the one running, a MIG mode pending, ``atsSupport`` configured but not
in effect, a ConnectX ``ATS_ENABLED`` set for the next boot. One reboot serves all of them. After it, the same
reasons are read again: anything still pending fails the host instead of rebooting again (no reboot loop).

A reboot is proven, not assumed: the host's uptime afterwards must be shorter than the time since the reboot
was asked (or, where uptime cannot be read, the SSH port must have been seen going down).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gpufleet.errors import ConnectError
from gpufleet.hosts.model import Desired, HostFacts, SshHostFacts
from gpufleet.hosts.steps.base import StepContext, StepFailed
from gpufleet.readers import esxcli
from gpufleet.remote.ssh import ConnectionLost

_UPTIME_SLACK = 5.0


def reboot_reasons(desired: Desired, facts: SshHostFacts) -> list[str]:
    """Changes made but not in effect until the host boots again (what the host shows over SSH says it)."""
    reasons: list[str] = []
    driver = desired.driver
    if driver and facts.driver_installed and esxcli.compare_versions(facts.driver_installed, driver.version) == 0:
        running = facts.smi.driver_version if facts.smi else None
        if running is None:
            reasons.append(f"driver {facts.driver_installed} installed, not loaded")
        elif esxcli.compare_versions(running, driver.version) != 0:
            reasons.append(f"driver {facts.driver_installed} installed, {running} running")
    for gpu in facts.smi.gpus if facts.smi else ():
        if gpu.mig_change_pending:
            reasons.append(f"MIG {gpu.mig_pending.lower()} pending on {gpu.pci}")
    if facts.ats_kernel and facts.ats_kernel.configured_on != facts.ats_kernel.runtime_on:
        reasons.append(f"atsSupport {facts.ats_kernel.configured} configured, {facts.ats_kernel.runtime} running")
    for pci, nic in sorted(facts.nic_ats.items()):
        if nic.current != nic.next_boot:
            reasons.append(f"ATS_ENABLED={nic.next_boot} on {pci} at next boot")
    return reasons


def reboot_and_wait(ctx: StepContext, reasons: list[str], read: Callable[[], HostFacts]) -> tuple[str, HostFacts]:
    """Reboot, wait for SSH and vCenter, then read the facts (``read``) and prove the reboot happened.
    StepFailed when the host is not back within the timeout or did not reboot."""
    runner, name = ctx.runner, ctx.desired.name
    timeout = float(ctx.policy.reboot_timeout_seconds)
    started = time.monotonic()
    ctx.note("rebooting: " + "; ".join(reasons))
    try:
        result = runner.run(["reboot"], timeout=30)
        if result.rc != 0:
            raise StepFailed(f"`reboot` exited {result.rc}: {result.output.strip()[-500:]}")
    except ConnectionLost:
        pass  # the host dropped us while going down: expected
    went_down = runner.wait_until_down(timeout=min(timeout, 60.0))
    left = timeout - (time.monotonic() - started)
    try:
        # A refused connect costs nothing: poll often, so the window does not outlast the reboot by a poll interval.
        runner.reconnect(timeout=max(1.0, left), poll=0.05)
    except ConnectError as exc:
        raise StepFailed(
            f"not back after the reboot within {timeout:.0f} s (rollout.rebootTimeoutSeconds): {exc}"
        ) from exc
    left = timeout - (time.monotonic() - started)
    try:
        ctx.api.wait_connected(name, timeout=max(1.0, left))
    except Exception as exc:  # noqa: BLE001 - any failure to see it connected is the same verdict
        raise StepFailed(f"SSH is back but vCenter does not show the host connected: {exc}") from exc
    facts = read()
    elapsed = time.monotonic() - started
    if facts.uptime is not None and facts.uptime > elapsed + _UPTIME_SLACK:
        raise StepFailed(f"the host did not reboot: up {facts.uptime:.0f} s, reboot asked {elapsed:.0f} s ago")
    if facts.uptime is None and not went_down:
        raise StepFailed("cannot prove the host rebooted: SSH never went down and uptime is unreadable")
    return f"rebooted in {elapsed:.1f} s ({'; '.join(reasons)})", facts
