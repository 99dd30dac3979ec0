"""Drive a gpufleet dynamic provider through Pulumi's own dynamic provider server, as the engine does.

``python -m pulumi.dynamic`` (pulumi/dynamic/__main__.py) serves the ResourceProvider gRPC service on 127.0.0.1
and prints its port on stdout. We start it as a subprocess, call Configure with the stack config, then
Check/Diff/Create/Read/Update/Delete with the provider serialized the way ``pulumi.dynamic.Resource`` does
(``serialize_provider``: dill, base64) under the ``__provider`` property. The Pulumi CLI (the engine) cannot be
installed on these machines; this is the part of ``pulumi up`` that runs gpufleet's code.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from pulumi.dynamic.dynamic import ResourceProvider, serialize_provider
from pulumi.runtime import proto, rpc
from pulumi.runtime.proto import provider_pb2_grpc

PROVIDER_KEY = "__provider"
ROOT = Path(__file__).resolve().parents[3]


def _struct(props: dict[str, Any]) -> Any:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(rpc.serialize_properties(props, {}))
    finally:
        loop.close()


def _props(struct: Any, keep_unknowns: bool = False) -> dict[str, Any]:
    return dict(rpc.deserialize_properties(struct, keep_unknowns))


@dataclass
class Created:
    id: str
    outs: dict[str, Any]


class DynamicProviderServer:
    """One ``python -m pulumi.dynamic`` process and a gRPC stub on it."""

    def __init__(self, env: dict[str, str] | None = None, timeout: float = 120.0) -> None:
        self.timeout = timeout
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close(); the provider's stderr (a pipe could fill up and block it)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pulumi.dynamic"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env={**os.environ, "PULUMI_PROJECT": "gpufleet", **(env or {})},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()  # the server prints its port, then serves
        if not line.isdigit():
            self.close()
            raise RuntimeError(f"pulumi.dynamic server did not print a port: {line!r}")
        self.port = int(line)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        grpc.channel_ready_future(self.channel).result(timeout=30)
        self.stub = provider_pb2_grpc.ResourceProviderStub(self.channel)

    def log(self) -> str:
        """What the server (the provider) wrote on stderr so far."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def close(self) -> str:
        """Stop the server; returns what it wrote on stderr (the provider's log)."""
        if getattr(self, "channel", None) is not None:
            self.channel.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        text = self.log()
        self._log.close()
        return text

    # -- the engine's calls ---------------------------------------------------------------------------------
    def configure(self, config: dict[str, Any]) -> None:
        self.stub.Configure(proto.ConfigureRequest(args=_struct(config), acceptSecrets=False), timeout=self.timeout)

    def check(
        self, urn: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        resp = self.stub.Check(
            proto.CheckRequest(urn=urn, olds=_struct(olds), news=_struct(news)), timeout=self.timeout
        )
        return _props(resp.inputs, True), [(f.property, f.reason) for f in resp.failures]

    def diff(self, urn: str, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> proto.DiffResponse:
        return self.stub.Diff(
            proto.DiffRequest(urn=urn, id=id_, olds=_struct(olds), news=_struct(news)), timeout=self.timeout
        )

    def create(self, urn: str, props: dict[str, Any]) -> Created:
        resp = self.stub.Create(proto.CreateRequest(urn=urn, properties=_struct(props)), timeout=self.timeout)
        return Created(resp.id, _props(resp.properties))

    def read(self, urn: str, id_: str, props: dict[str, Any]) -> Created:
        resp = self.stub.Read(proto.ReadRequest(urn=urn, id=id_, properties=_struct(props)), timeout=self.timeout)
        return Created(resp.id, _props(resp.properties))

    def update(self, urn: str, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        resp = self.stub.Update(
            proto.UpdateRequest(urn=urn, id=id_, olds=_struct(olds), news=_struct(news)), timeout=self.timeout
        )
        return _props(resp.properties)

    def delete(self, urn: str, id_: str, props: dict[str, Any]) -> None:
        self.stub.Delete(proto.DeleteRequest(urn=urn, id=id_, properties=_struct(props)), timeout=self.timeout)


def with_provider(provider: ResourceProvider, props: dict[str, Any]) -> dict[str, Any]:
    """``props`` plus the provider serialized exactly as ``pulumi.dynamic.Resource`` does it."""
    return {**props, PROVIDER_KEY: serialize_provider(provider)}


def urn(type_name: str, name: str) -> str:
    return f"urn:pulumi:lab::gpufleet::pulumi-python:dynamic/vsphere:{type_name}::{name}"


DIFF_NONE = proto.DiffResponse.DIFF_NONE
DIFF_SOME = proto.DiffResponse.DIFF_SOME
