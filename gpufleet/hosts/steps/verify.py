"""The last word on a host: nvidia-smi answers with the wanted driver, every step's check passes, nothing is
left pending a reboot."""

from __future__ import annotations

from gpufleet.hosts.model import Desired, HostFacts
from gpufleet.hosts.steps.base import Check
from gpufleet.hosts.steps.reboot import reboot_reasons
from gpufleet.readers import esxcli


def verify_problems(desired: Desired, facts: HostFacts, checks: dict[str, Check]) -> list[str]:
    """Empty when the host is as wanted; else one line per problem."""
    problems = [
        f"{name}: {c.refused or 'still needs: ' + c.detail}" for name, c in checks.items() if c.needed or c.refused
    ]
    problems += [f"pending a reboot: {r}" for r in reboot_reasons(desired, facts)]
    if desired.driver:
        if facts.smi is None:
            problems.append("nvidia-smi does not answer (the NVIDIA driver is not loaded)")
        elif esxcli.compare_versions(facts.smi.driver_version, desired.driver.version) != 0:
            problems.append(f"nvidia-smi runs driver {facts.smi.driver_version}, not {desired.driver.version}")
    return problems


def verify_summary(desired: Desired, facts: HostFacts) -> str:
    parts = []
    if facts.smi is not None:
        parts.append(f"nvidia-smi answers: driver {facts.smi.driver_version}, {len(facts.smi.gpus)} GPU(s)")
    mig_on = sorted(p for p, on in desired.mig.items() if on)
    if mig_on:
        parts.append(f"MIG enabled on {', '.join(mig_on)}")
    if desired.ats_nics:
        parts.append("ATS on")
    parts.append(f"graphics {facts.graphics.default_type}")
    return "; ".join(parts)
