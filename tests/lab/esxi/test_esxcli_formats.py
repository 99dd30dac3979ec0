"""The simulated esxcli prints what ESXi prints: compared line by line with the real captures in reference/.
In-process (no sshd, no vCenter): commands that need vCenter are covered by the lab tests."""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET

import pytest
from simhost import SimLab, reference, simple_labels, split_row, table_columns

A100_HOST = "esxi-01.lab"


@pytest.fixture
def sim(tmp_path):
    return SimLab(tmp_path / "lab")


def test_vib_list_is_an_esxcli_table_and_parses_like_the_real_nvidia_line(sim):
    assert sim.install_driver(A100_HOST).code == 0
    out = sim.run(A100_HOST, "esxcli software vib list").out
    header, dashes, *rows = out.splitlines()
    assert table_columns(header) == ["Name", "Version", "Vendor", "Acceptance Level", "Install Date", "Platforms"]
    # esxcli's table: a dashes run under each title, the last one exactly as long as its title
    titles = list(re.finditer(r"\S+(?: \S+)*", header))
    runs = list(re.finditer(r"-+", dashes))
    assert [m.start() for m in titles] == [m.start() for m in runs]
    assert len(runs[-1].group()) == len(titles[-1].group())
    nvidia = [split_row(r) for r in rows if r.startswith("NVD-AIE")]
    real = split_row(
        next(
            line
            for line in reference("esxi_vib_list_and_vib_names.txt").splitlines()
            if line.startswith("NVIDIA-VMware_ESXi")
        )
    )
    assert len(nvidia) == 1
    mine = nvidia[0]
    # same fields as the real `vib list` line (+ Platforms on ESXi 8): name, OEM version, vendor, acceptance, date
    assert len(mine) == len(real) + 1
    assert re.fullmatch(r"\d+\.\d+\.\d+-1OEM\.\d+\.\d\.\d\.\d+", real[1]) and re.fullmatch(
        r"\d+\.\d+\.\d+-1OEM\.\d+\.\d\.\d\.\d+", mine[1]
    )
    assert mine[2] == real[2] == "NVIDIA"
    assert mine[3] == real[3] == "VMwareAccepted"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", mine[4]) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", real[4])
    assert mine[5] == "host"


def test_vib_install_result_has_the_real_shape_and_says_no_reboot_for_the_nvidia_driver(sim):
    result = sim.install_driver(A100_HOST)
    assert result.code == 0, result.err
    real = [
        line[2:]
        for line in reference("esxi_nvaie_vib_install_and_maintenance_mode.txt").splitlines()
        if line.startswith("  ")
    ]
    start = real.index("Installation Result")
    real_block = real[start : start + 6]
    mine = result.out.splitlines()
    assert mine[0] == real_block[0] == "Installation Result"
    assert set(simple_labels("\n".join(real_block))) <= set(simple_labels(result.out))
    assert (
        "   Message: Operation finished successfully." in mine
        and "   Message: Operation finished successfully." in real_block
    )
    assert "   Reboot Required: false" in mine and "   Reboot Required: false" in real_block
    installed = next(line for line in mine if line.startswith("   VIBs Installed:"))
    assert re.fullmatch(
        r"   VIBs Installed: NVIDIA_bootbank_NVD-AIE_ESXi_8\.0\.0_Driver_550\.90\.05-1OEM\.800\.1\.0\.20613240",
        installed,
    )
    # the driver is in the image but not loaded: no nvidia-smi until the host reboots
    assert sim.run(A100_HOST, "nvidia-smi").code == 127
    again = sim.install_driver(A100_HOST)
    assert "   Message: Host is not changed." in again.out.splitlines()
    assert "VIBs Skipped: NVIDIA_bootbank_NVD-AIE_ESXi_8.0.0_Driver_550.90.05" in again.out


