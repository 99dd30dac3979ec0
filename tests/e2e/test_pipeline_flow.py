"""The GitOps flow, run by the local pipeline script (``scripts/pipeline.sh``, what the workflow runs) through the
real engine on two labs — dev and staging are two vCenters, as two stages are:

fleet stack up (the shared host licence, read by both cluster stacks through a StackReference) -> staging deployed
as it stands -> dev: pr (validate + policy + plan + preview) and deploy (up + verify + audit, recorded as proof) ->
dev drifts behind gpufleet's back: the drift stage re-records its proof, and promotion to staging is refused ->
dev repaired by a deploy -> promotion allowed: staging's stack file gets dev's vGPU profile, and staging's preview
shows exactly that change -> staging deployed -> in sync, with the promoted profile and the fleet's licence.

One module (``--dist loadscope`` runs it on one worker, in order); its labs, engine state, stack files and proofs
are its own (``own_lab``: GPUFLEET_FLOW_{DEV,STAGING}_LAB_DIR / _SSH_PORT / _VCENTER_PORT).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lab_drift import swap_vgpu
from own_lab import engine_built, own_lab
from pyVmomi import vim

from gpufleet.connections import read_lab_env, vcenter_from_lab
from gpufleet.vsphere.connect import connect
from gpufleet.vsphere.inventory import find_by_name
from gpufleet.vsphere.licenses import assigned_license
from gpufleet.vsphere.vm_devices import read_vm_devices

pytestmark = [pytest.mark.engine, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "scripts" / "pipeline.sh"
HOST, VM = "esxi-03.lab", "vm-ts-01"
FLEET_LICENSE = "GFLAB-FLEET-SHARE-DKEY0-00001"  # the fleet's one host licence (vSphere key format)


LAB_DEFAULTS = {
    "lab-dev": ("FLOW_DEV", "/tmp/gpufleet-flow-dev-lab", 3222, 20043),
    "lab-staging": ("FLOW_STAGING", "/tmp/gpufleet-flow-staging-lab", 3322, 20143),
}


@dataclass
class Flow:
    base: dict[str, str]
    stacks: Path
    out: Path
    proof: Path
    labs: dict[str, Path]

    def env(self, stack: str) -> dict[str, str]:
        """The stage's environment: its own lab (its vCenter), the shared engine state, the fleet's licence."""
        return dict(self.base, GPUFLEET_LAB_DIR=str(self.labs[stack]))

    def pipeline(self, *args: str, stage_of: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            ["bash", str(PIPELINE), *args], capture_output=True, text=True, timeout=900, env=self.env(stage_of)
        )
        return done

    def step_output(self, stack: str, step: str) -> str:
        d = self.out / stack
        return (d / f"{step}.out").read_text() + (d / f"{step}.err").read_text()

    def si(self, stack: str) -> Any:
        return connect(vcenter_from_lab(read_lab_env(self.labs[stack])))

    def vgpus(self, stack: str) -> list[str]:
        with self.si(stack) as si:
            return [v.profile for v in read_vm_devices(find_by_name(si, vim.VirtualMachine, VM)).vgpus]

    def proof_of(self, stack: str) -> dict[str, Any]:
        return json.loads((self.proof / stack / "proof.json").read_text())


def _report(done: subprocess.CompletedProcess, flow: Flow, stack: str) -> str:
    steps = sorted((flow.out / stack).glob("*.rc")) if (flow.out / stack).is_dir() else []
    tails = "".join(
        f"\n--- {p.stem} (exit {p.read_text().strip()}):\n{flow.step_output(stack, p.stem)[-2500:]}" for p in steps
    )
    return f"exit {done.returncode}\n{done.stderr[-2000:]}{tails}"


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flow]:
    engine_built()
    with contextlib.ExitStack() as labs:
        dirs = {stack: labs.enter_context(own_lab(*defaults)).dir for stack, defaults in LAB_DEFAULTS.items()}
        top = tmp_path_factory.mktemp("flow")
        stacks = top / "stacks"
        shutil.copytree(ROOT / "examples" / "gitops", stacks)
        base = dict(
            os.environ,
            GPUFLEET_ENGINE_STATE=str(top / "engine"),
            GPUFLEET_STACKS_DIR=str(stacks),
            GPUFLEET_PIPELINE_OUT=str(top / "out"),
            GPUFLEET_PROOF_DIR=str(top / "proof"),
            GPUFLEET_HOST_LICENSE=FLEET_LICENSE,  # the CLI's copy of the fleet's key (verify, audit)
            PYTHONUNBUFFERED="1",
        )
        base.pop("GPUFLEET_NVIDIA_CLIENT_TOKEN", None)
        yield Flow(base, stacks, top / "out", top / "proof", dirs)


def _gpufleet(flow: Flow, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gpufleet", *args], capture_output=True, text=True, timeout=600, env=env
    )


def test_the_fleet_stack_exports_the_shared_licence(flow: Flow, tmp_path_factory: pytest.TempPathFactory) -> None:
    project = tmp_path_factory.mktemp("fleet-project")
    for name in ("Pulumi.yaml", "__main__.py"):
        shutil.copy(ROOT / "examples" / "fleet" / name, project / name)
    manifest = (project / "Pulumi.yaml").read_text().replace("../../.venv", str(ROOT / ".venv"))
    (project / "Pulumi.yaml").write_text(manifest)
    env = flow.base
    for args in (
        ("stack", "init", "shared"),
        ("config", "set", "--secret", "--stack", "shared", "fleet:hostLicense", FLEET_LICENSE),
        ("up", "--stack", "shared", "--yes"),
    ):
        done = _gpufleet(flow, "pulumi", "-C", str(project), *args, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert FLEET_LICENSE not in done.stdout + done.stderr
    outputs = _gpufleet(flow, "pulumi", "-C", str(project), "stack", "output", "--stack", "shared", "--json", env=env)
    assert json.loads(outputs.stdout) == {"hostLicense": "[secret]"}


def test_staging_is_deployed_as_it_stands(flow: Flow) -> None:
    done = flow.pipeline("deploy", "lab-staging", stage_of="lab-staging")
    assert done.returncode == 0, _report(done, flow, "lab-staging")
    assert flow.vgpus("lab-staging") == ["nvidia_l40s-24c"]
    assert flow.proof_of("lab-staging")["stack"] == "lab-staging"


def test_dev_pr_shows_the_checks_and_the_preview_then_deploys_with_proof(flow: Flow) -> None:
    pr = flow.pipeline("pr", "lab-dev", stage_of="lab-dev")
    assert pr.returncode == 0, _report(pr, flow, "lab-dev")
    comment = (flow.out / "lab-dev" / "comment.md").read_text()
    assert "| validate + policy | passed |" in comment and "| pulumi preview (policy pack) | passed |" in comment
    assert "policy passed" in comment or "| passed |" in comment
    assert "<details><summary>pulumi preview</summary>" in comment
    assert FLEET_LICENSE not in comment

    deploy = flow.pipeline("deploy", "lab-dev", stage_of="lab-dev")
    assert deploy.returncode == 0, _report(deploy, flow, "lab-dev")
    assert flow.vgpus("lab-dev") == ["nvidia_l40s-12c"]
    with flow.si("lab-dev") as si:  # the licence came from the fleet stack, through the StackReference
        found = assigned_license(si, find_by_name(si, vim.HostSystem, HOST))
        assert found is not None and found.key == FLEET_LICENSE
    assert "organization/gpufleet-fleet/shared" in flow.step_output("lab-dev", "up")


def test_promotion_is_refused_while_dev_drifts(flow: Flow) -> None:
    staging_before = (flow.stacks / "Pulumi.lab-staging.yaml").read_text()
    with flow.si("lab-dev") as si:
        swap_vgpu(si, VM, "nvidia_l40s-8c")
    drift = flow.pipeline("drift", "lab-dev", stage_of="lab-dev")
    assert drift.returncode == 2, _report(drift, flow, "lab-dev")
    promote = flow.pipeline("promote", "lab-dev", "lab-staging", stage_of="lab-staging")
    assert promote.returncode == 2, _report(promote, flow, "lab-staging")
    assert "refused" in flow.step_output("lab-staging", "promote")
    assert (flow.stacks / "Pulumi.lab-staging.yaml").read_text() == staging_before  # nothing written


def test_promotion_is_allowed_once_dev_is_repaired_and_staging_previews_exactly_that(flow: Flow) -> None:
    repair = flow.pipeline("deploy", "lab-dev", stage_of="lab-dev")
    assert repair.returncode == 0, _report(repair, flow, "lab-dev")
    assert flow.vgpus("lab-dev") == ["nvidia_l40s-12c"]

    staging_file = flow.stacks / "Pulumi.lab-staging.yaml"
    before = staging_file.read_text().splitlines()
    promote = flow.pipeline("promote", "lab-dev", "lab-staging", stage_of="lab-staging")
    assert promote.returncode == 0, _report(promote, flow, "lab-staging")
    after = staging_file.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert len(changed) == 1 and "nvidia_l40s-24c" in changed[0][0] and "nvidia_l40s-12c" in changed[0][1], changed
    assert after[0] == before[0]  # comments kept: a one-file, one-line PR

    # staging's preview: exactly the promoted change. Two resources update: the VM's GPU devices, and StackFacts
    # (the stack as the policy pack sees it); every changed value in either is that one profile.
    preview = flow.step_output("lab-staging", "preview").splitlines()
    updated = [
        next(u for u in preview[i + 1 : i + 4] if "[urn=" in u).strip().rsplit("::", 1)[-1].rstrip("]")
        for i, line in enumerate(preview)
        if line.strip().endswith(": (update)")
    ]
    assert updated == ["lab-staging", "vm-ts-01-gpu"], preview
    changes = {line.strip() for line in preview if "=>" in line}
    assert changes == {'~ profile: "nvidia_l40s-24c" => "nvidia_l40s-12c"'}, changes
    assert any(line.strip() == "~ 2 to update" for line in preview)
    assert not any(line.strip().endswith(("to create", "to delete", "to replace")) for line in preview)
    comment = (flow.out / "lab-staging" / "comment.md").read_text()
    assert "nvidia_l40s-12c" in comment and "| pulumi preview (policy pack) | passed |" in comment


def test_staging_is_deployed_and_in_sync_with_the_promoted_profile(flow: Flow) -> None:
    deploy = flow.pipeline("deploy", "lab-staging", stage_of="lab-staging")
    assert deploy.returncode == 0, _report(deploy, flow, "lab-staging")
    assert flow.vgpus("lab-staging") == ["nvidia_l40s-12c"]
    drift = flow.pipeline("drift", "lab-staging", stage_of="lab-staging")
    assert drift.returncode == 0, _report(drift, flow, "lab-staging")
    with flow.si("lab-staging") as si:
        found = assigned_license(si, find_by_name(si, vim.HostSystem, HOST))
        assert found is not None and found.key == FLEET_LICENSE
    assert flow.proof_of("lab-staging")["proven"] is True
