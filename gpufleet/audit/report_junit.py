"""The audit as JUnit XML for pipelines: one test case per audited object (host, GPU, VM, template).

A case fails (``<failure>``) when its object has drift (error or warning findings), listing every finding; it
errors (``<error>``) when its host could not be read; info findings go to ``<system-out>``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from gpufleet.audit.findings import AuditedObject, Finding
from gpufleet.audit.result import AuditResult

# What XML 1.0 cannot carry at all, escaped or not (control characters but tab/newline/CR, surrogates, U+FFFE/F):
# a host's error message or command output may hold any of them, and one makes the whole report unreadable.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(value: str) -> str:
    """``value`` with every character XML cannot hold shown as ``\\xNN`` / ``\\uNNNN`` (visible, not dropped)."""
    return _NOT_XML.sub(lambda m: repr(m.group())[1:-1], value)


def _xml_safe(root: ET.Element) -> None:
    for element in root.iter():
        if element.text:
            element.text = _xml_text(element.text)
        for key, value in element.attrib.items():
            element.set(key, _xml_text(value))


def _host_of(obj: AuditedObject) -> str | None:
    parts = obj.path.split("/")
    return parts[1] if parts[0] == "hosts" and len(parts) > 1 else None


def _case(result: AuditResult, obj: AuditedObject) -> tuple[ET.Element, str]:
    case = ET.Element("testcase", classname=f"gpufleet.audit.{obj.kind}", name=obj.path, time="0")
    findings: list[Finding] = [f for f in result.findings if f.object == obj.path]
    drift = [f for f in findings if f.drift]
    host = _host_of(obj)
    down = result.unreachable_of(host) if host else None
    if obj.kind in ("vm", "template") and result.vcenter is None:
        down = result.unreachable_of("vcenter")
    outcome = "passed"
    if drift:
        outcome = "failure"
        failure = ET.SubElement(
            case,
            "failure",
            message=f"{len(drift)} finding(s): " + "; ".join(f.message for f in drift),
            type=drift[0].kind,
        )
        failure.text = "\n".join(
            f"[{f.severity}] {f.id} {f.path}: desired {f.desired!s}, actual {f.actual!s}. Fix: {f.hint}" for f in drift
        )
    if down is not None:
        outcome = "error"
        error = ET.SubElement(case, "error", message=f"{down.target} unreachable: {down.reason}", type="unreachable")
        error.text = f"{down.target} could not be read ({down.reason}); its state is not audited"
    info = [f for f in findings if not f.drift]
    if info:
        out = ET.SubElement(case, "system-out")
        out.text = "\n".join(f"[info] {f.id} {f.path}: {f.message}" for f in info)
    return case, outcome


def render_junit(result: AuditResult) -> str:
    """The JUnit XML document as a string."""
    cases = [_case(result, o) for o in result.objects]
    failures = sum(1 for _, o in cases if o == "failure")
    errors = sum(1 for _, o in cases if o == "error")
    total = str(sum(result.timings.values()))
    suites = ET.Element(
        "testsuites",
        name="gpufleet audit",
        tests=str(len(cases)),
        failures=str(failures),
        errors=str(errors),
        time=total,
    )
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=f"gpufleet audit {result.stack}",
        tests=str(len(cases)),
        failures=str(failures),
        errors=str(errors),
        skipped="0",
        time=total,
        timestamp=result.started_at.isoformat(timespec="seconds"),
    )
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="stack", value=result.stack)
    ET.SubElement(props, "property", name="datacenter", value=result.datacenter)
    ET.SubElement(props, "property", name="status", value=result.status)
    for u in result.unreachable:
        ET.SubElement(props, "property", name=f"unreachable.{u.target}", value=u.reason)
    for case, _ in cases:
        suite.append(case)
    _xml_safe(suites)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def write_junit(result: AuditResult, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_junit(result), encoding="utf-8")
    return path
