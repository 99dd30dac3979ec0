"""One host's preparation against stateful fakes: what is done, what is not, and where a failure leaves it."""

from __future__ import annotations

from pathlib import Path

import pytest
from host_setup_fakes import FakeApi, FakeHost, ampere_host, hopper_host, t4_host

from gpufleet.hosts.model import Desired, HostReport, StepState
from gpufleet.hosts.prepare import prepare_host
from gpufleet.hosts.steps import StepContext
from gpufleet.spec.models import RolloutPolicy
from gpufleet.spec.stack import parse_stack

BUNDLE = "/vmfs/volumes/datastore1/NVD-AIE-800_550.90.05-1OEM.800.1.0.20613240_23471011.zip"
OLD = "535.183.04-1OEM.800.1.0.20613240"
NEW = "550.127.06-1OEM.800.1.0.20613240"
WANTED = "550.90.05-1OEM.800.1.0.20613240"

HOSTS = {
    "esxi-01.lab": {
        "gpus": [
            {"pci": "0000:3b:00.0", "model": "A100-80GB-PCIe", "mode": "mig"},
            {"pci": "0000:5e:00.0", "model": "A100-80GB-PCIe", "mode": "mig"},
        ]
    },
    "esxi-02.lab": {
        "gpus": [
            {"pci": "0000:3b:00.0", "model": "H100-80GB-PCIe", "mode": "mig"},
            {"pci": "0000:5e:00.0", "model": "H100-80GB-PCIe", "mode": "passthrough"},
        ],
        "nics": [{"pci": "0000:31:00.0", "model": "ConnectX-6-Dx", "ats": True}],
    },
    "esxi-04.lab": {
        "gpus": [{"pci": f"0000:{b}:00.0", "model": "T4", "mode": "vgpu"} for b in ("3b", "5e", "86", "af")]
    },
}


def fleet(names: list[str] | None = None, **driver: str):
    document = {
        "config": {
            "gpufleet:vcenter": {"lab": True},
            "gpufleet:fleet": {
                "version": "v1",
                "datacenter": "DC-Lab",
                "cluster": "GPU-Cluster",
                "driver": {"version": "550.90.05", "bundle": BUNDLE, **driver},
                "rollout": {"rebootTimeoutSeconds": 30},
                "hosts": [
                    {"name": n, "graphicsType": "sharedDirect", **HOSTS.get(n, HOSTS["esxi-04.lab"])}
                    for n in names or ["esxi-01.lab"]
                ],
            },
        }
    }
    return parse_stack(document).fleet


def run(host: FakeHost, api: FakeApi | None = None, fl=None, bundle: Path | None = None) -> tuple[HostReport, FakeApi]:
    fl = fl or fleet([host.name])
    api = api or FakeApi({host.name: "GPU-Cluster"})
    spec = fl.host(host.name)
    desired = Desired.of(fl, spec)
    ctx = StepContext(
        desired=desired, runner=host, api=api, policy=RolloutPolicy(reboot_timeout_seconds=30), local_bundle=bundle
    )
    report = prepare_host(ctx, HostReport(host.name, desired.cluster))
    return report, api


def states(report: HostReport) -> dict[str, str]:
    return {s.name: str(s.state) for s in report.steps}


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    path = tmp_path / "NVD-AIE-800_550.90.05-1OEM.800.1.0.20613240_23471011.zip"
    path.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    return path


def test_fresh_ampere_host_needs_driver_then_mig_so_two_reboots(bundle: Path) -> None:
    host = ampere_host()
    report, api = run(host, bundle=bundle)
    assert report.error is None, report.error
    assert host.driver_loaded == WANTED
    assert all(g.mig_current for g in host.gpus)
    # Driver first (MIG cannot be set before the driver is loaded), then MIG pending on Ampere: 2 reboots, not more.
    assert report.reboots == 2 and host.reboots == 2
    assert states(report)["driver"] == "done"
    assert states(report)["mig"] == "done"
    assert states(report)["verify"] == "done"
    assert api.calls[0] == "enter esxi-01.lab" and api.calls[-1] == "exit esxi-01.lab"
    assert report.in_maintenance is False and report.changed
    assert f"<upload {BUNDLE}>" in host.commands
    assert not api.markers.get("esxi-01.lab")


