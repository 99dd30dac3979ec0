"""Hypothesis strategy for fleets that are valid by construction (the planner's input), and plan helpers."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from gpufleet.catalog import get_gpu

BOARDS = ["A100-80GB-PCIe", "H100-80GB-SXM", "L40S", "T4", "A30"]
SLOTS = ["0000:1b:00.0", "0000:3b:00.0", "0000:5e:00.0", "0000:86:00.0"]
DRIVER = {"version": "550.90.05", "bundle": "/vmfs/volumes/ds1/x.zip"}
TEMPLATES = [
    {"name": "tpl", "guestId": "ubuntu64Guest", "firmware": "efi", "hardwareVersion": 19},
    {"name": "tpl-p2p", "guestId": "ubuntu64Guest", "firmware": "efi", "hardwareVersion": 19, "p2p": True},
]


def _modes(board: str) -> list[str]:
    gpu = get_gpu(board)
    return (["mig"] if gpu.mig_capable else []) + ["vgpu", "vgpu", "passthrough", "dynamic-passthrough"]


@st.composite
def valid_fleets(draw: st.DrawFn) -> dict[str, Any]:
    hosts = []
    for h in range(draw(st.integers(1, 4))):
        board = draw(st.sampled_from(BOARDS))
        gpus = []
        for slot in SLOTS[: draw(st.integers(1, 4))]:
            mode = draw(st.sampled_from(_modes(board)))
            spec: dict[str, Any] = {"pci": slot, "model": board, "mode": mode}
            if mode == "vgpu" and get_gpu(board).supports_mixed_size and draw(st.booleans()):
                spec["mixedSize"] = True
            gpus.append(spec)
        if get_gpu(board).nvlink:  # link the time-sliced GPUs pairwise
            ts = [g for g in gpus if g["mode"] == "vgpu"]
            for a, b in zip(ts[::2], ts[1::2], strict=False):
                a["nvlinkPeers"] = [b["pci"]]
        hosts.append({"name": f"esxi-{h}", "gpus": gpus})

    vms: list[dict[str, Any]] = []
    directpath_used: set[tuple[str, str]] = set()
    for i in range(draw(st.integers(0, 30))):
        host = draw(st.sampled_from(hosts))
        gpu = draw(st.sampled_from(host["gpus"]))
        board = get_gpu(gpu["model"])
        vm: dict[str, Any] = {"name": f"vm-{i:02d}", "template": "tpl"}
        if gpu["mode"] in ("vgpu", "mig"):
            if gpu["mode"] == "mig":
                choices = board.mig_backed_profiles
            elif gpu.get("mixedSize"):
                choices = tuple(p for p in board.time_sliced_profiles if p.max_per_gpu_mixed)
            else:
                choices = board.time_sliced_profiles
            # plain GPUs take every time-sliced profile; on a host with mixed GPUs only, pick a mixable one
            profile = draw(st.sampled_from(choices))
            vm["vgpu"] = [{"profile": draw(st.sampled_from(profile.vsphere_names))}]
            if draw(st.booleans()):
                vm["host"] = host["name"]
                # stay valid: Q-series never runs on a mixed-size GPU, so its host needs a plain one
                if profile.max_per_gpu_mixed is None and all(
                    g.get("mixedSize") for g in host["gpus"] if g["mode"] == "vgpu"
                ):
                    vm.pop("host")
            full = [p for p in board.time_sliced_profiles if p.series == "C" and p.max_per_gpu == 1]
            peers = [g for g in host["gpus"] if g["mode"] == "vgpu" and g.get("nvlinkPeers")]
            if gpu["mode"] == "vgpu" and full and peers and draw(st.integers(0, 5)) == 0:
                # a training VM: two full-framebuffer vGPUs joined by NVLink, P2P on
                vm["template"] = "tpl-p2p"
                vm["host"] = host["name"]
                vm["vgpu"] = [{"profile": full[0].vsphere_name}, {"profile": full[0].vsphere_name}]
        elif gpu["mode"] == "passthrough":
            if (host["name"], gpu["pci"]) in directpath_used:
                continue
            directpath_used.add((host["name"], gpu["pci"]))
            vm["host"] = host["name"]
            vm["passthrough"] = [{"gpu": gpu["pci"]}]
        else:
            vm["passthrough"] = [{"model": gpu["model"]}]
        vms.append(vm)
    return {
        "version": "v1",
        "datacenter": "DC",
        "cluster": "C",
        "driver": DRIVER,
        "hosts": hosts,
        "templates": TEMPLATES,
        "vms": vms,
    }
