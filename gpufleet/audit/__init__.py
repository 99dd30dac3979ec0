"""Desired vs actual GPU state, for auditors and pipelines (``gpufleet audit``).

- ``vcenter_state``: hosts and VMs from vCenter in one paged PropertyCollector retrieval;
- ``host_state``: driver, MIG mode, ATS, nvidia-smi health and pending reboot of each host over SSH (bounded
  parallelism);
- ``desired``: the desired state derived from the spec; ``diff``: findings (stable id, path, desired, actual,
  severity, fix hint);
- ``run.audit_stack``: all of it for one stack -> ``AuditResult`` (exit code 0 in sync, 2 drift, 1 incomplete);
- ``report_html`` (one self-contained file with MIG slice maps / vGPU bars) and ``report_junit`` (one case per
  audited object).
"""
