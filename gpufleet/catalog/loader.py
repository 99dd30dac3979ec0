"""Read the catalog's CSV data files (gpufleet/catalog/data, copied from shared/reference with provenance lines).

Every CSV starts with ``#`` provenance lines; they are skipped here and kept in the files.
"""

from __future__ import annotations

import csv
from functools import cache
from importlib import resources

from gpufleet.catalog.types import GpuModel, MigProfile, VgpuProfile


def read_rows(filename: str) -> list[dict[str, str]]:
    """The rows of a data file, provenance comment lines skipped."""
    text = resources.files("gpufleet.catalog").joinpath("data", filename).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return [{k: (v or "").strip() for k, v in row.items()} for row in csv.DictReader(lines)]


def _int_or_none(value: str) -> int | None:
    return int(value) if value else None


def _mig_table() -> dict[str, tuple[MigProfile, ...]]:
    table: dict[str, list[MigProfile]] = {}
    for row in read_rows("mig_gpu_instance_profiles_placements.csv"):
        table.setdefault(row["gpu"], []).append(
            MigProfile(
                name=row["profile_name"].removeprefix("MIG ").strip(),
                profile_id=int(row["profile_id"]),
                compute_slices=int(row["compute_slices"]),
                memory_slices=int(row["memory_slices"]),
                max_instances=int(row["max_instances"]),
                starts=tuple(int(s) for s in row["placement_starts"].split(",")),
                size=int(row["placement_size"]),
                memory_gib=float(row["memory_gib_lgip"]) if row["memory_gib_lgip"] else None,
            )
        )
    return {gpu: tuple(profiles) for gpu, profiles in table.items()}


def _profiles(model: str, filename: str) -> tuple[VgpuProfile, ...]:
    out = []
    for row in read_rows(filename):
        mig_backed = row["mig_backed"] == "yes"
        out.append(
            VgpuProfile(
                gpu=model,
                vgpu_type=row["vgpu_type"],
                vsphere_names=tuple(n.strip().lower() for n in row["vsphere_profile_name"].split("|")),
                series=row["series"],
                framebuffer_mb=int(row["framebuffer_mb"]),
                max_per_gpu=int(row["max_vgpus_per_gpu"]),
                max_per_gpu_mixed=_int_or_none(row["max_vgpus_per_gpu_mixed_size"]),
                mig_backed=mig_backed,
                gpu_slices=_int_or_none(row["gpu_slices"]),
                mig_instance=row["gpu_instance_profile"].removeprefix("MIG ").strip() or None,
                prefix_confidence=row["prefix_confidence"],
                note=row.get("note", ""),
            )
        )
    return tuple(out)


@cache
def load_catalog() -> dict[str, GpuModel]:
    """Every GPU model of the catalog by canonical name, in data-file order."""
    mig = _mig_table()
    models: dict[str, GpuModel] = {}
    for row in read_rows("gpus.csv"):
        geometry = row["mig_geometry"] or None
        if geometry is not None and geometry not in mig:
            raise ValueError(f"gpus.csv: {row['model']} names MIG geometry {geometry!r} absent from the MIG table")
        models[row["model"]] = GpuModel(
            name=row["model"],
            aliases=tuple(a for a in row["aliases"].split("|") if a),
            display_name=row["display_name"],
            architecture=row["architecture"],
            form_factor=row["form_factor"],
            pci_device_ids=tuple(int(d, 16) for d in row["pci_device_ids"].split("|")),
            pci_device_name=row["pci_device_name"],
            vgpu_prefix=row["vgpu_prefix"],
            profiles_file=row["profiles_file"],
            mig_geometry=geometry,
            nvlink=row["nvlink"] == "yes",
            mmio_gb=int(row["mmio_gb"]),
            mmio_source=row["mmio_source"],
            profiles=_profiles(row["model"], row["profiles_file"]),
            mig_profiles=mig.get(geometry, ()) if geometry else (),
        )
    return models
