"""gpufleet: NVIDIA GPUs on VMware vSphere as code.

The ``gpufleet`` package holds the pure core (``spec``, ``catalog``, ``placement``), the vSphere adapter
(``vsphere``) and the top-level tools (``audit``, ``checks``, ``cli``). See README "Layout" for the import rules.
"""

__version__ = "0.1.0"
