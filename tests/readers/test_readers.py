"""The esxcli / nvidia-smi / mlxconfig readers against the real outputs in shared/reference (and esxcli's XML
formatter shape)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gpufleet.readers import esxcli, mlxconfig, nvidia_smi

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "reference"  # copies of shared/reference


def reference(name: str) -> str:
    return (REFERENCE / name).read_text()


def block_after(text: str, prompt: str) -> str:
    """The output printed after a ``[root@...] <command>`` / ``% <command>`` line, up to the next prompt."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.rstrip().endswith(prompt))
    out = []
    for line in lines[start + 1 :]:
        if re.match(r"^(\[root@|% |#)", line):
            break
        out.append(line)
    return "\n".join(out)


# -- esxcli ----------------------------------------------------------------------------------------------------


def test_vib_install_result_from_a_real_esxi_7_host() -> None:
    text = reference("esxi_nvaie_vib_install_and_maintenance_mode.txt")
    result = esxcli.parse_install_result(
        block_after(
            text,
            "esxcli software vib install -d /vmfs/volumes/61def4ef-40fc5e8e-cf08-d4f5ef0e4078/NVIDIA-AI-Enterprise-vSphere-7.0-510.47.03-510.47.03/NVD-AIE_510.47.03-1OEM.702.0.0.17630552_19298122.zip",
        )
    )
    assert result.message == "Operation finished successfully."
    assert result.reboot_required is False  # what it says; the driver still loads only at boot
    assert result.installed == ("NVIDIA_bootbank_NVIDIA-AIE_ESXi_7.0.2_Driver_510.47.03-1OEM.702.0.0.17630552",)
    assert result.removed == () and result.skipped == ()


def test_component_apply_result_from_denneman_esxi_8() -> None:
    text = reference("esxi_graphics_component_apply_nvaie_denneman.txt")
    start = text.index("Installation Result")
    result = esxcli.parse_install_result(text[start : text.index("% esxcli software component list")])
    assert result.installed == ("NVD-AIE-800_525.105.14-1OEM.800.1.0.20613240",)
    assert result.reboot_required is False


def test_component_list_line_gives_the_driver_version() -> None:
    text = reference("esxi_graphics_component_apply_nvaie_denneman.txt")
    line = next(line for line in text.splitlines() if line.startswith("NVD-AIE-800 "))
    component = esxcli.parse_component_line(line)
    assert component.name == "NVD-AIE-800"
    assert component.display_name == "NVIDIA AI Enterprise vGPU driver for VMWare ESX-8.0.0"
    assert component.version == "525.105.14-1OEM.800.1.0.20613240"
    assert component.driver_version == "525.105.14"
    assert component.vendor == "NVIDIA"


def test_graphics_host_get_text() -> None:
    text = reference("esxi_graphics_component_apply_nvaie_denneman.txt")
    values = esxcli.parse_output(block_after(text, "% esxcli graphics host get"))
    assert values == {"DefaultGraphicsType": "SharedPassthru", "SharedPassthruAssignmentPolicy": "Performance"}


def test_maintenance_mode_get_text_is_one_word() -> None:
    text = reference("esxi_maintenance_mode_facts.txt")
    first = block_after(text, "esxcli system maintenanceMode get")
    assert esxcli.parse_output(first) == "Enabled"


def test_kernel_setting_table_is_read_by_header() -> None:
    text = reference("esxi_kernel_settings_ats_acs.txt")
    table = block_after(text, "esxcli system settings kernel list -o iovDisableIR")
    rows = esxcli.parse_output(table)
    assert rows == [
        {
            "Name": "iovDisableIR",
            "Type": "Bool",
            "Description": "Disable Interrrupt Routing in the IOMMU",
            "Configured": "true",
            "Runtime": "TRUE",
            "Default": "FALSE",
        }
    ]
    setting = esxcli.KernelSetting(rows[0]["Name"], rows[0]["Configured"], rows[0]["Runtime"], rows[0]["Default"])
    assert setting.configured_on and setting.runtime_on  # case-insensitive, as the reference warns


