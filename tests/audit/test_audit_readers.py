"""The actual-state readers' pure parts: paging through a PropertyCollector retrieval, turning retrieved
properties (real pyVmomi data objects) into the audit's state, and reading ``nvidia-smi mig -lgi``."""

from __future__ import annotations

from types import SimpleNamespace

from pyVmomi import vim, vmodl

from gpufleet.audit.state import GpuInstance, LicenseState
from gpufleet.audit.vcenter_state import _Counter, build_state, retrieve_paged
from gpufleet.readers.nvidia_smi import parse_lgi

PC = vmodl.query.PropertyCollector


class FakeCollector:
    """Hands out pages like vCenter: RetrievePropertiesEx, then ContinueRetrievePropertiesEx while a token is
    returned; records every call."""

    def __init__(self, pages: list[list[str]]) -> None:
        self.pages = pages
        self.calls: list[tuple[str, object]] = []

    def _page(self, i: int) -> SimpleNamespace:
        token = f"t{i + 1}" if i + 1 < len(self.pages) else None
        return SimpleNamespace(objects=self.pages[i], token=token)

    def RetrievePropertiesEx(self, specs, options):  # noqa: N802 - vSphere's method name
        self.calls.append(("RetrievePropertiesEx", options.maxObjects))
        return self._page(0)

    def ContinueRetrievePropertiesEx(self, token):  # noqa: N802
        self.calls.append(("ContinueRetrievePropertiesEx", token))
        return self._page(int(token[1:]))

    def CancelRetrievePropertiesEx(self, token):  # noqa: N802
        self.calls.append(("CancelRetrievePropertiesEx", token))


def test_retrieve_paged_follows_tokens_to_the_end():
    collector = FakeCollector([["a", "b"], ["c", "d"], ["e"]])
    counter = _Counter()
    assert list(retrieve_paged(collector, spec=None, page_size=2, counter=counter)) == ["a", "b", "c", "d", "e"]
    assert collector.calls == [
        ("RetrievePropertiesEx", 2),
        ("ContinueRetrievePropertiesEx", "t1"),
        ("ContinueRetrievePropertiesEx", "t2"),
    ]
    assert (counter.calls, counter.pages) == (3, 3)


def test_retrieve_paged_cancels_an_abandoned_retrieval():
    collector = FakeCollector([["a", "b"], ["c"]])
    pages = retrieve_paged(collector, spec=None, page_size=2)
    assert next(pages) == "a"
    pages.close()
    assert collector.calls[-1] == ("CancelRetrievePropertiesEx", "t1")


def _oc(obj, **props):
    # ObjectContent / DynamicProperty shapes; the values are real pyVmomi data objects as vCenter sends them.
    return SimpleNamespace(
        obj=obj, propSet=[SimpleNamespace(name=k.replace("__", "."), val=v) for k, v in props.items()]
    )


def _opt(key, value):
    return vim.option.OptionValue(key=key, value=value)


