"""One key convention across every verb's ``--json`` (issue 13, item 3): field names in camelCase, as in the stack
file. Each verb's document is made here (offline verbs through the CLI, the lab-bound verbs from the builders they
print, fed fabricated results) and walked to every depth: no field-name key may hold an underscore. Keys of the maps
whose keys are data (host, VM, package names, extraConfig settings, clusters, phases) are not field names: they are
named below, by where they sit, and only their values are walked."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gpufleet.checks.bitfusion import ClientConfigResult
from gpufleet.checks.run import CheckResult, CheckRun
from gpufleet.cli.main import app
from gpufleet.cli.output import json_text
from gpufleet.cli.proof import Proof
from gpufleet.guest.facts import GuestFacts
from gpufleet.guest.prepare import GuestReport, GuestsReport, GuestStepResult
from gpufleet.hosts.model import HostReport, StepReport, StepState
from gpufleet.hosts.rollout import RolloutReport
from gpufleet.licensing.guest import LicensingResult
from gpufleet.licensing.vsphere import LicenseResult
from gpufleet.vms.apply import ApplyReport, VmReport
from gpufleet.vms.template import Skipped, TemplateReport
from gpufleet.vsphere.settings import SettingChange
from lab.paths import LabPaths

REPO = Path(__file__).resolve().parents[2]
LAB_STACK = REPO / "stacks" / "Pulumi.lab.yaml"
POOL_STACK = REPO / "stacks" / "Pulumi.lab-bitfusion.yaml"

# Where a map's keys are data, as a path of field names ("*": any data key, lists are transparent).
DATA_KEYED = {
    "actual.hosts",  # host name -> what SSH read
    "actual.vcenter.hosts",
    "actual.vcenter.vms",  # VM name -> what vCenter shows
    "actual.guests",  # VM name -> guest facts
    "actual.guests.*.packages",  # package name -> version
    "actual.vcenter.vms.*.extraConfig",  # pciPassthru.use64bitMMIO, ...
    "read.seconds",  # phase -> seconds
    "summary.findings",  # severity -> count
    "summary.states",  # state -> count
    "peakInMaintenance",  # cluster -> hosts
    "guests.facts.packages",
    "timings",  # lab phases
}


def snake_keys(doc: Any, path: tuple[str, ...] = ()) -> Iterator[str]:
    """Every field-name key with an underscore, as ``a.b.key`` (data keys pass as ``*``)."""
    if isinstance(doc, dict):
        data = ".".join(path) in DATA_KEYED
        for key, value in doc.items():
            if not data and "_" in key:
                yield ".".join((*path, key))
            yield from snake_keys(value, (*path, "*" if data else key))
    elif isinstance(doc, list):
        for value in doc:
            yield from snake_keys(value, path)


def cli_json(*args: object) -> Any:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.stdout.strip().startswith("{"), (args, result.stdout, result.exception)
    return json.loads(result.stdout)


def _audit_doc() -> dict[str, Any]:
    """An audit with drift, an unreachable host and every actual-state part filled (the audit unit tests' fixtures)."""
    spec = importlib.util.spec_from_file_location("audit_fixtures", REPO / "tests" / "audit" / "audit_fixtures.py")
    assert spec and spec.loader
    fx = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fx)
    desired = fx.lab_desired()
    vc = fx.replace_host(fx.in_sync_vcenter(desired), "esxi-02.lab", in_maintenance=True)
    ssh = fx.in_sync_ssh(desired)
    result = fx.result_for(desired, vc, ssh, [fx.Unreachable("esxi-04.lab", "esxi-04.lab is unreachable")])
    result.guests = {"vm-ts-01": _guest_facts().to_json()}
    return json.loads(json_text(result.to_dict()))


def _guest_facts() -> GuestFacts:
    return GuestFacts(
        family="deb",
        packages={"nvidia-driver-550": "550.90.07-1", "libnvidia_compute": "550"},
        driver_installed="550.90.07",
        driver_loaded="550.90.07",
        smi=[("550.90.07", "NVIDIA L40S-24C")],
        daemon_runtimes={"nvidia"},
        docker_runtimes={"nvidia", "runc"},
    )


def _hosts_prepare_doc() -> dict[str, Any]:
    steps = [StepReport("driver", StepState.DONE, "installed", seconds=12.0), StepReport("mig", StepState.FAILED)]
    host = HostReport("esxi-01.lab", "gpu_cluster", steps=steps, error={"step": "mig", "message": "no"})
    host.in_maintenance = True
    report = RolloutReport(
        [host], dry_run=False, max_unavailable=1, failure_threshold=1, peak_in_maintenance={"gpu_cluster": 1}
    )
    return {"stack": "lab", **report.to_json()}


def _guests_prepare_doc() -> dict[str, Any]:
    guest = GuestReport(
        "vm-ts-01",
        steps=[GuestStepResult("driver", "done", "installed", 3.0)],
        error={"step": "driver", "message": "no"},
        facts=_guest_facts().to_json(),
    )
    report = GuestsReport(
        dry_run=True, max_unavailable=1, failure_threshold=1, guests=[guest], peak_in_progress=1, seconds=1.0
    )
    pool = ClientConfigResult("bf-client-01", "bf-pool", True, (("/etc/bitfusion/client.yaml", "written"),))
    return {"stack": "lab", **report.to_json(), "poolClients": [pool.to_json()], "exitCode": 0}


