"""The whole Pulumi path through the real engine (``.tools/bin/pulumi``, built by ``make engine``) on a lab of its own.

One story, in order (the tests share the engine's state and the lab; ``-m engine`` runs them alone):
preview the lab stack -> a broken stack is refused naming its field -> ``pulumi up`` (hosts prepared at most
``maxUnavailable`` at once, VMs' GPUs converged, a bare guest prepared (driver, toolkit, Docker runtime, one
reboot), guests licensed; ``gpufleet verify`` and ``audit`` agree) -> ``up`` again changes nothing -> drift behind
Pulumi's back (a guest's Docker runtime too) is seen by ``refresh`` and repaired by ``up`` -> no
plain-text secret in the state -> ``destroy`` leaves the lab's own VMs and settings as they were.

The lab is separate from the suite's shared test lab (its own dir and ports): the story needs every host and VM
for itself. Everything runs as subprocesses with ``GPUFLEET_LAB_DIR`` / ``GPUFLEET_ENGINE_STATE`` pointing at it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from own_lab import engine_built, own_lab
from pyVmomi import vim
from ruamel.yaml import YAML

from gpufleet.connections import read_lab_env, resolve_connections, vcenter_from_lab
from gpufleet.engine import workspace as engine
from gpufleet.spec.stack import load_stack
from gpufleet.vsphere.connect import connect
from gpufleet.vsphere.inventory import find_by_name
from gpufleet.vsphere.tasks import wait_for_task

# One module: `--dist loadscope` (make test) runs a module on one worker, in order. (pytest-xdist 3.8's
# `xdist_group` does nothing under pytest 9: it renames `item._nodeid`, which pytest 9 no longer reads.)
pytestmark = [pytest.mark.engine, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
LAB_STACK = ROOT / "stacks" / "Pulumi.lab.yaml"
GPU_TYPES = {
    "gpufleet:vsphere:GpuHost",
    "gpufleet:vsphere:GpuVm",
    "gpufleet:vsphere:Licensing",
    "gpufleet:vsphere:VgpuMobility",
    "pulumi-python:dynamic/vsphere:HostPreparation",
    "pulumi-python:dynamic/vsphere:HostLicenseAssignment",
    "pulumi-python:dynamic/vsphere:VmGpuDevices",
    "pulumi-python:dynamic/vsphere:VcenterAdvancedSetting",
    "pulumi-python:dynamic/vsphere:GuestNvidiaLicensing",
    "pulumi-python:dynamic/vsphere:GuestPreparation",
    "pulumi-python:dynamic/vsphere:TemplateGpuSettings",
    "gpufleet:vsphere:GpuVmTemplate",
}


@dataclass
class Story:
    """What the tests share: the lab, the engine's env, and what the lab looked like before the first ``up``."""

    lab_dir: Path
    env: dict[str, str]
    before: dict[str, Any] = field(default_factory=dict)
    up_started: float = 0.0

    def pulumi(self, *args: str, timeout: float = 600, check: bool = False) -> subprocess.CompletedProcess:
        """``gpufleet pulumi ARGS`` (the wrapper users run), on the lab stack unless ``--stack`` is given."""
        argv = [sys.executable, "-m", "gpufleet", "pulumi", *args]
        if "--stack" not in args and args[:1] != ("stack",):  # `stack` subcommands name theirs
            argv += ["--stack", "lab"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self.env, cwd=ROOT)
        if check:
            assert done.returncode == 0, (
                f"pulumi {' '.join(args)}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
            )
        return done

    def gpufleet(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "gpufleet", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self.env, cwd=ROOT)

    def si(self) -> Any:
        return connect(vcenter_from_lab(read_lab_env(self.lab_dir)))

    def secrets(self) -> dict[str, str]:
        """Every secret this story handles: the vCenter password and the lab's licence key and NVIDIA token."""
        document = read_lab_env(self.lab_dir)
        return {"vcenter password": document["vcenter"]["password"], **document["secrets"]}


