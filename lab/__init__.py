"""The embedded lab: a vCenter (vcsim + GPU extensions) and simulated ESXi hosts and guests.

Layering: ``lab`` may import ``gpufleet`` core modules (catalog, spec); the product never imports ``lab``
except from the CLI's ``lab`` verbs and from tests.
"""