def _vms_apply_doc() -> dict[str, Any]:
    template = TemplateReport(
        "tmpl-ubuntu", changed=True, changes=["set x"], skipped=[Skipped("firmware", "efi", "bios", "powered on")]
    )
    vm = VmReport("vm-ts-01", changed=True, changes=["add vgpu nvidia_l40s-24c"], host="esxi-01.lab")
    vm.power_cycled = True
    report = ApplyReport(
        [vm],
        templates=[template],
        settings=[SettingChange("config.vpxd.x_y", None, "TRUE", True)],
        setting_errors=["x"],
    )
    return report.to_json()


def _verify_doc() -> dict[str, Any]:
    run = CheckRun(1, [CheckResult("esxi-01.lab", "test_driver_vib_is_installed", "failed", "no VIB")], junit="x.xml")
    return {"stack": "lab", **run.to_json()}


def _license_doc() -> dict[str, Any]:
    guest = LicensingResult(
        "vm-ts-01",
        True,
        "client_configuration_token_x.tok",
        True,
        ("old.tok",),
        True,
        True,
        1,
        "Licensed",
        ("NVIDIA Virtual Compute Server",),
    )
    vsphere = LicenseResult("vcenter", True, "*****-EEEEE", None)
    return json.loads(
        json_text({"stack": "lab", "dryRun": False, "vsphere": [vsphere.to_json()], "guests": [guest.to_json()]})
    )


def _proof_doc() -> dict[str, Any]:
    proof = Proof("recorded", ["drift"], "sha256:x", {"status": "drift", "exitCode": 2, "findings": 1}, None, "p")
    return proof.to_json()


DOCUMENTS = {
    "validate": lambda tmp: cli_json("validate", LAB_STACK, "--json"),
    "validate (invalid)": lambda tmp: _invalid_doc(tmp),
    "plan": lambda tmp: cli_json("plan", LAB_STACK, "--json"),
    "plan (pools)": lambda tmp: cli_json("plan", POOL_STACK, "--json"),
    "plan --migrate-pool mig": lambda tmp: cli_json("plan", POOL_STACK, "--migrate-pool", "bf-pool", "--json"),
    "plan --migrate-pool vgpu": lambda tmp: cli_json(
        "plan", POOL_STACK, "--migrate-pool", "bf-pool", "--to", "vgpu", "--json"
    ),
    "mig fit": lambda tmp: cli_json("mig", "fit", "3g.40gb", "4g.40gb", "--gpu", "A100-80GB", "--json"),
    "mig fit (no fit)": lambda tmp: cli_json("mig", "fit", "4g.40gb", "4g.40gb", "--gpu", "A100-80GB", "--json"),
    "audit": lambda tmp: _audit_doc(),
    "verify": lambda tmp: _verify_doc(),
    "hosts prepare": lambda tmp: _hosts_prepare_doc(),
    "guests prepare": lambda tmp: _guests_prepare_doc(),
    "vms apply": lambda tmp: _vms_apply_doc(),
    "license apply": lambda tmp: _license_doc(),
    "proof": lambda tmp: _proof_doc(),
    "lab status": lambda tmp: _lab_status_doc(tmp),
}


def _lab_status_doc(tmp: Path) -> dict[str, Any]:
    """``lab status --json`` of a lab whose record and topology are there but whose processes are gone."""
    paths = LabPaths.resolve(tmp / "lab")
    paths.state_file.parent.mkdir(parents=True, exist_ok=True)
    shape = {"hosts": 1, "vms_per_host": 0, "reboot_seconds": 2.0, "ssh_port": 22, "vcenter_port": 8989}
    record = {"shape": shape, "timings": {"vcsim_build": 1.0}, "pids": {"vcsim": None, "supervisor": None}}
    paths.state_file.write_text(json.dumps(record))
    topology = {
        "hosts": [{"name": "esxi-01.lab", "address": "127.0.0.11", "gpus": [{"model": "NVIDIA A100"}]}],
        "guests": [{"name": "vm-ts-01", "address": "127.0.0.51", "persona": "ubuntu"}],
    }
    paths.topology_file.write_text(json.dumps(topology))
    doc = cli_json("lab", "status", "--json")
    assert doc["shape"] and doc["hosts"] and doc["guests"], doc  # the parts named by fields are there to walk
    return doc


def _invalid_doc(tmp: Path) -> dict[str, Any]:
    path = tmp / "Pulumi.bad.yaml"
    path.write_text(LAB_STACK.read_text().replace("featureType: 1", "featureType: 99"))
    doc = cli_json("validate", path, "--json")
    assert doc["issues"], doc  # the issue entries are there to walk
    return doc


@pytest.mark.parametrize("verb", DOCUMENTS)
def test_every_field_name_key_is_camel_case(verb: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUFLEET_LAB_DIR", str(tmp_path / "lab"))  # lab status: a lab of this test's own
    doc = DOCUMENTS[verb](tmp_path)
    assert doc, verb  # a document was made: the walk below has something to walk
    assert list(snake_keys(doc)) == [], f"{verb} --json: snake_case field names"


def test_the_walk_finds_a_snake_key_at_depth_and_passes_data_keys() -> None:
    doc = {"actual": {"hosts": {"esxi_01": {"in_maintenance": True}}}, "items": [{"ok": {"old_key": 1}}]}
    assert list(snake_keys(doc)) == ["actual.hosts.*.in_maintenance", "items.ok.old_key"]
