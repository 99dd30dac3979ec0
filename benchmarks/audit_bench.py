"""Benchmark: the audit's vCenter read vs a naive pyVmomi traversal vs one raw PropertyCollector retrieval.

    .venv/bin/python benchmarks/audit_bench.py                      # 100 hosts, 2,000 VMs (own vcsim, own port)
    .venv/bin/python benchmarks/audit_bench.py --hosts 20 --vms-per-host 10 --repeat 3

It starts the lab's vcsim (lab/vcsim, the same Go main as `gpufleet lab up`, over verified TLS with a fresh lab
CA in a temporary folder) on a topology of N hosts and M VMs per host, gives every VM a GPU device and GPU
extraConfig keys (so each VM carries what a GPU fleet's VMs carry), and times three ways of reading the same
properties of every host and VM:

- audit:  ``gpufleet.audit.vcenter_state.read_vcenter_state`` (ContainerView + RetrievePropertiesEx, paged, parsed
          into the audit's typed state, licences of all hosts in one call);
- naive:  attribute by attribute per object, as Ansible's info modules read through pyVmomi (``vm.config.firmware``,
          ``vm.config.version``... each a round trip), licences per host;
- raw:    one RetrievePropertiesEx of the same properties over a ContainerView, results not parsed (the floor).

SOAP round trips are counted at pyVmomi's ``SoapStubAdapter.InvokeMethod`` (every request on the wire, property
fetches included). Targets (issue 6): audit >= 20x fewer round trips than naive; audit wall time <= 1.5x raw
(TARGET lines, exit 0 met / 3 missed: benchmarks/targets.py).
The lab's vcsim (govmomi v0.52) pages retrievals as a real vCenter does (maxObjects, ContinueRetrievePropertiesEx
tokens), so the audit's paging loop runs here as it does against vCenter.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pyVmomi import SoapAdapter, vim  # noqa: E402
from targets import MET, MISSED, Target, report  # noqa: E402

from gpufleet.audit.vcenter_state import PROPERTY_SETS, read_vcenter_state, view_filter_spec  # noqa: E402
from gpufleet.connections import Secret, VcenterSettings  # noqa: E402
from gpufleet.vsphere.connect import connect  # noqa: E402
from gpufleet.vsphere.tasks import wait_for_task  # noqa: E402
from lab.topology import build_topology, write_topology  # noqa: E402
from lab.vcenter import LabAdmin, build_vcsim, make_lab_ca, start_vcsim, stop_vcsim  # noqa: E402

DATACENTER = "DC-Lab"


# -- counting round trips ---------------------------------------------------------------------------------


class RoundTrips:
    """Counts SOAP requests by wrapping pyVmomi's SoapStubAdapter.InvokeMethod (class-wide, while active)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def counting(self) -> Iterator[RoundTrips]:
        original = SoapAdapter.SoapStubAdapter.InvokeMethod
        counter = self

        def invoke(stub: Any, mo: Any, info: Any, args: Any, outerStub: Any = None) -> Any:  # noqa: N803
            with counter._lock:
                counter.count += 1
            return original(stub, mo, info, args, outerStub)

        SoapAdapter.SoapStubAdapter.InvokeMethod = invoke  # type: ignore[method-assign]
        try:
            yield self
        finally:
            SoapAdapter.SoapStubAdapter.InvokeMethod = original  # type: ignore[method-assign]


# -- the three readers ----------------------------------------------------------------------------------------


def audit_read(content: Any) -> int:
    state = read_vcenter_state(content, DATACENTER)
    return len(state.hosts) + len(state.vms)


