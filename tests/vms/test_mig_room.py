"""``mig_room``: the VM preconditions ask the catalog's capacity model, the planner's, over the host's MIG GPUs."""

from __future__ import annotations

from gpufleet.catalog import get_gpu
from gpufleet.spec.models import HostSpec
from gpufleet.vms.preconditions import PciInfo, VmHostFacts, mig_room

A100 = get_gpu("A100-80GB-PCIe")
PCIS = ("0000:3b:00.0", "0000:5e:00.0")


def facts() -> VmHostFacts:
    pci = {p: PciInfo(p, 0x10DE, A100.pci_device_ids[0], A100.pci_device_name, True) for p in PCIS}
    return VmHostFacts("esxi-01", (), pci)


def test_whole_gpu_instances_fill_one_gpu_each() -> None:
    assert mig_room(facts(), ["grid_a100d-7-80c", "grid_a100d-7-80c"]) == (True, "")
    ok, why = mig_room(facts(), ["grid_a100d-7-80c", "grid_a100d-7-80c", "grid_a100d-1-10c"])
    assert not ok
    assert "no MIG room on host esxi-01" in why and "0000:3b:00.0, 0000:5e:00.0" in why


def test_the_placement_is_an_exact_search_not_first_fit() -> None:
    """3g.40gb before 4g.40gb: first-fit puts 3g at slot 0 and strands 4g; 4g@0 + 3g@4 fills each GPU."""
    four = ["grid_a100d-3-40c", "grid_a100d-4-40c", "grid_a100d-3-40c", "grid_a100d-4-40c"]
    assert mig_room(facts(), four) == (True, "")
    assert not mig_room(facts(), [*four, "grid_a100d-1-10c"])[0]


def test_gpus_the_spec_keeps_time_sliced_give_no_mig_room() -> None:
    spec = HostSpec.model_validate(
        {
            "name": "esxi-01",
            "gpus": [
                {"pci": PCIS[0], "model": A100.name, "mode": "vgpu"},
                {"pci": PCIS[1], "model": A100.name, "mode": "mig"},
            ],
        }
    )
    assert mig_room(facts(), ["grid_a100d-7-80c"], spec) == (True, "")
    assert not mig_room(facts(), ["grid_a100d-7-80c", "grid_a100d-7-80c"], spec)[0]
