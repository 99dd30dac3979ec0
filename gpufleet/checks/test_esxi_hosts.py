"""Post-deploy checks of ESXi hosts, read over SSH with ``host.run`` only (on ESXi ``uname -s`` is VMkernel:
testinfra's file/service/package modules do not apply). Expectations come from the spec (gpufleet.hosts'
``Desired``, the state host preparation converges to); the readers are gpufleet.readers' esxcli / nvidia-smi /
mlxconfig readers, fed through testinfra. Whether a host setting is as wanted is the host steps' own comparison
(``gpufleet.hosts.steps.compare_all``, every step of ``STEPS``), the one host preparation and the audit use:
``test_host_settings_are_as_the_host_steps_want`` runs all of it (a new step is verified without a line here), the
tests named after one setting keep their own message and evidence."""

from __future__ import annotations

import pytest

from gpufleet.checks.backend import Sh
from gpufleet.checks.nodes import Node
from gpufleet.hosts.facts import gather_ssh
from gpufleet.hosts.model import ATS_KERNEL_SETTING, Desired
from gpufleet.hosts.steps import Difference, HostView, compare_all
from gpufleet.readers import esxcli, mlxconfig, nvidia_smi
from gpufleet.readers.nvidia_smi import SmiReport


def _desired(node: Node) -> Desired:
    if node.desired is None:
        pytest.skip(f"{node.name}: no --stack given: the expected state comes from the fleet spec")
    return node.desired


def _evidence(node: Node, prefix: str) -> str:
    sh: Sh | None = node.runner().last(prefix)
    return sh.describe() if sh else "(no command output)"


def _smi(node: Node) -> SmiReport | None:
    return node.cached("smi", lambda: nvidia_smi.query(node.runner()))


def _differences(node: Node, read: HostView, kind: str | None = None, path: str | None = None) -> list[Difference]:
    """The host steps' differences on what was read (``kind`` / ``path``: only those)."""
    found = compare_all(HostView.wanted(_desired(node)), read)
    return [d for d in found if (kind is None or d.kind == kind) and (path is None or d.path == path)]


def _driver_expected(node: Node) -> Desired:
    desired = _desired(node)
    if desired.driver is None:
        pytest.skip(f"{node.name}: no GPU runs vGPU or MIG here, so no NVIDIA host driver is expected")
    return desired


def test_nvidia_host_driver_is_installed_at_the_desired_version(esxi_node: Node) -> None:
    desired = _driver_expected(esxi_node)
    want = desired.driver
    installed = esxi_node.cached("driver-installed", lambda: esxcli.nvidia_driver(esxi_node.runner(), want.kind))
    evidence = _evidence(esxi_node, "esxcli")
    assert installed is not None, (
        f"{esxi_node.name}: no NVIDIA host driver {want.kind} is installed; the spec wants {want.version}\n{evidence}"
    )
    assert not _differences(esxi_node, HostView(driver=installed), "host.driver"), (
        f"{esxi_node.name}: NVIDIA host driver {installed} is installed; the spec wants {want.version}\n{evidence}"
    )


def test_nvidia_smi_answers_with_the_desired_driver(esxi_node: Node) -> None:
    desired = _driver_expected(esxi_node)
    report = _smi(esxi_node)
    evidence = _evidence(esxi_node, "nvidia-smi")
    assert report is not None, (
        f"{esxi_node.name}: nvidia-smi does not answer (driver not loaded: is a reboot pending?)\n{evidence}"
    )
    assert esxcli.compare_versions(report.driver_version, desired.driver.version) == 0, (
        f"{esxi_node.name}: the running NVIDIA driver is {report.driver_version}; the spec wants {desired.driver.version}\n{evidence}"
    )


def test_default_graphics_type_is_as_desired(esxi_node: Node) -> None:
    desired = _desired(esxi_node)
    graphics = esxcli.graphics_host(esxi_node.runner())
    read = HostView.read(desired, None, None, graphics, None, {})
    assert not _differences(esxi_node, read, "host.graphics_type"), (
        f"{esxi_node.name}: default graphics type is {graphics.default_type}; the spec wants {desired.graphics_type}\n"
        f"{_evidence(esxi_node, 'esxcli')}"
    )


def test_host_is_not_in_maintenance_mode(esxi_node: Node) -> None:
    in_maintenance = esxcli.maintenance_mode(esxi_node.runner())
    assert not in_maintenance, f"{esxi_node.name} is still in maintenance mode\n{_evidence(esxi_node, 'esxcli')}"


def _gpu_view(node: Node, pci: str) -> nvidia_smi.SmiGpu:
    desired = _desired(node)
    model = desired.gpu_models[pci]
    from gpufleet.catalog import lookup_gpu

    board = lookup_gpu(model)
    if board is not None and not board.mig_capable:
        pytest.skip(f"{node.name} {pci}: {board.name} has no MIG")
    if desired.driver is None:
        pytest.skip(f"{node.name}: no NVIDIA host driver is expected, so nvidia-smi cannot report MIG mode")
    report = _smi(node)
    evidence = _evidence(node, "nvidia-smi")
    assert report is not None, f"{node.name}: nvidia-smi does not answer, MIG mode of {pci} is unknown\n{evidence}"
    gpu = report.gpu(pci)
    if gpu is None and not desired.mig.get(pci) and pci not in _vgpu_gpus(node):
        pytest.skip(f"{node.name} {pci}: a passthrough GPU is not listed by the host's nvidia-smi")
    assert gpu is not None, f"{node.name}: GPU {pci} is not listed by nvidia-smi\n{evidence}"
    return gpu