def test_ampere_host_with_the_driver_gets_one_reboot_for_all_pending_changes() -> None:
    host = ampere_host()
    host.driver_boot = host.driver_loaded = OLD
    host.files[BUNDLE] = 100
    report, _ = run(host)
    assert report.error is None, report.error
    # The old driver answers: MIG is set before the reboot, together with the driver upgrade.
    assert report.reboots == 1
    assert host.driver_loaded == WANTED and all(g.mig_current for g in host.gpus)
    assert "upload" not in " ".join(host.commands)  # the bundle was already on the datastore


def test_hopper_mig_and_ats_one_reboot(bundle: Path) -> None:
    host = hopper_host()
    host.driver_boot = host.driver_loaded = WANTED
    host.graphics[:] = ["SharedPassthru", "Performance"]
    report, _ = run(host, bundle=bundle)
    assert report.error is None, report.error
    assert host.gpus[0].mig_current is True  # Hopper: at once
    assert host.gpus[1].mig_current is False  # passthrough GPU: MIG stays off
    assert host.ats_kernel == ["TRUE", "TRUE"] and host.nics["0000:31:00.0"] == [True, True]
    assert report.reboots == 1  # for ATS only
    assert states(report)["ats"] == "done"


def test_a_host_that_needs_nothing_is_not_touched() -> None:
    host = t4_host()
    host.driver_boot = host.driver_loaded = WANTED
    host.graphics[:] = ["SharedPassthru", "Performance"]
    report, api = run(host)
    assert report.error is None
    assert not report.changed
    assert api.calls == []  # no maintenance
    assert host.changing_commands == [] and host.reboots == 0
    assert set(states(report).values()) == {"ok"}


def test_graphics_only_change_restarts_xorg_instead_of_rebooting() -> None:
    host = t4_host()
    host.driver_boot = host.driver_loaded = WANTED
    report, _ = run(host)
    assert report.error is None, report.error
    assert host.graphics == ["SharedPassthru", "Performance"]
    assert report.reboots == 0 and "/etc/init.d/xorg restart" in host.commands


def test_newer_driver_is_refused_without_touching_the_host() -> None:
    host = t4_host()
    host.driver_boot = host.driver_loaded = NEW
    report, api = run(host)
    assert report.error is not None and report.error["step"] == "driver"
    assert "newer" in report.error["message"] and "550.127.06" in report.error["message"]
    assert api.calls == [] and host.changing_commands == []


def test_install_error_leaves_the_host_in_maintenance_and_names_the_step(bundle: Path) -> None:
    host = t4_host()
    host.faults.add("install-error")
    report, api = run(host, bundle=bundle)
    assert report.error["step"] == "driver"
    assert "InstallationError" in report.error["message"]
    assert report.in_maintenance is True and api.maintenance["esxi-04.lab"]
    assert api.markers["esxi-04.lab"]  # gpufleet's note: the rerun may take it out
    # The rerun after the fault is cleared converges and takes it out of maintenance.
    host.faults.clear()
    again, api = run(host, api=api, bundle=bundle)
    assert again.error is None, again.error
    assert again.in_maintenance is False and host.driver_loaded == WANTED
    assert states(again)["maintenance"] == "done"


def test_ssh_drop_mid_install_fails_at_driver_and_the_rerun_converges(bundle: Path) -> None:
    host = t4_host()
    host.faults.add("drop-install")
    report, api = run(host, bundle=bundle)
    assert report.error["step"] == "driver" and "connection lost" in report.error["message"]
    assert report.in_maintenance is True
    again, _ = run(host, api=api, bundle=bundle)
    assert again.error is None, again.error
    assert host.driver_loaded == WANTED