def _lab_snapshot(story: Story) -> dict[str, Any]:
    """What ``destroy`` must give back: each VM's GPU/RDMA devices and extraConfig keys, the hosts' licences, the
    vCenter setting ``vgpu.hotmigrate.enabled``, the VMs that exist."""
    from gpufleet.vsphere.licenses import assigned_license, key_fingerprint
    from gpufleet.vsphere.vm_devices import read_vm_devices

    with story.si() as si:
        vms = {}
        for name in ("vm-ts-01", "vm-mig-01", "vm-pt-01", "vm-rdma-01"):
            vm = find_by_name(si, vim.VirtualMachine, name)
            devices = read_vm_devices(vm)
            vms[name] = {
                "vgpus": [v.profile for v in devices.vgpus],
                "passthrough": len(devices.directpath) + len(devices.dynamic),
                "pvrdma": len(devices.pvrdma),
                "extraConfig": {o.key: o.value for o in vm.config.extraConfig},
                "power": str(vm.runtime.powerState),
            }
        hosts = {}
        for name in _host_names():
            found = assigned_license(si, find_by_name(si, vim.HostSystem, name))
            hosts[name] = key_fingerprint(found.key) if found else None  # never the key itself
        setting = [o.value for o in si.content.setting.QueryView(name="vgpu.hotmigrate.enabled")]
        names = sorted(v.name for v in _all_vms(si))
    return {"vms": vms, "licenses": hosts, "hotmigrate": setting, "inventory": names}


def _all_vms(si: Any) -> list[Any]:
    view = si.content.viewManager.CreateContainerView(si.content.rootFolder, [vim.VirtualMachine], True)
    try:
        return list(view.view)
    finally:
        view.Destroy()


BARE_GUEST = "vm-rdma-01"  # reset to a fresh guest before the first `up`


def _host_names() -> list[str]:
    return [h.name for h in load_stack(LAB_STACK).fleet.hosts]


# Session scope, not module: should a scheduler run other modules' tests between these (pytest-xdist's `load`), a
# module fixture would be torn down (the lab stopped) and built again in between.
@pytest.fixture(scope="session")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    engine_built()
    with own_lab("E2E", "/tmp/gpufleet-e2e-lab", 2322, 18643) as lab:
        state = tmp_path_factory.mktemp("engine-state")
        story = Story(lab.dir, lab.environ(GPUFLEET_ENGINE_STATE=str(state)))  # the lab's generated secrets
        story.pulumi("stack", "init", "lab", check=True)
        yield story


def _audit_summary(done: subprocess.CompletedProcess) -> str:
    """What an audit run said, short: its status, the drift findings and what was unreachable."""
    try:
        document = json.loads(done.stdout)
    except ValueError:
        return done.stdout[-3000:] + done.stderr[-2000:]
    drift = [(f["kind"], f["path"], f.get("desired"), f.get("actual")) for f in document["findings"]]
    return f"exit {done.returncode}, {document['status']}: drift {drift}, unreachable {document['unreachable']}"


def _steps(preview_json: str) -> list[dict[str, Any]]:
    return json.loads(preview_json)["steps"]


def _lab_events(story: Story, since: float) -> list[dict[str, Any]]:
    from lab.esxi.events import read_events
    from lab.paths import LabPaths

    return read_events(LabPaths.resolve(story.lab_dir), since=since)


def _commands_since(story: Story, host: str, since: float, containing: str) -> list[float]:
    """When the lab host ran commands containing ``containing`` (its commands.log), from ``since`` on."""
    from lab.paths import LabPaths

    log = LabPaths.resolve(story.lab_dir).host_dir(host) / "commands.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return sorted(float(line.split()[0]) for line in lines if containing in line and float(line.split()[0]) >= since)


def _cluster_field(story: Story, name: str) -> str | None:
    from gpufleet.vsphere import fields

    with story.si() as si:
        return fields.get_field(si, find_by_name(si, vim.ClusterComputeResource, "GPU-Cluster"), name)


def _set_cluster_field(story: Story, name: str, value: str) -> None:
    from gpufleet.vsphere import fields

    with story.si() as si:
        fields.set_field(si, find_by_name(si, vim.ClusterComputeResource, "GPU-Cluster"), name, value)


def test_preview_plans_gpufleet_resources_and_changes_nothing(story: Story) -> None:
    story.before = _lab_snapshot(story)
    started = time.time()
    done = story.pulumi("preview", "--json")
    assert done.returncode == 0, done.stderr + done.stdout
    steps = _steps(done.stdout)
    types = {step["newState"]["type"] for step in steps if step.get("newState")}
    assert types >= GPU_TYPES, f"missing: {GPU_TYPES - types}"
    assert {step["op"] for step in steps} == {"create"}
    # pulumi-vsphere has no resource in the (brownfield) lab stack: see test_pulumi_vsphere_resource_on_vcsim.
    assert not [t for t in types if t.startswith("vsphere:")]
    assert [e for e in _lab_events(story, started) if e["event"] != "ssh_session"] == []
    assert _lab_snapshot(story) == story.before


