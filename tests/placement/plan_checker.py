"""An independent re-check of a plan, written apart from the planner and the catalog code on purpose.

It reads the catalog's CSV data files itself and checks the plan's public JSON (``Plan.to_json()``) against the
fleet: every placed device on the right host, board and mode; pins honoured; per GPU the time-sliced maxima,
equal sizes or mixed-size limits, passthrough exclusivity, and MIG instances at allowed start slots without
overlap; multi-vGPU VMs on distinct GPUs, NVLink peers when P2P is on. Returns a list of problems (empty: ok).
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2] / "gpufleet" / "catalog" / "data"


def _rows(name: str) -> list[dict[str, str]]:
    lines = [ln for ln in (DATA / name).read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return list(csv.DictReader(lines))


def _norm(model: str) -> str:
    return "".join(ch for ch in model.lower() if ch.isalnum())


class Hardware:
    """The facts the checker needs, straight from the CSV files."""

    def __init__(self) -> None:
        self.boards: dict[str, dict[str, Any]] = {}
        self.alias: dict[str, str] = {}
        mig: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        for row in _rows("mig_gpu_instance_profiles_placements.csv"):
            mig[row["gpu"]][row["profile_name"].replace("MIG ", "")] = {
                "starts": {int(s) for s in row["placement_starts"].split(",")},
                "size": int(row["placement_size"]),
                "max": int(row["max_instances"]),
            }
        for row in _rows("gpus.csv"):
            profiles = {}
            for p in _rows(row["profiles_file"]):
                for spelled in p["vsphere_profile_name"].split("|"):
                    bare = spelled.split("_", 1)[1]
                    profiles[bare] = {
                        "mig": p["mig_backed"] == "yes",
                        "instance": p["gpu_instance_profile"].replace("MIG ", "") or None,
                        "max": int(p["max_vgpus_per_gpu"]),
                        "max_mixed": int(p["max_vgpus_per_gpu_mixed_size"])
                        if p["max_vgpus_per_gpu_mixed_size"]
                        else None,
                        "fb": int(p["framebuffer_mb"]),
                        "series": p["series"],
                        "type": p["vgpu_type"],
                    }
            self.boards[row["model"]] = {
                "profiles": profiles,
                "fb": max(p["fb"] for p in profiles.values()),
                "mig": mig.get(row["mig_geometry"], {}),
            }
            for name in [row["model"], *row["aliases"].split("|")]:
                if name:
                    self.alias.setdefault(_norm(name), row["model"])

    def board(self, model: str) -> str | None:
        return self.alias.get(_norm(model))

    def profile(self, board: str, name: str) -> dict[str, Any] | None:
        bare = name.lower().split("_", 1)[1] if name.lower().startswith(("grid_", "nvidia_")) else name.lower()
        return self.boards[board]["profiles"].get(bare)


HW = Hardware()


def check_plan(fleet: Any, plan_json: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    hosts = {h.name: h for h in fleet.hosts}
    gpu_spec = {(h.name, g.pci): g for h in fleet.hosts for g in h.gpus}
    placed = {p["vm"]: p for p in plan_json["vms"]}
    unplaced = {u["vm"] for u in plan_json["unplaced"]}
    per_gpu: dict[tuple[str, str], list[tuple[str, dict[str, Any], dict[str, Any]]]] = defaultdict(list)

    for vm in fleet.vms:
        wants = len(vm.vgpu) + len(vm.passthrough)
        if vm.name in placed and vm.name in unplaced:
            problems.append(f"{vm.name}: both placed and unplaced")
        if wants and vm.name not in placed and vm.name not in unplaced:
            problems.append(f"{vm.name}: neither placed nor reported unplaced")
        if vm.name not in placed:
            continue
        p = placed[vm.name]
        if p["host"] not in hosts:
            problems.append(f"{vm.name}: placed on unknown host {p['host']}")
            continue
        if vm.host and p["host"] != vm.host:
            problems.append(f"{vm.name}: pinned to {vm.host}, placed on {p['host']}")
        kinds = Counter(d["kind"] for d in p["devices"])
        if kinds["vgpu"] != len(vm.vgpu) or kinds["passthrough"] != len(vm.passthrough):
            problems.append(
                f"{vm.name}: {dict(kinds)} devices placed, wants {len(vm.vgpu)} vGPU + {len(vm.passthrough)} pt"
            )
        vgpu_gpus = []
        for d in p["devices"]:
            spec = gpu_spec.get((p["host"], d["gpu"]))
            if spec is None:
                problems.append(f"{vm.name}: device on unknown GPU {p['host']}/{d['gpu']}")
                continue
            board = HW.board(spec.model)
            mode = spec.mode.value if hasattr(spec.mode, "value") else spec.mode
            if d["kind"] == "vgpu":
                req = vm.vgpu[d["index"]]
                if req.gpu and req.gpu != d["gpu"]:
                    problems.append(f"{vm.name}: vgpu[{d['index']}] pinned to {req.gpu}, placed on {d['gpu']}")
                prof = HW.profile(board, req.profile) if board else None
                if prof is None:
                    problems.append(f"{vm.name}: {req.profile} is not a profile of {spec.model}")
                    continue
                if prof["mig"] != (mode == "mig") or mode not in ("mig", "vgpu"):
                    problems.append(f"{vm.name}: {req.profile} on a GPU in mode {mode}")
                vgpu_gpus.append(d["gpu"])
                per_gpu[(p["host"], d["gpu"])].append((vm.name, prof, d))
            else:
                req = vm.passthrough[d["index"]]
                if req.gpu and (req.gpu != d["gpu"] or mode != "passthrough"):
                    problems.append(f"{vm.name}: DirectPath {req.gpu} placed on {d['gpu']} ({mode})")
                if req.model and (HW.board(req.model) != board or mode != "dynamic-passthrough"):
                    problems.append(f"{vm.name}: Dynamic DirectPath {req.model} on {spec.model} ({mode})")
                per_gpu[(p["host"], d["gpu"])].append((vm.name, {"passthrough": True}, d))
        if len(set(vgpu_gpus)) != len(vgpu_gpus):
            problems.append(f"{vm.name}: two vGPUs on one physical GPU")
        template = next((t for t in fleet.templates if t.name == vm.template), None)
        if template is not None and template.p2p and len(vgpu_gpus) > 1:
            for i, a in enumerate(vgpu_gpus):
                for b in vgpu_gpus[i + 1 :]:
                    ga, gb = gpu_spec[(p["host"], a)], gpu_spec[(p["host"], b)]
                    if b not in ga.nvlink_peers and a not in gb.nvlink_peers:
                        problems.append(f"{vm.name}: P2P vGPUs on {a} and {b}, not NVLink peers")

    for (host, pci), entries in per_gpu.items():
        spec = gpu_spec[(host, pci)]
        board = HW.board(spec.model)
        mode = spec.mode.value if hasattr(spec.mode, "value") else spec.mode
        where = f"{host}/{pci}"
        if mode in ("passthrough", "dynamic-passthrough"):
            if len(entries) != 1:
                problems.append(f"{where}: passthrough GPU given to {len(entries)} devices")
            continue
        profs = [prof for _, prof, _ in entries]
        if mode == "mig":
            geometry = HW.boards[board]["mig"]
            taken = 0
            me = 0
            counts: Counter[str] = Counter()
            for vm, prof, d in entries:
                inst = geometry.get(prof["instance"])
                if inst is None or d.get("instance") != prof["instance"]:
                    problems.append(f"{where}: {vm} instance {d.get('instance')} != {prof['instance']}")
                    continue
                counts[prof["instance"]] += 1
                me += prof["instance"].endswith("+me")
                if d["start"] not in inst["starts"] or d["size"] != inst["size"]:
                    problems.append(f"{where}: {vm} {prof['instance']} at {d['start']}:{d['size']} not allowed")
                mask = ((1 << inst["size"]) - 1) << d["start"]
                if taken & mask:
                    problems.append(f"{where}: {vm} {prof['instance']} at {d['start']} overlaps another instance")
                taken |= mask
            for name, n in counts.items():
                if n > geometry[name]["max"]:
                    problems.append(f"{where}: {n} x {name}, max {geometry[name]['max']}")
            if me > 1:
                problems.append(f"{where}: {me} +me instances")
        elif spec.mixed_size:
            if len({p["series"] for p in profs}) > 1:
                problems.append(f"{where}: several series in mixed-size mode")
            for t, n in Counter(p["type"] for p in profs).items():
                limit = next(p["max_mixed"] for p in profs if p["type"] == t)
                if limit is None or n > limit:
                    problems.append(f"{where}: {n} x {t} in mixed-size mode (limit {limit})")
            if sum(p["fb"] for p in profs) > HW.boards[board]["fb"]:
                problems.append(f"{where}: framebuffer oversubscribed")
        else:
            types = {p["type"] for p in profs}
            if len(types) > 1:
                problems.append(f"{where}: several profiles {sorted(types)} without mixed-size mode")
            elif len(profs) > profs[0]["max"]:
                problems.append(f"{where}: {len(profs)} x {profs[0]['type']}, max {profs[0]['max']}")

    # the per-GPU view of the plan says the same as the per-VM view
    listed = Counter()
    for host in plan_json["hosts"]:
        for gpu in host["gpus"]:
            for a in gpu["assignments"]:
                listed[(host["name"], gpu["pci"], a["vm"])] += 1
    from_vms = Counter((p["host"], d["gpu"], p["vm"]) for p in plan_json["vms"] for d in p["devices"])
    if listed != from_vms:
        problems.append("the hosts/gpus section and the vms section of the plan disagree")
    return problems
