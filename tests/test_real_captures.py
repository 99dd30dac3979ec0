"""Every gpufleet parser over the real captures in tests/data/real (sources in its SOURCES.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpufleet import catalog
from gpufleet.licensing.guest import _status
from gpufleet.readers import guest_smi, nvidia_smi

REAL = Path(__file__).resolve().parent / "data" / "real"

# What each capture says, read off the capture by eye: (pending, refused GPU, refusal reason).
MIG_CHANGES = {
    "mig_change_refused_rtx_a5000.txt": (None, "00000000:18:00.0", "Not Supported"),
    "mig_change_refused_rtx_pro_6000_blackwell.txt": (None, "00000000:21:00.0", "Not Supported"),
    "mig_change_enabled_a100_sxm4_40gb.txt": (False, None, None),
    "mig_change_disabled_a100_sxm4_40gb.txt": (False, None, None),
    "mig_change_enabled_h100_80gb_hbm3.txt": (False, None, None),
    "mig_change_pending_esxi_a100_pcie_40gb.txt": (True, None, None),
}

# (licensed product, licence state, expiry as printed or None)
LICENSE_BLOCKS = {
    "license_q_grid_licensed_product_aws_g4.txt": ("GRID vGaming", "Licensed", None),
    "license_q_vgpu_software_vcs_expiry.txt": ("NVIDIA Virtual Compute Server", "Licensed", "2025-03-19 07:29:04"),
    "license_q_vgpu_software_vws_bare.txt": ("NVIDIA RTX Virtual Workstation", "Licensed", None),
    "license_q_vgpu_software_grep_license.txt": ("", "Licensed", "2025-11-19 06:36:54"),
}

# The catalog model of the GPU each -lgi capture was taken on, and the (profile, GI id, start:size) rows read off it.
LGI = {
    "lgi_esxi_a100_pcie_40gb.txt": (
        "A100-40GB-PCIe",
        [("1g.5gb", 11, "0:1"), ("1g.5gb", 12, "1:1"), ("2g.10gb", 6, "2:2"), ("3g.20gb", 1, "4:4")],
    ),
    "lgi_a100_sxm4_80gb.txt": ("A100-80GB-SXM", [("3g.40gb", 1, "4:4"), ("4g.40gb", 2, "0:4")]),
    "lgi_a100_sxm4_40gb_r450.txt": ("A100-40GB-SXM", [("3g.20gb", 1, "4:4"), ("3g.20gb", 2, "0:4")]),
    "lgi_a30_24gb.txt": ("A30", [("1g.6gb", 3, "0:1"), ("1g.6gb", 4, "1:1"), ("2g.12gb", 2, "2:2")]),
    "lgi_h100_80gb_hbm3.txt": ("H100-80GB-SXM", [("1g.10gb", gi, f"{gi - 7}:1") for gi in range(7, 14)]),
}

READ_BY = {"mig_change_": MIG_CHANGES, "license_q_": LICENSE_BLOCKS, "lgi_": LGI}


def _text(name: str) -> str:
    return (REAL / name).read_text()


def test_every_capture_is_read_by_a_test_and_named_in_sources() -> None:
    sources = _text("SOURCES.md")
    captures = sorted(p.name for p in REAL.iterdir() if p.name != "SOURCES.md")
    assert captures
    for name in captures:
        table = next((t for prefix, t in READ_BY.items() if name.startswith(prefix)), None)
        assert table is not None and name in table, f"{name}: no test reads it"
        assert name in sources, f"{name}: not in SOURCES.md"


@pytest.mark.parametrize("name", sorted(MIG_CHANGES))
def test_mig_change_outputs(name: str) -> None:
    pending, refused_gpu, reason = MIG_CHANGES[name]
    text = _text(name)
    if refused_gpu is None:
        assert nvidia_smi.parse_mig_change(text).pending is pending
        return
    assert "All done." in text  # what the parser used to take for success
    with pytest.raises(nvidia_smi.MigRefused) as refused:
        nvidia_smi.parse_mig_change(text)
    assert f"GPU {refused_gpu}: {reason}" in str(refused.value)


@pytest.mark.parametrize("name", sorted(LICENSE_BLOCKS))
def test_licence_blocks_under_every_header(name: str) -> None:
    product, state, expiry = LICENSE_BLOCKS[name]
    [(got_product, status)] = guest_smi.parse_license_block(_text(name))
    assert (got_product, status.state, status.licensed) == (product, state, state == "Licensed")
    assert (status.expiry.strftime("%Y-%m-%d %H:%M:%S") if status.expiry else None) == expiry


def test_an_older_drivers_xml_licence_element_reads_licensed() -> None:
    """Derived, not a real capture (none found, see SOURCES.md): the real L40S-2Q guest XML with its licence element
    under the older name, which is what "GRID Licensed Product" is in ``-q -x``. A licensed guest must not look
    unlicensed to licensing's status check."""
    real = (REAL.parent / "guest" / "l40s_2q_guest_q_x.xml").read_text()
    assert "<vgpu_software_licensed_product>" in real
    # The capture was trimmed by its source; every vGPU guest's XML has the virtualization mode.
    real = real.replace(
        "</product_name>",
        "</product_name><gpu_virtualization_mode><virtualization_mode>VGPU</virtualization_mode></gpu_virtualization_mode>",
        1,
    )
    older = real.replace("vgpu_software_licensed_product>", "grid_licensed_product>")
    for text in (real, older):
        report = guest_smi.parse_guest_xml(text)
        [gpu] = report.gpus
        assert gpu.license is not None and gpu.license.licensed
        assert gpu.licensed_product == "NVIDIA RTX Virtual Workstation"
        licensed, status, products = _status(report)
        assert licensed and status.startswith("Licensed (Expiry: 2026-7-7") and products == (gpu.licensed_product,)


@pytest.mark.parametrize("name", sorted(LGI))
def test_lgi_keeps_the_gpu_instance_profile_id(name: str) -> None:
    model, rows = LGI[name]
    text = _text(name)
    [instances] = nvidia_smi.parse_lgi(text).values()
    assert [(i.profile, i.gi_id, f"{i.start}:{i.size}") for i in instances] == rows
    # The profile ID column as printed, row by row, and as the catalog knows each profile on that GPU.
    printed = [int(line.split()[4]) for line in text.splitlines() if " MIG " in line]
    ids = {p.name: p.profile_id for p in catalog.get_gpu(model).mig_profiles}
    assert [i.profile_id for i in instances] == printed == [ids[i.profile] for i in instances]
