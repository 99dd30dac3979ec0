"""JUnit XML always parses: whatever a host or vCenter said (control characters, surrogates, U+FFFE) is carried
visibly escaped, never written raw into the XML (issue 12, item 4)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from audit_fixtures import in_sync_ssh, in_sync_vcenter, lab_desired, result_for

from gpufleet.audit.report_junit import render_junit
from gpufleet.audit.state import Unreachable


def test_junit_xml_parses_whatever_a_host_said() -> None:
    desired = lab_desired()
    ssh = in_sync_ssh(desired)
    del ssh["esxi-04.lab"]
    said = "esxcli: \x00\x07\x1b[31mfailed\ufffe \ud800"
    xml = render_junit(result_for(desired, in_sync_vcenter(desired), ssh, [Unreachable("esxi-04.lab", said)]))
    root = ET.fromstring(xml)
    errors = [e.get("message") for e in root.iter("error")]
    assert any("esxcli: \\x00\\x07\\x1b[31mfailed\\ufffe \\ud800" in (m or "") for m in errors), errors
