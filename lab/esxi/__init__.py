"""The simulated ESXi hosts of the lab: per-host state, the command simulator run by each host's sshd
(``python -m lab.esxi.shell``), driver bundles, and the events log.

Modules here keep their imports light: every SSH command starts a fresh Python process.
"""
