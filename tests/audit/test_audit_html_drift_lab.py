"""The HTML audit report of a drifted lab, rendered by headless Chromium: the stack changes esxi-01's first A100 to
time-sliced vGPU while the GPU really runs MIG with vm-mig-01's 3g.40gb instance. The actual side draws that
instance on that GPU, read from the host, and the other A100 holds none (the report used to draw the actual side
from the spec's modes: an idle vGPU bar, and the instance on the other GPU)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pyVmomi import vim
from ruamel.yaml import YAML

from gpufleet.connections import resolve_connections
from gpufleet.readers import nvidia_smi
from gpufleet.remote.ssh import SshRunner
from gpufleet.spec.stack import load_stack
from gpufleet.vsphere.connect import connect
from gpufleet.vsphere.inventory import find_by_name
from gpufleet.vsphere.tasks import wait_for_task

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "stacks" / "Pulumi.lab.yaml"
HOST, VM, FIRST, SECOND = "esxi-01.lab", "vm-mig-01", "0000:3b:00.0", "0000:5e:00.0"
HOSTS = ("esxi-01.lab", "esxi-02.lab", "esxi-03.lab", "esxi-04.lab")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gpufleet", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def _drifted_stack(tmp_path: Path) -> Path:
    """The lab stack with esxi-01 and vm-mig-01 only, esxi-01's first A100 changed to time-sliced vGPU."""
    yaml = YAML()
    yaml.preserve_quotes = True  # "0000:3b:00.0" stays a quoted string
    document = yaml.load(STACK.read_text())
    fleet = document["config"]["gpufleet:fleet"]
    fleet["hosts"] = [h for h in fleet["hosts"] if h["name"] == HOST]
    fleet["vms"] = [v for v in fleet["vms"] if v["name"] == VM]
    fleet["hosts"][0]["gpus"][0]["mode"] = "vgpu"
    path = tmp_path / "Pulumi.lab-drift.yaml"
    with open(path, "w") as fh:
        yaml.dump(document, fh)
    return path


def _dump_dom(html: Path) -> str:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("headless Chromium not installed (Debian: apt-get install -y chromium)")
    profile = tempfile.mkdtemp(prefix="gpufleet-chromium-")
    try:
        done = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
            + ["--no-first-run", f"--user-data-dir={profile}", "--window-size=1400,2200", "--dump-dom", html.as_uri()],
            capture_output=True,
            text=True,
            timeout=90,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _sides(page: str, gpu: str) -> tuple[str, str]:
    """The HTML of the desired and the actual side of one GPU card of esxi-01."""
    card = page.index(f'data-gpu="{gpu}"', page.index(f'data-host="{HOST}"'))
    end = min(i for e in ('data-gpu="', "</article>") if (i := page.find(e, card + 1)) != -1)
    html = page[card:end]
    marks = ('data-side="actual"', 'data-map="actual"', 'data-bar="actual"', 'data-owner="actual"')
    split = min(i for m in marks if (i := html.find(m)) != -1)
    return html[:split], html[split:]


def test_the_actual_side_draws_the_running_mig_instance_on_its_gpu(
    lab_env: Any, lab_host: Callable[[str], Any], tmp_path: Path
) -> None:
    # Every lab host, in order: `hosts prepare` takes the cluster's rollout lease, which another test preparing a
    # host of the same cluster at the same time would be refused.
    for name in HOSTS:
        lab_host(name)
    for args in (["hosts", "prepare", str(STACK), "--host", HOST, "--json"], ["vms", "apply", str(STACK), "--vm", VM]):
        done = _cli(*args)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    stack = load_stack(STACK)
    conns = resolve_connections(stack)
    with connect(conns.vcenter) as si:
        vm = find_by_name(si, vim.VirtualMachine, VM)
        if vm.runtime.powerState != "poweredOn":
            wait_for_task(vm.PowerOnVM_Task(), what=f"power on {VM}", timeout=60)
    with SshRunner(conns.host(HOST)) as ssh:
        instances = nvidia_smi.gpu_instances(ssh)  # what the host really runs: the 3g.40gb on the first A100
    assert [(i.profile, i.start, i.size) for i in instances.get(0, [])] == [("3g.40gb", 0, 4)]
    assert not instances.get(1)

    html = tmp_path / "audit.html"
    done = _cli("audit", str(_drifted_stack(tmp_path)), "--json", "--html", str(html))
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]  # drift: MIG on where vGPU is wanted
    kinds = {(f["kind"], f["path"]) for f in json.loads(done.stdout)["findings"]}
    assert ("gpu.mig_mode", f"hosts/{HOST}/gpus/{FIRST}/migMode") in kinds, kinds
    page = _dump_dom(html)

    (first_desired, first_actual), (second_desired, second_actual) = _sides(page, FIRST), _sides(page, SECOND)
    # desired: the spec's modes, an idle vGPU bar on the first A100 and the 3g.40gb planned on the second
    assert 'data-bar="desired" data-used="0"' in first_desired and "slicemap" not in first_desired
    assert 'data-map="desired"' in second_desired and second_desired.count('data-profile="3g.40gb"') == 1
    # actual: the instance nvidia-smi reported, on the GPU that runs it; the second A100 runs none
    assert 'data-map="actual"' in first_actual and "data-bar" not in first_actual
    assert first_actual.count('data-profile="3g.40gb"') == 1 and 'data-start="0" data-size="4"' in first_actual
    assert "read from the host" in first_actual
    assert 'data-map="actual"' in second_actual and "3g.40gb" not in second_actual
    assert second_actual.count('data-profile="free"') == 8
    keep = os.environ.get("GPUFLEET_AUDIT_KEEP_REPORT")
    if keep:  # for a person to look at
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(html, Path(keep) / "audit-drift.html")
