"""Build a whole fleet's components from a ``Stack`` (what ``__main__.py`` runs; usable from any Pulumi program).

- one ``BundleStaging`` per host that needs the driver bundle, and one ``GpuHost`` per host (licence from
  ``hosts[].license`` or ``licensing.hostLicense``), chained in ``rollout.maxUnavailable`` lanes per cluster, each
  after every staging of its cluster;
- one ``GpuVmTemplate`` per template and one ``GpuVm`` per VM (its guest side too, given a ``guest:`` block), each VM's devices after its cluster's hosts are prepared —
  or, for a *brownfield* stack (config ``gpufleet:brownfield``, default true for ``vcenter.lab``: the lab's VMs
  exist already), ``GpuVm(existing=True)`` / ``GpuVmTemplate(existing=True)``: gpufleet manages only the existing
  VMs' GPU/RDMA devices and the existing templates' GPU settings;
- ``VgpuMobility`` when ``rollout.vgpuVmotion`` is set; ``Licensing`` when keys or the NVIDIA token are set;
- one ``BitfusionClientConfig`` per client of each ``gpuPools`` entry (servers list, CA, client token: Pulumi
  secrets), a child of the client's ``GpuVm`` after its devices (adding a PVRDMA adapter may power-cycle the VM).

pulumi-vsphere resources get an explicit provider built from ``gpufleet:vcenter`` (TLS always verified, against the
stack's CA only: ``gpufleet.engine.provider_trust``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_vsphere as vsphere

from components.config import secret_from_ref
from components.gpu_host import GpuHost, GpuHostArgs, bundle_staging
from components.gpu_vm import GpuVm, GpuVmArgs
from components.gpu_vm_template import GpuVmTemplate, GpuVmTemplateArgs
from components.inventory import VsphereRefs
from components.licensing import Licensing, LicensingArgs
from components.providers.base import vcenter_input
from components.providers.bitfusion_client import BitfusionClientConfig
from components.vgpu_mobility import VgpuMobility, VgpuMobilityArgs
from gpufleet.checks.bitfusion import server_addresses
from gpufleet.connections import resolve_vcenter
from gpufleet.engine.provider_trust import provider_trust
from gpufleet.errors import GpufleetError, SpecError
from gpufleet.hosts.steps import STEPS
from gpufleet.spec.dump import stack_form
from gpufleet.spec.models import Fleet
from gpufleet.spec.stack import Stack


@dataclass
class FleetResources:
    """Everything ``build_fleet`` made, by name."""

    hosts: dict[str, GpuHost] = field(default_factory=dict)
    templates: dict[str, GpuVmTemplate] = field(default_factory=dict)
    vms: dict[str, GpuVm] = field(default_factory=dict)
    mobility: VgpuMobility | None = None
    licensing: Licensing | None = None
    pool_clients: dict[str, BitfusionClientConfig] = field(default_factory=dict)  # by client VM

    def exports(self) -> dict[str, Any]:
        """Per host and VM, what was set (for ``pulumi.export``)."""
        return {
            "hosts": {
                name: {
                    **{step.name: h.step_detail(step.name) for step in STEPS},  # a new step is exported too
                    "reboots": h.prepare.reboots,
                    "license": h.license.assignedFingerprint if h.license else None,
                }
                for name, h in self.hosts.items()
            },
            "vms": {
                name: {
                    "gpuDevices": vm.devices.observed,
                    "lastChanges": vm.devices.lastChanges,
                    "powerCycled": vm.devices.powerCycled,
                    "guest": {"state": vm.guest.state, "steps": vm.guest.steps, "reboots": vm.guest.reboots}
                    if vm.guest
                    else None,
                }
                for name, vm in self.vms.items()
            },
            "vgpuHotMigrate": self.mobility.setting.actual if self.mobility else None,
            "licensedGuests": {n: g.licensed for n, g in self.licensing.guests.items()} if self.licensing else {},
            # Per pool client: its pool, whether its files are as wanted, which files the last run wrote.
            "bitfusionClients": {
                name: {"pool": c.pool, "state": c.state, "changed": c.changed, "files": c.files}
                for name, c in self.pool_clients.items()
            },
        }


def vsphere_provider(stack: Stack, name: str = "vsphere") -> vsphere.Provider:
    """A pulumi-vsphere provider for the stack's vCenter: the lab's (from its env file) or the spec's, the
    password a Pulumi secret. TLS is never skipped, and the provider (launched by the engine with this program's
    environment) must trust exactly the stack's CA: RunError naming the stack field otherwise, before anything is
    registered (a thumbprint-only stack, SSL_CERT_FILE / SSL_CERT_DIR not set to that CA alone)."""
    problem = provider_trust(stack).environ_problem(os.environ)
    if problem:
        raise pulumi.RunError(problem)
    spec = stack.vcenter
    if spec.lab:
        try:
            settings = resolve_vcenter(spec)
        except GpufleetError as exc:
            raise pulumi.RunError(str(exc)) from exc
        user, server = settings.user, f"{settings.host}:{settings.port}"
        password: pulumi.Input[str] = pulumi.Output.secret(settings.password.reveal())
    else:
        assert spec.host and spec.user
        user, server = spec.user, f"{spec.host}:{spec.port}"
        found = pulumi.Config("gpufleet").get_secret("vcenterPassword") or secret_from_ref(
            stack, spec.password, "vcenter.password"
        )
        if found is None:
            raise pulumi.RunError("vcenter.password: set `pulumi config set --secret gpufleet:vcenterPassword ...`")
        password = found
    return vsphere.Provider(name, user=user, password=password, vsphere_server=server, allow_unverified_ssl=False)


def rollout_lanes(fleet: Fleet) -> list[list[str]]:
    """For each host (in spec order), the hosts it waits for: per cluster, ``rollout.maxUnavailable`` lanes, host
    i after host i-k of its cluster. The engine runs independent resources in parallel, so this is what keeps at
    most k hosts of a cluster being prepared (and in maintenance) at once under ``pulumi up``."""
    k = max(1, fleet.rollout.max_unavailable)
    seen: dict[str, list[str]] = {}
    lanes = []
    for host in fleet.hosts:
        cluster = seen.setdefault(host.cluster or fleet.cluster, [])
        lanes.append([cluster[-k]] if len(cluster) >= k else [])
        cluster.append(host.name)
    return lanes


def is_brownfield(stack: Stack) -> bool:
    value = pulumi.Config("gpufleet").get_bool("brownfield")
    return stack.vcenter.lab if value is None else value


def build_fleet(stack: Stack, opts: pulumi.ResourceOptions | None = None) -> FleetResources:
    """Register the components of ``stack``'s fleet."""
    fleet, vcenter = stack.fleet, stack.vcenter
    brownfield = is_brownfield(stack)
    out = FleetResources()
    licensing = fleet.licensing
    host_default = secret_from_ref(stack, licensing.host_license, "licensing.hostLicense")
    # Every driver bundle of a cluster staged and proven (in parallel) before any host of it is prepared.
    staged: dict[str, list[pulumi.Resource]] = {}
    for host in fleet.hosts:
        staging = bundle_staging(host, fleet, vcenter, opts)
        if staging is not None:
            staged.setdefault(host.cluster or fleet.cluster, []).append(staging)
    for host, after in zip(fleet.hosts, rollout_lanes(fleet), strict=True):
        key = secret_from_ref(stack, host.license, f"hosts[{host.name}].license") or host_default
        lane = pulumi.ResourceOptions(
            depends_on=[out.hosts[name] for name in after] + staged.get(host.cluster or fleet.cluster, [])
        )
        out.hosts[host.name] = GpuHost(
            host.name,
            GpuHostArgs(spec=host, fleet=fleet, vcenter=vcenter, license_key=key),
            pulumi.ResourceOptions.merge(opts, lane),
        )
    provider: vsphere.Provider | None = None
    refs: VsphereRefs | None = None
    if not brownfield and (fleet.templates or fleet.vms):
        provider = vsphere_provider(stack)
        refs = VsphereRefs(fleet, pulumi.InvokeOptions(provider=provider))
    for template in fleet.templates:
        out.templates[template.name] = GpuVmTemplate(
            template.name,
            GpuVmTemplateArgs(spec=template, fleet=fleet, refs=refs, vcenter=vcenter, existing=brownfield),
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(providers=[provider] if provider else None)),
        )
    for vm in fleet.vms:
        # After every host of its cluster is prepared (as `hosts prepare` then `vms apply`): host preparation moves
        # VMs around, and a VM that has its DirectPath GPU or vGPU already cannot be moved off another host then.
        cluster = next((h.cluster for h in fleet.hosts if h.name == vm.host), None) or fleet.cluster
        after = [out.hosts[h.name] for h in fleet.hosts if (h.cluster or fleet.cluster) == cluster]
        template = out.templates.get(vm.template)
        args = GpuVmArgs(
            spec=vm,
            fleet=fleet,
            vcenter=vcenter,
            refs=refs,
            template_uuid=template.uuid if template else None,
            existing=brownfield,
        )
        vm_opts = pulumi.ResourceOptions(depends_on=after, providers=[provider] if provider else None)
        out.vms[vm.name] = GpuVm(vm.name, args, pulumi.ResourceOptions.merge(opts, vm_opts))
    if fleet.rollout.vgpu_vmotion is not None:
        out.mobility = VgpuMobility(
            "vgpu-mobility", VgpuMobilityArgs(vcenter=vcenter, enabled=fleet.rollout.vgpu_vmotion), opts
        )
    token = secret_from_ref(stack, licensing.nvidia_client_token, "licensing.nvidiaClientToken")
    vcenter_key = secret_from_ref(stack, licensing.vcenter_license, "licensing.vcenterLicense")
    guests = [vm for vm in fleet.vms if vm.vgpu and vm.nvidia_licensing] if token is not None else []
    # Brownfield: each GpuHost's HostLicenseAssignment adds its key to vCenter as it assigns it, so no
    # pulumi-vsphere License (nor its provider) is needed for the host key.
    host_key = host_default if not brownfield else None
    if token is not None or vcenter_key is not None or host_key is not None:
        if provider is None and (vcenter_key is not None or host_key is not None):
            provider = vsphere_provider(stack)
        out.licensing = Licensing(
            "licensing",
            LicensingArgs(
                vcenter=vcenter,
                vcenter_license=vcenter_key,
                host_license=host_key,
                nvidia_client_token=token,
                feature_type=licensing.feature_type,
                guests=guests,
                depends_on=[out.vms[vm.name] for vm in guests],
            ),
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(providers=[provider] if provider else None)),
        )
    out.pool_clients = pool_client_configs(stack, out.vms)
    return out


