"""The simulated host nvidia-smi prints the real R550 formats (compared with the captures in reference/), is absent
until the driver is installed AND the host rebooted, and models MIG mode: pending on Ampere, immediate on Hopper."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from simhost import SimLab, reference

A100, H100, L40S, T4 = "esxi-01.lab", "esxi-02.lab", "esxi-03.lab", "esxi-04.lab"


@pytest.fixture
def sim(tmp_path):
    lab = SimLab(tmp_path / "lab")
    for host in (A100, H100, L40S, T4):
        assert lab.install_driver(host).code == 0
    assert lab.run(A100, "nvidia-smi").code == 127  # installed, not yet loaded
    for host in (A100, H100, L40S, T4):
        lab.boot(host)
    return lab


def _pipes(line: str) -> list[int]:
    return [i for i, c in enumerate(line) if c in "|+"]


def _a100_550_table() -> list[str]:
    lines = reference("mig_a100_sxm4_80gb_lgip_lgi_lcip.txt").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Tue Jan  7"))
    return lines[start : start + 22]


def test_absent_before_the_driver_is_installed_and_loaded(tmp_path):
    lab = SimLab(tmp_path / "lab")
    r = lab.run(A100, "nvidia-smi")
    assert (r.code, r.err) == (127, "sh: nvidia-smi: not found\n")


def test_default_table_has_the_r550_layout(sim):
    real = _a100_550_table()
    mine = sim.run(A100, "nvidia-smi").out.splitlines()
    assert re.fullmatch(r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} {7}", mine[0])
    assert len(mine[0]) == len(real[0])
    # banner and column titles: identical but for the driver and CUDA versions (same field widths)
    assert mine[1] == real[1]
    assert mine[2] == real[2].replace("550.54.14", "550.90.05").replace("CUDA Version: 12.4 ", "CUDA Version: N/A  ")
    assert mine[3:8] == real[3:8]
    gpu_rows = mine[8:11]
    assert [_pipes(line) for line in gpu_rows] == [_pipes(line) for line in real[8:11]]
    assert re.fullmatch(r"\|   0  NVIDIA A100 80GB PCIe {10}On  \|   00000000:3B:00\.0 Off \| +0 \|", gpu_rows[0])
    assert re.fullmatch(r"\| N/A +\d+C +P0 +\d+W / +300W \| +0MiB / +81920MiB \| +0% +Default \|", gpu_rows[1])
    assert gpu_rows[2].endswith("Disabled |")
    assert mine[11] == real[11]  # the GPU separator
    assert all(len(line) == 91 for line in mine[1:] if line)
    assert "|  No running processes found                                                             |" in mine


def test_default_table_shows_the_mig_block_when_mig_is_on(sim):
    assert sim.run(H100, "nvidia-smi -i 0 -mig 1").code == 0
    mine = sim.run(H100, "nvidia-smi").out.splitlines()
    real = reference("mig_a100_sxm4_80gb_lgip_lgi_lcip.txt").splitlines()
    start = (
        real.index("| MIG devices:                                                                            |") - 1
    )
    block = real[start : start + 10]
    pos = mine.index(block[1]) - 1
    assert mine[pos : pos + 10] == block  # "No MIG devices found": vSphere creates GPU instances when VMs start
    row = mine[8]
    assert row.endswith("|                   On |")  # as in the capture with MIG on


def test_lgip_and_lgipp_rows_equal_the_real_h100_capture(sim):
    real = reference("mig_h100_80gb_hbm3_lgip_lgipp_lgi_lci.txt").splitlines()
    start = real.index("| GPU instance profiles:                                                      |") - 1
    real_table = real[start : start + 26]
    mine = sim.run(H100, "nvidia-smi mig -i 0 -lgip").out.splitlines()
    assert mine == real_table
    lgipp_start = real.index("$ nvidia-smi mig -i 0 -lgipp") + 1
    assert sim.run(H100, "nvidia-smi mig -i 0 -lgipp").out.splitlines() == real[lgipp_start : lgipp_start + 7]


def test_lgip_rows_match_the_real_a100_80gb_capture(sim):
    real = reference("mig_a100_sxm4_80gb_lgip_lgi_lcip.txt").splitlines()
    start = real.index("| GPU instance profiles:                                                      |") - 1
    norm = lambda lines: [re.sub(r"\d+/(\d+)", r"N/\1", line) for line in lines]  # noqa: E731 - free counts differ (capture state)
    assert norm(sim.run(A100, "nvidia-smi mig -i 0 -lgip").out.splitlines()) == norm(real[start : start + 26])
    assert sim.run(L40S, "nvidia-smi mig -lgip").err == "No MIG-supported devices found.\n"


def test_query_gpu_csv_matches_the_real_header_and_value_forms(sim):
    real = reference("h100_baremetal/nvidia-smi_--query-gpu_index_name_pci_bus_id_driver_version_.txt").splitlines()
    command = real[0].removeprefix("$ ")
    out = sim.run(H100, command).out.splitlines()
    assert out[0] == real[1]
    assert len(out) == 3  # two H100 PCIe
    real_values, mine = real[2].split(", "), out[1].split(", ")
    assert len(mine) == len(real_values)
    assert mine[:5] == ["0", "NVIDIA H100 PCIe", "00000000:3B:00.0", "550.90.05", "81559 MiB"]
    bus = r"[0-9A-F]{8}:[0-9A-F]{2}:[0-9A-F]{2}\.\d"
    assert re.fullmatch(bus, mine[2]) and re.fullmatch(bus, real_values[2])
    assert mine[5:7] == ["Disabled", "Disabled"] == real_values[5:7]
    assert re.fullmatch(r"GPU-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", mine[-1])
    bare = sim.run(H100, "nvidia-smi --query-gpu=memory.total,mig.mode.current --format=csv,noheader,nounits").out
    assert bare == "81559, Disabled\n81559, Disabled\n"
    bad = sim.run(H100, "nvidia-smi --query-gpu=bogus --format=csv")
    assert bad.code == 2 and 'Field "bogus" is not a valid field to query.' in bad.err
    assert sim.run(L40S, "nvidia-smi --query-gpu=mig.mode.current --format=csv,noheader").out == "[N/A]\n[N/A]\n"


def test_ampere_mig_enable_is_pending_until_reboot_with_the_real_warning(sim):
    real = [re.sub(r" {20,}", "", line) for line in reference("esxi_host_mig_enable_a100_pcie_40gb.txt").splitlines()]
    start = real.index("[root@localhost:~] nvidia-smi -i 0 -mig 1") + 1
    expected = [line.replace("00000000:0F:00.0", "00000000:3B:00.0") for line in real[start : start + 3]]
    r = sim.run(A100, "nvidia-smi -i 0 -mig 1")
    assert r.code == 0 and r.out.splitlines() == expected
    query = "nvidia-smi -i 0 --query-gpu=pci.bus_id,mig.mode.current,mig.mode.pending --format=csv"
    assert (
        sim.run(A100, query).out
        == "pci.bus_id, mig.mode.current, mig.mode.pending\n00000000:3B:00.0, Disabled, Enabled\n"
    )
    sim.boot(A100)
    assert sim.run(A100, query).out.splitlines()[1] == "00000000:3B:00.0, Enabled, Enabled"
    # as in the capture after the reboot
    real_after = (
        real.index("[root@localhost:~] nvidia-smi -i 0 --query-gpu=pci.bus_id,mig.mode.current --format=csv") + 1
    )
    assert sim.run(A100, "nvidia-smi -i 0 --query-gpu=pci.bus_id,mig.mode.current --format=csv").out.splitlines() == [
        real[real_after],
        real[real_after + 1].replace("0F:00.0", "3B:00.0"),
    ]
    assert sim.run(A100, "nvidia-smi -i 1 --query-gpu=mig.mode.current --format=csv,noheader").out == "Disabled\n"


def test_hopper_mig_enable_is_immediate_and_non_mig_gpus_refuse(sim):
    real = reference("mig_h100_80gb_hbm3_lgip_lgipp_lgi_lci.txt").splitlines()
    expected = [line.replace("00000000:16:00.0", "00000000:5E:00.0") for line in real[5:7]]
    r = sim.run(H100, "nvidia-smi -i 1 -mig 1")
    assert r.code == 0 and r.out.splitlines() == expected
    assert sim.run(H100, "nvidia-smi --query-gpu=mig.mode.current --format=csv,noheader").out == "Disabled\nEnabled\n"
    off = sim.run(H100, "nvidia-smi -i 1 -mig 0")
    assert (
        off.out.splitlines()
        == ["Disabled MIG Mode for GPU 00000000:5E:00.0", "All done."]
        == [real[-2].replace("16:00.0", "5E:00.0"), real[-1]]
    )
    refused = sim.run(L40S, "nvidia-smi -i 0 -mig 1")  # the real refusal (tests/data/real): a warning, exit 0
    assert (refused.code, refused.out.splitlines()) == (
        0,
        [
            "Unable to enable MIG Mode for GPU 00000000:3B:00.0: Not Supported",
            "Treating as warning and moving on.",
            "All done.",
        ],
    )
    assert sim.run(A100, "nvidia-smi -i 7 -mig 1").code == 6
    assert sim.run(A100, "nvidia-smi -mig 2").code == 2


def test_q_labels_and_alignment_follow_the_real_output(sim):
    real = reference("h100_baremetal/nvidia-smi_-q.txt").splitlines()
    label = lambda line: line.split(" : ")[0].strip() if " : " in line else line.strip()  # noqa: E731
    real_labels = {label(line) for line in real[1:] if line.strip()}
    pre_570 = {"Gpu", "Power Draw", "GPU Shutdown Temp", "GPU Slowdown Temp", "GPU " + "00000000:5E:00.0"}
    mine = sim.run(H100, "nvidia-smi -q").out.splitlines()
    assert mine[:3] == real[1:4]  # "", "==============NVSMI LOG==============", ""
    unknown = {label(line) for line in mine if line.strip()} - real_labels - pre_570
    assert {u for u in unknown if not u.startswith("GPU 0000")} == set()
    assert {line.index(" : ") for line in mine if " : " in line} == {41}  # R550 aligns the colon at column 42
    assert "        Virtualization Mode               : Host VGPU" in mine
    assert "        Host VGPU Mode                    : SR-IOV" in mine
    assert "        Current                           : Disabled" in mine


def test_q_x_is_xml_with_the_real_tags(sim):
    real = ET.fromstring(reference("h100_baremetal/nvidia-smi_-q_-x.txt").split("\n", 1)[1].rsplit("[exit", 1)[0])
    real_tags = {e.tag for e in real.iter()}
    out = sim.run(H100, "nvidia-smi -q -x").out
    assert out.startswith('<?xml version="1.0" ?>\n<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_v12.dtd">\n')
    mine = ET.fromstring(out.split("\n", 2)[2])
    pre_570 = {"power_draw", "gpu_temp_max_threshold", "gpu_temp_slow_threshold"}
    assert {e.tag for e in mine.iter()} - real_tags - pre_570 == set()
    gpus = mine.findall("gpu")
    assert [g.get("id") for g in gpus] == ["00000000:3B:00.0", "00000000:5E:00.0"]
    assert gpus[0].findtext("product_name") == "NVIDIA H100 PCIe"
    assert gpus[0].findtext("mig_mode/current_mig") == "Disabled"
    assert gpus[0].findtext("gpu_virtualization_mode/virtualization_mode") == "Host VGPU"
    assert mine.findtext("driver_version") == "550.90.05"


def test_list_gpus_and_bad_flags(sim):
    lines = sim.run(T4, "nvidia-smi -L").out.splitlines()
    assert len(lines) == 4 and all(
        re.fullmatch(r"GPU \d: Tesla T4 \(UUID: GPU-[0-9a-f-]{36}\)", line) for line in lines
    )
    real_l = reference("esxi_host_mig_enable_a100_pcie_40gb.txt")
    assert re.search(r"^GPU 0: NVIDIA A100-PCIE-40GB \(UUID: GPU-[0-9a-f-]{36}\)$", real_l, flags=re.M)
    bad = sim.run(T4, "nvidia-smi --bogus")
    assert bad.code == 2 and bad.err == "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n"
    assert sim.run(T4, "nvidia-smi -q -d LICENSE").err == "Failed to parse --display/-d flags\n"
