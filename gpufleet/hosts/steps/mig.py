"""MIG mode per GPU: on for GPUs the spec runs as MIG-backed vGPU, off for the others (``derive.host_mig_modes``).

On ESXi only the mode is set; vSphere creates the GPU instances when a MIG-backed vGPU VM powers on. Ampere
boards keep the change pending until the host reboots; Hopper applies it at once. Setting it needs the NVIDIA
driver loaded (nvidia-smi answers): on a host whose driver is installed in this run, the step is deferred to
after the reboot.
"""

from __future__ import annotations

from gpufleet.hosts.model import Desired, HostFacts
from gpufleet.hosts.steps.base import Check, Difference, HostView, StepContext, StepFailed
from gpufleet.readers import nvidia_smi
from gpufleet.spec import derive


def _word(on: bool | None) -> str:
    return "enabled" if on else "disabled"


def compare_mig(want: HostView, have: HostView) -> list[Difference]:
    """Per GPU: the MIG mode in effect against the wanted one (a pending change that brings it as wanted is noted
    and left to the reboot), and a pending change that would take it away from the wanted one."""
    out: list[Difference] = []
    for pci, wanted in sorted(want.gpus.items()):
        seen = have.gpus.get(pci)
        if wanted.mig is None or seen is None or seen.mig is None:
            continue  # no MIG on this board, or not listed / not read (the caller says why, where it matters)
        path, w = f"gpus/{pci}", wanted.mig
        if seen.mig != w:
            pending = seen.mig_next == w
            out.append(
                Difference(
                    f"{path}/migMode",
                    _word(w),
                    _word(seen.mig) + (f" (pending {_word(seen.mig_next)})" if pending else ""),
                    f"{pci} MIG mode is {_word(seen.mig)}, the spec wants {_word(w)}",
                    "gpu.mig_mode",
                    pending=pending,
                    hint=" (reboots the host to apply the pending mode)" if pending else "",
                )
            )
        elif seen.mig_next is not None and seen.mig_next != seen.mig:
            out.append(
                Difference(
                    f"{path}/migModePending",
                    _word(w),
                    _word(seen.mig_next),
                    f"{pci} MIG mode will change to {_word(seen.mig_next)} at the next reboot",
                    "gpu.mig_pending",
                    warning=True,
                )
            )
    return out


def mig_changes(desired: Desired, facts: HostFacts) -> tuple[dict[str, bool], list[str]]:
    """(GPUs whose MIG mode must be set -> wanted mode, problems that no MIG change can fix)."""
    problems: list[str] = []
    smi = facts.smi
    for pci, want in sorted(desired.mig.items()):
        gpu = smi.gpu(pci) if smi else None
        if gpu is None:
            if want and smi is not None:
                problems.append(f"GPU {pci} is not visible to nvidia-smi")
        elif gpu.mig_current == "N/A" and want:
            problems.append(f"GPU {pci} ({gpu.name}) does not support MIG")
    differences = compare_mig(HostView.wanted(desired), HostView.of_facts(desired, facts))
    changes = {d.path.split("/")[1]: desired.mig[d.path.split("/")[1]] for d in differences if not d.pending}
    return changes, problems


class MigStep:
    name = "mig"

    def compare(self, want: HostView, have: HostView) -> list[Difference]:
        return compare_mig(want, have)

    def check(self, desired: Desired, facts: HostFacts) -> Check:
        wanted_on = sorted(p for p, on in desired.mig.items() if on)
        if facts.smi is None:
            if wanted_on:
                return Check(True, f"enable on {', '.join(wanted_on)} once the driver is loaded", deferred=True)
            return Check.ok("no MIG wanted")
        changes, problems = mig_changes(desired, facts)
        if problems:
            return Check(False, "; ".join(problems), refused="; ".join(problems))
        if not changes:
            return Check.ok(f"enabled on {', '.join(wanted_on)}" if wanted_on else "disabled on every GPU")
        reboot = any(on and derive.mig_reboot_required(desired.gpu_models.get(pci, "")) for pci, on in changes.items())
        detail = ", ".join(f"{'enable' if on else 'disable'} on {pci}" for pci, on in changes.items())
        return Check(True, detail, reboot=reboot)

    def apply(self, ctx: StepContext, facts: HostFacts) -> str:
        changes, problems = mig_changes(ctx.desired, facts)
        if problems:
            raise StepFailed("; ".join(problems))
        done = []
        for pci, on in changes.items():
            result = nvidia_smi.set_mig(ctx.runner, pci, on)
            done.append(f"{'enabled' if on else 'disabled'} on {pci}{' (pending reboot)' if result.pending else ''}")
        return ", ".join(done)
