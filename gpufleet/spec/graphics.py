"""The host graphics settings in each vocabulary, written once (outside lab/, which keeps its own: it is the oracle).

The spec spells them as the vSphere API does (``HostGraphicsConfigGraphicsType`` ``shared`` / ``sharedDirect``,
``HostGraphicsConfigSharedPassthruAssignmentPolicy`` ``performance`` / ``consolidation``), so what vCenter reports
compares with the spec as it is; esxcli spells them ``Shared`` / ``SharedPassthru`` and ``Performance`` /
``Consolidation`` (``esxcli graphics host set --default-type ... --shared-passthru-assignment-policy ...``).
"""

from __future__ import annotations

from typing import Literal

GraphicsType = Literal["shared", "sharedDirect"]
AssignmentPolicy = Literal["performance", "consolidation"]

SHARED_DIRECT: GraphicsType = "sharedDirect"
""""Shared Direct": the default graphics type vGPU and MIG-backed vGPU GPUs need."""

ESXCLI_GRAPHICS_TYPES: dict[GraphicsType, str] = {"shared": "Shared", "sharedDirect": "SharedPassthru"}
ESXCLI_ASSIGNMENT_POLICIES: dict[AssignmentPolicy, str] = {
    "performance": "Performance",
    "consolidation": "Consolidation",
}
