"""The fleet stack's program: export the shared secrets of every cluster stack (``fleet:<name>`` config, each a
Pulumi secret) as secret outputs; cluster stacks read them with ``stackOutput`` secret references."""

from __future__ import annotations

import pulumi

SHARED = ("hostLicense", "vcenterLicense", "nvidiaClientToken")

config = pulumi.Config("fleet")
for key in SHARED:
    value = config.get_secret(key)
    if value is not None:
        pulumi.export(key, value)
