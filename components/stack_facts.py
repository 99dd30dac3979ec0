"""``StackFacts``: the stack as the policy pack (``policy/``) judges it, registered once per program.

A component with no children whose inputs are ``gpufleet.policy.facts_props``: the fleet and vCenter spec (secret
references, never values), the names of the config keys that hold a secret in plain text, and pulumi-vsphere's
``allowUnverifiedSsl``. The engine hands these inputs to every policy pack on preview and up, so the rules of
``gpufleet validate --policy`` run under ``pulumi preview --policy-pack policy`` from the same code.
"""

from __future__ import annotations

import pulumi
from pulumi.runtime import config as runtime_config

from gpufleet.policy import FACTS_TYPE, facts_props
from gpufleet.spec.stack import Stack


def config_secrecy() -> dict[str, bool]:
    """Every config key the stack sets, and whether it is a Pulumi secret (the SDK's own view of the config)."""
    keys = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())
    return {key: runtime_config.is_config_secret(key) for key in sorted(keys)}


class StackFacts(pulumi.ComponentResource):
    def __init__(self, stack: Stack, opts: pulumi.ResourceOptions | None = None) -> None:
        unverified = pulumi.Config("vsphere").get_bool("allowUnverifiedSsl") or False
        super().__init__(FACTS_TYPE, stack.name, facts_props(stack, config_secrecy(), unverified), opts)
        self.register_outputs({})