def test_build_state_reads_hosts_vms_and_licences():
    host = vim.HostSystem("host-21")
    cluster = vim.ClusterComputeResource("domain-c7")
    vm = vim.VirtualMachine("vm-42")
    h100 = vim.host.PciDevice(
        id="0000:5e:00.0", vendorId=0x10DE, deviceId=0x2331, deviceName="GH100 [H100 PCIe]", classId=0x0302
    )
    # 0x9999 does not fit an xsd:short: vSphere sends it negative.
    odd = vim.host.PciDevice(id="0000:86:00.0", vendorId=0x10DE, deviceId=0x9999 - 0x10000, deviceName="?")
    nic = vim.host.PciDevice(id="0000:31:00.0", vendorId=0x15B3, deviceId=0x101D, deviceName="ConnectX-6 Dx")
    intel = vim.host.PciDevice(id="0000:00:1f.0", vendorId=0x8086, deviceId=0x1234, deviceName="chipset")
    graphics = vim.host.GraphicsConfig(
        hostDefaultGraphicsType="sharedDirect", sharedPassthruAssignmentPolicy="performance"
    )
    info = [
        vim.host.GraphicsInfo(pciId="0000:5e:00.0", graphicsType="sharedDirect", deviceName="H100", vendorName="NVIDIA")
    ]
    passthru = [vim.host.PciPassthruInfo(id="0000:5e:00.0", passthruEnabled=False, passthruCapable=True)]
    vgpu = vim.vm.device.VirtualPCIPassthrough(
        key=13000, backing=vim.vm.device.VirtualPCIPassthrough.VmiopBackingInfo(vgpu="grid_h100-3-40c")
    )
    pvrdma = vim.vm.device.VirtualVmxnet3Vrdma(
        key=4001,
        deviceProtocol="rocev2",
        backing=vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(deviceName="RDMA Network"),
    )
    plain = vim.vm.device.VirtualVmxnet3(
        key=4000, backing=vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(deviceName="VM Network")
    )
    extra = [
        _opt("pciPassthru.use64bitMMIO", "TRUE"),
        _opt("pciPassthru.64bitMMIOSizeGB", "128"),
        _opt("pciPassthru.64bitMMIOSizeGB", "256"),  # a later entry wins
        _opt("numa.nodeAffinity", ""),  # "" means unset
        _opt("pciPassthru0.cfg.frame_rate_limiter", "0"),
        _opt("guestinfo.hostname", "not a GPU key"),
    ]
    objects = [
        _oc(cluster, name="GPU-Cluster"),
        _oc(
            host,
            name="esxi-02.lab",
            parent=cluster,
            runtime__connectionState="connected",
            runtime__inMaintenanceMode=True,
            runtime__powerState="poweredOn",
            hardware__pciDevice=[h100, odd, nic, intel],
            config__graphicsConfig=graphics,
            config__graphicsInfo=info,
            config__sharedPassthruGpuTypes=["grid_h100-3-40c", "GRID_H100-80C"],
            config__pciPassthruInfo=passthru,
        ),
        _oc(
            vm,
            name="vm-rdma-01",
            runtime__host=host,
            runtime__powerState="poweredOn",
            config__template=False,
            config__firmware="efi",
            config__version="vmx-19",
            config__memoryReservationLockedToMax=True,
            config__hardware__device=[plain, pvrdma, vgpu],
            config__extraConfig=extra,
        ),
    ]
    lic = LicenseState("Evaluation Mode", "*****-*****-*****-*****-00000", "sha256:x", True)
    state = build_state(objects, {"host-21": lic})
    h = state.hosts["esxi-02.lab"]
    assert (h.cluster, h.connection_state, h.in_maintenance) == ("GPU-Cluster", "connected", True)
    assert (h.default_graphics_type, h.assignment_policy) == ("sharedDirect", "performance")
    assert [(d.pci, d.device_id) for d in h.devices] == [
        ("0000:31:00.0", 0x101D),
        ("0000:5e:00.0", 0x2331),
        ("0000:86:00.0", 0x9999),
    ]
    assert [d.pci for d in h.gpus] == ["0000:5e:00.0", "0000:86:00.0"]
    assert h.device("0000:5e:00.0").graphics_type == "sharedDirect"
    assert h.device("0000:5e:00.0").passthrough_enabled is False
    assert h.profiles_offered == ("grid_h100-3-40c", "grid_h100-80c")
    assert h.license.evaluation
    v = state.vms["vm-rdma-01"]
    assert (v.host, v.power_state, v.firmware, v.template) == ("esxi-02.lab", "poweredOn", "efi", False)
    assert v.devices.hardware_version == 19 and v.devices.memory_reservation_locked
    assert [g.profile for g in v.devices.vgpus] == ["grid_h100-3-40c"]
    assert [(n.network, n.protocol) for n in v.devices.pvrdma] == [("RDMA Network", "rocev2")]
    assert [(n.type, n.network) for n in v.nics] == [("vmxnet3", "VM Network"), ("vmxnet3vrdma", "RDMA Network")]
    assert v.extra_config == {
        "pciPassthru.64bitMMIOSizeGB": "256",
        "pciPassthru.use64bitMMIO": "TRUE",
        "pciPassthru0.cfg.frame_rate_limiter": "0",
    }
    assert v.has_gpu


# Real output: A100-SXM4-80GB, driver 550.54.14 (shared/reference/mig_a100_sxm4_80gb_lgip_lgi_lcip.txt).
LGI = """+-------------------------------------------------------+
| GPU instances:                                        |
| GPU   Name             Profile  Instance   Placement  |
|                          ID       ID       Start:Size |
|=======================================================|
|   0  MIG 3g.40gb          9        1          4:4     |
+-------------------------------------------------------+
|   0  MIG 4g.40gb          5        2          0:4     |
+-------------------------------------------------------+
|   1  MIG 1g.10gb+me      20        9          6:1     |
+-------------------------------------------------------+
"""


def test_parse_lgi():
    assert parse_lgi(LGI) == {
        0: [GpuInstance("3g.40gb", 4, 4, 1, profile_id=9), GpuInstance("4g.40gb", 0, 4, 2, profile_id=5)],
        1: [GpuInstance("1g.10gb+me", 6, 1, 9, profile_id=20)],
    }
    assert parse_lgi("No GPU instances found: Not Found\n") == {}


def test_read_hosts_is_parallel_with_a_bound_and_isolates_unreachable_hosts(monkeypatch):
    import threading
    import time

    from gpufleet.audit import host_state
    from gpufleet.audit.state import HostSshState, Unreachable
    from gpufleet.connections import SshSettings
    from gpufleet.errors import ConnectError

    lock = threading.Lock()
    running, peak, closed = [0], [0], []

    class Runner:
        def __init__(self, settings):
            self.name = settings.name

        def close(self):
            closed.append(self.name)

    def fake_read(runner, target):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            time.sleep(0.1)
            if target.name == "h3":
                raise ConnectError("h3 (127.0.0.13:22) is unreachable over SSH: timed out")
            return HostSshState(target.name, "550.90.05", "component", False, None, True)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(host_state, "read_host", fake_read)
    targets = {
        f"h{i}": host_state.HostTarget(f"h{i}", SshSettings(f"h{i}", f"127.0.0.{10 + i}"), desired=None)
        for i in range(6)
    }
    states, unreachable = host_state.read_hosts(targets, parallel=2, runner_factory=Runner)
    assert peak[0] == 2  # never more than the bound, and really parallel (counted, not timed: no clock bound)
    assert sorted(states) == ["h0", "h1", "h2", "h4", "h5"]
    assert unreachable == [Unreachable("h3", "h3 (127.0.0.13:22) is unreachable over SSH: timed out", "host")]
    assert sorted(closed) == sorted(targets)  # every connection closed, the failed one too
