"""Licensing, written: vSphere licence keys through vCenter's LicenseManager (``vsphere``) and the NVIDIA client
configuration token and gridd feature type in guests (``guest``). ``gpufleet.checks`` only reads the result."""
