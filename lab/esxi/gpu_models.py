"""What the host-side ``nvidia-smi`` and ``esxcli`` print for the lab's GPU models.

Provenance: names, memory sizes and MIG profile rows follow the real captures in shared/reference
(mig_a100_sxm4_80gb_lgip_lgi_lcip.txt for A100 80GB rows at driver 550, mig_h100_80gb_hbm3_lgip_lgipp_lgi_lci.txt
and h100_baremetal/ for H100 rows, esxi_host_mig_enable_a100_pcie_40gb.txt for the ESXi host view). Board-level
values that no capture shows (VBIOS, part numbers, idle power) are plausible lab values, not facts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SmiModel:
    smi_name: str  # nvidia-smi "Product Name"
    architecture: str  # nvidia-smi "Product Architecture"
    fb_mib: int
    bar1_mib: int
    power_cap_w: int
    idle_power_w: int
    idle_temp_c: int
    vbios: str
    board_part: str
    subsystem_id: int  # PCI subsystem device id (vendor 0x10de)
    pcie_gen: int
    sriov: bool  # Ampere and later data-center GPUs run vGPU over SR-IOV
    mig_table: str  # key of MIG_PROFILES, "" when the GPU has no MIG


@dataclass(frozen=True)
class MigRow:
    name: str  # "MIG 1g.10gb"
    profile_id: int
    total: int
    memory_gib: str
    sm: int
    dec: int
    enc: int
    ce: int
    jpeg: int
    ofa: int
    placements: tuple[int, ...]
    size: int


SMI_MODELS: dict[str, SmiModel] = {
    "A100-80GB-PCIe": SmiModel(
        "NVIDIA A100 80GB PCIe",
        "Ampere",
        81920,
        131072,
        300,
        45,
        34,
        "92.00.68.00.01",
        "900-21001-0020-100",
        0x1533,
        4,
        True,
        "A100-80GB",
    ),
    "H100-80GB-PCIe": SmiModel(
        "NVIDIA H100 PCIe",
        "Hopper",
        81559,
        131072,
        350,
        48,
        33,
        "96.00.30.00.01",
        "900-21010-0000-000",
        0x1626,
        5,
        True,
        "H100-80GB",
    ),
    "L40S": SmiModel(
        "NVIDIA L40S",
        "Ada Lovelace",
        46068,
        65536,
        350,
        35,
        30,
        "95.02.5D.00.01",
        "900-2G133-0080-000",
        0x1851,
        4,
        True,
        "",
    ),
    "T4": SmiModel(
        "Tesla T4", "Turing", 15360, 256, 70, 16, 38, "90.04.96.00.02", "900-2G183-0000-001", 0x12A2, 3, False, ""
    ),
}

# Rows of `nvidia-smi mig -lgip` / `-lgipp` (values as in the real captures named in the module docstring).
MIG_PROFILES: dict[str, list[MigRow]] = {
    "A100-80GB": [
        MigRow("MIG 1g.10gb", 19, 7, "9.50", 14, 0, 0, 1, 0, 0, (0, 1, 2, 3, 4, 5, 6), 1),
        MigRow("MIG 1g.10gb+me", 20, 1, "9.50", 14, 1, 0, 1, 1, 1, (0, 1, 2, 3, 4, 5, 6), 1),
        MigRow("MIG 1g.20gb", 15, 4, "19.50", 14, 1, 0, 1, 0, 0, (0, 2, 4, 6), 2),
        MigRow("MIG 2g.20gb", 14, 3, "19.50", 28, 1, 0, 2, 0, 0, (0, 2, 4), 2),
        MigRow("MIG 3g.40gb", 9, 2, "39.25", 42, 2, 0, 3, 0, 0, (0, 4), 4),
        MigRow("MIG 4g.40gb", 5, 1, "39.25", 56, 2, 0, 4, 0, 0, (0,), 4),
        MigRow("MIG 7g.80gb", 0, 1, "78.75", 98, 5, 0, 7, 1, 1, (0,), 8),
    ],
    "H100-80GB": [
        MigRow("MIG 1g.10gb", 19, 7, "9.75", 16, 1, 0, 1, 1, 0, (0, 1, 2, 3, 4, 5, 6), 1),
        MigRow("MIG 1g.10gb+me", 20, 1, "9.75", 16, 1, 0, 1, 1, 1, (0, 1, 2, 3, 4, 5, 6), 1),
        MigRow("MIG 1g.20gb", 15, 4, "19.62", 26, 1, 0, 1, 1, 0, (0, 2, 4, 6), 2),
        MigRow("MIG 2g.20gb", 14, 3, "19.62", 32, 2, 0, 2, 2, 0, (0, 2, 4), 2),
        MigRow("MIG 3g.40gb", 9, 2, "39.50", 60, 3, 0, 3, 3, 0, (0, 4), 4),
        MigRow("MIG 4g.40gb", 5, 1, "39.50", 64, 4, 0, 4, 4, 0, (0,), 4),
        MigRow("MIG 7g.80gb", 0, 1, "79.25", 132, 7, 0, 8, 7, 1, (0,), 8),
    ],
}

# Architectures where enabling MIG needs a GPU reset that ESXi cannot do live: pending until the host reboots.
MIG_NEEDS_REBOOT = {"ampere"}
