"""The VM use case: what a VM's GPUs should be (``desired``), the difference from what vCenter shows (``changes``),
what must hold before a change (``preconditions``), the reconfigure itself (``reconfigure``), templates
(``template``) and ``gpufleet vms apply`` (``apply``). ``gpufleet.vsphere`` is the adapter they talk through."""
