"""A spec model as a stack writes it: the one way gpufleet dumps a spec model."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def stack_form(model: BaseModel) -> dict[str, Any]:
    """``model`` as a stack writes it: camelCase keys, unset (None) keys left out, JSON types (a vGPU profile as
    the stack spelled it). What Pulumi inputs carry, policy packs read and promotion compares; validating it
    again gives the same model."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)
