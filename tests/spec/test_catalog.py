"""The GPU catalog: models by name and alias, profiles by either prefix, MIG geometry as the driver reports it,
MMIO sizes, PCI device ids, internal consistency of the data files, and the lab's view of it."""

from __future__ import annotations

from importlib import resources

import pytest

from gpufleet.catalog import (
    CatalogError,
    all_gpus,
    find_profile,
    get_gpu,
    gpu_by_pci_device_id,
    lookup_profile,
    mmio_gb,
    model_names,
    profile_key,
)
from lab.gpu_catalog import LAB_GPU_MODELS, vsphere_profiles_for

ISSUE_MODELS = ["T4", "A10", "A16", "A30", "A40", "A100-40GB", "A100-80GB", "L4", "L40S", "H100-80GB", "H100-94GB NVL"]


def test_the_catalog_has_the_fourteen_boards() -> None:
    assert model_names() == (
        "T4",
        "A10",
        "A16",
        "A30",
        "A40",
        "A100-40GB-PCIe",
        "A100-40GB-SXM",
        "A100-80GB-PCIe",
        "A100-80GB-SXM",
        "L4",
        "L40S",
        "H100-80GB-PCIe",
        "H100-80GB-SXM",
        "H100-94GB-NVL",
    )


@pytest.mark.parametrize("name", ISSUE_MODELS + ["a100-80gb-pcie", "h100-80gb-pcie", "l40s", "t4", "A100 80GB SXM4"])
def test_model_names_as_written_in_the_issue_and_by_the_lab(name: str) -> None:
    assert get_gpu(name).name in model_names()


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("A100-80GB", "A100-80GB-PCIe"),
        ("a100-80gb-sxm4", "A100-80GB-SXM"),
        ("H100-80GB", "H100-80GB-PCIe"),
        ("h100-sxm5-80gb", "H100-80GB-SXM"),
        ("H100 NVL", "H100-94GB-NVL"),
        ("A100-40GB", "A100-40GB-PCIe"),
    ],
)
def test_aliases(alias: str, canonical: str) -> None:
    assert get_gpu(alias).name == canonical


def test_unknown_model_lists_the_valid_names() -> None:
    with pytest.raises(CatalogError) as err:
        get_gpu("B200")
    assert "A100-80GB-PCIe" in err.value.valid
    assert "B200" in str(err.value)


@pytest.mark.parametrize("spelling", ["grid_a100d-3-40c", "nvidia_a100d-3-40c", "A100D-3-40C", "GRID_A100D-3-40C"])
def test_profiles_accept_both_prefixes(spelling: str) -> None:
    profile = find_profile("A100-80GB-PCIe", spelling)
    assert profile is not None
    assert profile.vsphere_name == "grid_a100d-3-40c"
    assert profile.mig_instance == "3g.40gb" and profile.max_per_gpu == 2 and profile.framebuffer_mb == 40960


@pytest.mark.parametrize("spelling", ["grid_a100d-3-40c", "nvidia_a100d-3-40c", "A100D-3-40C", " GRID_A100D-3-40C"])
def test_every_spelling_of_a_profile_has_one_key(spelling: str) -> None:
    assert profile_key(spelling) == "a100d-3-40c"
    assert lookup_profile(spelling) == lookup_profile("a100d-3-40c") is not None


def test_profile_of_another_board_is_not_found() -> None:
    assert find_profile("A100-80GB-PCIe", "nvidia_l40s-24c") is None
    found = lookup_profile("nvidia_l40s-24c")
    assert found is not None and found[0].name == "L40S"


# The driver's geometry (DESIGN "Facts to respect"): name -> (start slots, size, max per GPU)
A100_80_GEOMETRY = {
    "1g.10gb": ((0, 1, 2, 3, 4, 5, 6), 1, 7),
    "1g.10gb+me": ((0, 1, 2, 3, 4, 5, 6), 1, 1),
    "1g.20gb": ((0, 2, 4, 6), 2, 4),
    "2g.20gb": ((0, 2, 4), 2, 3),
    "3g.40gb": ((0, 4), 4, 2),
    "4g.40gb": ((0,), 4, 1),
    "7g.80gb": ((0,), 8, 1),
}


@pytest.mark.parametrize("model", ["A100-80GB-PCIe", "A100-80GB-SXM", "H100-80GB-PCIe", "H100-80GB-SXM"])
@pytest.mark.parametrize("instance", sorted(A100_80_GEOMETRY))
def test_mig_geometry_of_80gb_boards(model: str, instance: str) -> None:
    starts, size, maximum = A100_80_GEOMETRY[instance]
    profile = get_gpu(model).mig_profile(instance)
    assert profile is not None
    assert (profile.starts, profile.size, profile.max_instances) == (starts, size, maximum)


