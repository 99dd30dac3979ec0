"""The hardware rules of ``validate_fleet``, one module per subject (hosts, VMs, pinned capacity)."""