def naive_read(content: Any) -> int:
    """Attribute by attribute per object (each managed-object property access is one Fetch round trip)."""
    dc = next(e for e in content.rootFolder.childEntity if isinstance(e, vim.Datacenter) and e.name == DATACENTER)
    lam = content.licenseManager.licenseAssignmentManager
    rows: list[dict[str, Any]] = []
    hosts: list[Any] = []
    for compute in dc.hostFolder.childEntity:
        hosts.extend(compute.host)
    for host in hosts:
        rows.append(
            {
                "name": host.name,
                "cluster": host.parent.name,
                "connection": host.runtime.connectionState,
                "maintenance": host.runtime.inMaintenanceMode,
                "power": host.runtime.powerState,
                "pci": [d.id for d in host.hardware.pciDevice if d.vendorId in (0x10DE, 0x15B3)],
                "graphics": host.config.graphicsConfig,
                "graphics_info": host.config.graphicsInfo,
                "profiles": host.config.sharedPassthruGpuTypes,
                "passthru": host.config.pciPassthruInfo,
                "license": lam.QueryAssignedLicenses(entityId=host._moId),
            }
        )

    def vms_in(folder: Any) -> Iterator[Any]:
        for child in folder.childEntity:
            if isinstance(child, vim.Folder):
                yield from vms_in(child)
            elif isinstance(child, vim.VirtualMachine):
                yield child

    for vm in vms_in(dc.vmFolder):
        rows.append(
            {
                "name": vm.name,
                "host": vm.runtime.host.name if vm.runtime.host else None,
                "power": vm.runtime.powerState,
                "template": vm.config.template,
                "firmware": vm.config.firmware,
                "version": vm.config.version,
                "locked": vm.config.memoryReservationLockedToMax,
                "devices": vm.config.hardware.device,
                "extra": [o for o in vm.config.extraConfig if o.key.startswith(("pciPassthru", "numa."))],
            }
        )
    return len(rows)


def raw_read(content: Any) -> int:
    """One RetrievePropertiesEx of the same properties over a ContainerView; nothing parsed."""
    dc = content.searchIndex.FindByInventoryPath(inventoryPath=DATACENTER)
    view = content.viewManager.CreateContainerView(dc, [kind for kind, _ in PROPERTY_SETS], True)
    try:
        spec = view_filter_spec(view, PROPERTY_SETS)
        result = content.propertyCollector.RetrievePropertiesEx([spec], vim.PropertyCollector.RetrieveOptions())
        return sum(1 for o in result.objects if o.obj._wsdlName != "ClusterComputeResource")
    finally:
        view.DestroyView()


# -- lab ------------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def give_vms_gpus(content: Any, limit_s: float) -> int:
    """Give every VM (not templates) a vGPU of its host and the 64-bit MMIO keys, like a deployed GPU fleet."""
    dc = content.searchIndex.FindByInventoryPath(inventoryPath=DATACENTER)
    view = content.viewManager.CreateContainerView(dc, [vim.VirtualMachine], True)
    vms = list(view.view)
    view.DestroyView()
    deadline = time.monotonic() + limit_s
    done = 0
    profiles: dict[str, str | None] = {}
    for vm in vms:
        if time.monotonic() > deadline or vm.config.template:
            continue
        host = vm.runtime.host
        if host._moId not in profiles:
            offered = list(host.config.sharedPassthruGpuTypes or [])
            profiles[host._moId] = offered[0] if offered else None
        spec = vim.vm.ConfigSpec(
            extraConfig=[
                vim.option.OptionValue(key="pciPassthru.use64bitMMIO", value="TRUE"),
                vim.option.OptionValue(key="pciPassthru.64bitMMIOSizeGB", value="256"),
            ]
        )
        if profiles[host._moId]:
            backing = vim.vm.device.VirtualPCIPassthrough.VmiopBackingInfo(vgpu=profiles[host._moId])
            device = vim.vm.device.VirtualPCIPassthrough(key=-100, backing=backing)
            spec.deviceChange = [vim.vm.device.VirtualDeviceSpec(operation="add", device=device)]
        with contextlib.suppress(Exception):  # a VM vcsim refuses stays GPU-less; the benchmark still compares
            wait_for_task(vm.ReconfigVM_Task(spec), what=f"give {vm.name} a GPU", timeout=60)
            done += 1
    return done


