"""Building, certifying, starting and stopping the lab vCenter; the big benchmark-size inventory."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
from pyVim.connect import Disconnect
from pyVmomi import vim
from vcsim_helpers import all_of, running_vcsim

from lab import vcenter
from lab.topology import build_topology

pytestmark = pytest.mark.lab


def test_build_is_cached() -> None:
    first = vcenter.build_vcsim()
    mtime = first.stat().st_mtime_ns
    second = vcenter.build_vcsim()
    assert second == first and second.stat().st_mtime_ns == mtime
    assert os.access(second, os.X_OK)


def test_missing_go_says_what_is_needed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(vcenter.shutil, "which", lambda name: None)
    with pytest.raises(vcenter.VcsimError, match=r"no `go` on PATH; Go >= 1\.26 must be on PATH"):
        vcenter.build_vcsim(tmp_path)
    assert not list(tmp_path.iterdir())  # nothing built, nothing cached


def test_too_old_go_is_refused_before_building(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(vcenter, "_go_version", lambda go: "go version go1.22.2 linux/amd64")
    with pytest.raises(vcenter.VcsimError, match=r"is go version go1\.22\.2 linux/amd64; Go >= 1\.26 must be on PATH"):
        vcenter.build_vcsim(tmp_path)
    assert not list(tmp_path.iterdir())


def test_build_key_covers_the_module_files_and_the_toolchain(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sources = tmp_path / "vcsim"
    shutil.copytree(vcenter.VCSIM_SOURCES, sources)
    monkeypatch.setattr(vcenter, "VCSIM_SOURCES", sources)
    _, version = vcenter._check_toolchain()
    base = vcenter._source_key(version)
    assert vcenter._source_key(version) == base
    assert vcenter._source_key(version + " patched") != base
    for name in ("go.mod", "go.sum", "main.go"):
        original = (sources / name).read_bytes()
        (sources / name).write_bytes(original + b"\n")
        assert vcenter._source_key(version) != base, name
        (sources / name).write_bytes(original)
    (sources / "go.sum").unlink()
    with pytest.raises(vcenter.VcsimError, match="go.sum"):
        vcenter._source_key(version)


def test_lab_ca_files_and_reuse(tmp_path: Path) -> None:
    from cryptography import x509

    tls = vcenter.make_lab_ca(tmp_path)
    assert stat.S_IMODE(tls.server_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(tls.ca_key.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(tls.server_cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert vcenter.make_lab_ca(tmp_path).thumbprint == tls.thumbprint  # same lab, same certificate


def test_stop_refuses_a_pid_that_is_not_vcsim() -> None:
    assert vcenter.stop_vcsim(os.getpid()) is False


def test_bad_topology_fails_fast_with_the_field(tmp_path: Path) -> None:
    topo = tmp_path / "topology.json"
    topo.write_text(build_topology().to_json().replace('"host": "esxi-03.lab"', '"host": "esxi-77.lab"'))
    tls = vcenter.make_lab_ca(tmp_path / "tls")
    with pytest.raises(vcenter.VcsimError, match=r"vms\[1\] \(vm-ts-01\)\.host \"esxi-77.lab\""):
        vcenter.start_vcsim(vcenter.build_vcsim(), topo, tls, 1, "u", "p", tmp_path / "vcsim.log", timeout=20)


@pytest.mark.slow
def test_benchmark_size_inventory(tmp_path: Path) -> None:
    topology = build_topology(hosts=100, vms_per_host=20)
    with running_vcsim(tmp_path, topology, timeout=60) as lab:
        si = lab.connect()
        try:
            hosts = all_of(si, vim.HostSystem)
            vms = all_of(si, vim.VirtualMachine)
            assert len(hosts) == 100
            assert len(vms) == 2000 + len(build_topology().vms)
            assert sum(vm.config.template for vm in vms) == 1
            by_name = {h.name: h for h in hosts}
            assert by_name["esxi-100.lab"].parent.name == "GPU-Cluster"
            t4 = [d for d in by_name["esxi-100.lab"].hardware.pciDevice if d.deviceId & 0xFFFF == 0x1EB8]
            assert len(t4) == 4
        finally:
            Disconnect(si)