def test_component_apply_and_component_list_match_the_nvaie_capture(sim):
    path = sim.upload(A100_HOST, sim.bundle("550.90.05"))
    result = sim.run(A100_HOST, f"esxcli software component apply -d {path} --maintenance-mode")
    assert result.code == 0, result.err
    real = reference("esxi_graphics_component_apply_nvaie_denneman.txt")
    real_block = real[real.index("Installation Result") :].split("\n\n")[0]
    assert simple_labels(result.out) == simple_labels(real_block)
    assert "   Components Installed: NVD-AIE-800_550.90.05-1OEM.800.1.0.20613240" in result.out.splitlines()
    real_line = split_row(next(line for line in real.splitlines() if line.startswith("NVD-AIE-800 ")))
    listing = sim.run(A100_HOST, "esxcli software component list").out.splitlines()
    mine = split_row(next(line for line in listing if line.startswith("NVD-AIE-800 ")))
    assert len(mine) == len(real_line) == len(table_columns(listing[0])) == 8
    assert mine[0] == real_line[0] and mine[1] == real_line[1]
    assert mine[2:4] == ["550.90.05-1OEM.800.1.0.20613240", "550.90.05"]
    assert (
        mine[4:] == ["NVIDIA", "06-04-2024", "VMwareAccepted", "host"]
        and real_line[4] == "NVIDIA"
        and real_line[-1] == "host"
    )
    assert re.fullmatch(r"\d\d-\d\d-\d{4}", real_line[5])


def test_relative_and_missing_paths_fail_the_way_esxi_does(sim):
    name = sim.bundle("550.90.05").name
    sim.upload(A100_HOST, sim.bundle("550.90.05"))
    relative = sim.run(A100_HOST, f"esxcli software vib install -d {name} --maintenance-mode")
    assert relative.code == 1
    lines = relative.err.splitlines()
    assert lines[0] == " [MetadataDownloadError]"
    assert lines[1].startswith(f" Could not download from depot at zip:/var/log/vmware/{name}?index.xml, skipping")
    assert f"[Errno 2] No such file or directory: '/var/log/vmware/{name}'" in lines[1]
    assert lines[-1] == " Please refer to the log file for more details."
    vib = sim.run(
        A100_HOST, "esxcli software vib install -v NVD-AIE_ESXi_8.0.0_Driver_550.90.05-1OEM.800.1.0.20613240.vib"
    )
    assert vib.code == 1 and vib.err.startswith(" [VibDownloadError]")
    missing = sim.run(A100_HOST, "esxcli software vib install -d /vmfs/volumes/datastore1/nope.zip")
    assert missing.code == 1 and "No such file or directory: '/vmfs/volumes/datastore1/nope.zip'" in missing.err
    none = sim.run(A100_HOST, "esxcli software vib install")
    assert none.code == 1 and "[ValueError]" in none.err
    # nothing was installed by any of these
    assert "NVD-AIE" not in sim.run(A100_HOST, "esxcli software vib list").out


def test_a_bare_vib_installs_from_an_absolute_path(sim):
    vib = next(p for p in sim.paths.depot_dir.glob("*.vib") if "_550.127.06-" in p.name)
    path = sim.upload(A100_HOST, vib, dest="/tmp")
    result = sim.run(A100_HOST, f"esxcli software vib install -v {path} --maintenance-mode")
    assert result.code == 0, result.err
    assert (
        "   VIBs Installed: NVIDIA_bootbank_NVD-AIE_ESXi_8.0.0_Driver_550.127.06-1OEM.800.1.0.20613240"
        in result.out.splitlines()
    )
    assert (
        sim.run(A100_HOST, f"esxcli software vib install -v file://{path} --maintenance-mode").out.count(
            "Host is not changed."
        )
        == 1
    )


