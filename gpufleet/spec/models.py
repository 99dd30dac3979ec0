"""Pydantic models of the fleet spec, version v1.

Keys are camelCase in YAML (Pulumi config style) and snake_case in Python. Every model forbids unknown keys.
These models check shape only (types, formats, ranges, mutual exclusions); the rules that need hardware
knowledge (profiles per GPU, MIG geometry, per-GPU maxima) live in ``gpufleet.spec.validate``.
Secrets are never inlined: a ``SecretRef`` names a Pulumi secret config key and/or an environment variable.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    StrictBool,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import core_schema

from gpufleet.catalog import profile_key
from gpufleet.catalog.licensing import FEATURE_TYPES
from gpufleet.spec.echo import PrintableModel, shown
from gpufleet.spec.graphics import SHARED_DIRECT, AssignmentPolicy, GraphicsType
from gpufleet.spec.guest_models import GuestSpec

PCI_ADDRESS = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
SSH_PUBLIC_KEY = re.compile(r"^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/=]+$")
SHA256_THUMBPRINT = re.compile(r"^([0-9A-F]{2}:){31}[0-9A-F]{2}$")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
OUTPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,99}$")


class SpecModel(PrintableModel):
    """Base of every spec model: camelCase aliases, unknown keys rejected, immutable, text printable."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        str_strip_whitespace=True,
    )


def _pci(value: str) -> str:
    value = value.lower()
    if not PCI_ADDRESS.match(value):
        raise ValueError(f"{shown(value)} is not a PCI address like 0000:3b:00.0 (domain:bus:device.function)")
    return value


PciAddress = Annotated[str, AfterValidator(_pci)]
"""PCI address, domain:bus:device.function, e.g. 0000:3b:00.0 (normalised to lower case)."""


class SecretRef(SpecModel):
    """Where a secret comes from: a Pulumi secret config key (``pulumi config set --secret``) and/or an output of
    the fleet stack (``stackOutput``, read through a Pulumi StackReference to the stack named by config
    ``gpufleet:fleetStack``), used by ``pulumi up``; and/or an environment variable, used by the CLI. The value
    itself never appears in a stack."""

    config: str | None = Field(None, description="Pulumi config key holding the secret, e.g. gpufleet:nvidiaToken")
    stack_output: str | None = Field(
        None, description="Output of the fleet stack (config gpufleet:fleetStack) holding the secret, for pulumi up"
    )
    env: str | None = Field(None, description="Environment variable holding the secret for the CLI")

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if not self.config and not self.env and not self.stack_output:
            raise ValueError(
                "a secret reference needs `config` (a Pulumi secret key), `stackOutput` (an output of the fleet "
                "stack) or `env` (a variable name)"
            )
        if self.env and not ENV_NAME.match(self.env):
            raise ValueError(f"env {shown(self.env)} is not an environment variable name (A-Z, 0-9, _)")
        if self.stack_output is not None and not OUTPUT_NAME.match(self.stack_output):
            raise ValueError(f"stackOutput {shown(self.stack_output)} is not an output name (letters, digits, _ -)")
        return self


