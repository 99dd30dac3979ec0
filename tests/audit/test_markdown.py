"""``gpufleet audit --format markdown``: the summary table, the findings and the unreachable hosts in details
blocks, values escaped."""

from __future__ import annotations

from audit_fixtures import in_sync_ssh, in_sync_vcenter, lab_desired, replace_host, result_for

from gpufleet.audit.state import Unreachable
from gpufleet.cli.markdown import render_audit


def test_audit_markdown_of_a_drifted_lab() -> None:
    desired = lab_desired()
    vc = replace_host(in_sync_vcenter(desired), "esxi-02.lab", in_maintenance=True)
    ssh = in_sync_ssh(desired)
    del ssh["esxi-04.lab"]
    result = result_for(desired, vc, ssh, [Unreachable("esxi-04.lab", "esxi-04.lab <port 22> | refused")])
    text = render_audit(result.to_dict())
    assert text.startswith("### gpufleet audit lab\n")
    assert "| stack | status | errors | warnings | info | objects | unreachable |" in text
    assert "| lab | incomplete |" in text
    assert "<details><summary>findings (" in text and "| severity | id | path | desired | actual | fix |" in text
    assert "hosts/esxi-02.lab/maintenanceMode" in text
    assert "<details><summary>unreachable (1)</summary>" in text
    assert "esxi-04.lab &lt;port 22&gt; \\| refused" in text


def test_audit_markdown_in_sync_has_no_details() -> None:
    desired = lab_desired()
    text = render_audit(result_for(desired, in_sync_vcenter(desired), in_sync_ssh(desired)).to_dict())
    assert "| lab | in-sync | 0 | 0 |" in text and "<details>" not in text