def test_a30_and_nvl_geometry() -> None:
    a30 = get_gpu("A30")
    assert a30.memory_slices == 4 and a30.compute_slices == 4
    assert a30.placements("2g.12gb") == (0, 2)
    nvl = get_gpu("H100-94GB-NVL")
    assert nvl.memory_slices == 8 and nvl.placements("3g.47gb") == (0, 4)
    assert get_gpu("L40S").mig_profiles == () and not get_gpu("T4").mig_capable


@pytest.mark.parametrize("gpu", all_gpus(), ids=lambda g: g.name)
def test_every_mig_backed_profile_maps_to_a_gpu_instance_with_the_same_maximum(gpu) -> None:  # type: ignore[no-untyped-def]
    for profile in gpu.mig_backed_profiles:
        instance = gpu.mig_profile(profile.mig_instance or "")
        assert instance is not None, f"{profile.vgpu_type}: no GPU instance {profile.mig_instance} on {gpu.name}"
        assert instance.max_instances == profile.max_per_gpu, profile.vgpu_type
        assert instance.compute_slices == profile.gpu_slices, profile.vgpu_type


@pytest.mark.parametrize("gpu", all_gpus(), ids=lambda g: g.name)
def test_every_profile_name_belongs_to_its_board(gpu) -> None:  # type: ignore[no-untyped-def]
    for profile in gpu.profiles:
        assert profile.vgpu_type.lower().startswith(gpu.vgpu_prefix.lower() + "-")
        assert all(n.startswith(("grid_", "nvidia_")) for n in profile.vsphere_names)
        found = lookup_profile(profile.vsphere_name)
        assert found is not None and found[0].name == gpu.name


def test_pci_device_ids_are_unique_and_found() -> None:
    seen: dict[int, str] = {}
    for gpu in all_gpus():
        for device_id in gpu.pci_device_ids:
            assert device_id not in seen, f"{hex(device_id)} on {gpu.name} and {seen[device_id]}"
            seen[device_id] = gpu.name
    assert gpu_by_pci_device_id(0x20B5).name == "A100-80GB-PCIe"  # type: ignore[union-attr]
    assert gpu_by_pci_device_id("0x2331").name == "H100-80GB-PCIe"  # type: ignore[union-attr]
    assert gpu_by_pci_device_id("26b9").name == "L40S"  # type: ignore[union-attr]
    assert gpu_by_pci_device_id(0x1234) is None and gpu_by_pci_device_id("zz") is None


@pytest.mark.parametrize(
    ("model", "gb"),
    [
        ("H100-80GB-SXM", 256),
        ("H100-94GB-NVL", 256),
        ("A100-80GB-PCIe", 256),
        ("A100-40GB-SXM", 128),
        ("A40", 128),
        ("L40S", 128),
        ("L4", 64),
        ("A30", 64),
        ("A10", 64),
        ("T4", 0),
    ],
)
def test_mmio_per_gpu(model: str, gb: int) -> None:
    assert mmio_gb(model) == gb


def test_mig_reboot_on_ampere_only() -> None:
    assert get_gpu("A100-80GB-PCIe").mig_reboot_required
    assert not get_gpu("H100-80GB-PCIe").mig_reboot_required
    assert not get_gpu("L40S").mig_reboot_required


def test_every_data_file_cites_its_source() -> None:
    folder = resources.files("gpufleet.catalog").joinpath("data")
    for entry in folder.iterdir():
        if entry.name.endswith(".csv"):
            first = entry.read_text(encoding="utf-8").splitlines()[0]
            assert first.startswith("#") and ("Source" in first or "Provenance" in first), entry.name


def test_lab_models_come_from_the_catalog() -> None:
    assert set(LAB_GPU_MODELS) == {"A100-80GB-PCIe", "H100-80GB-PCIe", "L40S", "T4"}
    a100 = LAB_GPU_MODELS["A100-80GB-PCIe"]
    assert (a100.device_id, a100.architecture, a100.mig_capable) == (0x20B5, "ampere", True)
    assert LAB_GPU_MODELS["T4"].device_name == "TU104GL [Tesla T4]"
    assert "grid_a100d-3-40c" in vsphere_profiles_for("A100-80GB-PCIe")
    assert vsphere_profiles_for("L40S")[0] == "nvidia_l40s-48c"