class VcenterSpec(SpecModel):
    """Connection to vCenter (stack key ``gpufleet:vcenter``). TLS is always verified: give ``caFile`` or a
    pinned SHA-256 ``thumbprint``. ``lab: true`` takes everything from the running embedded lab instead."""

    lab: StrictBool = Field(False, description="Use the running embedded lab (gpufleet lab env); other fields ignored")
    host: str | None = Field(None, description="vCenter host name or address")
    port: SpecInt = Field(443, ge=1, le=65535)
    user: str | None = Field(None, description="vCenter user, e.g. administrator@vsphere.local")
    password: SecretRef | None = Field(None, description="vCenter password (secret reference)")
    ca_file: str | None = Field(None, description="PEM CA bundle that signs vCenter's certificate")
    thumbprint: str | None = Field(None, description="Pinned SHA-256 thumbprint of vCenter's certificate (AA:BB:..)")

    @field_validator("thumbprint")
    @classmethod
    def _thumbprint(cls, value: str | None) -> str | None:
        if value is None:
            return value
        value = value.upper()
        if not SHA256_THUMBPRINT.match(value):
            raise ValueError("thumbprint must be a SHA-256 fingerprint: 32 hex bytes separated by ':'")
        return value

    @model_validator(mode="after")
    def _complete(self) -> VcenterSpec:
        if self.lab:
            return self
        missing = [name for name in ("host", "user", "password") if getattr(self, name) is None]
        if missing:
            raise ValueError(f"missing {', '.join(missing)} (or set lab: true to use the embedded lab)")
        if not self.ca_file and not self.thumbprint:
            raise ValueError("TLS is always verified: set caFile (a CA bundle) or thumbprint (a pinned SHA-256)")
        return self


class SshSpec(SpecModel):
    """How to reach a host or guest over SSH. The host key is verified against ``hostKey`` (pinned) or
    ``knownHosts``; an unknown or changed key is refused."""

    address: str = Field(description="Address or DNS name")
    port: SpecInt = Field(22, ge=1, le=65535)
    user: str = Field("root")
    host_key: str | None = Field(None, description="Pinned public host key, e.g. 'ssh-ed25519 AAAA...'")
    known_hosts: str | None = Field(None, description="known_hosts file to verify the host key against")
    key_file: str | None = Field(None, description="Private key file for key authentication")
    password: SecretRef | None = Field(None, description="Password (secret reference), if no key is used")

    @field_validator("host_key")
    @classmethod
    def _host_key(cls, value: str | None) -> str | None:
        if value is not None and not SSH_PUBLIC_KEY.match(value):
            raise ValueError("hostKey must be '<type> <base64>', e.g. 'ssh-ed25519 AAAAC3Nz...'")
        return value


class GpuMode(StrEnum):
    """How a physical GPU is used."""

    VGPU = "vgpu"  # time-sliced vGPU
    MIG = "mig"  # MIG-backed vGPU (MIG mode on, vSphere creates GPU instances at power-on)
    PASSTHROUGH = "passthrough"  # DirectPath I/O, fixed PCI address
    DYNAMIC_PASSTHROUGH = "dynamic-passthrough"  # Dynamic DirectPath I/O, by vendor/device id


class GpuSpec(SpecModel):
    """One physical GPU of a host."""

    pci: PciAddress
    model: str = Field(description="GPU model as in `gpufleet schema` / the catalog, e.g. A100-80GB-PCIe")
    mode: GpuMode = GpuMode.VGPU
    mixed_size: StrictBool = Field(False, description="Time-sliced vGPU mixed-size mode (vGPUs of several sizes)")
    nvlink_peers: list[PciAddress] = Field(default_factory=list, description="GPUs bridged to this one by NVLink")


class NicSpec(SpecModel):
    """An RDMA-capable NIC of a host (e.g. ConnectX-6 Dx)."""

    pci: PciAddress
    model: str = Field("ConnectX-6-Dx")
    ats: StrictBool = Field(False, description="Enable ATS for GPUDirect RDMA (ESXi atsSupport + ConnectX ATS_ENABLED)")
    passthrough: StrictBool = Field(False, description="Reserve this NIC for DirectPath I/O into a VM")


def _no_bool_or_text(value: object) -> object:
    """Whole numbers only: YAML's `true` or `"8"` is refused, not read as 1 or 8. (A float that is a whole number
    passes: numbers reach the dynamic providers through Pulumi as floats.)"""
    if isinstance(value, (bool, str)):
        raise ValueError(f"must be a whole number, not {shown(value)}")
    return value


SpecInt = Annotated[int, BeforeValidator(_no_bool_or_text)]

