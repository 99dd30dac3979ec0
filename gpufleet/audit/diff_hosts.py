"""Host and GPU findings: what vCenter shows of a host (connection, maintenance, licence, graphics, PCI devices,
profiles offered) and what the host shows over SSH (driver, MIG mode, ATS, nvidia-smi, pending reboot).

The settings host preparation converges (graphics, driver, MIG mode, ATS) are not compared here: every step of
``gpufleet.hosts.steps.STEPS`` compares its own (``compare_all``), and each difference becomes a finding as it is.
What no step owns (connection, licence, PCI devices, profiles offered, GPU health, nvidia-smi listing a GPU) is
compared here, once."""

from __future__ import annotations

from gpufleet.audit.desired import DesiredGpu, DesiredHost
from gpufleet.audit.findings import HINT_HOSTS, HINT_LICENSE, AuditedObject, Collector, Severity
from gpufleet.audit.state import HostSshState, HostVcState
from gpufleet.catalog import profile_key
from gpufleet.hosts.steps import GpuView, HostView, compare_all
from gpufleet.spec.graphics import SHARED_DIRECT


def _wanted(want: DesiredHost) -> HostView:
    """The audit's desired host in the host steps' shape (MIG compared on MIG boards not passed through)."""
    mig = {g.pci: GpuView(g.mig_enabled) for g in want.gpus if g.mig_capable and g.mode not in _PASSTHROUGH}
    return HostView(
        graphics_type=want.graphics_type,
        assignment_policy=want.assignment_policy,
        driver=want.driver_version,
        ats=True if want.ats else None,
        gpus=mig,
    )


def _settings(c: Collector, want: DesiredHost, read: HostView) -> None:
    """One finding per difference of the host steps' own comparison (``compare_all``: every step of ``STEPS``)."""
    host = f"hosts/{want.name}"
    for d in compare_all(_wanted(want), read):
        parts = d.path.split("/")
        obj = f"{host}/{parts[0]}/{parts[1]}" if parts[0] == "gpus" else host  # a GPU's finding is the GPU's
        severity = Severity.WARNING if d.warning else Severity.ERROR
        c.add(
            obj,
            d.kind,
            f"{host}/{d.path}",
            d.desired,
            d.actual,
            severity,
            HINT_HOSTS + d.hint,
            f"{want.name} {d.detail}",
        )


_PASSTHROUGH = ("passthrough", "dynamic-passthrough")


def host_vc(c: Collector, want: DesiredHost, have: HostVcState) -> None:
    obj = f"hosts/{want.name}"
    if have.connection_state != "connected":
        c.add(
            obj,
            "host.connection",
            f"{obj}/connectionState",
            "connected",
            have.connection_state,
            Severity.ERROR,
            "reconnect the host in vCenter",
            f"{want.name} is {have.connection_state} in vCenter",
        )
    if have.cluster != want.cluster:
        c.add(
            obj,
            "host.cluster",
            f"{obj}/cluster",
            want.cluster,
            have.cluster,
            Severity.WARNING,
            "move the host into its cluster in vCenter",
            f"{want.name} is not in cluster {want.cluster}",
        )
    if have.in_maintenance:
        c.add(
            obj,
            "host.maintenance",
            f"{obj}/maintenanceMode",
            "off",
            "on",
            Severity.ERROR,
            HINT_HOSTS + " (exits maintenance mode when the host is prepared)",
            f"{want.name} is in maintenance mode: its GPU VMs cannot run",
        )
    if want.license_digest is not None:
        actual = have.license.key_digest if have.license else None
        if actual != want.license_digest:
            name = f"{have.license.name} ({have.license.key_fingerprint})" if have.license else "none"
            c.add(
                obj,
                "host.license",
                f"{obj}/license",
                f"{want.license_fingerprint} (from {want.license_source})",
                name,
                Severity.ERROR,
                HINT_LICENSE,
                f"{want.name} does not carry the licence the spec names",
            )
    elif want.license_source is not None and have.license is not None and have.license.evaluation:
        c.add(
            obj,
            "host.license",
            f"{obj}/license",
            "a licence (not evaluation mode)",
            have.license.name,
            Severity.WARNING,
            HINT_LICENSE,
            f"{want.name} runs in evaluation mode",
        )
    read = HostView(
        graphics_type=have.default_graphics_type or "",  # vCenter not saying is a difference too
        assignment_policy=have.assignment_policy,
    )
    _settings(c, want, read)
    offered = {profile_key(p) for p in have.profiles_offered}
    for profile in want.profiles_needed:
        if profile_key(profile) not in offered:
            c.add(
                obj,
                "host.profile_unavailable",
                f"{obj}/profiles/{profile}",
                "offered",
                "not offered",
                Severity.ERROR,
                HINT_HOSTS + " (installs the driver that offers it)",
                f"{want.name} does not offer vGPU profile {profile} that its VMs need",
            )
    for gpu in want.gpus:
        _gpu_vc(c, want, gpu, have)
    wanted = {g.pci for g in want.gpus}
    for dev in have.gpus:
        if dev.pci not in wanted:
            path = f"{obj}/gpus/{dev.pci}"
            c.objects.append(AuditedObject("gpu", path, f"{want.name} {dev.pci}"))
            c.add(
                path,
                "gpu.unknown",
                path,
                "not in the spec",
                dev.name or f"0x{dev.device_id:04x}",
                Severity.WARNING,
                "add it to hosts[].gpus in the stack",
                f"{want.name} has a GPU at {dev.pci} that the spec does not mention",
            )


