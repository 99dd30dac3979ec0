"""``gpufleet audit`` on the embedded lab.

The lab stack is deployed with the product's own engines (``gpufleet hosts prepare``, ``gpufleet vms apply``, which
also converges the template's GPU settings); the one thing only ``pulumi up`` converges (the host licences) is set
here directly, the way ``HostLicenseAssignment`` would. Then: the audit is clean (exit 0, HTML and JUnit checked,
the HTML in headless Chromium); each kind of drift made behind gpufleet's back (pyVmomi reconfigure, the lab's
vCenter admin endpoint, esxcli / nvidia-smi over SSH, a guest reset bare) is found and named, then undone; an unreachable host gives
exit 1 and the rest is still reported.

One test function on purpose: it holds all four lab hosts (``lab_host``) and deploys once (~40 s); every drift kind
is tried even when one fails, and the failures are reported together.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyVmomi import vim

from gpufleet.audit.findings import Finding
from gpufleet.audit.result import AuditResult
from gpufleet.audit.run import audit_stack
from gpufleet.connections import resolve_connections
from gpufleet.readers import nvidia_smi
from gpufleet.remote.ssh import SshRunner
from gpufleet.spec.stack import Stack, load_stack
from gpufleet.vms.apply import apply_vms
from gpufleet.vsphere.connect import connect
from gpufleet.vsphere.inventory import find_by_name
from gpufleet.vsphere.licenses import EVALUATION_KEY, assign_license
from gpufleet.vsphere.tasks import wait_for_task

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "stacks" / "Pulumi.lab.yaml"
GPUFLEET = [sys.executable, "-m", "gpufleet"]
HOSTS = ("esxi-01.lab", "esxi-02.lab", "esxi-03.lab", "esxi-04.lab")
LICENSE_ENV = "GPUFLEET_HOST_LICENSE"
LAB_KEY = "GFLAB-AUDIT-00000-00000-00001"  # lab-only licence keys (vSphere key format)
OTHER_KEY = "GFLAB-AUDIT-00000-00000-00002"
DRIVER = "550.90.05"
OTHER_DRIVER_BUNDLE = "NVD-AIE-800_550.127.06-1OEM.800.1.0.20613240_24311452.zip"
DATASTORE = "/vmfs/volumes/datastore1"


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*GPUFLEET, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env or dict(os.environ)
    )


@dataclass
class Lab:
    stack: Stack
    si: Any  # a logged-in ServiceInstance
    admin: Any  # lab.vcenter.LabAdmin

    def vm(self, name: str) -> vim.VirtualMachine:
        return find_by_name(self.si, vim.VirtualMachine, name)

    def host(self, name: str) -> vim.HostSystem:
        return find_by_name(self.si, vim.HostSystem, name)

    def reconfigure(self, vm: str, spec: vim.vm.ConfigSpec) -> None:
        wait_for_task(self.vm(vm).ReconfigVM_Task(spec), what=f"drift {vm}", timeout=60)

    def converge_vm(self, name: str) -> None:
        report = apply_vms(self.si, self.stack.fleet, names=[name])
        assert not report.failed, report.to_json()

    @contextmanager
    def ssh(self, host: str) -> Iterator[SshRunner]:
        runner = SshRunner(resolve_connections(self.stack).host(host))
        try:
            yield runner
        finally:
            runner.close()

    def audit(self, read_ssh: bool = True) -> AuditResult:
        return audit_stack(self.stack, read_ssh=read_ssh)


def _drift(result: AuditResult) -> list[Finding]:
    return [f for f in result.findings if f.drift]


def _describe(findings: list[Finding]) -> str:
    return "\n".join(f"  {f.severity} {f.kind} {f.path}: desired {f.desired} actual {f.actual}" for f in findings)


# -- drift made behind gpufleet's back, and undone --------------------------------------------------------------


def _vgpu_device(lab: Lab, vm: str) -> vim.vm.device.VirtualPCIPassthrough:
    return next(
        d
        for d in lab.vm(vm).config.hardware.device
        if isinstance(d, vim.vm.device.VirtualPCIPassthrough)
        and isinstance(d.backing, vim.vm.device.VirtualPCIPassthrough.VmiopBackingInfo)
    )


def vgpu_removed(lab: Lab) -> None:
    device = _vgpu_device(lab, "vm-ts-01")
    lab.reconfigure(
        "vm-ts-01", vim.vm.ConfigSpec(deviceChange=[vim.vm.device.VirtualDeviceSpec(operation="remove", device=device)])
    )


def vgpu_changed(lab: Lab) -> None:
    device = _vgpu_device(lab, "vm-mig-01")
    bigger = vim.vm.device.VirtualPCIPassthrough(
        key=-101, backing=vim.vm.device.VirtualPCIPassthrough.VmiopBackingInfo(vgpu="grid_a100d-4-40c")
    )
    lab.reconfigure(
        "vm-mig-01",
        vim.vm.ConfigSpec(
            deviceChange=[
                vim.vm.device.VirtualDeviceSpec(operation="remove", device=device),
                vim.vm.device.VirtualDeviceSpec(operation="add", device=bigger),
            ]
        ),
    )


def _extra(lab: Lab, vm: str, **values: str) -> None:
    lab.reconfigure(
        vm,
        vim.vm.ConfigSpec(
            extraConfig=[vim.option.OptionValue(key=k.replace("__", "."), value=v) for k, v in values.items()]
        ),
    )


def extra_config_changed(lab: Lab) -> None:
    _extra(lab, "vm-pt-01", pciPassthru__64bitMMIOSizeGB="64")


def extra_config_added(lab: Lab) -> None:
    lab.reconfigure(
        "vm-pt-01",
        vim.vm.ConfigSpec(
            extraConfig=[
                vim.option.OptionValue(key="numa.nodeAffinity", value="1"),
                vim.option.OptionValue(key="pciPassthru0.cfg.frame_rate_limiter", value="0"),
            ]
        ),
    )


def extra_config_added_undo(lab: Lab) -> None:
    lab.reconfigure(
        "vm-pt-01",
        vim.vm.ConfigSpec(extraConfig=[vim.option.OptionValue(key="pciPassthru0.cfg.frame_rate_limiter", value="")]),
    )
    lab.converge_vm("vm-pt-01")


def _smi_mig(lab: Lab, host: str, pci: str, on: bool) -> None:
    with lab.ssh(host) as ssh:
        nvidia_smi.set_mig(ssh, pci, on)  # `nvidia-smi -i <bus id> -mig 0|1`, as an operator would


def _install(lab: Lab, host: str, bundle: str) -> None:
    with lab.ssh(host) as ssh:
        if bundle == OTHER_DRIVER_BUNDLE:
            ssh.upload(resolve_connections(lab.stack).local_path(f"lab-depot://{bundle}"), f"{DATASTORE}/{bundle}")
        ssh.run(["esxcli", "system", "maintenanceMode", "set", "-e", "true"]).check(host)
        ssh.run(["esxcli", "software", "component", "apply", "-d", f"{DATASTORE}/{bundle}"]).check(host)
        ssh.run(["esxcli", "system", "maintenanceMode", "set", "-e", "false"]).check(host)


def _spec_bundle(lab: Lab) -> str:
    driver = lab.stack.fleet.driver
    assert driver is not None and driver.version == DRIVER
    return driver.bundle.rsplit("/", 1)[-1]


@dataclass
class Drift:
    """One kind of drift: how to make it, how to undo it, and the finding(s) that must name it."""

    name: str
    make: Callable[[Lab], None]
    undo: Callable[[Lab], None]
    expect: list[tuple[str, str, str | None, str | None]]  # (kind, path, desired, actual); None: not checked
    ssh: bool = False  # the drift shows over SSH only


def _guest(lab: Lab, vm: str, bare: bool) -> None:
    """A guest reset behind gpufleet's back: ``bare`` a fresh one (no NVIDIA software) in its VM powered on (the
    audit reads running guests only), else its deployed state, its VM powered off again."""
    from lab.guest.units import reset_guest
    from lab.paths import LabPaths

    reset_guest(LabPaths.resolve(Path(os.environ["GPUFLEET_LAB_DIR"])), vm, bare=bare)
    task = lab.vm(vm).PowerOnVM_Task() if bare else lab.vm(vm).PowerOffVM_Task()
    wait_for_task(task, what=f"power {'on' if bare else 'off'} {vm}", timeout=60)


DRIFTS = [
    Drift(
        "vGPU removed",
        vgpu_removed,
        lambda lab: lab.converge_vm("vm-ts-01"),
        [("vm.vgpu.missing", "vms/vm-ts-01/vgpu/nvidia_l40s-24c", "nvidia_l40s-24c", None)],
    ),
    Drift(
        "vGPU changed",
        vgpu_changed,
        lambda lab: lab.converge_vm("vm-mig-01"),
        [("vm.vgpu.changed", "vms/vm-mig-01/vgpu/grid_a100d-3-40c", "grid_a100d-3-40c", "grid_a100d-4-40c")],
    ),
    Drift(
        "extraConfig changed",
        extra_config_changed,
        lambda lab: lab.converge_vm("vm-pt-01"),
        [("vm.extra_config.changed", "vms/vm-pt-01/extraConfig/pciPassthru.64bitMMIOSizeGB", "256", "64")],
    ),
    Drift(
        "extraConfig added",
        extra_config_added,
        extra_config_added_undo,
        [
            ("vm.extra_config.added", "vms/vm-pt-01/extraConfig/numa.nodeAffinity", None, "1"),
            ("vm.extra_config.added", "vms/vm-pt-01/extraConfig/pciPassthru0.cfg.frame_rate_limiter", None, "0"),
        ],
    ),
    Drift(
        "graphics type",
        lambda lab: lab.admin.update_host("esxi-03.lab", graphicsType="shared"),
        lambda lab: lab.admin.update_host("esxi-03.lab", graphicsType="sharedDirect"),
        [("host.graphics_type", "hosts/esxi-03.lab/graphics/defaultType", "sharedDirect", "shared")],
    ),
    Drift(
        "MIG mode (Hopper: at once)",
        lambda lab: _smi_mig(lab, "esxi-02.lab", "0000:3b:00.0", False),
        lambda lab: _smi_mig(lab, "esxi-02.lab", "0000:3b:00.0", True),
        [("gpu.mig_mode", "hosts/esxi-02.lab/gpus/0000:3b:00.0/migMode", "enabled", "disabled")],
        ssh=True,
    ),
    Drift(
        "MIG mode (Ampere: pending a reboot)",
        lambda lab: _smi_mig(lab, "esxi-01.lab", "0000:5e:00.0", False),
        lambda lab: _smi_mig(lab, "esxi-01.lab", "0000:5e:00.0", True),
        [
            ("gpu.mig_pending", "hosts/esxi-01.lab/gpus/0000:5e:00.0/migModePending", "enabled", "disabled"),
            ("host.reboot_pending", "hosts/esxi-01.lab/rebootPending", "no", None),
        ],
        ssh=True,
    ),
    Drift(
        "VIB version",
        lambda lab: _install(lab, "esxi-03.lab", OTHER_DRIVER_BUNDLE),
        lambda lab: _install(lab, "esxi-03.lab", _spec_bundle(lab)),
        [("host.driver", "hosts/esxi-03.lab/driver", DRIVER, "550.127.06")],
        ssh=True,
    ),
    Drift(
        "host in maintenance",
        lambda lab: lab.admin.update_host("esxi-04.lab", inMaintenanceMode=True),
        lambda lab: lab.admin.update_host("esxi-04.lab", inMaintenanceMode=False),
        [("host.maintenance", "hosts/esxi-04.lab/maintenanceMode", "off", "on")],
    ),
    Drift(
        "guest without its NVIDIA stack",
        lambda lab: _guest(lab, "vm-mig-01", bare=True),
        lambda lab: _guest(lab, "vm-mig-01", bare=False),
        [
            ("guest.driver", "vms/vm-mig-01/guest/driver", "550.90.07", "not loaded"),
            ("guest.toolkit", "vms/vm-mig-01/guest/toolkit", "1.16.2", "not installed"),
            ("guest.docker_runtime", "vms/vm-mig-01/guest/docker_runtime", "nvidia", None),
        ],
        ssh=True,
    ),
    Drift(
        "licence",
        lambda lab: assign_license(lab.si, lab.host("esxi-01.lab"), OTHER_KEY),
        lambda lab: assign_license(lab.si, lab.host("esxi-01.lab"), LAB_KEY),
        [("host.license", "hosts/esxi-01.lab/license", None, None)],
    ),
]


# -- deploy ---------------------------------------------------------------------------------------------------


@pytest.fixture
def deployed_lab(lab_env: Any, lab_host: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    """The lab stack deployed on all four (freshly reset) lab hosts."""
    from lab.vcenter import LabAdmin

    for name in HOSTS:
        lab_host(name)
    monkeypatch.setenv(LICENSE_ENV, LAB_KEY)
    prepared = _cli("hosts", "prepare", str(STACK), "--json")
    assert prepared.returncode == 0, prepared.stdout[-3000:] + prepared.stderr[-3000:]
    applied = _cli("vms", "apply", str(STACK), "--json")
    assert applied.returncode == 0, applied.stdout[-3000:] + applied.stderr[-3000:]
    assert [(t["name"], t["error"]) for t in json.loads(applied.stdout)["templates"]] == [("tpl-ubuntu2204-gpu", None)]
    stack = load_stack(STACK)
    conns = resolve_connections(stack)
    with connect(conns.vcenter) as si:
        lab_ = Lab(stack=stack, si=si, admin=LabAdmin())
        # What pulumi up's HostLicenseAssignment sets on the hosts.
        for name in HOSTS:
            assign_license(si, lab_.host(name), LAB_KEY)
        try:
            yield lab_
        finally:
            for name in HOSTS:
                assign_license(si, lab_.host(name), EVALUATION_KEY)


# -- the test ---------------------------------------------------------------------------------------------------


def _expect(drift: Drift, result: AuditResult) -> list[str]:
    problems = []
    for kind, path, desired, actual in drift.expect:
        hits = [f for f in result.findings if f.kind == kind and f.path == path]
        if not hits:
            problems.append(f"{drift.name}: no {kind} at {path}; findings:\n{_describe(result.findings)}")
            continue
        f = hits[0]
        if desired is not None and f.desired != desired:
            problems.append(f"{drift.name}: {kind} desired {f.desired!r}, expected {desired!r}")
        if actual is not None and (f.actual or "").split(" (")[0] != actual:
            problems.append(f"{drift.name}: {kind} actual {f.actual!r}, expected {actual!r}")
        if not f.hint or not f.message:
            problems.append(f"{drift.name}: {kind} has no hint or message")
    if result.exit_code != 2:
        problems.append(
            f"{drift.name}: exit code {result.exit_code}, expected 2 (drift); unreachable: {result.unreachable}"
        )
    return problems


def _check_clean_cli_and_reports(tmp: Path) -> None:
    html, junit = tmp / "audit.html", tmp / "audit.xml"
    done = _cli("audit", str(STACK), "--json", "--html", str(html), "--junit", str(junit))
    document = json.loads(done.stdout)
    assert done.returncode == 0, f"audit after deploy is not clean:\n{json.dumps(document['findings'], indent=1)}"
    assert document["status"] == "in-sync" and document["unreachable"] == []
    assert document["read"]["vcenterRoundTrips"] == 6
    assert set(document["actual"]["hosts"]) == set(HOSTS)
    # JUnit: one case per audited object (4 hosts, 10 GPUs, 4 VMs, 1 template), none failing.
    suite = ET.parse(junit).getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == len(document["objects"]) == 19
    assert suite.get("failures") == "0" and suite.get("errors") == "0"
    _check_html_in_chromium(html, tmp)


def _check_html_in_chromium(html: Path, tmp: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("headless Chromium not installed (Debian: apt-get install -y chromium)")
    profile = tempfile.mkdtemp(prefix="gpufleet-chromium-")
    flags = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1400,2200",
    ]
    try:
        dom = subprocess.run([*flags, "--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=90)
        shot = subprocess.run(
            [*flags, f"--screenshot={tmp / 'audit.png'}", html.as_uri()], capture_output=True, text=True, timeout=90
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert dom.returncode == 0 and shot.returncode == 0, dom.stderr[-1000:] + shot.stderr[-1000:]
    page = dom.stdout
    assert 'id="status" data-status="in-sync"' in page
    for host in HOSTS:
        assert f'data-host="{host}" data-status="ok"' in page
    # esxi-01's first A100: the spec's 3g.40gb for vm-mig-01 drawn on the 8 slices, desired and actual.
    first = page.index('data-gpu="0000:3b:00.0"', page.index('data-host="esxi-01.lab"'))
    card = page[first : page.index('data-gpu="0000:5e:00.0"', first)]
    assert card.count('data-profile="3g.40gb"') == 2 and card.count('data-profile="free"') == 8
    assert "vm-mig-01" in card
    assert (tmp / "audit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    keep = os.environ.get("GPUFLEET_AUDIT_KEEP_REPORT")
    if keep:  # for a person to look at: GPUFLEET_AUDIT_KEEP_REPORT=/tmp/audit-lab-report
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(html, Path(keep) / "audit.html")
        shutil.copy(tmp / "audit.png", Path(keep) / "audit.png")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_unreachable_host(lab: Lab, tmp: Path) -> None:
    """esxi-04's SSH endpoint points at a closed port: exit 1, esxi-04 named, the rest still read and compared
    (esxi-02 is put in maintenance at the same time and must be reported)."""
    lab_dir = Path(os.environ["GPUFLEET_LAB_DIR"])
    env_doc = json.loads((lab_dir / "env.json").read_text())
    for host in env_doc["hosts"]:
        if host["name"] == "esxi-04.lab":
            host["port"] = _free_port()  # nothing listens there
    broken = tmp / "broken-lab"
    broken.mkdir()
    fd = os.open(broken / "env.json", os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(env_doc, fh)
    lab.admin.update_host("esxi-02.lab", inMaintenanceMode=True)
    try:
        done = _cli(
            "audit",
            str(STACK),
            "--json",
            "--junit",
            str(tmp / "broken.xml"),
            env=dict(os.environ, GPUFLEET_LAB_DIR=str(broken)),
        )
    finally:
        lab.admin.update_host("esxi-02.lab", inMaintenanceMode=False)
    document = json.loads(done.stdout)
    assert done.returncode == 1, done.stderr
    assert document["status"] == "incomplete"
    assert [u["target"] for u in document["unreachable"]] == ["esxi-04.lab"]
    assert "esxi-04.lab" in document["unreachable"][0]["reason"]
    assert "esxi-04.lab" in done.stderr  # named on stderr too, next to the JSON document on stdout
    assert set(document["actual"]["hosts"]) == {"esxi-01.lab", "esxi-02.lab", "esxi-03.lab"}
    kinds = {(f["kind"], f["path"]) for f in document["findings"]}
    assert ("host.maintenance", "hosts/esxi-02.lab/maintenanceMode") in kinds
    cases = {c.get("name"): c for c in ET.parse(tmp / "broken.xml").getroot().iter("testcase")}
    assert cases["hosts/esxi-04.lab"].find("error") is not None
    assert cases["hosts/esxi-02.lab"].find("failure") is not None
    assert cases["hosts/esxi-01.lab"].find("error") is None and cases["hosts/esxi-01.lab"].find("failure") is None


def test_audit_clean_after_deploy_names_each_drift_and_reports_unreachable_hosts(
    deployed_lab: Lab, tmp_path: Path
) -> None:
    lab = deployed_lab
    _check_clean_cli_and_reports(tmp_path)

    problems: list[str] = []
    for drift in DRIFTS:
        drift.make(lab)
        try:
            problems += _expect(drift, lab.audit(read_ssh=drift.ssh))
        finally:
            drift.undo(lab)
    assert not problems, "\n".join(problems)

    _check_unreachable_host(lab, tmp_path)

    after = lab.audit()
    assert after.exit_code == 0, f"drift left after undoing every drift:\n{_describe(_drift(after))}"