# NVIDIA driver versions as esxcli and nvidia-smi print them (550.90.05, 535.183.06, 580.65).
DRIVER_VERSION = re.compile(r"\d{3}\.\d{1,3}(\.\d{1,3})?")
# The version in an NVIDIA bundle's file name: NVD-AIE-800_550.90.05-1OEM..., NVIDIA-AIE_ESXi_8.0.0_Driver_550.90.05-1OEM...
BUNDLE_VERSION = re.compile(r"_(\d{3}\.\d{1,3}(?:\.\d{1,3})?)-")


class DriverSpec(SpecModel):
    """The NVIDIA vGPU host driver (component bundle or VIB) for ESXi."""

    version: str = Field(description="Driver version as esxcli reports it, e.g. 550.90.05")
    bundle: str = Field(description="Absolute datastore path of the bundle/VIB on the host (esxcli needs it)")
    local_path: str | None = Field(None, description="Local file uploaded over SFTP to `bundle` when missing")
    kind: Literal["component", "vib"] = Field("component", description="`software component apply` or `vib install`")

    @field_validator("bundle")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("esxcli needs an absolute path, e.g. /vmfs/volumes/datastore1/NVD-AIE-....zip")
        return value

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not DRIVER_VERSION.fullmatch(value):
            raise ValueError(f"{shown(value)} is not a driver version as esxcli reports it (e.g. 550.90.05)")
        return value

    @model_validator(mode="after")
    def _version_matches_bundle(self) -> DriverSpec:
        for path in (self.bundle, self.local_path or ""):
            named = BUNDLE_VERSION.search(path.rsplit("/", 1)[-1])
            if named and named.group(1) != self.version:
                raise ValueError(
                    f"version {self.version} does not match the bundle {path.rsplit('/', 1)[-1]}, "
                    f"which carries {named.group(1)}"
                )
        return self


class HostSpec(SpecModel):
    """An ESXi host with NVIDIA GPUs."""

    name: str = Field(description="The HostSystem name in vCenter, e.g. esxi-01.lab")
    role: str | None = Field(None, description="What this host is across stacks, for `gpufleet promote`")
    cluster: str | None = Field(None, description="Cluster, when not the fleet's default")
    ssh: SshSpec | None = Field(None, description="SSH access (taken from the lab when vcenter.lab is true)")
    driver: DriverSpec | None = Field(None, description="Overrides the fleet's default driver")
    graphics_type: GraphicsType = Field(SHARED_DIRECT, description="Default graphics type")
    assignment_policy: AssignmentPolicy = Field("performance")
    gpus: list[GpuSpec] = Field(default_factory=list)
    nics: list[NicSpec] = Field(default_factory=list)
    license: SecretRef | None = Field(None, description="vSphere licence key for this host (secret reference)")


class TemplateSpec(SpecModel):
    """A GPU VM template."""

    name: str
    guest_id: str = Field("ubuntu64Guest", description="vSphere guest OS identifier (64-bit for GPUs)")
    firmware: Literal["efi", "bios"] = Field("efi")
    secure_boot: StrictBool = False
    cpus: SpecInt = Field(8, ge=1, le=768)
    cores_per_socket: SpecInt | None = Field(None, ge=1)
    memory_mb: SpecInt = Field(65536, ge=1024)
    memory_reservation_locked: StrictBool = Field(True, description="Reserve all guest memory (required for GPUs)")
    hardware_version: SpecInt = Field(19, ge=11, le=22, description="Virtual hardware version (vmx-NN)")
    numa_node: SpecInt | None = Field(None, ge=0, description="Pin to this NUMA node (numa.nodeAffinity)")
    mmio_size_gb: SpecInt | None = Field(None, ge=1, description="64-bit MMIO size; derived from the GPUs if omitted")
    p2p: StrictBool = Field(
        False, alias="p2p", description="pciPassthru.allowP2P for GPUDirect RDMA / P2P between devices"
    )
    relax_acs: StrictBool = Field(False, description="pciPassthru.RelaxACSforP2P")
    network: str | None = Field(None, description="Port group of the first NIC")
    disk_gb: SpecInt = Field(100, ge=1)
    guest: GuestSpec | None = Field(None, description="Guest OS software: NVIDIA driver, container toolkit, Docker")