def test_structured_field_names_match_the_vib_record() -> None:
    text = reference("esxi_esxcli_structured_field_names.txt")
    record = text.split("-- software vib get (VIBExt), record 1 --")[1].split("--")[0]
    values = esxcli.parse_key_values(record)
    vib = esxcli._vib(values)
    assert (vib.name, vib.version, vib.vendor) == ("esx-ui", "2.12.0-21482143", "VMware")
    assert vib.id == "VMware_bootbank_esx-ui_2.12.0-21482143"


ESXCLI_XML_LIST = """<?xml version="1.0" encoding="utf-8"?>
<output xmlns="http://www.vmware.com/Products/ESX/5.0/esxcli">
<root>
   <list type="structure">
      <structure typeName="Component">
         <field name="DisplayName">
            <string>NVIDIA AI Enterprise vGPU driver for VMWare ESX-8.0.0</string>
         </field>
         <field name="DisplayVersion">
            <string>525.105.14</string>
         </field>
         <field name="Name">
            <string>NVD-AIE-800</string>
         </field>
         <field name="Vendor">
            <string>NVIDIA</string>
         </field>
         <field name="Version">
            <string>525.105.14-1OEM.800.1.0.20613240</string>
         </field>
      </structure>
   </list>
</root>
</output>
"""


def test_esxcli_xml_formatter_list_of_structures() -> None:
    rows = esxcli.parse_output(ESXCLI_XML_LIST)
    assert rows == [
        {
            "DisplayName": "NVIDIA AI Enterprise vGPU driver for VMWare ESX-8.0.0",
            "DisplayVersion": "525.105.14",
            "Name": "NVD-AIE-800",
            "Vendor": "NVIDIA",
            "Version": "525.105.14-1OEM.800.1.0.20613240",
        }
    ]
    assert esxcli._component(rows[0]).driver_version == "525.105.14"


def test_esxcli_xml_typed_values_and_install_result() -> None:
    text = """<?xml version="1.0" encoding="utf-8"?>
<output xmlns="http://www.vmware.com/Products/ESX/5.0/esxcli"><root>
<structure typeName="InstallationResult">
<field name="ComponentsInstalled"><list type="string"><string>NVD-AIE-800_550.90.05-1OEM.800.1.0.20613240</string></list></field>
<field name="ComponentsRemoved"><list type="string"></list></field>
<field name="Message"><string>Operation finished successfully.</string></field>
<field name="RebootRequired"><boolean>false</boolean></field>
</structure></root></output>"""
    result = esxcli.parse_install_result(esxcli.parse_output(text))
    assert result.installed == ("NVD-AIE-800_550.90.05-1OEM.800.1.0.20613240",)
    assert result.reboot_required is False
    assert esxcli.parse_output('<output xmlns="x"><root><integer>42</integer></root></output>') == 42
    assert esxcli.parse_output('<output xmlns="x"><root><string>Disabled</string></root></output>') == "Disabled"


def test_broken_xml_is_a_clear_error() -> None:
    with pytest.raises(esxcli.EsxcliParseError, match="not well formed"):
        esxcli.parse_output("<output><root><string>x</root>")


@pytest.mark.parametrize(
    ("installed", "wanted", "order"),
    [
        ("535.183.04-1OEM.800.1.0.20613240", "550.90.05", -1),
        ("550.90.05-1OEM.800.1.0.20613240", "550.90.05", 0),
        ("550.127.06-1OEM.800.1.0.20613240", "550.90.05", 1),
        ("550.90.5", "550.90.05", 0),
        ("510.47.03", "525.105.14", -1),
    ],
)
def test_driver_version_comparison_is_numeric(installed: str, wanted: str, order: int) -> None:
    assert esxcli.compare_versions(installed, wanted) == order


# -- nvidia-smi --------------------------------------------------------------------------------------------------


