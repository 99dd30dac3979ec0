"""``gpufleet.spec.promotion``: roles, the diff of promotable settings, the content hash, the round-trip writer."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
from promotion_stacks import LAB, NEW_BUNDLE, OLD_BUNDLE, ROOT, stack_text, write

from gpufleet.errors import SpecError
from gpufleet.spec.promotion import (
    apply_edits,
    content_hash,
    parse_kinds,
    promotion,
    roles_of,
    round_trip,
)
from gpufleet.spec.stack import load_stack
from gpufleet.spec.validate import stack_issues


@pytest.fixture
def stages(tmp_path: Path):
    dev = write(tmp_path, "dev", stack_text("dev", driver="550.127.06", feature=4, ts_profile="nvidia_l40s-12c"))
    staging = write(tmp_path, "staging", stack_text("stg", datastore="vsan-staging"))
    return load_stack(dev), load_stack(staging), staging


def test_every_stack_file_comes_back_byte_for_byte() -> None:
    for path in sorted((ROOT / "stacks").glob("Pulumi.*.yaml")):
        assert round_trip(path.read_text()) == path.read_text(), path.name


def test_roles_drop_the_prefix_every_name_shares_else_keep_the_name(stages) -> None:
    dev, staging, _ = stages
    assert roles_of(dev.fleet.vms) == {f"dev-{r}": r for r in ("ts-01", "mig-01", "pt-01", "rdma-01")}
    assert set(roles_of(staging.fleet.vms).values()) == {"ts-01", "mig-01", "pt-01", "rdma-01"}
    # The hosts of both share "esxi": esxi-01.lab -> 01.lab, the same on both sides.
    assert roles_of(dev.fleet.hosts)["esxi-03.lab"] == "03.lab"
    mixed = load_stack(write(Path(staging.path).parent, "mixed", LAB.replace("name: vm-pt-01", "name: pt-01")))
    assert roles_of(mixed.fleet.vms)["vm-ts-01"] == "vm-ts-01"  # no prefix shared by all: the name is the role
    explicit = LAB.replace("name: vm-pt-01\n", "name: vm-pt-01\n        role: trainer\n")
    roled = load_stack(write(Path(staging.path).parent, "roled", explicit))
    assert roles_of(roled.fleet.vms)["vm-pt-01"] == "trainer"


def test_the_diff_names_each_promotable_setting_by_kind_path_and_role(stages) -> None:
    dev, staging, _ = stages
    found = promotion(dev, staging)
    got = {(c.kind, c.path, c.role): (c.current, c.promoted) for c in found.changes}
    assert got == {
        ("driver", "driver", None): (f"550.90.05 (component {OLD_BUNDLE})", f"550.127.06 (component {NEW_BUNDLE})"),
        ("vgpu", "vms[stg-ts-01].vgpu", "ts-01"): (["nvidia_l40s-24c"], ["nvidia_l40s-12c"]),
        ("licensing", "licensing.featureType", None): (1, 4),
    }
    assert found.unmatched == []
    # TO keeps its own datastore directory, gets FROM's bundle name and version.
    driver_edits = {e.keys: e.value for c in found.changes if c.kind == "driver" for e in c.edits}
    assert driver_edits[("driver", "bundle")] == f"/vmfs/volumes/vsan-staging/{NEW_BUNDLE}"
    assert driver_edits[("driver", "version")] == "550.127.06"
    assert driver_edits[("driver", "localPath")] == f"lab-depot://{NEW_BUNDLE}"


def test_only_limits_the_kinds_and_unknown_kinds_are_named() -> None:
    assert parse_kinds("vgpu, licensing") == ("vgpu", "licensing")
    assert parse_kinds(None) == ("driver", "guest", "vgpu", "mig", "licensing")
    with pytest.raises(SpecError) as err:
        parse_kinds("driver,gpus")
    assert "'gpus'" in str(err.value) and "driver, guest, vgpu, mig, licensing" in str(err.value)


def test_only_vgpu(stages) -> None:
    dev, staging, _ = stages
    assert [c.kind for c in promotion(dev, staging, ("vgpu",)).changes] == ["vgpu"]


def test_mig_backed_profiles_are_kind_mig(tmp_path: Path) -> None:
    dev = load_stack(write(tmp_path, "dev", stack_text("dev").replace("grid_a100d-3-40c", "grid_a100d-4-40c")))
    staging = load_stack(write(tmp_path, "staging", stack_text("stg")))
    assert [(c.kind, c.path) for c in promotion(dev, staging).changes] == [("mig", "vms[stg-mig-01].vgpu")]
    assert promotion(dev, staging, ("vgpu",)).changes == []  # a MIG change is not a vgpu change


def test_grid_and_nvidia_spell_the_same_profile(tmp_path: Path) -> None:
    dev = load_stack(write(tmp_path, "dev", stack_text("dev").replace("grid_a100d-3-40c", "nvidia_a100d-3-40c")))
    assert promotion(dev, load_stack(write(tmp_path, "staging", stack_text("stg")))).changes == []


def test_the_guest_driver_goes_where_tos_vm_takes_it_from(tmp_path: Path) -> None:
    newer = stack_text("dev").replace(
        'path: "lab-depot://NVIDIA-Linux-x86_64-550.90.07-grid.run"',
        'path: "lab-depot://NVIDIA-Linux-x86_64-550.127.05-grid.run"',
    )
    dev = load_stack(write(tmp_path, "dev", newer))
    staging = load_stack(write(tmp_path, "staging", stack_text("stg")))
    changes = promotion(dev, staging).changes
    assert {(c.kind, c.path) for c in changes} == {
        ("guest", f"vms[stg-{r}].guest.driver") for r in ("ts-01", "mig-01", "rdma-01")
    }
    assert changes[0].promoted == "550.127.05 (NVIDIA-Linux-x86_64-550.127.05-grid.run)"


def test_froms_vms_of_one_role_must_agree(tmp_path: Path) -> None:
    text = stack_text("dev").replace("name: dev-ts-01\n", "name: dev-ts-01\n        role: gpu\n")
    text = text.replace("name: dev-mig-01\n", "name: dev-mig-01\n        role: gpu\n")
    dev = load_stack(write(tmp_path, "dev", text))
    staging_text = stack_text("stg").replace("name: stg-ts-01\n", "name: stg-ts-01\n        role: gpu\n")
    with pytest.raises(SpecError, match="dev-ts-01, dev-mig-01 share this role but not their vGPU profiles"):
        promotion(dev, load_stack(write(tmp_path, "staging", staging_text)))


def test_unmatched_roles_are_listed_not_dropped(tmp_path: Path) -> None:
    dev = load_stack(write(tmp_path, "dev", stack_text("dev").replace("name: dev-pt-01", "name: dev-train-01")))
    staging = load_stack(write(tmp_path, "staging", stack_text("stg")))
    got = {(u.kind, u.name, u.role, u.side) for u in promotion(dev, staging).unmatched}
    assert got == {("vm", "stg-pt-01", "pt-01", "to"), ("vm", "dev-train-01", "train-01", "from")}


def test_the_content_hash_follows_the_promotable_settings_only(tmp_path: Path) -> None:
    base = load_stack(write(tmp_path, "dev", stack_text("dev")))
    same = load_stack(write(tmp_path, "dev2", stack_text("dev").replace("cpus: 8", "cpus: 16")))
    other_dir = load_stack(write(tmp_path, "dev3", stack_text("dev", datastore="elsewhere")))
    changed = load_stack(write(tmp_path, "dev4", stack_text("dev", feature=4)))
    assert content_hash(base).startswith("sha256:") and len(content_hash(base)) == 7 + 64
    assert content_hash(base) == content_hash(same) == content_hash(other_dir)  # not promotable / stack-local
    assert content_hash(base) != content_hash(changed)


def test_the_write_changes_only_the_promoted_lines_and_keeps_comments(stages) -> None:
    dev, staging, path = stages
    text = path.read_text()
    after = apply_edits(text, promotion(dev, staging).edits)
    removed = [line for line in difflib.ndiff(text.splitlines(), after.splitlines()) if line.startswith("- ")]
    added = [line for line in difflib.ndiff(text.splitlines(), after.splitlines()) if line.startswith("+ ")]
    assert [" ".join(a.split()) for a in added] == [
        "+ version: 550.127.06",
        f"+ bundle: /vmfs/volumes/vsan-staging/{NEW_BUNDLE}",
        f"+ localPath: lab-depot://{NEW_BUNDLE}",
        "+ featureType: 4",
        "+ vgpu: [{profile: nvidia_l40s-12c}]",
    ]
    assert len(removed) == len(added)
    assert "# The embedded lab" in after and "# what `guests prepare`" in after  # comments stay
    promoted = write(path.parent, "staging", after)
    loaded = load_stack(promoted)
    assert stack_issues(loaded) == []
    assert promotion(dev, loaded).changes == []  # a rerun finds nothing to promote


def test_a_changed_vgpu_count_replaces_the_list_and_keeps_pins(tmp_path: Path) -> None:
    two = stack_text("dev").replace(
        "vgpu: [{profile: nvidia_h100-3-40c}]", "vgpu: [{profile: nvidia_h100-3-40c}, {profile: nvidia_h100-3-40c}]"
    )
    pinned = stack_text("stg").replace(
        "vgpu: [{profile: nvidia_h100-3-40c}]", 'vgpu: [{profile: nvidia_h100-3-40c, gpu: "0000:3b:00.0"}]'
    )
    dev, staging = load_stack(write(tmp_path, "dev", two)), load_stack(write(tmp_path, "staging", pinned))
    found = promotion(dev, staging, ("mig",))
    after = apply_edits(pinned, found.edits)
    assert (
        'vgpu: [{profile: nvidia_h100-3-40c, gpu: "0000:3b:00.0"}, {profile: nvidia_h100-3-40c}]' in after
        or "vgpu: [{profile: nvidia_h100-3-40c, gpu: 0000:3b:00.0}, {profile: nvidia_h100-3-40c}]" in after
    ), after


def test_a_generated_file_keeps_its_own_layout(tmp_path: Path) -> None:
    path = ROOT / "stacks" / "Pulumi.mlperf-1x7g.yaml"
    text = path.read_text()
    source = load_stack(write(tmp_path, "from", text.replace("grid_a100d-7-80c", "grid_a100d-4-40c")))
    after = apply_edits(text, promotion(source, load_stack(path)).edits)
    changed = [d for d in difflib.ndiff(text.splitlines(), after.splitlines()) if d[:2] in ("- ", "+ ")]
    assert changed == ["-       - {profile: grid_a100d-7-80c}", "+       - {profile: grid_a100d-4-40c}"]
