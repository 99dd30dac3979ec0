"""JSON Schema of a stack config file (``gpufleet schema``), for editors (yaml-language-server) and CI."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from gpufleet.catalog import model_names
from gpufleet.spec.models import Fleet, VcenterSpec
from gpufleet.spec.stack import FLEET_KEY, VCENTER_KEY

SCHEMA_ID = "https://gpufleet.dev/schema/stack-v1.json"


def stack_schema() -> dict[str, Any]:
    """The schema of ``stacks/Pulumi.<name>.yaml``: ``config: {gpufleet:fleet, gpufleet:vcenter, ...}``."""
    _, defs = models_json_schema(
        [(Fleet, "validation"), (VcenterSpec, "validation")], by_alias=True, ref_template="#/$defs/{model}"
    )
    definitions = defs.get("$defs", {})
    gpu = definitions.get("GpuSpec", {}).get("properties", {}).get("model")
    if gpu is not None:
        # Suggest the catalog's names to editors; any alias is accepted too (checked by `gpufleet validate`).
        gpu["examples"] = list(model_names())
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "gpufleet stack config (Pulumi.<stack>.yaml)",
        "type": "object",
        "required": ["config"],
        "properties": {
            "config": {
                "type": "object",
                "required": [FLEET_KEY],
                "properties": {
                    FLEET_KEY: {"$ref": "#/$defs/Fleet"},
                    VCENTER_KEY: {"$ref": "#/$defs/VcenterSpec"},
                },
                "additionalProperties": True,  # other Pulumi config keys and secrets ({secure: ...})
            },
            "secretsprovider": {"type": "string"},
            "encryptionsalt": {"type": "string"},
            "encryptedkey": {"type": "string"},
        },
        "$defs": definitions,
    }
