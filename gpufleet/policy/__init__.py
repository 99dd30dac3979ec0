"""Guardrails on stacks, one implementation for the Pulumi policy pack (``policy/``) and ``gpufleet validate
--policy``: ``rules`` (what each rule checks), ``config`` (Pulumi's policy-config file format, ``evaluate``),
``subject`` (a stack as the rules see it, from a stack file or from the program's ``StackFacts`` inputs)."""

from gpufleet.policy.config import PolicyFinding, RuleSettings, evaluate, load_settings, settings
from gpufleet.policy.rules import RULES, PolicySubject, Rule, Violation, provider_violations
from gpufleet.policy.subject import FACTS_TYPE, facts_props, subject_from_props, subject_of_stack

__all__ = [
    "FACTS_TYPE",
    "RULES",
    "PolicyFinding",
    "PolicySubject",
    "Rule",
    "RuleSettings",
    "Violation",
    "evaluate",
    "facts_props",
    "load_settings",
    "provider_violations",
    "settings",
    "subject_from_props",
    "subject_of_stack",
]