class VgpuProfileName(str):
    """A vGPU profile as the spec holds it: the string is the canonical key (``catalog.profile_key``:
    ``h100-3-40c``), made once here where the stack is read, so every layer below compares keys and never
    re-spells. ``spelled`` keeps the stack's own words, lower-cased (``nvidia_h100-3-40c``): what people are shown,
    and what the spec writes back, so a dumped spec reads as its stack wrote it. vSphere's form (``grid_...``) is
    made only where vSphere is talked to (``derive.vsphere_profile_name``)."""

    spelled: str

    def __new__(cls, written: str) -> VgpuProfileName:
        name = super().__new__(cls, profile_key(written))
        name.spelled = written.strip().lower()
        return name

    @classmethod
    def __get_pydantic_core_schema__(cls, source: type[Any], handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        def validate(value: Any, inner: core_schema.ValidatorFunctionWrapHandler) -> VgpuProfileName:
            # a spec built from another spec's objects keeps their spelling
            return value if isinstance(value, VgpuProfileName) else cls(inner(value))

        return core_schema.no_info_wrap_validator_function(
            validate,
            core_schema.str_schema(),
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda v: v.spelled if isinstance(v, VgpuProfileName) else v, return_schema=core_schema.str_schema()
            ),
        )


class VgpuRequest(SpecModel):
    """One vGPU of a VM: time-sliced (e.g. nvidia_l40s-24c) or MIG-backed (e.g. grid_a100d-4-40c)."""

    profile: VgpuProfileName = Field(description="vSphere vGPU profile name; grid_ and nvidia_ prefixes both accepted")
    gpu: PciAddress | None = Field(None, description="Pin to this physical GPU of the VM's host")


class PassthroughRequest(SpecModel):
    """A whole GPU handed to the VM: DirectPath I/O by PCI address, or Dynamic DirectPath by model."""

    gpu: PciAddress | None = Field(None, description="DirectPath I/O: the host GPU at this PCI address")
    model: str | None = Field(None, description="Dynamic DirectPath: any free GPU of this model on the host")

    @model_validator(mode="after")
    def _exactly_one(self) -> PassthroughRequest:
        if (self.gpu is None) == (self.model is None):
            raise ValueError("give exactly one of `gpu` (DirectPath I/O) or `model` (Dynamic DirectPath)")
        return self


class RdmaNicRequest(SpecModel):
    """An RDMA NIC of a VM: a PVRDMA adapter (vmxnet3vrdma) or a passthrough ConnectX."""

    type: Literal["pvrdma", "passthrough"]
    network: str | None = Field(None, description="Port group (PVRDMA)")
    roce: Literal["v1", "v2"] = Field("v2", description="RoCE protocol of a PVRDMA adapter")
    nic: PciAddress | None = Field(None, description="Host NIC PCI address (passthrough)")

    @model_validator(mode="after")
    def _fields_for_type(self) -> RdmaNicRequest:
        if self.type == "passthrough" and self.nic is None:
            raise ValueError("a passthrough RDMA NIC needs `nic`: the host NIC's PCI address")
        if self.type == "pvrdma" and self.nic is not None:
            raise ValueError("`nic` applies to passthrough only; a PVRDMA adapter takes `network`")
        return self


