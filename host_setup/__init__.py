"""Preparing ESXi hosts for NVIDIA vGPU over SSH (paramiko), rolling across a fleet.

Layers inside, bottom up: ``ssh`` (the runner: verified host keys, timeouts, quoting, SFTP), ``esxcli`` /
``nvidia_smi`` / ``mlxconfig`` (typed readers), ``facts`` (one read-only pass over a host), ``steps/`` (driver,
graphics, MIG, ATS, maintenance, reboot, verify: check / apply / assert), ``prepare`` (one host),
``plan`` and ``rollout`` (the fleet: bounded maintenance per cluster, failure threshold, resumable),
``command`` / ``cli`` (the ``hosts prepare`` verb; ``python -m host_setup prepare STACK``).
Never imports pulumi: ``components/`` calls into this package, not the reverse.
"""