def pool_client_configs(stack: Stack, vms: dict[str, GpuVm]) -> dict[str, BitfusionClientConfig]:
    """One ``BitfusionClientConfig`` per GPU pool client: the same files as ``gpufleet guests prepare`` places
    (``gpufleet.checks.bitfusion``), the CA and token as Pulumi secrets, after the client VM's devices."""
    fleet = stack.fleet
    specs = {vm.name: vm for vm in fleet.vms}
    out: dict[str, BitfusionClientConfig] = {}
    for pool in fleet.gpu_pools:
        try:
            servers = server_addresses(stack, pool)
        except SpecError as exc:
            raise pulumi.RunError(str(exc)) from exc
        ca = secret_from_ref(stack, pool.tls.ca, f"gpuPools[{pool.name}].tls.ca")
        token = secret_from_ref(stack, pool.client_token, f"gpuPools[{pool.name}].clientToken")
        for client in pool.clients:
            spec, vm = specs[client.vm], vms[client.vm]  # the rules made sure the client is a VM of the stack
            out[client.vm] = BitfusionClientConfig(
                f"{client.vm}-bitfusion",
                {
                    "vcenter": vcenter_input(stack.vcenter),
                    "vmName": client.vm,
                    "ssh": stack_form(spec.ssh) if spec.ssh else None,
                    "pool": pool.name,
                    "servers": servers,
                    "ca": ca,
                    "clientToken": token,
                },
                pulumi.ResourceOptions(parent=vm, depends_on=[vm.devices]),
            )
    return out
