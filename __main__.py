"""The gpufleet Pulumi program (``pulumi up`` runs it; ``Pulumi.yaml`` points here, stacks in ``stacks/``).

It reads the stack config — ``gpufleet:fleet`` and ``gpufleet:vcenter`` — with ``pulumi.Config`` into the fleet
spec, registers ``StackFacts`` (the stack as the policy pack ``policy/`` judges it), checks it with the same rules
as ``gpufleet validate`` (any problem: one ``pulumi.RunError`` listing every issue, before any fleet resource),
holds the clusters' rollout lease (``pulumi up`` only), builds the fleet's components
(``components.fleet.build_fleet``) and exports, per host and per VM, what was set.
"""

from __future__ import annotations

import pulumi

from components.config import stack_from_config
from components.fleet import build_fleet
from components.rollout_lease import hold_rollout_leases
from components.stack_facts import StackFacts

stack = stack_from_config(before_rules=StackFacts)  # what a policy pack judges, then the rules
hold_rollout_leases(stack)  # pulumi up: one rollout per cluster at a time, as `hosts prepare`
resources = build_fleet(stack)
for key, value in resources.exports().items():
    pulumi.export(key, value)