def test_nvidia_smi_xml_of_a_real_h100() -> None:
    text = reference("h100_baremetal/nvidia-smi_-q_-x.txt")
    report = nvidia_smi.parse_query_xml(text)
    assert report.driver_version == "580.159.04"
    assert len(report.gpus) == 1
    gpu = report.gpus[0]
    assert gpu.pci == "0000:00:06.0"
    assert gpu.name == "NVIDIA H100 80GB HBM3"
    assert gpu.architecture == "Hopper"
    assert (gpu.mig_current, gpu.mig_pending) == ("Disabled", "Disabled")
    assert not gpu.mig_change_pending
    assert gpu.virtualization_mode == "Pass-Through"
    assert report.gpu("00000000:00:06.0") is gpu


def test_nvidia_smi_csv_of_a_real_h100() -> None:
    text = reference("h100_baremetal/nvidia-smi_--query-gpu_index_name_pci_bus_id_driver_version_.txt")
    rows = nvidia_smi.parse_query_csv(text)
    assert rows[0]["memory.total"] == "81559 MiB"
    assert rows[0]["mig.mode.current"] == "Disabled"
    report = nvidia_smi.parse_query_csv_report(text)
    assert report.driver_version == "580.159.04"
    assert report.gpus[0].pci == "0000:00:06.0"


def test_mig_enable_on_ampere_esxi_is_pending_until_reboot() -> None:
    text = reference("esxi_host_mig_enable_a100_pcie_40gb.txt")
    output = block_after(text, "nvidia-smi -i 0 -mig 1")
    change = nvidia_smi.parse_mig_change(output)
    assert change.pending is True
    after = block_after(text, "nvidia-smi -i 0 --query-gpu=pci.bus_id,mig.mode.current --format=csv")
    rows = nvidia_smi.parse_query_csv(after)
    assert rows == [{"pci.bus_id": "00000000:0F:00.0", "mig.mode.current": "Enabled"}]


def test_mig_enable_that_applies_at_once() -> None:
    change = nvidia_smi.parse_mig_change("Enabled MIG Mode for GPU 00000000:3B:00.0\nAll done.\n")
    assert change.pending is False
    with pytest.raises(nvidia_smi.MigRefused, match="GPU 00000000:3B:00.0: In use by another client"):
        nvidia_smi.parse_mig_change("Unable to enable MIG Mode for GPU 00000000:3B:00.0: In use by another client")
    with pytest.raises(nvidia_smi.SmiParseError, match="no per-GPU result"):
        nvidia_smi.parse_mig_change("All done.\n")  # "All done." alone is not a success


@pytest.mark.parametrize(
    ("given", "normalised"),
    [("00000000:3B:00.0", "0000:3b:00.0"), ("0000:af:00.0", "0000:af:00.0"), ("3b:00.0", "0000:3b:00.0")],
)
def test_pci_addresses_are_normalised(given: str, normalised: str) -> None:
    assert nvidia_smi.normalise_pci(given) == normalised


# -- mlxconfig -----------------------------------------------------------------------------------------------------


def test_mlxconfig_query_line_from_nvidia_docs() -> None:
    text = reference("esxi_kernel_settings_ats_acs.txt")
    line = next(line for line in text.splitlines() if "ATS_ENABLED" in line and "False(0)" in line)
    output = "Configurations:                              Next Boot\n" + line.split('->  "', 1)[1].rstrip('"')
    ats = mlxconfig.parse_mlxconfig_query(output)
    assert ats == mlxconfig.NicAts(current=False, next_boot=False)


def test_mlxconfig_query_with_current_and_next_boot_columns() -> None:
    output = (
        "Configurations:                                      Default             Current             Next Boot\n"
        "*        ATS_ENABLED                                 False(0)            False(0)            True(1)\n"
    )
    assert mlxconfig.parse_mlxconfig_query(output) == mlxconfig.NicAts(current=False, next_boot=True)
    with pytest.raises(mlxconfig.MlxconfigParseError):
        mlxconfig.parse_mlxconfig_query("Configurations:    Next Boot\n  SRIOV_EN   True(1)\n")


def test_gpu_selector_is_in_nvidia_smi_own_form() -> None:
    assert nvidia_smi.smi_bus_id("0000:3b:00.0") == "00000000:3B:00.0"