def test_preview_of_a_broken_stack_names_the_field_and_changes_nothing(story: Story) -> None:
    yaml = YAML(typ="rt")
    document = yaml.load(LAB_STACK.read_text())
    document["config"]["gpufleet:fleet"]["vms"][0]["vgpu"][0]["profile"] = "nvidia_l40s-99c"
    project = engine.sync_workspace(Path(story.env["GPUFLEET_ENGINE_STATE"]))
    with open(project / "stacks" / "Pulumi.broken.yaml", "w") as fh:
        yaml.dump(document, fh)
    story.pulumi("stack", "init", "broken", check=True)
    started = time.time()
    done = story.pulumi("preview", "--stack", "broken")
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "vms[vm-ts-01].vgpu[0].profile" in output and "nvidia_l40s-99c" in output, output
    assert "nvidia_l40s-24c" in output  # the valid choices are named
    assert "Traceback" not in output
    assert [e for e in _lab_events(story, started) if e["event"] != "ssh_session"] == []
    assert _lab_snapshot(story) == story.before


def test_up_prepares_hosts_within_the_bound_converges_vms_and_licenses_guests(story: Story) -> None:
    from lab.esxi.events import max_concurrent
    from lab.guest.units import reset_guest
    from lab.paths import LabPaths

    reset_guest(LabPaths.resolve(story.lab_dir), BARE_GUEST, bare=True)  # a fresh guest: no NVIDIA software
    story.up_started = time.time()
    done = story.pulumi("up", "--yes", "--skip-preview", timeout=900)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    outputs = json.loads(story.pulumi("stack", "output", "--json", "--stack", "lab", check=True).stdout)
    guests = {name: vm["guest"] for name, vm in outputs["vms"].items()}
    assert guests["vm-pt-01"] is None  # no guest: block
    assert {n: g["state"] for n, g in guests.items() if g} == dict.fromkeys(
        ("vm-ts-01", "vm-mig-01", "vm-rdma-01"), "converged"
    ), guests
    bare = {s["name"]: s["state"] for s in guests[BARE_GUEST]["steps"]}
    assert guests[BARE_GUEST]["reboots"] == 1 and bare["driver"] == "done" and bare["docker"] == "done", guests
    assert guests["vm-ts-01"]["reboots"] == 0, guests  # already prepared: checked, asserted, not touched
    assert set(outputs["hosts"]) == set(_host_names())
    assert outputs["vms"]["vm-ts-01"]["gpuDevices"]["vgpus"][0]["profile"] == "nvidia_l40s-24c"
    assert outputs["vgpuHotMigrate"] == "true"
    assert outputs["licensedGuests"] == {"vm-mig-01": True, "vm-rdma-01": True, "vm-ts-01": True}
    events = _lab_events(story, story.up_started)
    assert {e["host"] for e in events if e["event"] == "maintenance_enter"} == set(_host_names())
    # The engine runs resources in parallel; the host lanes keep the rollout bound of the stack (2).
    assert max_concurrent(events) <= load_stack(LAB_STACK).fleet.rollout.max_unavailable
    # One maintenance window per host, one reboot for everything pending; a fresh Ampere host (esxi-01) the allowed
    # second: MIG can only be set once the new driver is loaded.
    windows = {h: sum(1 for e in events if e["host"] == h and e["event"] == "maintenance_enter") for h in _host_names()}
    reboots = {h: sum(1 for e in events if e["host"] == h and e["event"] == "reboot_start") for h in _host_names()}
    assert windows == dict.fromkeys(_host_names(), 1), windows
    # Pre-staging: every host's bundle was checked by esxcli --dry-run before the first host entered maintenance.
    first_window = min(e["ts"] for e in events if e["event"] == "maintenance_enter")
    for host in _host_names():
        dry_runs = _commands_since(story, host, story.up_started, "--dry-run")
        assert dry_runs and dry_runs[0] < first_window, (host, dry_runs, first_window)
    # The program held the cluster's rollout lease for the run and released it at the end.
    assert _cluster_field(story, "gpufleet.lease") is None
    assert reboots == {"esxi-01.lab": 2, "esxi-02.lab": 1, "esxi-03.lab": 1, "esxi-04.lab": 1}, reboots
    verify = story.gpufleet("verify", str(LAB_STACK), "--json")
    assert verify.returncode == 0, verify.stdout[-4000:] + verify.stderr[-2000:]
    audit = story.gpufleet("audit", str(LAB_STACK), "--json")
    assert audit.returncode == 0, _audit_summary(audit)
    assert json.loads(audit.stdout)["status"] == "in-sync"


