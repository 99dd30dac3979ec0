"""Pulumi mocks for component graphs (imported by conftest.py and the tests) (pulumi/examples ``testing-unit-py``).

``GraphMocks`` records every registered resource (type, name, inputs with their secretness; with ``GraphMonitor``
its parent and explicit dependencies, as URNs) and every invoke, answers pulumi-vsphere lookups with fake ids, and — like the SDK's ``test_broken_dynamic_provider`` —
hands each gpufleet dynamic resource to its real provider's ``check``, unpickled from ``__provider`` exactly as the
engine's provider host would, so a component that builds inputs its provider rejects fails here.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import dill
import pulumi
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor


@dataclass
class Registered:
    typ: str
    name: str
    inputs: dict[str, Any]
    urn: str | None = None
    parent: str | None = None
    dependencies: tuple[str, ...] = ()


class GraphMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[Registered] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.check_failures: dict[str, list[tuple[str, str]]] = {}
        self.edges: dict[str, tuple[str, str, tuple[str, ...]]] = {}  # name -> (URN, parent URN, dependency URNs)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        urn, parent, deps = self.edges.get(args.name, (None, None, ()))
        self.resources.append(Registered(args.typ, args.name, dict(args.inputs), urn, parent or None, deps))
        outs = {k: rpc.unwrap_rpc_secret(v) for k, v in args.inputs.items()}
        if args.typ == "vsphere:index/virtualMachine:VirtualMachine":
            outs["uuid"] = f"4200-{args.name}"
        if args.typ.startswith("pulumi-python:dynamic/"):
            provider = dill.loads(base64.b64decode(rpc.unwrap_rpc_secret(args.inputs["__provider"])))
            news = {k: rpc.unwrap_rpc_secret(v) for k, v in args.inputs.items()}
            result = provider.check({}, news)
            self.check_failures[args.name] = [(f.property, f.reason) for f in result.failures]
            if args.typ.endswith(":VmGpuDevices"):
                outs["observed"] = {"vm": news["vmName"], "power_state": "poweredOff"}
                outs["lastChanges"] = []
                outs["powerCycled"] = False
        return f"{args.name}-id", outs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        self.calls.append((args.token, dict(args.args)))
        name = args.args.get("name", "x")
        if args.token == "vsphere:index/getComputeCluster:getComputeCluster":
            return {"id": f"domain-{name}", "resourcePoolId": f"resgroup-{name}"}, []
        return {"id": f"{args.token.rsplit(':', 1)[-1]}-{name}"}, []

    # -- helpers for assertions ---------------------------------------------------------------------------
    def of_type(self, suffix: str) -> list[Registered]:
        return [r for r in self.resources if r.typ.endswith(suffix)]

    def named(self, name: str) -> Registered:
        return next(r for r in self.resources if r.name == name)


class GraphMonitor(MockMonitor):
    """The SDK's mock monitor, telling ``GraphMocks`` each registration's parent and ``depends_on`` (which
    ``MockResourceArgs`` does not carry)."""

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (the gRPC method's name)
        urn = self.make_urn(request.parent, request.type, request.name)
        self.mocks.edges[request.name] = (urn, request.parent, tuple(request.dependencies))
        return super().RegisterResource(request)


def plain(value: Any) -> Any:
    return rpc.unwrap_rpc_secret(value)
