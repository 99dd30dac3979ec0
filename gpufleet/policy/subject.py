"""A stack as the policy rules see it (``PolicySubject``), built the same way on both faces.

- Offline (``gpufleet validate --policy``): from the stack file (``subject_of_stack``).
- Under the engine: the program registers one ``gpufleet:policy:StackFacts`` component whose inputs are
  ``facts_props(...)`` — the fleet and vCenter spec (secret *references* only), the names of config keys holding a
  secret in plain text, ``vsphere:allowUnverifiedSsl`` — and the policy pack rebuilds the subject from them
  (``subject_from_props``). No secret value is ever among them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpufleet.errors import SpecError, SpecIssue
from gpufleet.policy.rules import UNVERIFIED_SSL_KEY, PolicySubject, plain_secret_keys
from gpufleet.spec.dump import stack_form
from gpufleet.spec.stack import FLEET_KEY, VCENTER_KEY, Stack, parse_stack

FACTS_TYPE = "gpufleet:policy:StackFacts"


def _true(value: Any) -> bool:
    return value is True or str(value).strip().lower() == "true"


def config_secrecy(config: Mapping[str, Any]) -> dict[str, bool]:
    """A stack file's ``config:`` mapping as {key: is a Pulumi secret} (``{secure: ...}``)."""
    return {str(k): isinstance(v, Mapping) and "secure" in v for k, v in config.items()}


def subject_of_stack(stack: Stack) -> PolicySubject:
    """The subject of a stack file read by ``load_stack``."""
    return PolicySubject(
        stack=stack.name,
        fleet=stack.fleet,
        vcenter=stack.vcenter,
        plain_secret_keys=plain_secret_keys(stack.fleet, stack.vcenter, config_secrecy(stack.config)),
        allow_unverified_ssl=_true(stack.config.get(UNVERIFIED_SSL_KEY)),
    )


def facts_props(stack: Stack, secrecy: Mapping[str, bool], allow_unverified_ssl: bool) -> dict[str, Any]:
    """The inputs of the program's ``StackFacts`` component (JSON-safe, camelCase like the stack file)."""
    return {
        "stack": stack.name,
        "fleet": stack_form(stack.fleet),
        "vcenter": stack_form(stack.vcenter),
        "plainSecretKeys": list(plain_secret_keys(stack.fleet, stack.vcenter, secrecy)),
        "allowUnverifiedSsl": bool(allow_unverified_ssl),
    }


def subject_from_props(props: Mapping[str, Any]) -> PolicySubject:
    """The subject back from ``facts_props`` as the engine hands them to the policy pack."""
    document = {"config": {FLEET_KEY: props.get("fleet"), VCENTER_KEY: props.get("vcenter") or {}}}
    name = str(props.get("stack") or "stack")
    try:
        stack = parse_stack(document, name=name)
    except SpecError as exc:  # written by our program from a parsed stack: only a version skew gets here
        raise SpecError([SpecIssue(FACTS_TYPE, f"the stack facts do not parse: {exc}")]) from exc
    keys = props.get("plainSecretKeys") or []
    return PolicySubject(
        stack=name,
        fleet=stack.fleet,
        vcenter=stack.vcenter,
        plain_secret_keys=tuple(str(k) for k in keys),
        allow_unverified_ssl=_true(props.get("allowUnverifiedSsl")),
    )
