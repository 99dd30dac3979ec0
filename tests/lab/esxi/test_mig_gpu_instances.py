"""``nvidia-smi mig -lgi`` on a simulated ESXi host lists one GPU instance per MIG-backed vGPU of the host's running
VMs, placed as the driver places them, in the real table format (reference/mig_a100_sxm4_80gb_lgip_lgi_lcip.txt)."""

from __future__ import annotations

import pytest
from simhost import SimLab, reference

from gpufleet.catalog import get_gpu
from gpufleet.readers.nvidia_smi import GpuInstance, parse_lgi

A100, H100, L40S = "esxi-01.lab", "esxi-02.lab", "esxi-03.lab"


def _gi(profile: str, start: int, size: int, gi_id: int) -> GpuInstance:
    """The instance as -lgi prints it, with the GPU instance profile ID the catalog gives that profile on an A100-80GB."""
    ids = {p.name: p.profile_id for p in get_gpu("A100-80GB-PCIe").mig_profiles}
    return GpuInstance(profile, start, size, gi_id, profile_id=ids[profile])


@pytest.fixture
def sim(tmp_path):
    lab = SimLab(tmp_path / "lab")
    for host in (A100, H100, L40S):
        assert lab.install_driver(host).code == 0
        lab.boot(host)
    return lab


def _running(monkeypatch, vgpus: list[tuple[str, str]]) -> None:
    import lab.esxi.mig_instances as mi

    monkeypatch.setattr(mi, "_running_vgpus", lambda ctx: list(vgpus))


def _real_lgi() -> list[str]:
    real = reference("mig_a100_sxm4_80gb_lgip_lgi_lcip.txt").splitlines()
    start = real.index("# nvidia-smi mig -lgi") + 1
    return real[start : start + 9]


def test_a100_instances_equal_the_real_capture(sim, monkeypatch):
    # The capture created 3g.40gb then 4g.40gb: GI 1 at 4:4, GI 2 at 0:4. Two VMs powering on in that order do the same.
    assert sim.run(A100, "nvidia-smi -i 0 -mig 1").code == 0
    sim.boot(A100)  # Ampere: MIG mode takes effect at the reboot
    _running(monkeypatch, [("vm-a", "grid_a100d-3-40c"), ("vm-b", "grid_a100d-4-40c")])
    res = sim.run(A100, "nvidia-smi mig -lgi")
    assert res.code == 0
    assert res.out.splitlines() == _real_lgi()


def test_vgpus_fill_the_mig_gpus_in_pci_order_and_parse_back(sim, monkeypatch):
    assert sim.run(A100, "nvidia-smi -mig 1").code == 0
    sim.boot(A100)
    _running(
        monkeypatch,
        [
            ("vm-a", "grid_a100d-3-40c"),
            ("vm-b", "grid_a100d-4-40c"),
            ("vm-c", "grid_a100d-7-80c"),
            ("vm-t", "grid_a100d-20c"),
        ],
    )
    out = sim.run(A100, "nvidia-smi mig -lgi").out
    assert parse_lgi(out) == {
        0: [_gi("3g.40gb", 4, 4, 1), _gi("4g.40gb", 0, 4, 2)],
        1: [_gi("7g.80gb", 0, 8, 1)],  # no room left on GPU 0; the time-sliced 20c makes no instance
    }
    only_1 = sim.run(A100, "nvidia-smi mig -i 1 -lgi").out
    assert parse_lgi(only_1) == {1: [_gi("7g.80gb", 0, 8, 1)]}


def test_hopper_instances_are_placed_as_gpufleet_placement_places_them(sim, monkeypatch):
    from gpufleet.placement import mig

    assert sim.run(H100, "nvidia-smi -i 0 -mig 1").code == 0  # Hopper: immediate
    profiles = ["grid_h100-1-10c", "grid_h100-1-10c", "grid_h100-2-20c"]
    _running(monkeypatch, [(f"vm-{k}", p) for k, p in enumerate(profiles)])
    got = parse_lgi(sim.run(H100, "nvidia-smi mig -lgi").out)
    want = mig.fit("H100-80GB-PCIe", profiles).placements  # the audit's projection uses the same placement
    assert [(i.profile, i.start, i.size, i.gi_id) for i in got[0]] == [
        (p.instance, p.start, p.size, k) for k, p in enumerate(want, start=1)
    ]
    slices = [s for i in got[0] for s in range(i.start, i.start + i.size)]
    assert len(slices) == len(set(slices)) == 4  # no overlap
    assert 1 not in got  # GPU 1 is not in MIG mode


def test_no_instances_without_mig_mode_or_running_vms(sim, monkeypatch):
    _running(monkeypatch, [("vm-a", "grid_a100d-3-40c")])
    res = sim.run(A100, "nvidia-smi mig -lgi")  # MIG mode off: vSphere would not start a MIG-backed vGPU
    assert (res.code, res.err) == (6, "No GPU instances found: Not Found\n")
    assert sim.run(A100, "nvidia-smi -mig 1").code == 0
    sim.boot(A100)
    _running(monkeypatch, [])
    assert sim.run(A100, "nvidia-smi mig -lgi").err == "No GPU instances found: Not Found\n"
    assert sim.run(L40S, "nvidia-smi mig -lgi").err == "No MIG-supported devices found.\n"


def test_only_running_vms_of_this_host_count(sim, monkeypatch):
    import lab.esxi.vcface as vcface

    vms = [
        {"name": "on-here", "host": A100, "powerState": "poweredOn", "template": False, "vgpus": ["grid_a100d-3-40c"]},
        {
            "name": "off-here",
            "host": A100,
            "powerState": "poweredOff",
            "template": False,
            "vgpus": ["grid_a100d-4-40c"],
        },
        {"name": "on-there", "host": H100, "powerState": "poweredOn", "template": False, "vgpus": ["grid_a100d-4-40c"]},
    ]

    class FakeVcenter:
        def __init__(self, paths):
            pass

        def vms(self):
            return vms

        def close(self):
            pass

    monkeypatch.setattr(vcface, "VcenterClient", FakeVcenter)
    assert sim.run(A100, "nvidia-smi -i 0 -mig 1").code == 0
    sim.boot(A100)
    got = parse_lgi(sim.run(A100, "nvidia-smi mig -lgi").out)
    assert {k: [(i.profile, i.size, i.gi_id) for i in v] for k, v in got.items()} == {0: [("3g.40gb", 4, 1)]}