def timed(fn: Callable[[Any], int], content: Any, counter: RoundTrips) -> tuple[int, float, int]:
    before = counter.count
    t0 = time.perf_counter()
    objects = fn(content)
    return counter.count - before, time.perf_counter() - t0, objects


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--vms-per-host", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5, help="runs of the audit and raw readers (median kept)")
    parser.add_argument("--naive-repeat", type=int, default=1, help="runs of the naive reader (slow)")
    parser.add_argument("--no-gpus", action="store_true", help="leave the VMs without GPU devices")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    args = parser.parse_args(argv)

    # The lab CA (its private key too), the topology and vcsim's log live in a temporary directory that is
    # removed however the run ends.
    with tempfile.TemporaryDirectory(prefix="gpufleet-audit-bench-") as tmp:
        work = Path(tmp)
        topology = write_topology(
            build_topology(hosts=args.hosts, vms_per_host=args.vms_per_host), work / "topology.json"
        )
        tls = make_lab_ca(work / "tls")
        password = secrets.token_urlsafe(18)
        port = _free_port()
        t0 = time.perf_counter()
        proc = start_vcsim(
            build_vcsim(), topology, tls, port, "bench@vsphere.local", password, work / "vcsim.log", timeout=300
        )
        startup = time.perf_counter() - t0
        settings = VcenterSettings(
            host="127.0.0.1", port=port, user="bench@vsphere.local", password=Secret(password), ca_file=tls.ca_cert
        )
        counter = RoundTrips()
        figures: dict[str, Any] = {"hosts": args.hosts, "vms_per_host": args.vms_per_host, "vcsim_start_s": startup}
        try:
            with connect(settings) as si:
                content = si.RetrieveContent()
                if not args.no_gpus:
                    t0 = time.perf_counter()
                    # The host driver loaded (as after `hosts prepare`): hosts then offer their vGPU profiles.
                    admin = LabAdmin(f"https://127.0.0.1:{port}", "bench@vsphere.local", password, tls.ca_cert)
                    for name in admin.hosts():
                        admin.update_host(name, driverActive=True, graphicsType="sharedDirect")
                    figures["vms_with_gpu"] = give_vms_gpus(content, limit_s=600)
                    figures["setup_gpus_s"] = time.perf_counter() - t0
                with counter.counting():
                    runs: dict[str, list[tuple[int, float, int]]] = {"audit": [], "raw": [], "naive": []}
                    audit_read(content)  # warm-up (TLS session, vcsim caches)
                    raw_read(content)
                    for _ in range(args.repeat):
                        runs["audit"].append(timed(audit_read, content, counter))
                        runs["raw"].append(timed(raw_read, content, counter))
                    for _ in range(args.naive_repeat):
                        runs["naive"].append(timed(naive_read, content, counter))
        finally:
            stop_vcsim(proc.pid)
    for name, rs in runs.items():
        figures[name] = {
            "round_trips": rs[0][0],
            "wall_s_median": statistics.median(r[1] for r in rs),
            "wall_s_all": [round(r[1], 4) for r in rs],
            "objects": rs[0][2],
        }
    a, n, r = figures["audit"], figures["naive"], figures["raw"]
    figures["round_trips_naive_over_audit"] = n["round_trips"] / a["round_trips"]
    figures["wall_audit_over_raw"] = a["wall_s_median"] / r["wall_s_median"]
    targets = [
        Target(
            "audit round trips vs naive",
            figures["round_trips_naive_over_audit"] >= 20,
            f"{figures['round_trips_naive_over_audit']:.0f}x fewer",
            ">= 20x fewer",
        ),
        Target(
            "audit wall time vs raw",
            figures["wall_audit_over_raw"] <= 1.5,
            f"{figures['wall_audit_over_raw']:.2f}x",
            "<= 1.5x",
        ),
    ]
    figures["targets_met"] = {t.name: t.met for t in targets}
    if args.json:  # one JSON document on stdout; the exit status still says met / missed
        print(json.dumps(figures, indent=2))
        return MET if all(t.met for t in targets) else MISSED
    else:
        vms = figures["audit"]["objects"] - args.hosts
        print(
            f"lab: {args.hosts} hosts, {vms} VMs ({figures.get('vms_with_gpu', 0)} with a vGPU), "
            f"vcsim up in {startup:.1f} s"
        )
        print(f"{'reader':<8} {'round trips':>12} {'wall s (median)':>16} {'objects':>8}")
        for name in ("audit", "naive", "raw"):
            f = figures[name]
            print(f"{name:<8} {f['round_trips']:>12} {f['wall_s_median']:>16.3f} {f['objects']:>8}")
        print(f"naive/audit round trips: {figures['round_trips_naive_over_audit']:.0f}x (target >= 20x)")
        print(f"audit/raw wall time:     {figures['wall_audit_over_raw']:.2f}x (target <= 1.5x)")
        print(
            f"setup: vGPU + MMIO keys on {figures.get('vms_with_gpu', 0)} VMs in {figures.get('setup_gpus_s', 0):.0f} s"
        )
    return report(targets)


if __name__ == "__main__":
    raise SystemExit(main())
