"""JUnit XML and the HTML report, on fixture states: one test case per audited object; one self-contained
HTML file; rendered by headless Chromium, the MIG slice maps really are drawn slice by slice, desired and actual
side by side."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest
from audit_fixtures import (
    LICENSE_ENV,
    LICENSE_KEY,
    in_sync_ssh,
    in_sync_vcenter,
    lab_desired,
    lab_stack,
    replace_host,
    replace_ssh,
    replace_vm,
    result_for,
)

from gpufleet.audit.desired import desired_state
from gpufleet.audit.report_html import render_html
from gpufleet.audit.report_junit import render_junit
from gpufleet.audit.state import GpuInstance, Unreachable
from gpufleet.vsphere.vm_devices import VgpuDevice


@pytest.fixture(scope="module")
def drifted():
    """esxi-02 in maintenance, vm-mig-01's vGPU swapped for a 4g.40gb (and its GPU instance with it),
    esxi-04 unreachable over SSH."""
    desired = lab_desired()
    vc = in_sync_vcenter(desired)
    ssh = in_sync_ssh(desired)
    vc = replace_host(vc, "esxi-02.lab", in_maintenance=True)
    vc = replace_vm(vc, "vm-mig-01", devices={"vgpus": (VgpuDevice("grid_a100d-4-40c", 13000),)})
    host = ssh["esxi-01.lab"]
    gpus = tuple(
        replace(g, instances=(GpuInstance("4g.40gb", 0, 4, 2),)) if g.pci == "0000:3b:00.0" else g for g in host.gpus
    )
    ssh = replace_ssh(ssh, "esxi-01.lab", gpus=gpus)
    del ssh["esxi-04.lab"]
    return result_for(desired, vc, ssh, [Unreachable("esxi-04.lab", "esxi-04.lab (127.0.0.14:22) is unreachable")])


def test_junit_has_one_case_per_audited_object(drifted):
    root = ET.fromstring(render_junit(drifted))
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [o.path for o in drifted.objects]
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert failed == {"hosts/esxi-02.lab", "vms/vm-mig-01"}
    errored = {c.get("name") for c in cases if c.find("error") is not None}
    assert errored == {"hosts/esxi-04.lab"} | {
        f"hosts/esxi-04.lab/gpus/{p}" for p in ("0000:3b:00.0", "0000:5e:00.0", "0000:86:00.0", "0000:af:00.0")
    }
    assert suite.get("tests") == str(len(cases)) and suite.get("failures") == "2" and suite.get("errors") == "5"
    vm_case = next(c for c in cases if c.get("name") == "vms/vm-mig-01")
    failure = vm_case.find("failure")
    finding = next(f for f in drifted.findings if f.object == "vms/vm-mig-01")
    assert failure.get("type") == "vm.vgpu.changed" and finding.id in failure.text


def test_html_is_one_self_contained_file(drifted):
    html = render_html(drifted)
    assert not re.search(r"<(script|link|img|iframe)\b", html, re.IGNORECASE)
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", html, re.IGNORECASE)
    assert "url(" not in html
    for f in drifted.findings:
        assert f'data-finding-id="{f.id}"' in html
    assert 'data-unreachable="esxi-04.lab"' in html


class _Dom(HTMLParser):
    """Collect elements by their data-* attributes from Chromium's --dump-dom output."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[dict[str, str]] = []
        self.elements: list[dict[str, str]] = []
        self.measure = ""
        self._in_measure = False

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        a["_tag"] = tag
        a["_host"] = next((p["data-host"] for p in reversed(self.stack) if "data-host" in p), "")
        a["_gpu"] = next((p["data-gpu"] for p in reversed(self.stack) if "data-gpu" in p), "")
        self.elements.append(a)
        if tag not in ("br", "meta", "hr", "input"):
            self.stack.append(a)
        self._in_measure = a.get("id") == "measure"

    def handle_endtag(self, tag):
        if self.stack:
            self.stack.pop()
        self._in_measure = False

    def handle_data(self, data):
        if self._in_measure:
            self.measure += data