def test_vib_update_skips_older_and_replaces_with_newer_and_install_can_downgrade(sim):
    assert sim.install_driver(A100_HOST, "550.90.05").code == 0
    older = sim.upload(A100_HOST, sim.bundle("535.183.04"))
    newer = sim.upload(A100_HOST, sim.bundle("550.127.06"))
    skipped = sim.run(A100_HOST, f"esxcli software vib update -d {older} --maintenance-mode")
    assert (
        "Host is not changed." in skipped.out
        and "VIBs Skipped: NVIDIA_bootbank_NVD-AIE_ESXi_8.0.0_Driver_535.183.04" in skipped.out
    )
    updated = sim.run(A100_HOST, f"esxcli software vib update -d {newer} --maintenance-mode")
    assert "VIBs Installed: NVIDIA_bootbank_NVD-AIE_ESXi_8.0.0_Driver_550.127.06" in updated.out
    assert "VIBs Removed: NVIDIA_bootbank_NVD-AIE_ESXi_8.0.0_Driver_550.90.05" in updated.out
    assert "Reboot Required: true" in updated.out  # the loaded driver cannot be live-removed
    down = sim.run(A100_HOST, f"esxcli software vib install -d {older} --maintenance-mode")
    assert "VIBs Installed: NVIDIA_bootbank_NVD-AIE_ESXi_8.0.0_Driver_535.183.04" in down.out
    got = sim.run(A100_HOST, "esxcli software vib get -n NVD-AIE_ESXi_8.0.0_Driver").out
    assert got.splitlines()[0] == "NVIDIA_bootbank_NVD-AIE_ESXi_8.0.0_Driver_535.183.04-1OEM.800.1.0.20613240"
    assert "   Maintenance Mode Required: True" in got and "   Live Install Allowed: True" in got
    removed = sim.run(A100_HOST, "esxcli software vib remove -n NVD-AIE_ESXi_8.0.0_Driver")
    assert removed.out.startswith("Removal Result\n") and "Reboot Required: true" in removed.out
    nomatch = sim.run(A100_HOST, "esxcli software vib remove -n NVD-AIE_ESXi_8.0.0_Driver")
    assert nomatch.code == 1 and "No VIB matching VIB search specification 'NVD-AIE_ESXi_8.0.0_Driver'." in nomatch.err


def test_hardware_pci_list_stanza_has_the_real_field_set(sim):
    real = reference("esxi_hardware_pci_list_format.txt")
    real_stanza = real[real.index("0000:02:00.1\n") : real.index("0000:04:00.0\n")]
    out = sim.run(A100_HOST, "esxcli hardware pci list").out
    stanzas = out.strip().split("\n\n")
    assert len(stanzas) == 4  # 2 GPUs + 2 ConnectX-6 Dx
    for stanza in stanzas:
        assert simple_labels(stanza) == simple_labels(real_stanza)
        assert re.fullmatch(r"0000:[0-9a-f]{2}:00\.0", stanza.splitlines()[0])
    gpu = next(s for s in stanzas if "NVIDIA Corporation" in s)
    assert "   Vendor ID: 0x10de" in gpu and "   Device ID: 0x20b5" in gpu and "   Device Class: 0x0302" in gpu
    assert "   Module Name: None" in gpu  # the nvidia module is not loaded yet
    nic = next(s for s in stanzas if "Mellanox" in s)
    assert "   Vendor ID: 0x15b3" in nic and "   Device ID: 0x101d" in nic and "   Module Name: nmlx5_core" in nic
    only_gpus = sim.run(A100_HOST, "esxcli hardware pci list -c 0x0302").out
    assert only_gpus.count("NVIDIA Corporation") == 2 and "Mellanox" not in only_gpus


def test_rdma_kernel_and_graphics_lists_use_the_real_columns_and_labels(sim):
    rdma = sim.run(A100_HOST, "esxcli rdma device list").out.splitlines()
    real_rdma = reference("esxi_rdma_device_list_and_module_params.txt").splitlines()
    real_header = real_rdma[real_rdma.index("[root@RackServer:~] esxcli rdma device list") + 1]
    assert rdma[0].split() == real_header.split()  # the capture collapsed some column gaps; same titles in order
    assert table_columns(rdma[0]) == ["Name", "Driver", "State", "MTU", "Speed", "Paired Uplink", "Description"]
    assert split_row(rdma[2])[:6] == ["vmrdma0", "nmlx5_rdma", "Active", "4096", "100 Gbps", "vmnic4"]
    kernel = sim.run(A100_HOST, "esxcli system settings kernel list -o atsSupport").out.splitlines()
    real_kernel = reference("esxi_kernel_settings_ats_acs.txt").splitlines()
    real_kheader = next(line for line in real_kernel if line.startswith("Name ") and "Configured" in line)
    assert sorted(table_columns(kernel[0])) == sorted(table_columns(real_kheader))
    assert split_row(kernel[2])[:5] == ["atsSupport", "Bool", "TRUE", "TRUE", "TRUE"]
    graphics = sim.run(A100_HOST, "esxcli graphics device list").out
    real_graphics = reference("esxi_graphics_component_apply_nvaie_denneman.txt")
    real_stanza = real_graphics[real_graphics.index("0000:af:00.0") : real_graphics.index("% esxcli graphics host get")]
    for stanza in graphics.strip().split("\n\n"):
        assert simple_labels(stanza) == simple_labels(real_stanza)
        assert "   Graphics Type: Basic" in stanza  # as on a host without the vGPU driver


