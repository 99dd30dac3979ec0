"""ATS (PCIe Address Translation Services) for GPUDirect RDMA: the ESXi kernel setting ``atsSupport`` and the
ConnectX firmware setting ``ATS_ENABLED`` on every NIC the spec marks ``ats: true``. Both take effect at the
next host reboot. Hosts without such NICs are left as they are (ATS is never turned off by gpufleet)."""

from __future__ import annotations

from gpufleet.hosts.model import ATS_KERNEL_SETTING, Desired, HostFacts
from gpufleet.hosts.steps.base import Check, Difference, HostView, StepContext
from gpufleet.readers import esxcli, mlxconfig


class AtsStep:
    name = "ats"

    def compare(self, want: HostView, have: HostView) -> list[Difference]:
        # ATS is only ever turned on: a host whose spec asks for none is left as it is.
        if not want.ats or have.ats is None:
            return []
        if have.ats is False:
            on_next = have.ats_next is True
            return [
                Difference(
                    "ats", "enabled", "disabled", "has ATS off: GPUDirect RDMA needs it", "host.ats", pending=on_next
                )
            ]
        if have.ats_next is False:
            return [
                Difference(
                    "atsPending",
                    "enabled",
                    "disabled",
                    "turns ATS off at the next reboot",
                    "host.ats_pending",
                    warning=True,
                )
            ]
        return []

    def check(self, desired: Desired, facts: HostFacts) -> Check:
        if not desired.ats_nics:
            return Check.ok("no NIC needs ATS")
        differences = self.compare(HostView.wanted(desired), HostView.of_facts(desired, facts))
        if not any(not d.pending for d in differences):
            return Check.ok(f"{ATS_KERNEL_SETTING} and ATS_ENABLED on {', '.join(desired.ats_nics)}")
        return Check(True, "set " + _describe(*_todo(desired, facts)), reboot=True)

    def apply(self, ctx: StepContext, facts: HostFacts) -> str:
        kernel, nics = _todo(ctx.desired, facts)
        if kernel:
            esxcli.set_kernel_setting(ctx.runner, ATS_KERNEL_SETTING, "TRUE")
        for pci in nics:
            mlxconfig.set_nic_ats(ctx.runner, pci, True)
        return "set " + _describe(kernel, nics) + " (effective at the reboot)"


def _todo(desired: Desired, facts: HostFacts) -> tuple[bool, list[str]]:
    """What the next boot still lacks of ATS: (the kernel setting, the NICs whose ATS_ENABLED to set)."""
    kernel = facts.ats_kernel is None or not facts.ats_kernel.configured_on
    return kernel, [pci for pci in desired.ats_nics if not facts.nic_ats[pci].next_boot]


def _describe(kernel: bool, nics: list[str]) -> str:
    return ", ".join(([f"{ATS_KERNEL_SETTING}=TRUE"] if kernel else []) + [f"ATS_ENABLED on {pci}" for pci in nics])
