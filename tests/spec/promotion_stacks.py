"""Stacks for the promotion tests: the lab stack as another stage (its VMs renamed, its own datastore)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAB = (ROOT / "stacks" / "Pulumi.lab.yaml").read_text()
NEW_BUNDLE = "NVD-AIE-800_550.127.06-1OEM.800.1.0.20613240_24311452.zip"
OLD_BUNDLE = "NVD-AIE-800_550.90.05-1OEM.800.1.0.20613240_23471011.zip"


def stack_text(
    prefix: str,
    *,
    driver: str = "550.90.05",
    feature: int = 1,
    ts_profile: str = "nvidia_l40s-24c",
    datastore: str = "datastore1",
) -> str:
    """The lab stack as another stage: its VMs named ``<prefix>-...``, its own datastore directory."""
    text = LAB
    for vm in ("vm-ts-01", "vm-mig-01", "vm-pt-01", "vm-rdma-01"):
        text = text.replace(f"name: {vm}", f"name: {prefix}-{vm.removeprefix('vm-')}")
    bundle = NEW_BUNDLE if driver != "550.90.05" else OLD_BUNDLE
    text = text.replace("version: 550.90.05", f"version: {driver}")
    text = text.replace(f"/vmfs/volumes/datastore1/{OLD_BUNDLE}", f"/vmfs/volumes/{datastore}/{bundle}")
    text = text.replace(f"lab-depot://{OLD_BUNDLE}", f"lab-depot://{bundle}")
    text = text.replace("featureType: 1", f"featureType: {feature}")
    return text.replace("vgpu: [{profile: nvidia_l40s-24c}]", f"vgpu: [{{profile: {ts_profile}}}]")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"Pulumi.{name}.yaml"
    path.write_text(text)
    return path