def test_second_up_has_no_changes(story: Story) -> None:
    done = story.pulumi("up", "--yes", "--expect-no-changes")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_up_is_refused_while_another_run_holds_the_cluster_and_takes_over_on_request(story: Story) -> None:
    """The same lease as `hosts prepare`: a live run elsewhere holds GPU-Cluster -> `pulumi up` fails naming it,
    before any resource runs; `gpufleet pulumi up --take-over` takes it (and releases it at the end)."""
    from gpufleet.vsphere.lease import Lease

    other = Lease("ops@jumphost-7 pid 4242", "f" * 32, "jumphost-7", 4242, time.time() + 600)
    _set_cluster_field(story, "gpufleet.lease", other.to_value())
    started = time.time()
    refused = story.pulumi("up", "--yes", "--skip-preview")
    output = " ".join((refused.stdout + refused.stderr).split())
    assert refused.returncode != 0
    assert "cluster GPU-Cluster is being rolled out by ops@jumphost-7 pid 4242" in output, output[-3000:]
    assert "--take-over" in output and "Traceback" not in output
    assert [e for e in _lab_events(story, started) if e["event"] != "ssh_session"] == []
    taken = story.pulumi("up", "--yes", "--skip-preview", "--take-over")
    assert taken.returncode == 0, taken.stdout[-4000:] + taken.stderr[-2000:]
    assert _cluster_field(story, "gpufleet.lease") is None


def _make_drift(story: Story) -> None:
    """Behind Pulumi's back: vm-ts-01's vGPU removed (powered off for it, then on again, as vSphere needs), vm-pt-01's
    MMIO size changed, MIG off on esxi-02 (Hopper: at once), Docker's nvidia runtime gone in vm-mig-01's guest."""
    from gpufleet.licensing.guest import GuestSshRunner
    from gpufleet.readers import nvidia_smi
    from gpufleet.remote.ssh import SshRunner

    with story.si() as si:
        vm = find_by_name(si, vim.VirtualMachine, "vm-ts-01")
        if str(vm.runtime.powerState) == "poweredOn":
            wait_for_task(vm.PowerOffVM_Task(), what="power off vm-ts-01", timeout=60)
        gpu = next(d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualPCIPassthrough))
        spec = vim.vm.ConfigSpec(deviceChange=[vim.vm.device.VirtualDeviceSpec(operation="remove", device=gpu)])
        wait_for_task(vm.ReconfigVM_Task(spec=spec), what="drift vm-ts-01", timeout=60)
        wait_for_task(vm.PowerOnVM_Task(), what="power on vm-ts-01", timeout=60)  # as an operator would
        pt = find_by_name(si, vim.VirtualMachine, "vm-pt-01")
        spec = vim.vm.ConfigSpec(extraConfig=[vim.option.OptionValue(key="pciPassthru.64bitMMIOSizeGB", value="64")])
        wait_for_task(pt.ReconfigVM_Task(spec=spec), what="drift vm-pt-01", timeout=60)
    conns = resolve_connections(load_stack(LAB_STACK), story.env)
    runner = SshRunner(conns.host("esxi-02.lab"))
    try:
        nvidia_smi.set_mig(runner, "0000:3b:00.0", False)
    finally:
        runner.close()
    guest = GuestSshRunner(conns.guest("vm-mig-01"))  # and Docker's nvidia runtime dropped in vm-mig-01's guest
    try:
        guest.run_input(["sh", "-c", "cat > /etc/docker/daemon.json"], b"{}\n").check("vm-mig-01")
        guest.run(["systemctl", "restart", "docker"]).check("vm-mig-01")
    finally:
        guest.close()