class VmSpec(SpecModel):
    """A VM cloned from a template, with its GPUs and RDMA NICs (owned by gpufleet's VmGpuDevices)."""

    name: str
    role: str | None = Field(None, description="What this VM is across stacks, for `gpufleet promote`")
    template: str = Field(description="Name of a template in `templates`")
    host: str | None = Field(None, description="Pin to this host; omitted: placed by `gpufleet plan`")
    vgpu: list[VgpuRequest] = Field(default_factory=list, description="vGPUs; several only where NVIDIA allows")
    passthrough: list[PassthroughRequest] = Field(default_factory=list)
    rdma: list[RdmaNicRequest] = Field(default_factory=list)
    cpus: SpecInt | None = Field(None, ge=1, le=768, description="Overrides the template")
    memory_mb: SpecInt | None = Field(None, ge=1024, description="Overrides the template")
    allow_power_cycle: StrictBool | None = Field(None, description="Overrides rollout.allowPowerCycle for this VM")
    ssh: SshSpec | None = Field(None, description="SSH into the guest for post-deploy checks and licensing")
    nvidia_licensing: StrictBool = Field(True, description="Place the NVIDIA client configuration token in the guest")
    guest: GuestSpec | None = Field(None, description="Guest OS software; replaces the template's guest block")


class LicensingSpec(SpecModel):
    """Licences: vSphere keys and the NVIDIA client configuration token (FeatureType) for guests."""

    vcenter_license: SecretRef | None = Field(None, description="vCenter licence key")
    host_license: SecretRef | None = Field(None, description="Default licence key for every host")
    nvidia_client_token: SecretRef | None = Field(None, description="NLS client configuration token")
    feature_type: SpecInt = Field(1, description="gridd.conf FeatureType: 0 unlicensed, 1 vGPU, 2 vWS/RTX, 4 vCS/NVAIE")

    @field_validator("feature_type")
    @classmethod
    def _feature_type(cls, value: int) -> int:
        if value not in FEATURE_TYPES:
            valid = ", ".join(f"{k} ({v})" for k, v in FEATURE_TYPES.items())
            raise ValueError(f"{shown(value)} is not a gridd.conf FeatureType (valid: {valid})")
        return value


class RolloutPolicy(SpecModel):
    """How host preparation and VM changes roll across the fleet."""

    max_unavailable: SpecInt = Field(1, ge=1, description="Hosts per cluster in maintenance at once")
    reboot_timeout_seconds: SpecInt = Field(1200, ge=10)
    maintenance_timeout_seconds: SpecInt = Field(1800, ge=10)
    failure_threshold: SpecInt = Field(1, ge=1, description="Stop the rollout after this many failed hosts")
    allow_power_cycle: StrictBool = Field(False, description="May gpufleet power off a VM to change its GPU devices")
    vgpu_vmotion: StrictBool | None = Field(None, description="vCenter advanced setting vgpu.hotmigrate.enabled")


# -- GPU pools over the network (vSphere Bitfusion) ------------------------------------------------------------
POOL_NICS = ("vmxnet3", "passthrough", "pvrdma")
PoolNic = Literal["vmxnet3", "passthrough", "pvrdma"]
BITFUSION_VERSION = re.compile(r"^\d+\.\d+(\.\d+)?$")


def _share(value: object) -> object:
    """A client's share: a fraction of one GPU (0 < share <= 1, Bitfusion's ``-n 1 -p share``) or a whole number of
    GPUs (``-n share``). Text and booleans are refused, as for whole numbers."""
    if isinstance(value, (bool, str)):
        raise ValueError(
            f"must be a number (a fraction of one GPU like 0.25, or whole GPUs like 2), not {shown(value)}"
        )
    if not isinstance(value, (int, float)) or value != value or value <= 0:
        raise ValueError(f"{shown(value)} is not a share: give a fraction of one GPU (0 < share <= 1) or whole GPUs")
    if value > 1 and value != int(value):
        raise ValueError(f"{shown(value)}: above 1 a share is whole GPUs (2, 3, ...); below, a fraction of one GPU")
    return value


PoolShare = Annotated[float, BeforeValidator(_share)]


