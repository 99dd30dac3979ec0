"""The running lab's ESXi hosts over the real protocols: pyvmomi over verified TLS, SSH with pinned host keys,
SFTP into the datastore, and the two faces (vCenter, the host's shell) agreeing."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
from simhost import install_driver, ssh_client, ssh_run, try_ssh, wait_for

pytestmark = pytest.mark.lab

A100, H100 = "esxi-01.lab", "esxi-02.lab"


@pytest.fixture
def si(lab_env: Any) -> Iterator[Any]:
    from pyVim.connect import Disconnect, SmartConnect

    vc = lab_env.vcenter
    service = SmartConnect(
        host=vc.host,
        port=vc.port,
        user=vc.user,
        pwd=vc.password,
        sslContext=ssl.create_default_context(cafile=vc.ca_file),
    )
    try:
        yield service
    finally:
        Disconnect(service)


def _host(si: Any, name: str) -> Any:
    from pyVmomi import vim

    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.HostSystem], True)
    try:
        return next(h for h in view.view if h.name == name)
    finally:
        view.Destroy()


def test_pyvmomi_over_verified_tls_sees_the_gpu_hosts(lab_env: Any, si: Any) -> None:
    from pyVmomi import vim

    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.HostSystem], True)
    hosts = {h.name: h for h in view.view}
    view.Destroy()
    assert (
        sorted(hosts) == [h.name for h in lab_env.hosts] == ["esxi-01.lab", "esxi-02.lab", "esxi-03.lab", "esxi-04.lab"]
    )
    devices = {(d.vendorId & 0xFFFF, d.deviceId & 0xFFFF) for d in hosts[A100].hardware.pciDevice}
    assert (0x10DE, 0x20B5) in devices and (0x15B3, 0x101D) in devices
    assert (0x10DE, 0x2331) in {(d.vendorId & 0xFFFF, d.deviceId & 0xFFFF) for d in hosts[H100].hardware.pciDevice}
    # the same host's SSH face lists the same PCI addresses
    gpus_vc = sorted(d.id for d in hosts[A100].hardware.pciDevice if d.vendorId & 0xFFFF == 0x10DE)
    client = ssh_client(lab_env.host(A100))
    try:
        rc, out, _ = ssh_run(client, "esxcli hardware pci list -c 0x0302")
    finally:
        client.close()
    assert rc == 0
    assert sorted(line for line in out.splitlines() if line.startswith("0000:")) == gpus_vc


def test_vcenter_tls_is_verified(lab_env: Any) -> None:
    import urllib.error
    import urllib.request

    vc = lab_env.vcenter
    with pytest.raises(urllib.error.URLError) as err:
        urllib.request.urlopen(
            f"https://{vc.host}:{vc.port}/sdk/vimServiceVersions.xml", context=ssl.create_default_context(), timeout=10
        )
    assert isinstance(err.value.reason, ssl.SSLCertVerificationError)
    from lab.vcenter import cert_thumbprint

    assert cert_thumbprint(ssl.get_server_certificate((vc.host, vc.port)).encode()) == vc.thumbprint


def test_ssh_accepts_the_pinned_host_key_and_refuses_unknown_or_wrong_ones(lab_env: Any, tmp_path) -> None:
    endpoint = lab_env.host(A100)
    client = ssh_client(endpoint)
    try:
        assert ssh_run(client, "uname -s") == (0, "VMkernel\n", "")
    finally:
        client.close()
    unknown = paramiko.SSHClient()
    unknown.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        unknown.connect(
            endpoint.address,
            port=endpoint.port,
            username="root",
            key_filename=endpoint.key_file,
            look_for_keys=False,
            allow_agent=False,
        )
    # esxi-02's key written down for esxi-01's address: a changed host key must be refused
    other = lab_env.host(H100)
    other_key = next(
        line for line in Path(other.known_hosts).read_text().splitlines() if line.startswith(f"[{other.address}]:")
    )
    wrong = tmp_path / "known_hosts"
    wrong.write_text(other_key.replace(f"[{other.address}]:", f"[{endpoint.address}]:") + "\n")
    swapped = paramiko.SSHClient()
    swapped.load_host_keys(str(wrong))
    swapped.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.BadHostKeyException):
        swapped.connect(
            endpoint.address,
            port=endpoint.port,
            username="root",
            key_filename=endpoint.key_file,
            look_for_keys=False,
            allow_agent=False,
        )
    # key authentication only
    nopass = paramiko.SSHClient()
    nopass.load_host_keys(endpoint.known_hosts)
    nopass.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.AuthenticationException):
        nopass.connect(
            endpoint.address,
            port=endpoint.port,
            username="root",
            password="root",
            look_for_keys=False,
            allow_agent=False,
        )


def test_sftp_upload_lands_in_the_host_datastore_and_stays_inside_it(
    lab_env: Any, lab_paths: Any, lab_host: Any
) -> None:
    endpoint = lab_host(H100)
    bundle = next(lab_paths.depot_dir.glob("NVD-AIE-800_550.90.05-*.zip"))
    client = ssh_client(endpoint)
    try:
        sftp = client.open_sftp()
        assert sorted(sftp.listdir("/vmfs/volumes")) == ["datastore-lab", "datastore1"]
        sftp.put(str(bundle), f"/vmfs/volumes/datastore1/{bundle.name}")
        assert sftp.stat(f"/vmfs/volumes/datastore-lab/{bundle.name}").st_size == bundle.stat().st_size
        assert sorted(sftp.listdir("/../../..")) == ["tmp", "var", "vmfs"]  # the host's own root, not the machine's
        with pytest.raises(OSError):
            sftp.stat("/etc/passwd")
        sftp.close()
        rc, out, _ = ssh_run(client, f"sha256sum /vmfs/volumes/datastore1/{bundle.name}")
        import hashlib

        assert rc == 0 and out.split()[0] == hashlib.sha256(bundle.read_bytes()).hexdigest()
        rc, out, _ = ssh_run(client, "ls /vmfs/volumes/datastore1 | grep -c NVD-AIE")
        assert (rc, out) == (0, "1\n")
    finally:
        client.close()


def test_maintenance_mode_is_the_same_on_both_faces(lab_env: Any, lab_host: Any, si: Any) -> None:
    from lab.esxi.events import read_events

    endpoint = lab_host(H100)
    since = time.time()  # after taking the host: earlier events belong to its previous user
    host = _host(si, H100)
    client = ssh_client(endpoint)
    try:
        assert ssh_run(client, "esxcli system maintenanceMode set --enable true") == (0, "", "")
        assert host.runtime.inMaintenanceMode is True
        assert ssh_run(client, "esxcli system maintenanceMode get")[1] == "Enabled\n"
        rc, _, err = ssh_run(client, "esxcli system maintenanceMode set -e true")
        assert rc == 1 and "already enabled" in err
        from pyVim.task import WaitForTask

        def recorded(event: str) -> Any:
            # vCenter-side changes are seen by the supervisor's watcher (polls every ~0.25 s)
            return wait_for(
                lambda: any(
                    e["event"] == event and e.get("via") == "vcenter" for e in read_events(None, since=since, host=H100)
                ),
                5,
                what=event,
            )

        WaitForTask(host.ExitMaintenanceMode_Task(timeout=0))
        assert ssh_run(client, "esxcli system maintenanceMode get")[1] == "Disabled\n"
        recorded("maintenance_exit")
        WaitForTask(host.EnterMaintenanceMode_Task(timeout=0))
        assert ssh_run(client, "esxcli system maintenanceMode get")[1] == "Enabled\n"
        recorded("maintenance_enter")
        assert ssh_run(client, "vim-cmd hostsvc/maintenance_mode_exit") == (0, "", "")
        assert host.runtime.inMaintenanceMode is False
        rc, _, err = ssh_run(client, "vim-cmd hostsvc/maintenance_mode_exit")
        assert rc == 1 and "vim.fault.InvalidState" in err
        # graphics configuration: esxcli writes vCenter's graphicsConfig
        assert ssh_run(client, "esxcli graphics host set --default-type SharedPassthru") == (0, "", "")
        assert host.config.graphicsConfig.hostDefaultGraphicsType == "sharedDirect"
        assert "   Default Graphics Type: SharedPassthru\n" in ssh_run(client, "esxcli graphics host get")[1]
    finally:
        client.close()
    time.sleep(1.0)  # the watcher must not record the esxcli/vim-cmd changes a second time
    seen = [
        (e["event"], e.get("via"))
        for e in read_events(None, since=since, host=H100)
        if e["event"].startswith("maintenance_")
    ]
    assert seen == [
        ("maintenance_enter", "esxcli"),
        ("maintenance_exit", "vcenter"),
        ("maintenance_enter", "vcenter"),
        ("maintenance_exit", "vim-cmd"),
    ]


def test_driver_install_reboot_and_pending_changes(lab_env: Any, lab_paths: Any, lab_host: Any, si: Any) -> None:
    """The whole host preparation: maintenance, upload, install (no reboot asked), reboot (connection drops,
    host away, vCenter notResponding), back with the driver loaded and pending MIG / ATS settings applied."""
    from lab.esxi.events import read_events
    from lab.vcenter import LabAdmin

    endpoint = lab_host(A100)
    since = time.time()  # after taking the host: earlier events belong to its previous user
    admin = LabAdmin()
    bundle = next(lab_paths.depot_dir.glob("NVD-AIE-800_550.90.05-*.zip"))
    client = ssh_client(endpoint)
    try:
        rc, out, err = install_driver(client, bundle)
        assert rc == 0, err
        assert "   Reboot Required: false\n" in out
        assert ssh_run(client, "nvidia-smi")[0] == 127
        assert admin.host(A100)["driverActive"] is False
        assert ssh_run(client, "esxcli system settings kernel set -s atsSupport -v FALSE")[0] == 0
        assert ssh_run(client, "/opt/mellanox/bin/mlxconfig -d mt4125_pciconf0 -y set ATS_ENABLED=1")[0] == 0
        assert ssh_run(client, "reboot") == (0, "", "")
        transport = client.get_transport()
        assert admin.host(A100)["connectionState"] == "notResponding"
        assert _host(si, A100).runtime.connectionState == "notResponding"
        wait_for(lambda: not transport.is_active(), timeout=5, what="the SSH connection to drop")
    finally:
        client.close()
    assert try_ssh(endpoint) is None  # away: connection refused
    client = wait_for(lambda: try_ssh(endpoint), timeout=20, what="the host to come back")
    try:
        wait_for(lambda: admin.host(A100)["connectionState"] == "connected", timeout=5, what="vCenter to see the host")
        view = admin.host(A100)
        assert view["driverActive"] is True and view["vgpuProfiles"]
        assert view["inMaintenanceMode"] is True  # a reboot does not leave maintenance mode
        rc, out, _ = ssh_run(
            client, "nvidia-smi --query-gpu=name,driver_version,mig.mode.current --format=csv,noheader"
        )
        assert (rc, out) == (
            0,
            "NVIDIA A100 80GB PCIe, 550.90.05, Disabled\nNVIDIA A100 80GB PCIe, 550.90.05, Disabled\n",
        )
        assert "Runtime" in ssh_run(client, "esxcli system settings kernel list -o atsSupport")[1]
        assert ssh_run(client, "esxcli system settings kernel list -o atsSupport")[1].splitlines()[2].split()[2:5] == [
            "FALSE",
            "FALSE",
            "TRUE",
        ]
        ats = next(
            line
            for line in ssh_run(client, "/opt/mellanox/bin/mlxconfig -d mt4125_pciconf0 -e q")[1].splitlines()
            if "ATS_ENABLED" in line
        )
        assert ats.split()[-2:] == ["True(1)", "True(1)"]
        # MIG on Ampere: pending until the next reboot
        rc, out, _ = ssh_run(client, "nvidia-smi -i 0 -mig 1")
        assert rc == 0 and out.startswith(
            "Warning: MIG mode is in pending enable state for GPU 00000000:3B:00.0:Not Supported\n"
        )
        assert (
            ssh_run(client, "nvidia-smi -i 0 --query-gpu=mig.mode.current,mig.mode.pending --format=csv,noheader")[1]
            == "Disabled, Enabled\n"
        )
        assert ssh_run(client, "reboot")[0] == 0
    finally:
        client.close()
    time.sleep(0.5)
    client = wait_for(lambda: try_ssh(endpoint), timeout=20, what="the host to come back again")
    try:
        assert (
            ssh_run(client, "nvidia-smi -i 0 --query-gpu=mig.mode.current,mig.mode.pending --format=csv,noheader")[1]
            == "Enabled, Enabled\n"
        )
    finally:
        client.close()
    names = [e["event"] for e in read_events(None, since=since, host=A100)]
    for expected in ("maintenance_enter", "vib_install", "reboot_start", "reboot_done", "mig_mode"):
        assert expected in names
    assert names.index("vib_install") < names.index("reboot_start") < names.index("reboot_done")
    done = [e for e in read_events(None, since=since, host=A100) if e["event"] == "reboot_done"]
    assert len(done) == 2 and all(e["driver_active"] for e in done)


def test_lab_env_cli_prints_exactly_the_contract(lab_env: Any) -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    gpufleet = Path(sys.executable).with_name("gpufleet")
    proc = subprocess.run([str(gpufleet), "lab", "env", "--json"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == {"vcenter", "hosts", "guests"}
    assert set(doc["vcenter"]) == {"url", "host", "port", "user", "password", "ca_file", "thumbprint"}
    assert [h["name"] for h in doc["hosts"]] == ["esxi-01.lab", "esxi-02.lab", "esxi-03.lab", "esxi-04.lab"]
    for entry in doc["hosts"] + doc["guests"]:
        assert set(entry) == {"name", "address", "port", "user", "key_file", "known_hosts"}
    assert doc["vcenter"]["password"] == lab_env.vcenter.password
    env_file = Path(lab_env.hosts[0].key_file).parent.parent / "env.json"
    assert env_file.stat().st_mode & 0o777 == 0o600


def test_a_mig_change_on_a_gpu_without_mig_is_refused_by_name(lab_env: Any, lab_paths: Any, lab_host: Any) -> None:
    """The real refusal over SSH: nvidia-smi prints "Unable to enable MIG Mode ... Not Supported", "Treating as
    warning and moving on.", "All done." and exits 0; gpufleet's set_mig fails naming the GPU and the reason."""
    from gpufleet.connections import _ssh_from_lab, read_lab_env
    from gpufleet.readers import nvidia_smi
    from gpufleet.remote.ssh import SshRunner

    t4 = "esxi-04.lab"
    endpoint = lab_host(t4)
    bundle = next(lab_paths.depot_dir.glob("NVD-AIE-800_550.90.05-*.zip"))
    client = ssh_client(endpoint)
    try:
        assert install_driver(client, bundle)[0] == 0
        assert ssh_run(client, "reboot")[0] == 0
    finally:
        client.close()
    time.sleep(0.5)
    wait_for(lambda: try_ssh(endpoint), timeout=20, what="the host to come back").close()
    entry = next(h for h in read_lab_env(lab_paths.root)["hosts"] if h["name"] == t4)
    with SshRunner(_ssh_from_lab(entry)) as runner:
        raw = runner.run(["nvidia-smi", "-i", "0", "-mig", "1"])
        assert raw.rc == 0 and raw.output.splitlines()[-2:] == ["Treating as warning and moving on.", "All done."]
        with pytest.raises(nvidia_smi.MigRefused, match=r"GPU 00000000:3B:00\.0: Not Supported"):
            nvidia_smi.set_mig(runner, "0000:3b:00.0", True)
        report = nvidia_smi.query(runner)
        assert report is not None and report.gpu("0000:3b:00.0").mig_current == "N/A"