def test_refresh_sees_drift_and_up_repairs_it(story: Story) -> None:
    _make_drift(story)
    done = story.pulumi("refresh", "--yes", "--skip-preview", "--json")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    preview = story.pulumi("preview", "--json")
    assert preview.returncode == 0, preview.stderr
    changed = {step["urn"].rsplit("::", 1)[-1] for step in _steps(preview.stdout) if step["op"] != "same"}
    assert {"vm-ts-01-gpu", "vm-pt-01-gpu", "esxi-02.lab-prepare", "vm-mig-01-guest"} <= changed, changed
    audit = story.gpufleet("audit", str(LAB_STACK), "--json")
    assert audit.returncode == 2, _audit_summary(audit)  # the auditor sees the same drift
    repaired = story.pulumi("up", "--yes", "--skip-preview", timeout=900)
    assert repaired.returncode == 0, repaired.stdout[-6000:] + repaired.stderr[-3000:]
    audit = story.gpufleet("audit", str(LAB_STACK), "--json")
    assert audit.returncode == 0, _audit_summary(audit)
    again = story.pulumi("up", "--yes", "--expect-no-changes")
    assert again.returncode == 0, again.stdout[-4000:]


def test_state_holds_no_plaintext_secret(story: Story) -> None:
    exported = story.pulumi("stack", "export", "--stack", "lab", check=True).stdout
    state = Path(story.env["GPUFLEET_ENGINE_STATE"])
    files = [p for p in state.rglob("*") if p.is_file() and p.name != "passphrase"]
    for what, value in story.secrets().items():
        assert value not in exported, f"{what} in `pulumi stack export`"
        for path in files:
            assert value.encode() not in path.read_bytes(), f"{what} in {path}"
    assert (
        '"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270"' in exported
    )  # secrets are there, encrypted


def test_destroy_gives_back_the_lab_as_it_was(story: Story) -> None:
    done = story.pulumi("destroy", "--yes", "--skip-preview", timeout=900)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    after = _lab_snapshot(story)
    assert after["inventory"] == story.before["inventory"]  # brownfield: the lab's VMs stay
    assert after["licenses"] == story.before["licenses"]
    assert after["hotmigrate"] == story.before["hotmigrate"]
    for name, vm in story.before["vms"].items():
        got = after["vms"][name]
        assert {k: got[k] for k in ("vgpus", "passthrough", "pvrdma", "extraConfig")} == {
            k: vm[k] for k in ("vgpus", "passthrough", "pvrdma", "extraConfig")
        }, name
    listing = story.pulumi("stack", "ls", "--json", check=True).stdout
    assert next(s for s in json.loads(listing) if s["name"] == "lab")["resourceCount"] in (0, None)


def test_pulumi_vsphere_resource_on_vcsim(story: Story, tmp_path: Path) -> None:
    """A pulumi-vsphere resource created on vcsim through the real provider (a folder), then destroyed."""
    reason = engine.vsphere_provider_unavailable()
    if reason:
        pytest.skip(f"pulumi-resource-vsphere could not be built from the Go module proxy here: {reason}")
    env = read_lab_env(story.lab_dir)["vcenter"]
    project = tmp_path / "vsphere-folder"
    project.mkdir()
    (project / "Pulumi.yaml").write_text(
        f"name: vsphere-folder\nruntime:\n  name: python\n  options:\n    virtualenv: {ROOT / '.venv'}\n"
    )
    (project / "__main__.py").write_text(
        "import pulumi, pulumi_vsphere as vsphere\n"
        "dc = vsphere.get_datacenter(name='DC-Lab')\n"
        "f = vsphere.Folder('gpufleet-e2e', path='gpufleet-e2e', type='vm', datacenter_id=dc.id)\n"
        "pulumi.export('folder', f.path)\n"
    )
    env_run = dict(
        story.env,
        VSPHERE_SERVER=f"{env['host']}:{env['port']}",
        VSPHERE_USER=env["user"],
        VSPHERE_PASSWORD=env["password"],
        SSL_CERT_FILE=env["ca_file"],
    )
    run_env = engine.engine_environ(env_run)
    pulumi = str(engine.pulumi_binary())
    for args in (["stack", "init", "folder"], ["up", "--yes", "--skip-preview"]):
        done = subprocess.run([pulumi, *args], cwd=project, env=run_env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
    with story.si() as si:
        assert any(
            getattr(c, "name", None) == "gpufleet-e2e"
            for c in si.content.rootFolder.childEntity[0].vmFolder.childEntity
        )
    done = subprocess.run(
        [pulumi, "destroy", "--yes"], cwd=project, env=run_env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    shutil.rmtree(project, ignore_errors=True)
