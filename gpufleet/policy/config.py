"""The policy config file, in Pulumi's own format (``pulumi preview --policy-pack-config FILE`` reads the same file):

    {"all": "mandatory",
     "max-unavailable-share": {"enforcementLevel": "advisory", "share": 0.5},
     "driver-branch-allowed": {"allowedBranches": ["550"]},
     "no-plain-secrets": "disabled"}

A key is a rule name (or ``all``); its value an enforcement level or an object with ``enforcementLevel`` and the
rule's parameters. Unknown rules, levels and parameters are refused with the valid ones named.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpufleet.errors import SpecError, SpecIssue
from gpufleet.policy.rules import ENFORCEMENT_LEVELS, RULES, Enforcement, PolicySubject, Rule, Violation

MAX_CONFIG_BYTES = 256 * 1024


@dataclass(frozen=True)
class RuleSettings:
    enforcement: Enforcement
    params: dict[str, Any]


@dataclass(frozen=True)
class PolicyFinding:
    """A violation with the enforcement it carries under the config."""

    enforcement: Enforcement
    violation: Violation


def _refuse(where: str, message: str, valid: tuple[str, ...] | list[str] = ()) -> SpecError:
    return SpecError([SpecIssue(where, message, valid=tuple(valid))])


def _check_level(where: str, value: Any) -> Enforcement:
    if value not in ENFORCEMENT_LEVELS:
        raise _refuse(where, f"{json.dumps(value)[:40]} is not an enforcement level", ENFORCEMENT_LEVELS)
    return value


def _check_param(rule: Rule, where: str, key: str, value: Any) -> Any:
    schema = rule.params[key]
    kind = schema["type"]
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _refuse(where, "must be a number")
        if not schema.get("minimum", value) <= value <= schema.get("maximum", value):
            raise _refuse(where, f"{value} is out of range", (f"{schema['minimum']}..{schema['maximum']}",))
    elif kind == "array" and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
        raise _refuse(where, "must be a list of strings")
    return value


def settings(document: dict[str, Any] | None = None, source: str = "policy config") -> dict[str, RuleSettings]:
    """Every rule's enforcement and parameters: the rule's defaults, then ``all``, then the rule's own entry."""
    document = {} if document is None else document
    if not isinstance(document, dict):
        raise _refuse(source, "a policy config is a JSON object keyed by rule name")
    names = [r.name for r in RULES]
    for key in document:
        if key != "all" and key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise _refuse(f"{source}: {key}", f"no such policy rule{hint}", ["all", *names])
    every = document.get("all")
    if every is not None:
        every = _check_level(f"{source}: all", every)
    out: dict[str, RuleSettings] = {}
    for rule in RULES:
        level: Enforcement = every or rule.enforcement
        params = rule.defaults()
        entry = document.get(rule.name)
        where = f"{source}: {rule.name}"
        if isinstance(entry, str):
            level = _check_level(where, entry)
        elif isinstance(entry, dict):
            for key, value in entry.items():
                if key == "enforcementLevel":
                    level = _check_level(f"{where}.enforcementLevel", value)
                elif key in rule.params:
                    params[key] = _check_param(rule, f"{where}.{key}", key, value)
                else:
                    raise _refuse(f"{where}.{key}", "no such parameter", ["enforcementLevel", *rule.params])
        elif entry is not None:
            raise _refuse(where, "must be an enforcement level or an object", ENFORCEMENT_LEVELS)
        out[rule.name] = RuleSettings(level, params)
    return out


def load_settings(path: Path | None) -> dict[str, RuleSettings]:
    """The settings of a policy config file (None: every rule's defaults)."""
    if path is None:
        return settings()
    where = str(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise _refuse(where, f"cannot read the policy config: {exc.strerror or exc}") from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise _refuse(where, f"larger than {MAX_CONFIG_BYTES} bytes: not a policy config")
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        line = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise _refuse(where, f"not a JSON policy config{line}") from exc
    return settings(document, where)


def evaluate(subject: PolicySubject, config: dict[str, RuleSettings] | None = None) -> list[PolicyFinding]:
    """Every rule (not disabled) on one stack, in rule order."""
    config = config or settings()
    found: list[PolicyFinding] = []
    for rule in RULES:
        setting = config[rule.name]
        if setting.enforcement == "disabled":
            continue
        found.extend(PolicyFinding(setting.enforcement, v) for v in rule.check(subject, setting.params))
    return found
