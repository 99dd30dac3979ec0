"""Each host step's one comparison (``Step.compare``), shared by ``hosts prepare`` (its ``check``), the audit's host
diff and verify's ESXi checks: the rows it yields for what is wanted against what is read."""

from __future__ import annotations

from gpufleet.hosts.steps import STEPS, AtsStep, DriverStep, GpuView, GraphicsStep, HostView, MigStep, compare_all
from gpufleet.readers.esxcli import GraphicsHost

GPU = "0000:3b:00.0"
WANT = HostView(
    graphics_type="sharedDirect",
    assignment_policy="performance",
    driver="550.90.05",
    ats=True,
    gpus={GPU: GpuView(mig=True)},
)


def test_a_host_as_wanted_has_no_difference() -> None:
    have = HostView("sharedDirect", "performance", "550.90.05", ats=True, ats_next=True, gpus={GPU: GpuView(True)})
    assert compare_all(WANT, have) == []


def test_every_step_of_the_registry_is_compared() -> None:
    have = HostView("shared", "consolidation", "", ats=False, ats_next=False, gpus={GPU: GpuView(False, False)})
    kinds = [d.kind for d in compare_all(WANT, have)]
    assert kinds == ["host.driver", "host.graphics_type", "host.assignment_policy", "gpu.mig_mode", "host.ats"]
    assert [s.name for s in STEPS] == ["driver", "graphics", "mig", "ats"]


def test_not_read_is_not_compared() -> None:
    assert compare_all(WANT, HostView()) == []


def test_driver_not_installed_names_it() -> None:
    (d,) = DriverStep().compare(WANT, HostView(driver=""))
    assert (d.path, d.desired, d.actual, d.detail) == (
        "driver",
        "550.90.05",
        "not installed",
        "NVIDIA host driver is not 550.90.05",
    )


def test_graphics_read_by_esxcli_compares_in_the_spec_vocabulary() -> None:
    from gpufleet.hosts.model import Desired

    desired = Desired("h", "c", None, "SharedPassthru", "Performance", {}, {}, ())
    esxcli_says = HostView.read(desired, None, None, GraphicsHost("sharedpassthru", "performance"), None, {})
    assert esxcli_says.graphics_type == "sharedDirect"
    assert GraphicsStep().compare(HostView.wanted(desired), esxcli_says) == []
    (d,) = GraphicsStep().compare(WANT, HostView(graphics_type="shared"))
    assert (d.path, d.actual, d.warning) == ("graphics/defaultType", "shared", False)


def test_a_mig_change_pending_towards_the_wanted_mode_is_left_to_the_reboot() -> None:
    (d,) = MigStep().compare(WANT, HostView(gpus={GPU: GpuView(mig=False, mig_next=True)}))
    assert d.pending and d.kind == "gpu.mig_mode" and d.actual == "disabled (pending enabled)"
    assert d.hint == " (reboots the host to apply the pending mode)"


def test_a_mig_change_pending_away_from_the_wanted_mode_is_a_warning_to_act_on() -> None:
    (d,) = MigStep().compare(WANT, HostView(gpus={GPU: GpuView(mig=True, mig_next=False)}))
    assert (d.path, d.kind, d.warning, d.pending) == (f"gpus/{GPU}/migModePending", "gpu.mig_pending", True, False)


def test_ats_on_at_the_next_boot_is_pending_and_ats_off_at_the_next_boot_is_a_warning() -> None:
    (off,) = AtsStep().compare(WANT, HostView(ats=False, ats_next=True))
    assert off.kind == "host.ats" and off.pending
    (going,) = AtsStep().compare(WANT, HostView(ats=True, ats_next=False))
    assert going.kind == "host.ats_pending" and going.warning and not going.pending
    assert AtsStep().compare(HostView(), HostView(ats=False)) == []  # ATS is never turned off by gpufleet
