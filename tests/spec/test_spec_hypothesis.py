"""Hypothesis-generated fleets, mostly broken: loading and validating never raise anything but ``SpecError``,
and every issue names a path into the spec and a reason."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spec_factory import base, issues_of

from gpufleet.catalog import all_gpus

MODELS = [g.name for g in all_gpus()] + ["A100-80GB", "h100-80gb-sxm", "B200", "", "x" * 3]
PROFILES = sorted({p.vsphere_name for g in all_gpus() for p in g.profiles}) + [
    "nvidia_a100d-3-40c",
    "grid_bogus-1c",
    "",
]
PCIS = ["0000:3b:00.0", "0000:5e:00.0", "0000:86:00.0", "0000:af:00.0", "3b:00.0", "zz"]
MODES = ["vgpu", "mig", "passthrough", "dynamic-passthrough", "sriov"]
PATH = re.compile(
    r"^(version|datacenter|cluster|datastore|driver|licensing|rollout|config|vcenter|"
    r"hosts\[[^\]]+\]|templates\[[^\]]+\]|vms\[[^\]]+\])"  # an index, or the item's name
)

gpu = st.fixed_dictionaries(
    {"pci": st.sampled_from(PCIS), "model": st.sampled_from(MODELS), "mode": st.sampled_from(MODES)},
    optional={"mixedSize": st.booleans(), "nvlinkPeers": st.lists(st.sampled_from(PCIS), max_size=2)},
)
host = st.fixed_dictionaries(
    {"name": st.sampled_from(["h1", "h2", "h3"]), "gpus": st.lists(gpu, max_size=4)},
    optional={
        "graphicsType": st.sampled_from(["shared", "sharedDirect", "basic"]),
        "nics": st.lists(
            st.fixed_dictionaries(
                {"pci": st.sampled_from(PCIS)}, optional={"ats": st.booleans(), "passthrough": st.booleans()}
            ),
            max_size=2,
        ),
    },
)
template = st.fixed_dictionaries(
    {"name": st.sampled_from(["t1", "t2"])},
    optional={
        "guestId": st.sampled_from(["ubuntu64Guest", "ubuntuGuest", "windows2019srv_64Guest", "rhel9_64Guest"]),
        "firmware": st.sampled_from(["efi", "bios"]),
        "hardwareVersion": st.integers(min_value=8, max_value=23),
        "mmioSizeGb": st.integers(min_value=0, max_value=2048),
        "p2p": st.booleans(),
        "memoryReservationLocked": st.booleans(),
    },
)
vgpu = st.fixed_dictionaries({"profile": st.sampled_from(PROFILES)}, optional={"gpu": st.sampled_from(PCIS)})
passthrough = st.one_of(
    st.fixed_dictionaries({"gpu": st.sampled_from(PCIS)}),
    st.fixed_dictionaries({"model": st.sampled_from(MODELS)}),
    st.fixed_dictionaries({"gpu": st.sampled_from(PCIS), "model": st.sampled_from(MODELS)}),
)
rdma = st.fixed_dictionaries(
    {"type": st.sampled_from(["pvrdma", "passthrough", "sriov"])},
    optional={"network": st.just("pg"), "nic": st.sampled_from(PCIS), "roce": st.sampled_from(["v1", "v2", "v3"])},
)
vm = st.fixed_dictionaries(
    {"name": st.sampled_from(["v1", "v2", "v3", "v4"]), "template": st.sampled_from(["t1", "t2", "t3"])},
    optional={
        "host": st.sampled_from(["h1", "h2", "h9"]),
        "vgpu": st.lists(vgpu, max_size=5),
        "passthrough": st.lists(passthrough, max_size=2),
        "rdma": st.lists(rdma, max_size=2),
        "extra": st.just(1),
    },
)
fleet = st.fixed_dictionaries(
    {
        "version": st.sampled_from(["v1", "v1", "v1", "v2"]),
        "datacenter": st.just("dc"),
        "cluster": st.just("c"),
        "hosts": st.lists(host, max_size=3),
        "templates": st.lists(template, max_size=2),
        "vms": st.lists(vm, max_size=5),
    },
    optional={"driver": st.just({"version": "1", "bundle": "/vmfs/volumes/ds/x.zip"})},
)


def _assert_well_formed(issues: list[Any]) -> None:
    for issue in issues:
        assert PATH.match(issue.path), f"issue without a spec path: {issue}"
        assert issue.message.strip(), issue
        assert all(isinstance(v, str) for v in issue.valid)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleet)
def test_generated_fleets_never_crash_and_every_issue_has_a_path(document: dict[str, Any]) -> None:
    _assert_well_formed(issues_of(document))


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_a_broken_base_fleet_names_the_broken_place(data: st.DataObject) -> None:
    """Replace one field of the valid base fleet with a generated value: either still valid, or every issue
    points into the spec."""
    document = base()
    target = data.draw(st.sampled_from(["host", "gpu", "template", "vm", "vgpu"]))
    if target == "host":
        document["hosts"][data.draw(st.integers(0, 2))] = data.draw(host)
    elif target == "gpu":
        h = document["hosts"][data.draw(st.integers(0, 2))]
        h["gpus"][data.draw(st.integers(0, len(h["gpus"]) - 1))] = data.draw(gpu)
    elif target == "template":
        document["templates"][data.draw(st.integers(0, 1))] = data.draw(template)
    elif target == "vm":
        document["vms"][data.draw(st.integers(0, 6))] = data.draw(vm)
    else:
        document["vms"][0]["vgpu"] = data.draw(st.lists(vgpu, min_size=1, max_size=4))
    _assert_well_formed(issues_of(document))
