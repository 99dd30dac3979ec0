"""Read a Pulumi stack config file (``stacks/Pulumi.<name>.yaml``) into a ``Stack``.

The fleet lives under ``config: gpufleet:fleet``, the vCenter connection under ``config: gpufleet:vcenter``.
Shape errors become one ``SpecIssue`` per problem with the path in the fleet (``vms[3].vgpu[1].profile``);
nothing is half-read: either a whole ``Stack`` or a ``SpecError`` listing every issue.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from gpufleet.errors import SpecError, SpecIssue
from gpufleet.spec.models import Fleet, VcenterSpec

FLEET_KEY = "gpufleet:fleet"
VCENTER_KEY = "gpufleet:vcenter"


@dataclass(frozen=True)
class Stack:
    """A stack config file: its name (``lab`` for Pulumi.lab.yaml), the fleet and the vCenter connection."""

    name: str
    path: Path | None
    fleet: Fleet
    vcenter: VcenterSpec
    config: dict[str, Any]  # the whole `config:` mapping (other keys, Pulumi secrets as {secure: ...})


def _path_of(loc: tuple[int | str, ...], root: str) -> str:
    """('vms', 3, 'vgpu', 1, 'profile') -> 'vms[3].vgpu[1].profile'."""
    out = root
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or "[" in str(part):
            continue  # pydantic's internal validator names
        else:
            out = f"{out}.{part}" if out else str(part)
    return out or "(root)"


def issues_from_validation(err: ValidationError, root: str = "") -> list[SpecIssue]:
    """Turn a pydantic error into SpecIssues with spec paths and the valid values where pydantic knows them."""
    issues = []
    for e in err.errors(include_url=False):
        message = e["msg"].removeprefix("Value error, ")
        valid: tuple[str, ...] = ()
        ctx = e.get("ctx") or {}
        if e["type"] == "literal_error" and "expected" in ctx or e["type"] == "enum" and "expected" in ctx:
            valid = tuple(v.strip().strip("'") for v in str(ctx["expected"]).replace(" or ", ",").split(","))
            message = "not one of the allowed values"
        elif e["type"] == "extra_forbidden":
            message = "unknown key (see `gpufleet schema` for the keys allowed here)"
        issues.append(SpecIssue(path=_path_of(tuple(e["loc"]), root), message=message, valid=valid))
    return issues


def _read_yaml(path: Path) -> Any:
    try:
        return YAML(typ="safe").load(path.read_text())
    except FileNotFoundError as exc:
        raise SpecError([SpecIssue(str(path), "stack file not found")]) from exc
    except YAMLError as exc:
        raise SpecError([SpecIssue(str(path), f"not valid YAML: {exc}")]) from exc


def parse_stack(document: Any, name: str = "stack", path: Path | None = None) -> Stack:
    """Build a Stack from an already-parsed stack document (``{"config": {...}}``)."""
    source = str(path) if path else name
    if not isinstance(document, dict) or not isinstance(document.get("config"), dict):
        raise SpecError([SpecIssue("config", "a Pulumi stack file needs a top-level `config:` mapping")], source)
    config = document["config"]
    issues: list[SpecIssue] = []
    fleet = vcenter = None
    if FLEET_KEY not in config:
        issues.append(SpecIssue(f"config.{FLEET_KEY}", "missing: the fleet description lives under this key"))
    else:
        try:
            fleet = Fleet.model_validate(config[FLEET_KEY])
        except ValidationError as exc:
            issues.extend(issues_from_validation(exc))
    try:
        vcenter = VcenterSpec.model_validate(config.get(VCENTER_KEY) or {})
    except ValidationError as exc:
        issues.extend(issues_from_validation(exc, root="vcenter"))
    if issues or fleet is None or vcenter is None:
        raise SpecError(issues, source)
    return Stack(name=name, path=path, fleet=fleet, vcenter=vcenter, config=config)


def stack_name(path: Path) -> str:
    """``stacks/Pulumi.lab.yaml`` -> ``lab``."""
    stem = path.name
    for suffix in (".yaml", ".yml"):
        stem = stem.removesuffix(suffix)
    return stem.removeprefix("Pulumi.")


def load_stack(path: str | Path) -> Stack:
    """Read and shape-check a stack config file. Hardware rules: ``gpufleet.spec.validate.validate_fleet``."""
    path = Path(path)
    return parse_stack(_read_yaml(path), name=stack_name(path), path=path)
