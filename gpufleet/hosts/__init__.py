"""ESXi host preparation: the per-host run (``prepare``: check every step, one maintenance window, apply, one reboot,
verify), its steps (``steps/``), the fleet plan and the rolling run (``plan``, ``rollout``: bounded maintenance per
cluster, failure threshold, a journal and a lease in vCenter), bundle pre-staging (``stage``). Entry points:
``gpufleet hosts prepare``, ``python -m host_setup``, and the Pulumi host resources in ``components/``."""