def _gpu_vc(c: Collector, host: DesiredHost, want: DesiredGpu, have: HostVcState) -> None:
    path = f"hosts/{host.name}/gpus/{want.pci}"
    c.objects.append(AuditedObject("gpu", path, f"{host.name} {want.pci}"))
    dev = have.device(want.pci)
    if dev is None or not dev.is_gpu:
        c.add(
            path,
            "gpu.missing",
            path,
            want.model,
            "absent",
            Severity.ERROR,
            "fix hosts[].gpus[].pci in the stack or the hardware",
            f"{host.name} has no NVIDIA GPU at {want.pci}",
        )
        return
    if want.device_ids and dev.device_id not in want.device_ids:
        c.add(
            path,
            "gpu.model",
            f"{path}/model",
            want.model,
            dev.name or f"0x{dev.device_id:04x}",
            Severity.ERROR,
            "fix hosts[].gpus[].model in the stack",
            f"{host.name} {want.pci} is not a {want.model}",
        )
    # A vGPU GPU's passthrough state shows in its graphics type (vSphere reports "direct" for a GPU in
    # passthrough), checked below; a passthrough GPU must be enabled for passthrough.
    passthrough = want.mode in ("passthrough", "dynamic-passthrough")
    if passthrough and dev.passthrough_enabled is False:
        c.add(
            path,
            "gpu.passthrough",
            f"{path}/passthrough",
            "enabled",
            "disabled",
            Severity.ERROR,
            "enable passthrough on this GPU (vSphere Client: Host > Configure > PCI Devices), then reboot",
            f"{host.name} {want.pci} is not enabled for passthrough: its VM cannot power on",
        )
    if not passthrough and dev.graphics_type is not None and dev.graphics_type != SHARED_DIRECT:
        c.add(
            path,
            "gpu.graphics_type",
            f"{path}/graphicsType",
            SHARED_DIRECT,
            dev.graphics_type,
            Severity.ERROR,
            HINT_HOSTS,
            f"{host.name} {want.pci} is not in Shared Direct mode: no vGPU can use it",
        )


def host_ssh(c: Collector, want: DesiredHost, have: HostSshState) -> None:
    obj = f"hosts/{want.name}"
    if have.reboot_pending:
        c.add(
            obj,
            "host.reboot_pending",
            f"{obj}/rebootPending",
            "no",
            "yes: " + "; ".join(have.reboot_reasons) if have.reboot_reasons else "yes",
            Severity.WARNING,
            HINT_HOSTS + " (reboots the host in a rolling window)",
            f"{want.name} waits for a reboot",
        )
    # The host steps' settings (driver, ATS, MIG mode): nvidia-smi's view only where it answers for a GPU host.
    smi_read = have.nvidia_smi_ok and any(g.mode in ("vgpu", "mig") for g in want.gpus)
    gpus = {g.pci: GpuView(g.mig_current, g.mig_pending) for g in have.gpus} if smi_read else {}
    _settings(c, want, HostView(driver=have.driver_version or "", ats=have.ats_enabled, gpus=gpus))
    if not any(g.mode in ("vgpu", "mig") for g in want.gpus):
        return  # every GPU passed through (a Bitfusion server's host): no host driver, nothing for nvidia-smi (as verify)
    if not have.nvidia_smi_ok:
        c.add(
            obj,
            "host.nvidia_smi",
            f"{obj}/nvidia-smi",
            "answers",
            "fails",
            Severity.ERROR,
            HINT_HOSTS,
            f"nvidia-smi fails on {want.name}: the host driver is not loaded",
        )
        return
    for gpu in want.gpus:
        path = f"{obj}/gpus/{gpu.pci}"
        seen = have.gpu(gpu.pci)
        if gpu.mode in _PASSTHROUGH:
            continue  # a passthrough GPU is not bound to the host driver: nvidia-smi does not list it
        if seen is None:
            c.add(
                path,
                "gpu.not_visible",
                f"{path}/nvidia-smi",
                "listed",
                "not listed",
                Severity.ERROR,
                HINT_HOSTS,
                f"nvidia-smi on {want.name} does not list {gpu.pci}",
            )
            continue
        if not seen.healthy:
            c.add(
                path,
                "gpu.health",
                f"{path}/health",
                "healthy",
                seen.detail or "unhealthy",
                Severity.ERROR,
                "check the GPU (nvidia-smi -q) and reset or replace it",
                f"{want.name} {gpu.pci} is unhealthy",
            )
