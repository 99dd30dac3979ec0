"""Desired vs actual GPU state, for auditors and pipelines (``gpufleet audit``).

- ``vcenter_state``: hosts and VMs from vCenter in one paged PropertyCollector retrieval;
- ``host_state``: driver, MIG mode, ATS, nvidia-smi health and pending reboot of each host over SSH (bounded
  parallelism);
- ``desired``: the desired state derived from the spec; ``diff`` (with ``diff_hosts``, ``diff_vms``): findings
  (``findings``: stable id, path, desired, actual, severity, fix hint);
- ``views``: what the HTML draws (MIG slice maps, vGPU occupancy bars, per-host facts);
- ``run.audit_stack``: all of it for one stack -> ``AuditResult`` (exit code 0 in sync, 2 drift, 1 incomplete);
- ``report_html`` (one self-contained file with MIG slice maps / vGPU bars) and ``report_junit`` (one case per
  audited object).
"""
