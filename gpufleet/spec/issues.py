"""How a spec problem is reported: where (a path with names, ``vms[vm-mig-01].vgpu[0]``, the index form beside it),
why, the rejected value (bounded; never a secret's) and, for an unknown key, the key meant ("did you mean").

Rules and pydantic report index paths (``vms[3].vgpu[0]``): stable, and what the Pulumi providers map onto their
properties. ``with_names`` turns them into named paths for people, once, where a whole stack is reported
(``parse_stack``, ``validated``, the CLI); the index form stays in ``SpecIssue.index_path``.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from gpufleet.errors import SpecIssue
from gpufleet.spec.echo import CONTROL_CHARACTER, shown
from gpufleet.spec.models import Fleet, SecretRef

NAMED_LISTS = ("hosts", "templates", "vms", "gpuPools")  # top-level lists whose items carry a `name`
_REF = re.compile(r"(?<![\w.\[\]])(hosts|templates|vms|gpuPools)\[(\d+)\]")
_SAFE_NAME = re.compile(r"^(?!\d+$)[^\[\]\s]{1,64}$")  # not a number: vms[3] stays an index
MAX_LISTED_KEYS = 24


_INTERNAL = re.compile(r"^[a-z][a-z-]*(\[.*\])?$")  # pydantic's own loc labels: function-after[_pci(), str]
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_:-]{1,64}$")


def _is_internal(part: str) -> bool:
    return part.startswith(("function-", "json-or-python", "lax-or-strict")) and bool(_INTERNAL.match(part))


def _path_of(loc: tuple[int | str, ...], root: str) -> str:
    """('vms', 3, 'vgpu', 1, 'profile') -> 'vms[3].vgpu[1].profile'. A key the stack wrote that is not plain (control
    characters, brackets, dots, 5,000 characters) is quoted and bounded, like any echoed value."""
    out = root
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _is_internal(part):
            continue
        else:
            key = part if _PLAIN_KEY.match(part) else shown(part)
            out = f"{out}.{key}" if out else key
    return out or "(root)"


def _unwrap(annotation: Any) -> list[Any]:
    """The types an annotation may hold (``X | None`` -> [X, NoneType]; ``Annotated[X, ...]`` -> [X])."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(annotation) for t in _unwrap(arg)]
    return [annotation]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    for t in _unwrap(annotation):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
    return None


def _item_of(annotation: Any) -> Any:
    for t in _unwrap(annotation):
        if typing.get_origin(t) in (list, tuple):
            return typing.get_args(t)[0]
    return None


def _field(model: type[BaseModel], key: str) -> Any:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info
    return None


def _walk(root: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[type[BaseModel] | None, bool]:
    """The model at ``loc`` (None: not a model, or not known) and whether ``loc`` goes through a secret field."""
    current: Any = root
    secret = False
    for part in loc:
        if isinstance(part, int):
            current = _item_of(current)
            continue
        model = _model_in(current)
        info = _field(model, part) if model is not None else None
        if info is None:
            if _is_internal(part):
                continue
            return None, secret
        secret = secret or any(t is SecretRef for t in _unwrap(info.annotation))
        current = info.annotation
    return _model_in(current), secret


def keys_of(model: type[BaseModel]) -> list[str]:
    """The keys a stack spells for this model (camelCase aliases)."""
    return [info.alias or name for name, info in model.model_fields.items()]


def did_you_mean(key: object, model: type[BaseModel] | None) -> str | None:
    """The key of ``model`` closest to the unknown ``key`` (case first: ``memoryMB`` -> ``memoryMb``)."""
    if model is None or not isinstance(key, str):
        return None
    keys = keys_of(model)
    by_case = [k for k in keys if k.lower() == key.lower()]
    if by_case:
        return by_case[0]
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    return close[0] if close else None


def _valid_values(e: Any) -> tuple[str, ...]:
    ctx = e.get("ctx") or {}
    if e["type"] in ("literal_error", "enum") and "expected" in ctx:
        return tuple(v.strip().strip("'") for v in str(ctx["expected"]).replace(" or ", ",").split(","))
    return ()


def issues_from_validation(
    err: ValidationError, root: str = "", model: type[BaseModel] | None = None
) -> list[SpecIssue]:
    """A pydantic error as SpecIssues: the spec path, the reason, the valid values where known, the rejected value
    (not a secret's, not an unknown key's: a misspelt ``passwrd`` may hold one) and "did you mean" for unknown keys.
    ``model`` is the model validated (default: ``Fleet``; its field types tell which values are secrets)."""
    root_model = model or Fleet
    issues = []
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        message = e["msg"].removeprefix("Value error, ")
        valid = _valid_values(e)
        parent, secret = _walk(root_model, loc[:-1]) if loc else (root_model, False)
        value: str | None = None
        if valid:
            message = "not one of the allowed values"
        at_secret = secret or _walk(root_model, loc)[1]
        if e["type"] == "extra_forbidden":
            meant = did_you_mean(loc[-1] if loc else None, parent)
            if meant:
                message = f"unknown key; did you mean `{meant}`?"
            else:
                message = "unknown key (see `gpufleet schema` for the keys allowed here)"
                keys = keys_of(parent) if parent is not None else []
                valid = tuple(keys) if len(keys) <= MAX_LISTED_KEYS else ()
        elif at_secret and e["type"] == "model_type":
            message = (
                "a secret is a reference {config: <Pulumi secret key>, env: <variable>}, never the value itself "
                "(what is written here is not shown)"
            )
        elif not at_secret and "input" in e:
            value = shown(e["input"])
        issues.append(SpecIssue(path=_path_of(loc, root), message=message, valid=valid, value=value))
    return issues


def item_names(fleet_document: Any) -> dict[str, list[str | None]]:
    """The name of each item of ``hosts``, ``templates``, ``vms`` in a raw fleet document, or None where the name
    cannot stand in for the index (missing, not text, not unique, a number, brackets or control characters)."""
    names: dict[str, list[str | None]] = {}
    if not isinstance(fleet_document, dict):
        return names
    for kind in NAMED_LISTS:
        items = fleet_document.get(kind)
        if not isinstance(items, list):
            continue
        raw = [item.get("name") if isinstance(item, dict) else None for item in items]
        text = [n.strip() if isinstance(n, str) else None for n in raw]
        names[kind] = [
            n if n and text.count(n) == 1 and _SAFE_NAME.match(n) and not CONTROL_CHARACTER.search(n) else None
            for n in text
        ]
    return names


def name_refs(text: str, names: dict[str, list[str | None]]) -> str:
    """``vms[3].vgpu[0]`` -> ``vms[vm-mig-01].vgpu[0]`` wherever the item has a usable name (see ``item_names``)."""

    def named(m: re.Match[str]) -> str:
        kind, index = m.group(1), int(m.group(2))
        listed = names.get(kind, [])
        name = listed[index] if index < len(listed) else None
        return f"{kind}[{name}]" if name else m.group(0)

    return _REF.sub(named, text)


def with_names(issues: list[SpecIssue], fleet_document: Any) -> list[SpecIssue]:
    """The issues with named paths (and named references in their messages); the index form in ``index_path``."""
    names = item_names(fleet_document)
    out = []
    for issue in issues:
        path = name_refs(issue.path, names)
        out.append(
            SpecIssue(
                path=path,
                message=name_refs(issue.message, names),
                valid=issue.valid,
                value=issue.value,
                index_path=issue.index_path or (issue.path if path != issue.path else None),
                rule=issue.rule,
            )
        )
    return out
