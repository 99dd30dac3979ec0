"""Fixture states for the audit's unit tests: the lab stack's desired state, and an actual state built to match
it exactly (what a freshly deployed fleet shows), which each test then bends one way."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from gpufleet.audit.desired import DesiredState, desired_state
from gpufleet.audit.diff import diff
from gpufleet.audit.result import AuditResult
from gpufleet.audit.state import (
    MELLANOX_VENDOR_ID,
    NVIDIA_VENDOR_ID,
    GpuInstance,
    GpuSshState,
    HostSshState,
    HostVcState,
    LicenseState,
    NicDevice,
    PciDevice,
    Unreachable,
    VcenterState,
    VmVcState,
)
from gpufleet.catalog import lookup_profile
from gpufleet.spec.stack import Stack, load_stack
from gpufleet.vsphere.vm_devices import DirectPathDevice, PvrdmaNic, VgpuDevice, VmDeviceState

ROOT = Path(__file__).resolve().parents[2]
LAB_STACK = ROOT / "stacks" / "Pulumi.lab.yaml"
LICENSE_ENV = "GPUFLEET_HOST_LICENSE"
LICENSE_KEY = "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE"


def digest(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:12]


def lab_stack() -> Stack:
    return load_stack(LAB_STACK)


def lab_desired(with_license: bool = True) -> DesiredState:
    return desired_state(lab_stack().fleet, {LICENSE_ENV: LICENSE_KEY} if with_license else {})


def in_sync_vcenter(desired: DesiredState) -> VcenterState:
    """What vCenter shows of a fleet deployed exactly as ``desired`` says."""
    hosts = {}
    for i, h in enumerate(desired.hosts.values()):
        devices = [
            PciDevice(
                pci=g.pci,
                vendor_id=NVIDIA_VENDOR_ID,
                device_id=g.device_ids[0],
                name=g.model,
                graphics_type="sharedDirect",
                passthrough_enabled=g.mode in ("passthrough", "dynamic-passthrough"),
            )
            for g in h.gpus
        ]
        devices.append(PciDevice("0000:31:00.0", MELLANOX_VENDOR_ID, 0x101D, "ConnectX-6 Dx"))
        hosts[h.name] = HostVcState(
            name=h.name,
            moid=f"host-{i}",
            cluster=h.cluster,
            connection_state="connected",
            in_maintenance=False,
            power_state="poweredOn",
            default_graphics_type=h.graphics_type,
            assignment_policy=h.assignment_policy,
            devices=tuple(devices),
            profiles_offered=tuple(h.profiles_needed),
            license=LicenseState(
                "vSphere 8 Enterprise Plus", "*****-*****-*****-*****-EEEEE", digest(LICENSE_KEY), False
            ),
        )
    vms = {}
    for i, v in enumerate(desired.vms.values()):
        d = v.devices
        devices = VmDeviceState(
            vm=v.name,
            power_state="poweredOff" if v.template else "poweredOn",
            host=v.host or next(iter(desired.hosts)),
            hardware_version=v.hardware_version,
            memory_reservation_locked=d.lock_memory,
            vgpus=tuple(VgpuDevice(profile=p, key=13000 + j) for j, p in enumerate(d.vgpus)),
            directpath=tuple(
                DirectPathDevice(id=a, vendor_id=NVIDIA_VENDOR_ID, device_id=0x2331, key=13100 + j)
                for j, a in enumerate(d.directpath)
            ),
            pvrdma=tuple(
                PvrdmaNic(network=n.network, protocol=n.protocol, key=4100 + j) for j, n in enumerate(d.pvrdma)
            ),
            extra_config=dict(d.extra_config),
        )
        vms[v.name] = VmVcState(
            name=v.name,
            moid=f"vm-{i}",
            template=v.template,
            firmware=v.firmware,
            devices=devices,
            nics=(NicDevice(4000, "vmxnet3", "VM Network"),),
            extra_config=dict(d.extra_config),
        )
    return VcenterState(hosts=hosts, vms=vms, round_trips=6, pages=1)


def in_sync_ssh(desired: DesiredState, with_instances: bool = True) -> dict[str, HostSshState]:
    """What the hosts show over SSH when prepared as ``desired`` says (MIG instances of powered-on VMs)."""
    out = {}
    for h in desired.hosts.values():
        gpus = []
        for g in h.gpus:
            if g.mode in ("passthrough", "dynamic-passthrough"):
                continue
            instances = tuple(
                GpuInstance(profile=s.profile, start=s.start, size=s.size, gi_id=k + 1)
                for k, s in enumerate(g.mig_layout)
            )
            gpus.append(
                GpuSshState(
                    pci=g.pci,
                    name=g.model,
                    mig_current=g.mig_enabled if g.mig_capable else None,
                    mig_pending=g.mig_enabled if g.mig_capable else None,
                    instances=instances if with_instances else (),
                )
            )
        out[h.name] = HostSshState(
            name=h.name,
            driver_version=h.driver_version,
            driver_package="component",
            reboot_pending=False,
            ats_enabled=True if h.ats else None,
            nvidia_smi_ok=True,
            gpus=tuple(gpus),
        )
    return out


def replace_host(vc: VcenterState, name: str, **changes: object) -> VcenterState:
    hosts = dict(vc.hosts)
    hosts[name] = replace(hosts[name], **changes)
    return replace(vc, hosts=hosts)


def replace_vm(vc: VcenterState, name: str, devices: dict | None = None, **changes: object) -> VcenterState:
    vms = dict(vc.vms)
    vm = vms[name]
    if devices:
        changes["devices"] = replace(vm.devices, **devices)
    vms[name] = replace(vm, **changes)
    return replace(vc, vms=vms)


def replace_ssh(ssh: dict[str, HostSshState], name: str, **changes: object) -> dict[str, HostSshState]:
    out = dict(ssh)
    out[name] = replace(out[name], **changes)
    return out


def result_for(
    desired: DesiredState,
    vc: VcenterState | None,
    ssh: dict[str, HostSshState],
    unreachable: list[Unreachable] | None = None,
) -> AuditResult:
    findings, objects = diff(desired, vc, ssh)
    return AuditResult(
        stack="lab",
        datacenter=desired.datacenter,
        started_at=datetime(2025, 1, 7, 13, 31, 24, tzinfo=UTC),
        desired=desired,
        vcenter=vc,
        ssh=ssh,
        unreachable=list(unreachable or []),
        findings=findings,
        objects=objects,
        timings={"vcenter": 0.05, "ssh": 0.4, "diff": 0.001},
    )


def mig_profile_of(profile: str) -> str:
    found = lookup_profile(profile)
    assert found is not None and found[1].mig_instance
    return found[1].mig_instance
