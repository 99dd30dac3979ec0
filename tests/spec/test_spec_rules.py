"""Table-driven hardware rules: each case breaks the small valid fleet one way and names the issue it must raise
(its exact path, words of its message, and valid values when the rule lists them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from spec_factory import base, fleet_of, issues_of

from gpufleet.errors import SpecError
from gpufleet.spec.stack import parse_stack
from gpufleet.spec.validate import validated

Fleet = dict[str, Any]


def host(f: Fleet, name: str) -> dict[str, Any]:
    return next(h for h in f["hosts"] if h["name"] == name)


def vm(f: Fleet, name: str) -> dict[str, Any]:
    return next(v for v in f["vms"] if v["name"] == name)


def add_vm(f: Fleet, **kw: Any) -> None:
    f["vms"].append({"name": "vm-new", "template": "tpl", **kw})


NEW = "vms[7]"  # index of a VM appended by add_vm

CASES: list[tuple[str, Callable[[Fleet], None], str, str, tuple[str, ...]]] = [
    # -- hosts and GPUs --
    (
        "unknown model",
        lambda f: host(f, "esxi-a")["gpus"][0].update(model="A100-81GB"),
        "hosts[0].gpus[0].model",
        "unknown GPU model",
        ("A100-80GB-PCIe", "T4"),
    ),
    (
        "mig on a T4",
        lambda f: host(f, "esxi-b")["gpus"][0].update(model="T4", mode="mig"),
        "hosts[1].gpus[0].mode",
        "no MIG mode",
        ("vgpu", "passthrough", "dynamic-passthrough"),
    ),
    (
        "mixed-size on MIG",
        lambda f: host(f, "esxi-a")["gpus"][0].update(mixedSize=True),
        "hosts[0].gpus[0].mixedSize",
        "time-sliced vGPU (mode vgpu) only",
        (),
    ),
    (
        "mixed-size on a T4",
        lambda f: host(f, "esxi-b")["gpus"][1].update(model="T4"),
        "hosts[1].gpus[1].mixedSize",
        "no mixed-size",
        (),
    ),
    (
        "duplicate GPU",
        lambda f: host(f, "esxi-a")["gpus"][1].update(pci="0000:3b:00.0"),
        "hosts[0].gpus[1].pci",
        "listed twice",
        (),
    ),
    (
        "NIC at a GPU address",
        lambda f: host(f, "esxi-a")["nics"][1].update(pci="0000:3b:00.0"),
        "hosts[0].nics[1].pci",
        "already a GPU",
        (),
    ),
    (
        "unknown NVLink peer",
        lambda f: host(f, "esxi-c")["gpus"][0].update(nvlinkPeers=["0000:99:00.0"]),
        "hosts[2].gpus[0].nvlinkPeers[0]",
        "has no GPU 0000:99:00.0",
        ("0000:3b:00.0", "0000:5e:00.0"),
    ),
    (
        "self NVLink peer",
        lambda f: host(f, "esxi-c")["gpus"][0].update(nvlinkPeers=["0000:1b:00.0"]),
        "hosts[2].gpus[0].nvlinkPeers[0]",
        "its own NVLink peer",
        (),
    ),
    (
        "NVLink on L40S",
        lambda f: host(f, "esxi-b")["gpus"][0].update(nvlinkPeers=["0000:5e:00.0"]),
        "hosts[1].gpus[0].nvlinkPeers",
        "has no NVLink",
        (),
    ),
    (
        "vGPU host not Shared Direct",
        lambda f: host(f, "esxi-a").update(graphicsType="shared"),
        "hosts[0].graphicsType",
        "Shared Direct",
        ("sharedDirect",),
    ),
    ("no driver", lambda f: f.pop("driver"), "hosts[0].driver", "vGPU host driver", ()),
    ("duplicate host", lambda f: f["hosts"][2].update(name="esxi-a"), "hosts[2].name", "duplicate name", ()),
    ("duplicate VM", lambda f: f["vms"][1].update(name="vm-mig"), "vms[1].name", "duplicate name", ()),
    # -- VMs: references --
    (
        "unknown template",
        lambda f: vm(f, "vm-ts").update(template="tpl-x"),
        "vms[1].template",
        "no template named",
        ("tpl", "tpl-p2p"),
    ),
    (
        "unknown host",
        lambda f: vm(f, "vm-mig").update(host="esxi-z"),
        "vms[0].host",
        "no host named",
        ("esxi-a", "esxi-b", "esxi-c"),
    ),
    # -- vGPU profiles --
    (
        "unknown profile",
        lambda f: vm(f, "vm-mig")["vgpu"][0].update(profile="grid_a100d-5-50c"),
        "vms[0].vgpu[0].profile",
        "unknown vGPU profile",
        ("grid_a100d-3-40c", "grid_a100d-7-80c"),
    ),
    (
        "profile of another board on the host",
        lambda f: vm(f, "vm-mig")["vgpu"][0].update(profile="nvidia_l40s-24c"),
        "vms[0].vgpu[0].profile",
        "no GPU in esxi-a offers nvidia_l40s-24c",
        ("grid_a100d-3-40c",),
    ),
    (
        "no GPU in the fleet offers it",
        lambda f: vm(f, "vm-ts")["vgpu"][0].update(profile="grid_t4-8c"),
        "vms[1].vgpu[0].profile",
        "no GPU in the fleet offers grid_t4-8c",
        (),
    ),
    (
        "MIG-backed on a time-sliced GPU",
        lambda f: vm(f, "vm-train")["vgpu"][0].update(profile="grid_h100xm-3-40c"),
        "vms[4].vgpu[0].profile",
        "never share a GPU",
        ("grid_h100xm-80c",),
    ),
    (
        "time-sliced on a MIG GPU",
        lambda f: vm(f, "vm-mig").update(vgpu=[{"profile": "grid_a100d-40c", "gpu": "0000:3b:00.0"}]),
        "vms[0].vgpu[0].profile",
        "runs mode mig",
        ("grid_a100d-3-40c",),
    ),
    (
        "vGPU on a passthrough GPU",
        lambda f: vm(f, "vm-ts").update(host="esxi-b", vgpu=[{"profile": "nvidia_l40s-24c", "gpu": "0000:86:00.0"}]),
        "vms[1].vgpu[0].gpu",
        "not shared",
        ("0000:3b:00.0", "0000:5e:00.0"),
    ),
    (
        "pinned GPU of another board",
        lambda f: vm(f, "vm-ts").update(host="esxi-a", vgpu=[{"profile": "nvidia_l40s-24c", "gpu": "0000:3b:00.0"}]),
        "vms[1].vgpu[0].profile",
        "is a L40S profile",
        ("grid_a100d-3-40c",),
    ),
    (
        "GPU pin without host",
        lambda f: vm(f, "vm-ts")["vgpu"][0].update(gpu="0000:3b:00.0"),
        "vms[1].vgpu[0].gpu",
        "set `host`",
        (),
    ),
    (
        "pinned GPU not on host",
        lambda f: vm(f, "vm-mig")["vgpu"][0].update(gpu="0000:d8:00.0"),
        "vms[0].vgpu[0].gpu",
        "has no GPU 0000:d8:00.0",
        ("0000:3b:00.0", "0000:5e:00.0"),
    ),
    (
        "Q profile on a host of mixed-size GPUs only",
        lambda f: (
            host(f, "esxi-b")["gpus"][0].update(mixedSize=True),
            vm(f, "vm-ts").update(host="esxi-b", vgpu=[{"profile": "nvidia_l40s-4q"}]),
        ),
        "vms[1].vgpu[0].profile",
        "not in mixed-size mode",
        (),
    ),
    # -- capacity of a pinned GPU --
    (
        "two sizes without mixed-size",
        lambda f: (
            vm(f, "vm-ts").update(host="esxi-b", vgpu=[{"profile": "nvidia_l40s-24c", "gpu": "0000:3b:00.0"}]),
            add_vm(f, host="esxi-b", vgpu=[{"profile": "nvidia_l40s-12c", "gpu": "0000:3b:00.0"}]),
        ),
        f"{NEW}.vgpu[0].profile",
        "same profile",
        ("nvidia_l40s-24c",),
    ),
    (
        "over the per-GPU maximum",
        lambda f: [
            add_vm(f, host="esxi-b", vgpu=[{"profile": "nvidia_l40s-24c", "gpu": "0000:3b:00.0"}])
            or f["vms"][-1].update(name=f"vm-x{i}")
            for i in range(3)
        ],
        "vms[9].vgpu[0].gpu",
        "at most 2 x nvidia_l40s-24c",
        (),
    ),
    (
        "Q-series in mixed-size mode",
        lambda f: add_vm(f, host="esxi-b", vgpu=[{"profile": "nvidia_l40s-4q", "gpu": "0000:5e:00.0"}]),
        f"{NEW}.vgpu[0].profile",
        "not available in mixed-size mode",
        ("nvidia_l40s-48c", "nvidia_l40s-4c"),
    ),
    (
        "mixed-size framebuffer oversubscribed",
        lambda f: [
            add_vm(f, host="esxi-b", vgpu=[{"profile": p, "gpu": "0000:5e:00.0"}])
            or f["vms"][-1].update(name=f"vm-x{i}")
            for i, p in enumerate(["nvidia_l40s-24c", "nvidia_l40s-16c", "nvidia_l40s-12c"])
        ],
        "vms[9].vgpu[0].gpu",
        "framebuffer",
        (),
    ),
    (
        "MIG layout without placement",
        lambda f: [
            add_vm(f, host="esxi-a", vgpu=[{"profile": p, "gpu": "0000:5e:00.0"}])
            or f["vms"][-1].update(name=f"vm-x{i}")
            for i, p in enumerate(["grid_a100d-4-40c", "grid_a100d-3-40c", "grid_a100d-3-40c"])
        ],
        "vms[9].vgpu[0].gpu",
        "do not fit",
        (),
    ),
    (
        "MIG instance over its maximum",
        lambda f: [
            add_vm(f, host="esxi-a", vgpu=[{"profile": "grid_a100d-4-40c", "gpu": "0000:5e:00.0"}])
            or f["vms"][-1].update(name=f"vm-x{i}")
            for i in range(2)
        ],
        "vms[8].vgpu[0].gpu",
        "at most 1 x 4g.40gb",
        (),
    ),
    # -- several vGPUs per VM --
    (
        "vGPUs of two boards",
        lambda f: vm(f, "vm-ts").update(vgpu=[{"profile": "nvidia_l40s-48c"}, {"profile": "grid_h100xm-80c"}]),
        "vms[1].vgpu[1].profile",
        "of one board",
        ("nvidia_l40s-48c",),
    ),
    (
        "vGPUs of two series",
        lambda f: vm(f, "vm-ts").update(vgpu=[{"profile": "nvidia_l40s-48c"}, {"profile": "nvidia_l40s-48q"}]),
        "vms[1].vgpu[1].profile",
        "of one series",
        (),
    ),
    (
        "fractional Q-series multi-vGPU",
        lambda f: vm(f, "vm-ts").update(vgpu=[{"profile": "nvidia_l40s-4q"}, {"profile": "nvidia_l40s-4q"}]),
        "vms[1].vgpu[0].profile",
        "only with full-framebuffer",
        ("nvidia_l40s-48c", "nvidia_l40s-48q"),
    ),
    (
        "five vGPUs",
        lambda f: vm(f, "vm-ts").update(vgpu=[{"profile": "nvidia_l40s-48c"}] * 5),
        "vms[1].vgpu",
        "at most 4",
        (),
    ),
    (
        "two vGPUs on one GPU",
        lambda f: vm(f, "vm-train")["vgpu"][1].update(gpu="0000:1b:00.0"),
        "vms[4].vgpu[1].gpu",
        "its own physical GPU",
        (),
    ),
    (
        "more vGPUs than GPUs on the host",
        lambda f: vm(f, "vm-mig").update(vgpu=[{"profile": "grid_a100d-3-40c"}] * 3),
        "vms[0].vgpu",
        "it has 2",
        (),
    ),
    (
        "P2P with MIG-backed vGPUs",
        lambda f: vm(f, "vm-gdr").update(vgpu=[{"profile": "grid_a100d-3-40c"}, {"profile": "grid_a100d-3-40c"}]),
        "vms[6].vgpu[0].profile",
        "full-framebuffer time-sliced C-series",
        ("grid_a100d-80c",),
    ),
    (
        "P2P across GPUs without NVLink",
        lambda f: vm(f, "vm-train")["vgpu"][1].update(gpu="0000:5e:00.0"),
        "vms[4].vgpu[1].gpu",
        "not NVLink peers",
        (),
    ),
    # -- passthrough --
    (
        "DirectPath without host",
        lambda f: vm(f, "vm-pt").pop("host"),
        "vms[2].passthrough[0].gpu",
        "set the VM's `host`",
        (),
    ),
    (
        "DirectPath of a shared GPU",
        lambda f: vm(f, "vm-pt")["passthrough"][0].update(gpu="0000:3b:00.0"),
        "vms[2].passthrough[0].gpu",
        "either shared or passed through",
        ("0000:86:00.0",),
    ),
    (
        "one GPU passed to two VMs",
        lambda f: add_vm(f, host="esxi-b", passthrough=[{"gpu": "0000:86:00.0"}]),
        f"{NEW}.passthrough[0].gpu",
        "already passed through to vm-pt",
        (),
    ),
    (
        "Dynamic DirectPath on vmx-15",
        lambda f: f["templates"][0].update(hardwareVersion=15),
        "vms[3].passthrough[0].model",
        "hardware version >= 17",
        (),
    ),
    (
        "Dynamic DirectPath without a pool",
        lambda f: vm(f, "vm-dyn")["passthrough"][0].update(model="H100-80GB-SXM"),
        "vms[3].passthrough[0].model",
        "dynamic-passthrough",
        ("L40S",),
    ),
    (
        "Dynamic DirectPath unknown model",
        lambda f: vm(f, "vm-dyn")["passthrough"][0].update(model="B200"),
        "vms[3].passthrough[0].model",
        "unknown GPU model",
        ("H100-80GB-SXM",),
    ),
    # -- RDMA --
    (
        "PVRDMA on vmx-12",
        lambda f: f["templates"][0].update(hardwareVersion=12),
        "vms[5].rdma[0].type",
        "hardware version >= 13",
        (),
    ),
    (
        "PVRDMA on Windows",
        lambda f: f["templates"][0].update(guestId="windows2019srv_64Guest"),
        "vms[5].rdma[0].type",
        "64-bit Linux guest",
        (),
    ),
    (
        "PVRDMA without network",
        lambda f: vm(f, "vm-rdma")["rdma"][0].pop("network"),
        "vms[5].rdma[0].network",
        "needs `network`",
        (),
    ),
    (
        "passthrough NIC not reserved",
        lambda f: vm(f, "vm-gdr")["rdma"][0].update(nic="0000:32:00.0"),
        "vms[6].rdma[0].nic",
        "not reserved for passthrough",
        (),
    ),
    (
        "passthrough NIC unknown",
        lambda f: vm(f, "vm-gdr")["rdma"][0].update(nic="0000:33:00.0"),
        "vms[6].rdma[0].nic",
        "has no NIC",
        ("0000:31:00.0", "0000:32:00.0"),
    ),
    (
        "passthrough NIC without host",
        lambda f: add_vm(f, rdma=[{"type": "passthrough", "nic": "0000:31:00.0"}]),
        f"{NEW}.rdma[0].nic",
        "set the VM's `host`",
        (),
    ),
    (
        "passthrough NIC twice",
        lambda f: add_vm(f, host="esxi-a", rdma=[{"type": "passthrough", "nic": "0000:31:00.0"}]),
        f"{NEW}.rdma[0].nic",
        "already passed through to vm-gdr",
        (),
    ),
    (
        "GPUDirect RDMA without ATS",
        lambda f: host(f, "esxi-a")["nics"][0].update(ats=False),
        "vms[6].rdma[0].nic",
        "needs ATS",
        (),
    ),
    # -- templates --
    (
        "32-bit guest",
        lambda f: f["templates"][0].update(guestId="ubuntuGuest"),
        "templates[0].guestId",
        "64-bit guest",
        ("ubuntu64Guest",),
    ),
    (
        "memory not reserved",
        lambda f: f["templates"][0].update(memoryReservationLocked=False),
        "templates[0].memoryReservationLocked",
        "reserved",
        ("true",),
    ),
    (
        "BIOS with 64-bit MMIO",
        lambda f: f["templates"][0].update(firmware="bios"),
        "templates[0].firmware",
        "needs EFI",
        ("efi",),
    ),
    (
        "MMIO not a power of two",
        lambda f: f["templates"][0].update(mmioSizeGb=200),
        "templates[0].mmioSizeGb",
        "not a power of two",
        ("128", "256"),
    ),
    (
        "MMIO too small",
        lambda f: f["templates"][0].update(mmioSizeGb=64),
        "templates[0].mmioSizeGb",
        "below the 256 GB",
        ("256",),
    ),
    # -- shape (pydantic), same path style --
    ("unknown key", lambda f: f["vms"][0].update(gpuz=1), "vms[0].gpuz", "unknown key", ()),
    (
        "bad PCI address",
        lambda f: f["hosts"][0]["gpus"][0].update(pci="3b:00.0"),
        "hosts[0].gpus[0].pci",
        "PCI address",
        (),
    ),
    (
        "bad mode",
        lambda f: f["hosts"][0]["gpus"][0].update(mode="sriov"),
        "hosts[0].gpus[0].mode",
        "allowed values",
        ("vgpu", "mig", "passthrough", "dynamic-passthrough"),
    ),
    ("bad version", lambda f: f.update(version="v2"), "version", "allowed values", ("v1",)),
]


def test_the_base_fleet_is_valid() -> None:
    assert issues_of(base()) == []


@pytest.mark.parametrize(("mutate", "path", "words", "valid"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule(mutate: Callable[[Fleet], None], path: str, words: str, valid: tuple[str, ...]) -> None:
    fleet = base()
    mutate(fleet)
    issues = issues_of(fleet)
    at_path = [i for i in issues if (i.index_path or i.path) == path]  # the cases name index paths
    assert at_path, f"no issue at {path}; got: {[str(i) for i in issues]}"
    matching = [i for i in at_path if words in i.message]
    assert matching, f"issues at {path} do not say {words!r}: {[str(i) for i in at_path]}"
    for value in valid:
        assert any(value in i.valid for i in matching), f"{value} not among valid values of {matching}"


def test_every_issue_names_a_path_and_a_reason() -> None:
    for _, mutate, *_ in CASES:
        fleet = base()
        mutate(fleet)
        for issue in issues_of(fleet):
            assert issue.path and issue.path != "(root)"
            assert issue.message.strip()


def test_validated_raises_spec_error_with_every_issue() -> None:
    fleet = base()
    fleet["templates"][0]["firmware"] = "bios"
    fleet["vms"][0]["host"] = "esxi-z"
    stack = parse_stack({"config": {"gpufleet:fleet": fleet, "gpufleet:vcenter": {"lab": True}}}, name="t")
    with pytest.raises(SpecError) as err:
        validated(stack)
    paths = {(i.path, i.index_path) for i in err.value.issues}
    assert {("templates[tpl].firmware", "templates[0].firmware"), ("vms[vm-mig].host", "vms[0].host")} <= paths
    assert "vms[vm-mig].host" in str(err.value)


def test_validated_returns_a_valid_stack() -> None:
    stack = parse_stack({"config": {"gpufleet:fleet": base(), "gpufleet:vcenter": {"lab": True}}}, name="t")
    assert validated(stack) is stack


def test_nvlink_peers_count_in_either_direction() -> None:
    fleet = base()
    c = host(fleet, "esxi-c")
    c["gpus"][0]["nvlinkPeers"] = []
    c["gpus"][1]["nvlinkPeers"] = ["0000:1b:00.0"]
    assert issues_of(fleet) == []


def test_four_full_vgpus_on_nvlink_peers_are_allowed() -> None:
    fleet = base()
    for g in host(fleet, "esxi-c")["gpus"]:
        g["nvlinkPeers"] = [o["pci"] for o in host(fleet, "esxi-c")["gpus"] if o["pci"] != g["pci"]]
    vm(fleet, "vm-train")["vgpu"] = [
        {"profile": "grid_h100xm-80c", "gpu": g["pci"]} for g in host(fleet, "esxi-c")["gpus"]
    ]
    assert issues_of(fleet) == []


def test_mig_pinning_that_needs_search_is_accepted() -> None:
    """3g.40gb pinned before 4g.40gb: first-fit would put 3g at slot 0 and refuse 4g; the exact search does not."""
    fleet = base()
    vm(fleet, "vm-mig")["vgpu"] = [{"profile": "grid_a100d-3-40c", "gpu": "0000:5e:00.0"}]
    add_vm(fleet, host="esxi-a", vgpu=[{"profile": "grid_a100d-4-40c", "gpu": "0000:5e:00.0"}])
    assert issues_of(fleet) == []


def test_pinned_mixed_size_gpu_takes_several_sizes() -> None:
    fleet = base()
    for i, p in enumerate(["nvidia_l40s-24c", "nvidia_l40s-12c", "nvidia_l40s-8c", "nvidia_l40s-4c"]):
        add_vm(fleet, host="esxi-b", vgpu=[{"profile": p, "gpu": "0000:5e:00.0"}])
        fleet["vms"][-1]["name"] = f"vm-mx{i}"
    assert issues_of(fleet) == []


def test_fleet_model_accepts_the_base() -> None:
    assert fleet_of(base()).host("esxi-a") is not None