class PoolServer(SpecModel):
    """A Bitfusion server: a VM of ``vms`` on a GPU host, exporting the GPUs passed through to it."""

    vm: str = Field(description="Name of the server VM in `vms` (its passthrough lists these GPUs)")
    host: str = Field(description="The host the server VM runs on (the VM's `host`)")
    gpus: list[PciAddress] = Field(min_length=1, description="PCI addresses of the host GPUs it exports (passthrough)")
    nic: PoolNic = Field("vmxnet3", description="Data path: vmxnet3 (TCP), passthrough ConnectX (RoCE) or pvrdma")
    network: str | None = Field(
        None,
        description="Port group / fabric of its data path; default: the template's network (vmxnet3) or the "
        "VM's PVRDMA network (pvrdma); required for passthrough",
    )


class PoolClient(SpecModel):
    """A Bitfusion client: a VM of ``vms`` without GPUs of its own, using a share of the pool."""

    vm: str = Field(description="Name of the client VM in `vms`")
    share: PoolShare = Field(description="Fraction of one GPU (0.25: `bitfusion run -n 1 -p 0.25`) or whole GPUs (2)")
    nic: PoolNic = Field("vmxnet3", description="Data path: vmxnet3 (TCP), passthrough ConnectX (RoCE) or pvrdma")
    network: str | None = Field(None, description="Port group / fabric of its data path (defaults as for servers)")


class PoolTls(SpecModel):
    """TLS between Bitfusion clients and servers: the CA that signs the servers' certificates."""

    ca: SecretRef = Field(description="PEM CA certificate the clients trust (secret reference: written 0600)")


class GpuPool(SpecModel):
    """A pool of GPUs shared over the network (vSphere Bitfusion): servers export GPUs, clients use shares."""

    name: str
    version: str = Field(description="Bitfusion version of servers and clients, e.g. 4.5.4")
    networks: list[str] = Field(
        min_length=1, description="Port groups / fabrics routed to each other; every member's data path is on one"
    )
    servers: list[PoolServer] = Field(min_length=1)
    clients: list[PoolClient] = Field(default_factory=list)
    tls: PoolTls
    client_token: SecretRef = Field(description="Bitfusion client token (the client's credentials; secret reference)")

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not BITFUSION_VERSION.match(value):
            raise ValueError(f"{shown(value)} is not a Bitfusion version like 4.5.4")
        return value


class Fleet(SpecModel):
    """The whole fleet (stack key ``gpufleet:fleet``)."""

    version: Literal["v1"] = Field(description="Spec version; only v1 exists")
    datacenter: str
    cluster: str
    datastore: str | None = None
    driver: DriverSpec | None = Field(None, description="Default NVIDIA host driver of every host")
    hosts: list[HostSpec] = Field(default_factory=list)
    templates: list[TemplateSpec] = Field(default_factory=list)
    vms: list[VmSpec] = Field(default_factory=list)
    licensing: LicensingSpec = Field(default_factory=LicensingSpec)
    rollout: RolloutPolicy = Field(default_factory=RolloutPolicy)
    gpu_pools: list[GpuPool] = Field(
        default_factory=list, description="GPUs pooled over the network (vSphere Bitfusion; end of life, see README)"
    )

    def host(self, name: str) -> HostSpec | None:
        return next((h for h in self.hosts if h.name == name), None)

    def template(self, name: str) -> TemplateSpec | None:
        return next((t for t in self.templates if t.name == name), None)

    def vm(self, name: str) -> VmSpec | None:
        return next((v for v in self.vms if v.name == name), None)

    def pool(self, name: str) -> GpuPool | None:
        return next((p for p in self.gpu_pools if p.name == name), None)

    def driver_for(self, host: HostSpec) -> DriverSpec | None:
        return host.driver or self.driver

    def guest_for(self, vm: VmSpec) -> GuestSpec | None:
        """The VM's guest block, else its template's (None: gpufleet installs nothing in this guest)."""
        if vm.guest is not None:
            return vm.guest
        template = self.template(vm.template)
        return template.guest if template else None
