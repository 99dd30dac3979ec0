"""The audit as one self-contained HTML file (inline CSS, no script, no external resource): a summary, per host
its GPUs drawn as MIG slice maps or vGPU occupancy bars (desired and actual side by side), its VMs, the findings."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from gpufleet.audit.findings import counts
from gpufleet.audit.result import AuditResult
from gpufleet.audit.views import host_views

_env = Environment(
    loader=PackageLoader("gpufleet.audit", "templates"),
    autoescape=select_autoescape(["html", "j2"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render_html(result: AuditResult) -> str:
    """The report as a string."""
    hosts = host_views(result)
    return _env.get_template("report.html.j2").render(
        r=result,
        hosts=hosts,
        counts=counts(result.findings),
        gpu_count=sum(len(h.gpus) for h in result.desired.hosts.values()),
        vm_count=sum(1 for v in result.desired.vms.values() if not v.template),
    )


def write_html(result: AuditResult, path: Path) -> Path:
    """Write the report to ``path`` (parent folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(result), encoding="utf-8")
    return path