def test_kernel_setting_is_configured_now_and_effective_after_boot(sim):
    assert sim.run(A100_HOST, "esxcli system settings kernel set -s atsSupport -v FALSE").code == 0
    row = split_row(sim.run(A100_HOST, "esxcli system settings kernel list -o atsSupport").out.splitlines()[2])
    assert row[2:5] == ["FALSE", "TRUE", "TRUE"]  # configured, runtime, default
    sim.boot(A100_HOST)
    row = split_row(sim.run(A100_HOST, "esxcli system settings kernel list -o atsSupport").out.splitlines()[2])
    assert row[2:5] == ["FALSE", "FALSE", "TRUE"]
    bad = sim.run(A100_HOST, "esxcli system settings kernel set -s noSuchSetting -v TRUE")
    assert bad.code == 1 and "noSuchSetting" in bad.err


def test_structured_formatters_parse_and_carry_the_esxcli_field_names(sim):
    sim.install_driver(A100_HOST)
    fields = reference("esxi_esxcli_structured_field_names.txt")
    summary_fields = {"AcceptanceLevel", "CreationDate", "ID", "InstallDate", "Name", "Status", "Vendor", "Version"}
    assert all(f in fields for f in summary_fields)

    doc = json.loads(sim.run(A100_HOST, "esxcli --formatter=json software vib list").out)
    assert isinstance(doc, list) and summary_fields <= set(doc[0])
    nvidia = next(d for d in doc if d["Vendor"] == "NVIDIA")
    assert nvidia["ID"] == "NVIDIA_bootbank_NVD-AIE_ESXi_8.0.0_Driver_550.90.05-1OEM.800.1.0.20613240"

    root = ET.fromstring(sim.run(A100_HOST, "esxcli --formatter=xml software vib list").out)
    ns = {"e": "http://www.vmware.com/Products/ESX/5.0/esxcli"}
    structs = root.findall("e:root/e:list/e:structure", ns)
    assert len(structs) == len(doc) and structs[0].get("typeName") == "VIBSummaryExt"
    names = [f.get("name") for f in structs[0].findall("e:field", ns)]
    assert names == sorted(names) and summary_fields <= set(names)

    rows = list(csv.reader(io.StringIO(sim.run(A100_HOST, "esxcli --formatter=csv software vib list").out)))
    assert rows[0][-1] == "" and summary_fields <= set(rows[0][:-1])  # esxcli's trailing comma
    assert len(rows) == len(doc) + 1 and all(len(r) == len(rows[0]) for r in rows)

    kv = sim.run(
        A100_HOST, "esxcli --formatter=keyvalue software vib get -n NVD-AIE_ESXi_8.0.0_Driver"
    ).out.splitlines()
    assert "structure[0].VIBExt.Vendor.string=NVIDIA" in kv
    assert "structure[0].VIBExt.MaintenanceModeRequired.string=True" in kv
    assert "structure[0].VIBExt.Depends.string[0].string=esx-version >= 8.0.0" in kv
    vib_ext = {"AcceptanceLevel", "CreationDate", "Depends", "Description", "ID", "InstallDate", "LiveInstallAllowed", "LiveRemoveAllowed",
               "MaintenanceModeRequired", "Name", "Overlay", "Payloads", "Platforms", "StatelessReady", "Status", "Summary", "Tags", "Type",
               "Vendor", "Version"}  # fmt: skip
    assert all(f"{f}:" in fields for f in vib_ext)
    got = json.loads(sim.run(A100_HOST, "esxcli --formatter=json software vib get -n NVD-AIE_ESXi_8.0.0_Driver").out)
    assert vib_ext <= set(got[0])
    result = json.loads(
        sim.run(
            A100_HOST,
            f"esxcli --formatter=json software vib install -d {sim.upload(A100_HOST, sim.bundle('550.90.05'))} --maintenance-mode",
        ).out
    )
    assert result["Message"] == "Host is not changed." and result["RebootRequired"] is False


