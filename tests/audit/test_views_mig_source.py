"""The actual MIG slice map is read from the host's ``nvidia-smi mig -lgi`` when it reports GPU instances, and only
projected from the VMs' vGPUs when it reports none (VMs off), with the label saying which."""

from __future__ import annotations

from dataclasses import replace

from audit_fixtures import in_sync_ssh, in_sync_vcenter, lab_desired, replace_ssh, replace_vm, result_for

from gpufleet.audit.report_html import render_html
from gpufleet.audit.state import GpuInstance
from gpufleet.audit.views import HOST_SOURCE, host_views

HOST, PCI = "esxi-01.lab", "0000:3b:00.0"


def _map(result):
    view = next(v for v in host_views(result) if v.name == HOST)
    return next(g for g in view.gpus if g.pci == PCI).actual_map


def test_map_is_read_from_the_host_when_it_reports_instances():
    desired = lab_desired()
    ssh = in_sync_ssh(desired)
    # The host reports a GI where the projection would not put it: the map must show the host's, not the projection.
    odd = tuple(replace(g, instances=(GpuInstance("1g.10gb", 6, 1, 9),)) if g.pci == PCI else g for g in ssh[HOST].gpus)
    result = result_for(desired, in_sync_vcenter(desired), replace_ssh(ssh, HOST, gpus=odd))
    m = _map(result)
    assert m.source == HOST_SOURCE and "read from the host" in m.source
    used = [(b.start, b.size, b.label, b.owner) for b in m.blocks if not b.free]
    assert used == [(6, 1, "1g.10gb", "GI 9")]
    assert HOST_SOURCE in render_html(result)


def test_map_is_projected_only_when_the_host_reports_none():
    desired = lab_desired()
    vc = in_sync_vcenter(desired)
    for name, vm in vc.vms.items():
        if vm.host == HOST and not vm.template:
            vc = replace_vm(vc, name, devices={"power_state": "poweredOff"})
    m = _map(result_for(desired, vc, in_sync_ssh(desired, with_instances=False)))
    assert m.source.startswith("projected from the VMs' vGPUs") and "VMs off" in m.source
    assert any(not b.free for b in m.blocks)
