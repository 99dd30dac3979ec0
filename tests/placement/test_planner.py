"""The planner on the example stacks and on small fleets built to show one behaviour each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from placement_factory import DRIVER, TEMPLATES
from plan_checker import check_plan

from gpufleet.placement.bounds import lower_bound
from gpufleet.placement.mig import fit
from gpufleet.placement.planner import pinned_fleet, plan
from gpufleet.spec.models import Fleet
from gpufleet.spec.stack import load_stack
from gpufleet.spec.validate import validate_fleet

ROOT = Path(__file__).resolve().parents[2]
MLPERF = sorted((ROOT / "stacks").glob("Pulumi.mlperf-*.yaml"))


def fleet(hosts: list[dict[str, Any]], vms: list[dict[str, Any]]) -> Fleet:
    f = Fleet.model_validate(
        {
            "version": "v1",
            "datacenter": "DC",
            "cluster": "C",
            "driver": DRIVER,
            "hosts": hosts,
            "templates": TEMPLATES,
            "vms": vms,
        }
    )
    assert validate_fleet(f) == []
    return f


def gpus(model: str, mode: str, n: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"pci": f"0000:{0x1B + 0x20 * i:02x}:00.0", "model": model, "mode": mode, **extra} for i in range(n)]


def vms(prefix: str, profile: str, n: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"name": f"{prefix}-{i}", "template": "tpl", "vgpu": [{"profile": profile}], **extra} for i in range(n)]


def checked(f: Fleet, strategy: str = "best-fit"):  # type: ignore[no-untyped-def]
    result = plan(f, strategy=strategy)  # type: ignore[arg-type]
    assert check_plan(f, result.to_json()) == []
    assert validate_fleet(pinned_fleet(f, result)) == []
    return result


def test_lab_stack_plan() -> None:
    f = load_stack(ROOT / "stacks" / "Pulumi.lab.yaml").fleet
    result = checked(f)
    assert result.feasible
    mig = result.placements["vm-mig-01"]
    assert mig.host == "esxi-01.lab" and mig.devices[0].instance == "3g.40gb"
    assert result.placements["vm-pt-01"].devices[0].gpu == "0000:5e:00.0"
    # as the stack spells it (the catalog's canonical name is grid_h100-3-40c): people find their own words
    assert result.placements["vm-rdma-01"].devices[0].profile == "nvidia_h100-3-40c"
    assert result.to_json()["hosts"][1]["gpus"][0]["assignments"][0]["profile"] == "nvidia_h100-3-40c"
    assert result.gpus_used == result.lower_bound == 4


@pytest.mark.parametrize("path", MLPERF, ids=[p.stem for p in MLPERF])
def test_mlperf_scenarios_fit_one_a100(path: Path) -> None:
    f = load_stack(path).fleet
    assert validate_fleet(f) == []
    result = checked(f)
    assert result.feasible and result.gpus_used == 1
    layout = sorted((d.instance, d.start) for p in result.placements.values() for d in p.devices)
    by_fit = fit("A100-80GB-PCIe", [vm.vgpu[0].profile for vm in f.vms])
    assert by_fit.fits and sorted((p.instance, p.start) for p in by_fit.placements) == layout


def test_eight_mlperf_scenarios_exist() -> None:
    assert len(MLPERF) == 8


def test_inference_fleet_seed() -> None:
    f = load_stack(ROOT / "stacks" / "Pulumi.inference-fleet.yaml").fleet
    assert len(f.hosts) == 50 and sum(len(h.gpus) for h in f.hosts) == 180
    result = checked(f)
    assert result.feasible
    assert result.gpus_used <= lower_bound(f) + 1


def test_pins_are_honoured() -> None:
    f = fleet(
        [{"name": "a", "gpus": gpus("L40S", "vgpu", 2)}, {"name": "b", "gpus": gpus("L40S", "vgpu", 2)}],
        [
            {
                "name": "pinned",
                "template": "tpl",
                "host": "b",
                "vgpu": [{"profile": "nvidia_l40s-24c", "gpu": "0000:3b:00.0"}],
            },
            {"name": "host-only", "template": "tpl", "host": "b", "vgpu": [{"profile": "nvidia_l40s-24c"}]},
            *vms("free", "nvidia_l40s-24c", 2),
        ],
    )
    result = checked(f)
    assert result.placements["pinned"].host == "b" and result.placements["pinned"].devices[0].gpu == "0000:3b:00.0"
    assert result.placements["host-only"].host == "b"
    assert result.gpus_used == 2  # 4 x 24C, two per GPU


def test_exact_search_beats_first_fit_on_one_gpu() -> None:
    """3g.40gb asked first, then 4g.40gb: powered on in that order the driver would block the 4g (first-fit);
    the planner finds 4g@0 + 3g@4."""
    f = fleet(
        [{"name": "a", "gpus": gpus("A100-80GB-PCIe", "mig", 1)}],
        vms("small", "grid_a100d-3-40c", 1) + vms("big", "grid_a100d-4-40c", 1),
    )
    assert checked(f).feasible
    baseline = checked(f, "first-fit")
    assert [u.vm for u in baseline.unplaced] == ["big-0"]


def test_mig_pairs_fill_gpus() -> None:
    f = fleet(
        [{"name": "a", "gpus": gpus("A100-80GB-PCIe", "mig", 4)}],
        vms("a", "grid_a100d-4-40c", 2)
        + vms("b", "grid_a100d-3-40c", 2)
        + vms("c", "grid_a100d-2-20c", 3)
        + vms("d", "grid_a100d-1-20c", 1),
    )
    result = checked(f)
    assert result.feasible and result.gpus_used == 3 == result.lower_bound


def test_time_sliced_runs_share_gpus_by_profile() -> None:
    f = fleet(
        [{"name": "a", "gpus": gpus("L40S", "vgpu", 4)}],
        vms("a", "nvidia_l40s-24c", 3) + vms("b", "nvidia_l40s-12c", 5),
    )
    result = checked(f)
    assert result.gpus_used == 4 == result.lower_bound


def test_mixed_size_gpu_takes_the_tails() -> None:
    f = fleet(
        [
            {
                "name": "a",
                "gpus": gpus("L40S", "vgpu", 2)
                + [{"pci": "0000:d8:00.0", "model": "L40S", "mode": "vgpu", "mixedSize": True}],
            }
        ],
        vms("a", "nvidia_l40s-24c", 3) + vms("b", "nvidia_l40s-12c", 5),
    )
    result = checked(f)
    assert result.feasible and result.gpus_used == 3  # 24C x2 | 12C x4 | 24C + 12C mixed


def test_nvlink_training_vms_get_linked_pairs() -> None:
    h100 = gpus("H100-80GB-SXM", "vgpu", 4)
    h100[0]["nvlinkPeers"] = [h100[1]["pci"]]
    h100[2]["nvlinkPeers"] = [h100[3]["pci"]]
    train = [
        {
            "name": f"train-{i}",
            "template": "tpl-p2p",
            "vgpu": [{"profile": "grid_h100xm-80c"}, {"profile": "grid_h100xm-80c"}],
        }
        for i in range(3)
    ]
    f = fleet([{"name": "hgx", "gpus": h100}], train)
    result = checked(f)
    pairs = sorted(tuple(d.gpu for d in result.placements[n].devices) for n in ("train-0", "train-1"))
    assert pairs == [(h100[0]["pci"], h100[1]["pci"]), (h100[2]["pci"], h100[3]["pci"])]
    assert [u.vm for u in result.unplaced] == ["train-2"]


def test_infeasible_vms_are_named_with_the_reason() -> None:
    f = fleet([{"name": "a", "gpus": gpus("A100-80GB-PCIe", "mig", 2)}], vms("big", "grid_a100d-4-40c", 3))
    result = checked(f)
    assert [u.vm for u in result.unplaced] == ["big-2"]
    assert "full" in result.unplaced[0].reason and "grid_a100d-4-40c" in result.unplaced[0].reason
    assert result.to_json()["unplaced"][0]["path"] == "vms[2]"


def test_passthrough_devices() -> None:
    f = fleet(
        [
            {
                "name": "a",
                "gpus": gpus("L40S", "passthrough", 1)
                + [{"pci": "0000:d8:00.0", "model": "L40S", "mode": "dynamic-passthrough"}],
            }
        ],
        [
            {"name": "fixed", "template": "tpl", "host": "a", "passthrough": [{"gpu": "0000:1b:00.0"}]},
            {"name": "dyn", "template": "tpl", "passthrough": [{"model": "L40S"}]},
            {"name": "dyn2", "template": "tpl", "passthrough": [{"model": "L40S"}]},
        ],
    )
    result = checked(f)
    assert result.placements["fixed"].devices[0].gpu == "0000:1b:00.0"
    assert result.placements["dyn"].devices[0].gpu == "0000:d8:00.0"
    assert [u.vm for u in result.unplaced] == ["dyn2"]


def _fleets_module():  # type: ignore[no-untyped-def]
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_fleets", ROOT / "benchmarks" / "fleets.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_example_stacks_are_up_to_date(tmp_path: Path) -> None:
    for path in _fleets_module().write_stacks(tmp_path):
        committed = ROOT / "stacks" / path.name
        assert committed.read_text() == path.read_text(), f"{committed.name}: run benchmarks/fleets.py --write-stacks"


def test_benchmark_fleet_is_packed_within_one_gpu_of_the_bound() -> None:
    """Quality, not speed (the timing lives in benchmarks/plan_bench.py)."""
    f = Fleet.model_validate(_fleets_module().benchmark_fleet())
    result = checked(f)
    assert result.feasible
    assert result.lower_bound <= result.gpus_used <= result.lower_bound + 1
    baseline = plan(f, strategy="first-fit")
    assert baseline.unplaced or baseline.gpus_used >= result.gpus_used
