"""ATS (PCIe Address Translation Services) for GPUDirect RDMA: the ESXi kernel setting ``atsSupport`` and the
ConnectX firmware setting ``ATS_ENABLED`` on every NIC the spec marks ``ats: true``. Both take effect at the
next host reboot. Hosts without such NICs are left as they are (ATS is never turned off by gpufleet)."""

from __future__ import annotations

from gpufleet.hosts.model import ATS_KERNEL_SETTING, Desired, HostFacts
from gpufleet.hosts.steps.base import Check, StepContext
from gpufleet.readers import esxcli, mlxconfig


class AtsStep:
    name = "ats"

    def check(self, desired: Desired, facts: HostFacts) -> Check:
        if not desired.ats_nics:
            return Check.ok("no NIC needs ATS")
        todo = []
        if facts.ats_kernel is None or not facts.ats_kernel.configured_on:
            todo.append(f"{ATS_KERNEL_SETTING}=TRUE")
        todo += [f"ATS_ENABLED on {pci}" for pci in desired.ats_nics if not facts.nic_ats[pci].next_boot]
        if not todo:
            return Check.ok(f"{ATS_KERNEL_SETTING} and ATS_ENABLED on {', '.join(desired.ats_nics)}")
        return Check(True, "set " + ", ".join(todo), reboot=True)

    def apply(self, ctx: StepContext, facts: HostFacts) -> str:
        done = []
        if facts.ats_kernel is None or not facts.ats_kernel.configured_on:
            esxcli.set_kernel_setting(ctx.runner, ATS_KERNEL_SETTING, "TRUE")
            done.append(f"{ATS_KERNEL_SETTING}=TRUE")
        for pci in ctx.desired.ats_nics:
            if not facts.nic_ats[pci].next_boot:
                mlxconfig.set_nic_ats(ctx.runner, pci, True)
                done.append(f"ATS_ENABLED on {pci}")
        return "set " + ", ".join(done) + " (effective at the reboot)"