def _vgpu_gpus(node: Node) -> set[str]:
    return {pci for pci, mig in (node.desired.mig if node.desired else {}).items() if mig}


def test_gpu_mig_mode_is_as_desired(esxi_gpu: tuple[Node, str]) -> None:
    node, pci = esxi_gpu
    gpu = _gpu_view(node, pci)
    want = "Enabled" if node.desired and node.desired.mig[pci] else "Disabled"
    report = _smi(node)
    read = HostView.read(_desired(node), None, report, None, None, {})
    # a MIG board that reports no MIG mode at all is not as wanted either (the comparison skips unknown modes)
    assert gpu.mig_current not in ("", "N/A") and not _differences(node, read, "gpu.mig_mode", f"gpus/{pci}/migMode"), (
        f"{node.name}: MIG mode of GPU {pci} is {gpu.mig_current} (pending {gpu.mig_pending}); the spec wants {want}\n"
        f"{_evidence(node, 'nvidia-smi')}"
    )


def test_gpu_has_no_mig_change_pending(esxi_gpu: tuple[Node, str]) -> None:
    node, pci = esxi_gpu
    gpu = _gpu_view(node, pci)
    assert not gpu.mig_change_pending, (
        f"{node.name}: GPU {pci} has a MIG mode change pending ({gpu.mig_current} -> {gpu.mig_pending}); "
        f"it takes effect at the next host reboot\n{_evidence(node, 'nvidia-smi')}"
    )


def test_ats_is_enabled_on_the_host_for_gpudirect_rdma(esxi_ats_nic: tuple[Node, str]) -> None:
    node, _pci = esxi_ats_nic
    setting = node.cached("ats-kernel", lambda: esxcli.kernel_setting(node.runner(), ATS_KERNEL_SETTING))
    evidence = _evidence(node, "esxcli")
    assert setting.configured_on and setting.runtime_on, (
        f"{node.name}: kernel setting {ATS_KERNEL_SETTING} is configured {setting.configured}, runtime {setting.runtime}; "
        f"GPUDirect RDMA needs TRUE for both\n{evidence}"
    )


def test_ats_is_enabled_on_the_connectx_nic(esxi_ats_nic: tuple[Node, str]) -> None:
    node, pci = esxi_ats_nic
    ats = mlxconfig.nic_ats(node.runner(), pci)
    assert ats.current, (
        f"{node.name}: ATS_ENABLED of NIC {pci} is off (next boot: {ats.next_boot})\n{_evidence(node, 'mlxconfig')}"
    )


def test_host_has_no_reboot_pending(esxi_node: Node) -> None:
    """Changes that wait for a reboot: a driver installed but not running, a MIG mode change, ATS settings."""
    desired = _desired(esxi_node)
    runner = esxi_node.runner()
    pending: list[str] = []
    evidence: list[str] = []
    if desired.driver is not None:
        installed = esxi_node.cached("driver-installed", lambda: esxcli.nvidia_driver(runner, desired.driver.kind))
        report = _smi(esxi_node)
        evidence += [_evidence(esxi_node, "esxcli"), _evidence(esxi_node, "nvidia-smi")]
        if installed and report is None:
            pending.append(f"NVIDIA driver {installed} is installed but not loaded")
        elif installed and report and esxcli.compare_versions(installed, report.driver_version) != 0:
            pending.append(f"NVIDIA driver {installed} is installed but {report.driver_version} is running")
        for gpu in report.gpus if report else ():
            if gpu.mig_change_pending:
                pending.append(f"GPU {gpu.pci} MIG mode {gpu.mig_current} -> {gpu.mig_pending}")
    if desired.ats_nics:
        setting = esxi_node.cached("ats-kernel", lambda: esxcli.kernel_setting(runner, ATS_KERNEL_SETTING))
        evidence.append(_evidence(esxi_node, "esxcli"))
        if setting.configured_on != setting.runtime_on:
            pending.append(
                f"kernel setting {ATS_KERNEL_SETTING} configured {setting.configured}, runtime {setting.runtime}"
            )
        for pci in desired.ats_nics:
            ats = mlxconfig.nic_ats(runner, pci)
            evidence.append(_evidence(esxi_node, "mlxconfig"))
            if ats.current != ats.next_boot:
                pending.append(f"NIC {pci} ATS_ENABLED {ats.current} -> {ats.next_boot} at next boot")
    assert not pending, f"{esxi_node.name} needs a reboot: " + "; ".join(pending) + "\n" + "\n".join(evidence)


def test_host_settings_are_as_the_host_steps_want(esxi_node: Node) -> None:
    """Every host step's comparison on what the host shows (driver, graphics, MIG mode, ATS, and any step added
    later): the same differences ``hosts prepare`` would act on and the audit reports."""
    desired = _desired(esxi_node)
    facts = esxi_node.cached("ssh-facts", lambda: gather_ssh(desired, esxi_node.runner(), bundle=False))
    read = HostView.of_facts(desired, facts)  # the one SSH gather host preparation and the audit read too
    found = _differences(esxi_node, read)
    assert not found, (
        f"{esxi_node.name}: "
        + "; ".join(f"{d.path}: {d.detail} (wanted {d.desired}, is {d.actual})" for d in found)
        + "\n"
        + "\n".join(_evidence(esxi_node, p) for p in ("esxcli", "nvidia-smi", "mlxconfig"))
    )
