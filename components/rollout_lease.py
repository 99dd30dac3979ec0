"""Under ``pulumi up``, the program holds the rollout lease of its clusters (``gpufleet.vsphere.lease``) for as
long as it runs — the Python program lives until the engine has finished every resource — so a second
``pulumi up`` or ``gpufleet hosts prepare`` on the same cluster is refused, naming the holder, exactly as two
``hosts prepare`` runs are. The lease also scopes ``rollout.failureThreshold`` across the engine's parallel host
resources (``HostPreparation`` counts the failed hosts of the run holding the lease).

A preview holds nothing (it changes nothing). ``GPUFLEET_TAKE_OVER=1`` (``gpufleet pulumi up --take-over``) takes
a lease over from a run that is gone; one whose holder provably ended is taken over without asking.
"""

from __future__ import annotations

import atexit
import contextlib
import os

import pulumi
import pulumi.runtime

from components.providers.base import vcenter_settings_from
from gpufleet.errors import GpufleetError
from gpufleet.spec.stack import Stack
from gpufleet.vsphere.connect import connect
from gpufleet.vsphere.lease import cluster_leases

TAKE_OVER_ENV = "GPUFLEET_TAKE_OVER"


def hold_rollout_leases(stack: Stack) -> str | None:
    """Take the lease of every cluster with hosts in the stack until this process exits; returns the run id
    (None in a preview or without hosts). A held lease is a ``pulumi.RunError`` naming the holder."""
    fleet = stack.fleet
    clusters = sorted({h.cluster or fleet.cluster for h in fleet.hosts})
    if pulumi.runtime.is_dry_run() or not clusters:
        return None
    held = contextlib.ExitStack()
    try:
        settings = vcenter_settings_from(stack.vcenter, lambda key: pulumi.runtime.get_config(key))
        si = held.enter_context(connect(settings))
        run = held.enter_context(cluster_leases(si, clusters, take_over=os.environ.get(TAKE_OVER_ENV) == "1"))
    except GpufleetError as exc:
        held.close()
        hint = f" (`gpufleet pulumi up --take-over`, or {TAKE_OVER_ENV}=1)" if "--take-over" in str(exc) else ""
        raise pulumi.RunError(f"{exc}{hint}") from exc
    atexit.register(held.close)
    return run
