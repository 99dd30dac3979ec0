"""The stack config as the fleet spec, inside a Pulumi program; secrets as Pulumi secrets.

``stack_from_config()`` reads ``gpufleet:fleet`` and ``gpufleet:vcenter`` with ``pulumi.Config`` and runs them
through the same spec as the CLI (``parse_stack`` for the shape, ``validate_fleet`` for the hardware rules);
any problem reaches the user as one ``pulumi.RunError`` listing every issue, before a resource is registered.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import pulumi

from gpufleet.connections import resolve_stack_secret
from gpufleet.errors import SpecError
from gpufleet.spec.models import SecretRef
from gpufleet.spec.stack import FLEET_KEY, VCENTER_KEY, Stack, parse_stack
from gpufleet.spec.validate import stack_issues


def stack_from_config(
    config: pulumi.Config | None = None,
    name: str | None = None,
    before_rules: Callable[[Stack], None] | None = None,
) -> Stack:
    """The current stack's fleet, shape- and rule-checked; ``pulumi.RunError`` (every issue) if invalid.
    ``before_rules`` sees the shape-checked stack before the hardware rules run (the program registers what the
    policy pack judges there, so a pack also reports a stack these rules refuse)."""
    cfg = config or pulumi.Config("gpufleet")
    fleet = cfg.get_object("fleet")
    vcenter = cfg.get_object("vcenter") or {}
    document = {"config": {VCENTER_KEY: vcenter} | ({FLEET_KEY: fleet} if fleet is not None else {})}
    try:
        stack = parse_stack(document, name=name or pulumi.get_stack())
    except SpecError as exc:
        raise pulumi.RunError(str(exc)) from exc
    if before_rules is not None:
        before_rules(stack)
    issues = stack_issues(stack)  # named paths, as `gpufleet validate` reports them
    if issues:
        raise pulumi.RunError(str(SpecError(issues, stack.name)))
    return stack


FLEET_STACK_KEY = "fleetStack"  # gpufleet:fleetStack: the stack whose outputs `stackOutput` references read


@functools.cache
def fleet_stack(name: str) -> pulumi.StackReference:
    """One StackReference per program to the fleet stack (shared outputs: licences, tokens)."""
    return pulumi.StackReference(name)


def secret_from_ref(stack: Stack, ref: SecretRef | None, where: str) -> pulumi.Output[str] | None:
    """A secret reference as a Pulumi secret: the Pulumi config key (``pulumi config set --secret``), else the fleet
    stack's output (``stackOutput``, through a StackReference to config ``gpufleet:fleetStack``), else what the
    CLI would read (``resolve_stack_secret``: its environment variable, or the running lab's generated value for a
    lab stack); None when no reference is given. A reference that resolves to nothing is a RunError."""
    if ref is None:
        return None
    if ref.config:
        namespace, _, key = ref.config.rpartition(":")
        value = pulumi.Config(namespace or None).get_secret(key)
        if value is not None:
            return value
    if ref.stack_output:
        name = pulumi.Config("gpufleet").get(FLEET_STACK_KEY)
        if name:
            output = fleet_stack(name).get_output(ref.stack_output)
            return pulumi.Output.secret(output.apply(lambda v: _stack_output_value(v, name, ref.stack_output, where)))
        if not ref.env:
            raise pulumi.RunError(
                f"{where}: stackOutput {ref.stack_output!r} needs the fleet stack's name in config "
                f"gpufleet:{FLEET_STACK_KEY} (e.g. organization/gpufleet-fleet/prod)"
            )
    try:
        found = resolve_stack_secret(stack, ref, where) if ref.env else None
    except SpecError:
        found = None
    if found is not None:
        return pulumi.Output.secret(found.reveal())
    sources = " or ".join(
        s
        for s in (f"`pulumi config set --secret {ref.config}`" if ref.config else "", f"${ref.env}" if ref.env else "")
        if s
    )
    raise pulumi.RunError(f"{where}: the secret is not set ({sources})")


def _stack_output_value(value: object, stack: str, output: str, where: str) -> str:
    if isinstance(value, str) and value:
        return value
    raise pulumi.RunError(f"{where}: the fleet stack {stack} has no output {output!r} (or it is empty)")