def test_host_not_back_after_reboot_fails_at_reboot_in_maintenance(bundle: Path) -> None:
    host = t4_host()
    host.faults.add("no-return")
    report, api = run(host, bundle=bundle)
    assert report.error["step"] == "reboot"
    assert "not back after the reboot" in report.error["message"]
    assert api.maintenance["esxi-04.lab"]
    host.faults.clear()
    again, api = run(host, api=api, bundle=bundle)
    assert again.error is None, again.error
    assert not api.maintenance["esxi-04.lab"]
    assert states(again)["driver"] == "ok"  # installed by the first run: not installed twice


def test_pending_change_that_survives_a_reboot_fails_instead_of_looping() -> None:
    host = ampere_host()
    host.driver_boot = host.driver_loaded = WANTED
    host.graphics[:] = ["SharedPassthru", "Performance"]
    host.faults.add("mig-stuck")
    report, _ = run(host)
    assert report.error["step"] == "reboot"
    assert "still pending after a reboot" in report.error["message"]
    assert report.reboots == 1 and host.reboots == 1


def test_a_reboot_that_does_not_happen_is_detected() -> None:
    host = t4_host()
    host.driver_boot = WANTED  # installed, not loaded: a reboot is due
    host.driver_loaded = OLD
    host.faults.add("reboot-ignored")
    host.booted_at -= 3600
    report, _ = run(host)
    assert report.error["step"] == "reboot"
    assert "did not reboot" in report.error["message"]


def test_evacuation_refused_fails_at_maintenance_and_changes_nothing(bundle: Path) -> None:
    host = t4_host()
    api = FakeApi({host.name: "GPU-Cluster"}, refuse={host.name})
    report, api = run(host, api=api, bundle=bundle)
    assert report.error["step"] == "maintenance" and "cannot absorb" in report.error["message"]
    assert report.in_maintenance is False
    assert host.changing_commands == []
    assert not api.markers.get(host.name)


def test_operator_maintenance_is_left_alone() -> None:
    host = t4_host()
    host.driver_boot = host.driver_loaded = WANTED
    api = FakeApi({host.name: "GPU-Cluster"}, maintenance={host.name: True})
    report, api = run(host, api=api)  # graphics change only
    assert report.error is None
    assert api.maintenance[host.name] is True  # not ours: still in maintenance
    assert "exit esxi-04.lab" not in api.calls
    assert "not entered by gpufleet" in next(s.detail for s in report.steps if s.name == "maintenance")


def test_finishing_an_earlier_run_only_exits_maintenance() -> None:
    host = t4_host()
    host.driver_boot = host.driver_loaded = WANTED
    host.graphics[:] = ["SharedPassthru", "Performance"]
    api = FakeApi({host.name: "GPU-Cluster"}, maintenance={host.name: True}, markers={host.name: "entered by gpufleet"})
    report, api = run(host, api=api)
    assert report.error is None
    assert api.calls == ["exit esxi-04.lab"]
    assert host.changing_commands == []
    assert states(report)["verify"] == StepState.DONE


@pytest.mark.parametrize("fault", ["mig-refused", "mig-ignored"])
def test_a_refused_or_unread_mig_change_fails_the_step_naming_the_gpu(bundle: Path, fault: str) -> None:
    host = hopper_host()
    host.driver_boot = host.driver_loaded = WANTED
    host.graphics[:] = ["SharedPassthru", "Performance"]
    host.faults.add(fault)
    report, _ = run(host, bundle=bundle)
    assert report.error is not None and report.error["step"] == "mig", report.error
    message = report.error["message"]
    assert "0000:3b:00.0" in message.lower() or "00000000:3B:00.0" in message
    if fault == "mig-refused":  # nvidia-smi said "All done." and exited 0: the refusal's reason is named
        assert "Not Supported" in message
    else:  # nvidia-smi said "Enabled": the read-back shows it was not
        assert "reads back current Disabled" in message
    assert host.gpus[0].mig_current is False