def test_unknown_commands_and_bad_arguments_fail_like_esxi(sim):
    r = sim.run(A100_HOST, "esxcli software vib lis")
    assert (r.code, r.err) == (1, "Error: Unknown command or namespace software vib lis\n")
    r = sim.run(A100_HOST, "esxcli system maintenanceMode set")
    assert r.code == 1 and r.err.startswith(
        "Error: Missing required parameter -e|--enable\n\nUsage: esxcli system maintenanceMode set [cmd options]"
    )
    r = sim.run(A100_HOST, "esxcli system maintenanceMode set --enable maybe")
    assert r.code == 1 and "Invalid data constraint for parameter 'enable'" in r.err
    r = sim.run(A100_HOST, "esxcli software vib list --bogus")
    assert r.code == 1 and r.err.startswith("Error: Invalid option --bogus")
    r = sim.run(A100_HOST, "esxcli --formatter=yaml software vib list")
    assert r.code == 1 and "Invalid formatter" in r.err
    r = sim.run(A100_HOST, "lspci")
    assert (r.code, r.err) == (127, "sh: lspci: not found\n")
    usage = sim.run(A100_HOST, "esxcli software")
    assert usage.code == 0 and "Available Namespaces:" in usage.out and "vib" in usage.out


def test_uptime_restarts_at_boot(sim):
    before = int(sim.run(A100_HOST, "esxcli system stats uptime get").out)
    sim.boot(A100_HOST)
    after = int(sim.run(A100_HOST, "esxcli system stats uptime get").out)
    assert before > after >= 0
    xml = sim.run(A100_HOST, "esxcli --formatter=xml system stats uptime get").out
    assert "<integer>" in xml


def test_identity_commands(sim):
    assert sim.run(A100_HOST, "vmware -vl").out == "VMware ESXi 8.0.3 build-24414501\nVMware ESXi 8.0 Update 3\n"
    assert sim.run(A100_HOST, "uname -s").out == "VMkernel\n"
    assert sim.run(A100_HOST, "hostname").out == "esxi-01\n"


def test_mlxconfig_ats_is_pending_until_boot_and_prints_the_real_line(sim):
    real_line = next(
        line
        for line in reference("esxi_kernel_settings_ats_acs.txt").splitlines()
        if "ATS_ENABLED" in line and "False(0)" in line
    )
    expected = real_line.split('"')[
        1
    ]  # the captured query line, e.g. "        ATS_ENABLED                                 False(0)"
    q = sim.run(A100_HOST, "/opt/mellanox/bin/mlxconfig -d mt4125_pciconf0 q")
    assert q.code == 0 and expected in q.out.splitlines()
    s = sim.run(A100_HOST, "/opt/mellanox/bin/mlxconfig -d mt4125_pciconf0 -y set ATS_ENABLED=1")
    assert s.code == 0 and "-I- Please reboot machine to load new configurations." in s.out
    verbose = sim.run(A100_HOST, "/opt/mellanox/bin/mlxconfig -d mt4125_pciconf0 -e q ATS_ENABLED").out
    ats = next(line for line in verbose.splitlines() if "ATS_ENABLED" in line)
    assert ats.startswith("*") and ats.split()[-3:] == [
        "False(0)",
        "False(0)",
        "True(1)",
    ]  # default, current, next boot
    sim.boot(A100_HOST)
    ats = next(
        line
        for line in sim.run(A100_HOST, "/opt/mellanox/bin/mlxconfig -d 0000:31:00.0 -e q").out.splitlines()
        if "ATS_ENABLED" in line
    )
    assert ats.split()[-2:] == ["True(1)", "True(1)"]
    assert sim.run(A100_HOST, "/opt/mellanox/bin/mlxconfig -d mt4125_pciconf7 q").code == 1
