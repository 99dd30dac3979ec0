"""The NVIDIA vGPU software product a guest licenses, as nvidia-smi and nvidia-gridd name it.

Provenance: shared/reference/guest_nvidia_smi_xml_and_license_strings.txt ("NVIDIA Virtual Compute Server" for
C-series, "NVIDIA RTX Virtual Workstation" for Q-series) and gridd_conf_and_client_token_facts.txt (gridd.conf
FeatureType 2 and 4); the B and A series names are NVIDIA's vGPU product names for those series.
"""

from __future__ import annotations

# gridd.conf FeatureType -> the product it requests (1: chosen from the vGPU type's series).
FEATURE_PRODUCTS: dict[int, str] = {2: "NVIDIA RTX Virtual Workstation", 4: "NVIDIA Virtual Compute Server"}
# Every gridd.conf FeatureType NVIDIA documents (the spec, the checks and the guest licensing provider use this).
FEATURE_TYPES: dict[int, str] = {0: "unlicensed", 1: "NVIDIA vGPU (auto)", **FEATURE_PRODUCTS}
# vGPU profile series -> the product a FeatureType=1 guest licenses.
SERIES_PRODUCTS: dict[str, str] = {
    "C": "NVIDIA Virtual Compute Server",
    "Q": "NVIDIA RTX Virtual Workstation",
    "B": "NVIDIA Virtual PC",
    "A": "NVIDIA Virtual Applications",
}


def licensed_product(series: str) -> str:
    """The product a vGPU of this series licenses (an unknown series: the compute one, C)."""
    return SERIES_PRODUCTS.get(series, SERIES_PRODUCTS["C"])
