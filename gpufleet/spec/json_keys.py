"""The one key rule of every ``--json`` document: field names in camelCase, as in the stack files.

``json_key`` is the stack models' own alias generator (pydantic's ``to_camel``: ``dry_run`` -> ``dryRun``), so a
key reads the same in a stack file and in a verb's output. Reports that spell their keys by hand spell them this
way; reports made of dataclasses go through ``jsonable``.

Keys that are data, not field names (host, VM and profile names, extraConfig settings such as
``pciPassthru.use64bitMMIO``, package names) stay as they are: ``jsonable`` renames the fields of dataclasses and
keeps the keys of mappings, which are always data here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from enum import Enum
from typing import Any

from pydantic.alias_generators import to_camel

__all__ = ["json_key", "jsonable"]


def json_key(name: str) -> str:
    """A field name as a ``--json`` key: ``peak_in_maintenance`` -> ``peakInMaintenance``."""
    return to_camel(name)


def jsonable(obj: Any) -> Any:
    """Plain JSON values: dataclasses (nested) with their field names by ``json_key``, mappings with their keys
    (data) unchanged, tuples and lists as lists, sets as sorted lists, enums as their values; anything else as it is."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {json_key(f.name): jsonable(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, Mapping):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, set | frozenset):  # JSON has no sets: sorted, so a document is the same run after run
        return sorted(jsonable(v) for v in obj)
    if isinstance(obj, Enum):
        return obj.value
    return obj
