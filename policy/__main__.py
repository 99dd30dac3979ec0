"""The gpufleet policy pack (Pulumi CrossGuard): every rule of ``gpufleet.policy`` as a resource policy.

Each rule judges the program's one ``gpufleet:policy:StackFacts`` resource (the stack: fleet and vCenter spec,
plain-text secret keys, ``allowUnverifiedSsl``); ``vcenter-tls-verified`` also judges every pulumi-vsphere
provider resource. A violation's message names the resource, the field and what would be valid. Enforcement
levels and parameters come from ``--policy-pack-config`` (Pulumi's format; ``policy/config/<stage>.json``).
"""

from __future__ import annotations

from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from gpufleet.errors import GpufleetError
from gpufleet.policy import FACTS_TYPE, RULES, Rule, provider_violations, subject_from_props


def _params(rule: Rule, args: ResourceValidationArgs) -> dict[str, Any]:
    given = args.get_config() or {}
    return {**rule.defaults(), **{k: given[k] for k in rule.params if k in given}}


def _validator(rule: Rule):
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if rule.name == "vcenter-tls-verified":
            for v in provider_violations(args.resource_type, args.name, args.props):
                report_violation(str(v), args.urn)
        if args.resource_type != FACTS_TYPE:
            return
        try:
            subject = subject_from_props(args.props)
        except GpufleetError as exc:
            report_violation(f"stack {args.name}: {exc}", args.urn)
            return
        for v in rule.check(subject, _params(rule, args)):
            report_violation(str(v), args.urn)

    return validate


PolicyPack(
    name="gpufleet",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
        ResourceValidationPolicy(
            name=rule.name,
            description=rule.description,
            enforcement_level=EnforcementLevel(rule.enforcement),
            config_schema=PolicyConfigSchema(properties=rule.params) if rule.params else None,
            validate=_validator(rule),
        )
        for rule in RULES
    ],
)
