"""The guest-side readers against real captures (tests/data/guest, lab/guest/data: copies of shared/reference)."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import pytest

from gpufleet.readers import guest_smi
from gpufleet.readers.nvidia_smi import SmiParseError

DATA = Path(__file__).resolve().parents[1] / "data" / "guest"


def _lab_data(name: str) -> str:
    return resources.files("lab.guest").joinpath("data", name).read_text()


@pytest.mark.parametrize(
    ("text", "state", "detail", "expiry"),
    [
        ("Licensed (Expiry: 2022-5-27 0:8:28 GMT)", "Licensed", None, datetime(2022, 5, 27, 0, 8, 28, tzinfo=UTC)),
        ("Licensed (Expiry: 2026-7-7 16:1:44 GMT)", "Licensed", None, datetime(2026, 7, 7, 16, 1, 44, tzinfo=UTC)),
        ("Unlicensed (Unrestricted)", "Unlicensed", "Unrestricted", None),
        ("Unlicensed (Restricted)", "Unlicensed", "Restricted", None),
        ("N/A (Expiry: N/A)", "N/A", None, None),
        ("Licensed", "Licensed", None, None),
    ],
)
def test_every_real_licence_status_form_parses(
    text: str, state: str, detail: str | None, expiry: datetime | None
) -> None:
    status = guest_smi.parse_license_status(text)
    assert (status.state, status.detail, status.expiry) == (state, detail, expiry)
    assert status.licensed == (state == "Licensed")


@pytest.mark.parametrize("text", ["", "Licenced", "Licensed (Expiry: tomorrow)", "OK"])
def test_unknown_licence_status_is_an_error_naming_it(text: str) -> None:
    with pytest.raises(SmiParseError, match="licen"):
        guest_smi.parse_license_status(text)


def test_licence_block_of_real_text_output_before_and_after_licensing() -> None:
    before = guest_smi.parse_license_block((DATA / "grid_a100_4c_q_unlicensed.txt").read_text())
    after = guest_smi.parse_license_block((DATA / "grid_a100_4c_q_licensed.txt").read_text())
    assert [(p, s.raw) for p, s in before] == [("NVIDIA Virtual Compute Server", "Unlicensed (Unrestricted)")]
    assert [(p, s.licensed) for p, s in after] == [("NVIDIA Virtual Compute Server", True)]


def test_real_vgpu_guest_xml() -> None:
    report = guest_smi.parse_guest_xml((DATA / "l40s_2q_guest_q_x.xml").read_text())
    assert report.driver_version == "580.105.08"
    (gpu,) = report.gpus
    assert gpu.pci == "0000:00:07.0"
    assert gpu.product_name == "NVIDIA L40S-2Q" and gpu.vgpu_type == "L40S-2Q"
    assert gpu.licensed_product == "NVIDIA RTX Virtual Workstation"
    assert (
        gpu.license is not None
        and gpu.license.licensed
        and gpu.license.expiry == datetime(2026, 7, 7, 16, 1, 44, tzinfo=UTC)
    )
    assert gpu.framebuffer_mib == 2048


def test_real_passthrough_h100_xml() -> None:
    report = guest_smi.parse_guest_xml(_lab_data("h100_q_x.xml"))
    assert (report.driver_version, report.cuda_version) == ("580.159.04", "13.0")
    (gpu,) = report.gpus
    assert (gpu.product_name, gpu.architecture, gpu.virtualization_mode) == (
        "NVIDIA H100 80GB HBM3",
        "Hopper",
        "Pass-Through",
    )
    assert gpu.device_id == 0x2330 and not gpu.is_vgpu
    assert gpu.license is None and gpu.licensed_product is None
    assert gpu.mig_current == "Disabled" and gpu.mig_devices == 0


def test_broken_xml_is_an_error_quoting_the_output() -> None:
    with pytest.raises(SmiParseError, match="not well formed"):
        guest_smi.parse_guest_xml("<nvidia_smi_log><gpu>")


def test_list_with_mig_devices() -> None:
    text = (
        "GPU 0: GRID A100D-3-40C (UUID: GPU-5fc1e15a-4dac-50c2-adf2-46f66a0e6c25)\n"
        "  MIG 3g.40gb      Device  0: (UUID: MIG-5fc1e15a-4dac-50c2-adf2-46f66a0e6c25)\n"
        "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-10e66e4a-f3df-e289-b538-9bac36c1c24c)\n"
    )
    gpus = guest_smi.parse_list(text)
    assert [(g.index, g.name, g.mig_devices) for g in gpus] == [
        (0, "GRID A100D-3-40C", ("3g.40gb",)),
        (1, "NVIDIA H100 80GB HBM3", ()),
    ]


def test_real_topology_of_one_gpu_has_no_pairs() -> None:
    text = _lab_data("h100_topo_m.txt").split("\n", 1)[1]
    assert guest_smi.parse_topology(text) == {}


def test_topology_of_two_nvlinked_gpus() -> None:
    text = "\t\x1b[4mGPU0\tGPU1\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\x1b[0m\nGPU0\t X \tNV12\t0-7\t0\t\tN/A\nGPU1\tNV12\t X \t0-7\t0\t\tN/A\n"
    assert guest_smi.parse_topology(text) == {(0, 1): "NV12", (1, 0): "NV12"}


def test_driver_version_file_of_the_real_h100() -> None:
    text = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  (nixbld@)  \nGCC version:  gcc version 15.3.0 (GCC) \n"
    assert guest_smi.parse_driver_version_file(text) == "580.159.04"
    assert guest_smi.driver_branch("580.159.04") == "580"


def test_rdma_and_container_readers() -> None:
    ibv = "    device          \t   node GUID\n    ------          \t----------------\n    vmw_pvrdma0     \t005056fffe00a1b2\n"
    assert guest_smi.parse_ibv_devices(ibv) == {"vmw_pvrdma0": "005056fffe00a1b2"}
    (link,) = guest_smi.parse_rdma_links("link mlx5_0/1 state ACTIVE physical_state LINK_UP netdev ens1f0np0 \n")
    assert (link.device, link.port, link.state, link.netdev) == ("mlx5_0", 1, "ACTIVE", "ens1f0np0")
    assert guest_smi.parse_docker_runtimes(
        '{"nvidia": {"path": "nvidia-container-runtime"}, "runc": {"path": "runc"}}'
    ) == {"nvidia", "runc"}
    assert guest_smi.parse_ctk_version("NVIDIA Container Toolkit CLI version 1.16.2\ncommit: a5a5833\n") == "1.16.2"
    assert guest_smi.parse_lsmod(
        "Module                  Size  Used by\nnvidia_uvm  1  0\nnvidia  5  2 nvidia_uvm\n"
    ) == {"nvidia", "nvidia_uvm"}