# Test-only: appended to a copy of the report to read the real layout; the report itself has no script.
_MEASURE = """<script>
const out = {};
for (const m of document.querySelectorAll('.gpu[data-gpu] .slicemap')) {
  const gpu = m.closest('[data-gpu]'), host = m.closest('[data-host]');
  const key = host.dataset.host + ' ' + gpu.dataset.gpu + ' ' + m.dataset.map;
  const box = m.getBoundingClientRect();
  out[key] = {left: box.left, top: box.top, width: box.width, blocks: [...m.querySelectorAll('.slice')].map(b => {
    const r = b.getBoundingClientRect();
    return {profile: b.dataset.profile, start: +b.dataset.start, size: +b.dataset.size, left: r.left, width: r.width,
            height: r.height, bg: getComputedStyle(b).backgroundColor};
  })};
}
const pre = document.createElement('pre'); pre.id = 'measure'; pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script>"""


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("headless Chromium not installed (Debian: apt-get install -y chromium)")
    return path


def _chromium_run(args: list[str], url: str, timeout: float = 90) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="gpufleet-chromium-")
    try:
        return subprocess.run(
            [
                _chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--window-size=1400,1800",
                *args,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def test_chromium_renders_slice_maps_side_by_side(drifted, tmp_path: Path):
    page = tmp_path / "audit.html"
    page.write_text(render_html(drifted).replace("</body>", _MEASURE + "</body>"))
    done = _chromium_run(["--virtual-time-budget=3000", "--dump-dom"], page.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    dom = _Dom()
    dom.feed(done.stdout)

    status = next(e for e in dom.elements if e.get("id") == "status")
    assert status["data-status"] == "incomplete"
    hosts = {e["data-host"]: e["data-status"] for e in dom.elements if e["_tag"] == "article"}
    # esxi-01 is drawn as drifted because its VM is; esxi-03 is in sync; esxi-04 was not read.
    assert hosts == {"esxi-01.lab": "drift", "esxi-02.lab": "drift", "esxi-03.lab": "ok", "esxi-04.lab": "unreachable"}
    vm_rows = {e["data-vm"]: e["data-status"] for e in dom.elements if "data-vm" in e}
    assert vm_rows["vm-mig-01"] == "drift" and vm_rows["vm-ts-01"] == "ok"

    layout = json.loads(dom.measure)
    desired = layout["esxi-01.lab 0000:3b:00.0 desired"]
    actual = layout["esxi-01.lab 0000:3b:00.0 actual"]
    # Side by side: same row, actual to the right of desired, same width.
    assert abs(desired["top"] - actual["top"]) < 1
    assert actual["left"] > desired["left"] + desired["width"]
    assert abs(desired["width"] - actual["width"]) < 1
    # 8 memory slices: a 4-slice instance is drawn as wide as 4 free slices plus the 3 gaps between them.
    used = [b for b in desired["blocks"] if b["profile"] != "free"]
    free = [b for b in desired["blocks"] if b["profile"] == "free"]
    assert [(b["profile"], b["start"], b["size"]) for b in used] == [("3g.40gb", 0, 4)]
    assert [b["start"] for b in free] == [4, 5, 6, 7]
    gap = free[1]["left"] - (free[0]["left"] + free[0]["width"])
    assert abs(used[0]["width"] - (4 * free[0]["width"] + 3 * gap)) < 1.5
    assert free[0]["left"] > used[0]["left"] + used[0]["width"]
    assert used[0]["height"] >= 40
    # The actual map shows what the host reports: a 4g.40gb instance, in another colour than free slices.
    got = [(b["profile"], b["start"], b["size"]) for b in actual["blocks"] if b["profile"] != "free"]
    assert got == [("4g.40gb", 0, 4)]
    assert actual["blocks"][0]["bg"] != free[0]["bg"]
    # Time-sliced GPUs are bars, not maps; passthrough GPUs show their VM.
    bars = [
        e
        for e in dom.elements
        if e.get("data-bar") == "actual" and (e["_host"], e["_gpu"]) == ("esxi-03.lab", "0000:3b:00.0")
    ]
    assert bars and bars[0]["data-used"] == "1" and bars[0]["data-capacity"] == "2"
    owners = [
        e
        for e in dom.elements
        if e.get("data-owner") == "actual" and (e["_host"], e["_gpu"]) == ("esxi-02.lab", "0000:5e:00.0")
    ]
    assert len(owners) == 1


def test_chromium_screenshot(drifted, tmp_path: Path):
    page = tmp_path / "audit.html"
    page.write_text(render_html(drifted))
    shot = tmp_path / "audit.png"
    done = _chromium_run([f"--screenshot={shot}"], page.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1400, 1800)
    assert len(data) > 50_000  # a drawn page, not a blank one (a blank 1400x1800 PNG is a few KB)


def _cards(dom: _Dom, host: str) -> dict[str, dict[str, dict[str, object]]]:
    """Per GPU of ``host``, per side (desired / actual): the MIG map's instances or the vGPU bar's count."""
    cards: dict[str, dict[str, dict[str, object]]] = {}
    blocks: list[tuple[str, int, int]] = []
    for e in dom.elements:
        if e["_host"] != host or not e["_gpu"]:
            continue
        if "data-map" in e:
            blocks = []
            cards.setdefault(e["_gpu"], {})[e["data-map"]] = {"map": blocks}
        elif "data-bar" in e:
            cards.setdefault(e["_gpu"], {})[e["data-bar"]] = {"bar": int(e["data-used"])}
        elif "data-profile" in e and e["data-profile"] != "free":
            blocks.append((e["data-profile"], int(e["data-start"]), int(e["data-size"])))
    return cards


def test_chromium_draws_the_actual_side_from_what_was_read(tmp_path: Path):
    """The stack changes esxi-01's first A100 to time-sliced vGPU; the GPU really still runs MIG with
    vm-mig-01's 3g.40gb instance. The actual side draws that instance on that GPU (from nvidia-smi), not an idle
    vGPU bar, and the other A100 holds no instance."""
    really = lab_desired()  # how the lab is deployed: both A100s in MIG mode, the 3g.40gb on 0000:3b:00.0
    stack = lab_stack()
    host = next(h for h in stack.fleet.hosts if h.name == "esxi-01.lab")
    host.gpus[0] = host.gpus[0].model_copy(update={"mode": "vgpu"})
    wanted = desired_state(stack.fleet, {LICENSE_ENV: LICENSE_KEY})
    result = result_for(wanted, in_sync_vcenter(really), in_sync_ssh(really))
    page = tmp_path / "audit.html"
    page.write_text(render_html(result))
    done = _chromium_run(["--dump-dom"], page.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    dom = _Dom()
    dom.feed(done.stdout)
    cards = _cards(dom, "esxi-01.lab")
    first, second = cards["0000:3b:00.0"], cards["0000:5e:00.0"]
    # desired: the spec's modes (an idle vGPU bar; the 3g.40gb planned on the other A100)
    assert first["desired"] == {"bar": 0} and second["desired"] == {"map": [("3g.40gb", 0, 4)]}
    # actual: what nvidia-smi showed, on the GPU that holds it; the other A100 is in MIG mode with no instance
    assert first["actual"] == {"map": [("3g.40gb", 0, 4)]} and second["actual"] == {"map": []}
    modes = [
        (e["data-side"], e["data-side-mode"])
        for e in dom.elements
        if "data-side" in e and (e["_host"], e["_gpu"]) == ("esxi-01.lab", "0000:3b:00.0")
    ]
    assert modes == [("desired", "vgpu"), ("actual", "mig")]
