"""Every gpufleet parser over the real captures in tests/data/real (sources in its SOURCES.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from host_setup import nvidia_smi

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

READ_BY = {"mig_change_": MIG_CHANGES}


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

