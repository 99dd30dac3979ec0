"""What every gpufleet dynamic provider shares: credentials at call time, one vCenter session per call, the
spec's issues as ``CheckFailure``s.

The provider object is pickled into the stack's state when the program runs and unpickled by the engine's
dynamic provider host, which then calls ``configure()`` with the stack's config. Anything ``configure()`` keeps
is dropped again by ``__getstate__``, so a password can never end up in the state.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pulumi.dynamic import CheckFailure, ConfigureRequest, ResourceProvider
from pyVmomi import vim

from gpufleet.connections import Connections, Secret, VcenterSettings, resolve_connections, resolve_vcenter
from gpufleet.errors import SpecIssue
from gpufleet.spec.dump import stack_form
from gpufleet.spec.models import Fleet, SecretRef, VcenterSpec
from gpufleet.spec.stack import Stack
from gpufleet.vsphere.connect import connect

VCENTER_PASSWORD_KEY = "gpufleet:vcenterPassword"
_PASSWORD_VAR = "GPUFLEET_PULUMI_VCENTER_PASSWORD"  # a key of a private mapping, never set in the environment
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # pulumi.runtime.rpc.UNKNOWN: a value not known in a preview


def is_unknown(value: Any) -> bool:
    return value == UNKNOWN


def config_value(raw: Any) -> Any:
    """A stack config value as the engine sends it: objects arrive JSON-encoded."""
    if isinstance(raw, str) and raw[:1] in "{[":
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def vcenter_input(spec: VcenterSpec) -> dict[str, Any]:
    """The non-secret part of ``gpufleet:vcenter`` a resource carries as an input (never a password)."""
    return stack_form(spec)


def failures_from_issues(issues: list[SpecIssue], rename: Mapping[str, str] | None = None) -> list[CheckFailure]:
    """One ``CheckFailure`` per spec issue; ``rename`` maps a spec path prefix to the resource's property."""
    failures = []
    for issue in issues:
        path = issue.path
        for prefix, prop in (rename or {}).items():
            if path == prefix or path.startswith((prefix + ".", prefix + "[")):
                path = prop + path[len(prefix) :]
                break
        hint = f" (valid: {', '.join(issue.valid)})" if issue.valid else ""
        failures.append(CheckFailure(path, issue.message + hint))
    return failures


def vcenter_settings_from(spec: VcenterSpec, config: Callable[[str], Any]) -> VcenterSettings:
    """Where to connect: the lab's env file for ``lab: true``; else the spec's host/user/TLS settings with the
    password from the stack config (``config(key)``: ``gpufleet:vcenterPassword`` or the secret reference's
    ``config`` key) or, outside the engine, the reference's environment variable."""
    if spec.lab:
        return resolve_vcenter(spec)
    keys = [spec.password.config] if spec.password and spec.password.config else []
    for key in [*keys, VCENTER_PASSWORD_KEY]:
        value = config(key)
        if value:
            assert spec.host and spec.user
            return VcenterSettings(
                host=spec.host,
                port=spec.port,
                user=spec.user,
                password=Secret(str(value)),
                ca_file=Path(spec.ca_file) if spec.ca_file else None,
                thumbprint=spec.thumbprint,
            )
    return resolve_vcenter(spec)


class GpufleetProvider(ResourceProvider):
    """Base of gpufleet's providers. Subclasses implement check/diff/create/read/update/delete."""

    serialize_as_secret_always = True

    def __init__(self) -> None:
        super().__init__()
        self._config: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Whatever configure() stored (the stack config, with its secrets) never goes into the state.
        return {k: v for k, v in self.__dict__.items() if k != "_config"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._config = {}

    def configure(self, req: ConfigureRequest) -> None:
        """Keep the stack config for this process (secrets included, in memory only)."""
        self._config = dict(getattr(req.config, "_props", {}) or {})

    def config(self, key: str) -> Any:
        return config_value(self._config.get(key))

    def vcenter_settings(self, vcenter: Mapping[str, Any]) -> VcenterSettings:
        """Where to connect (``vcenter_settings_from`` with this provider's stack config)."""
        return vcenter_settings_from(VcenterSpec.model_validate(dict(vcenter)), self.config)

    def connections(self, vcenter: Mapping[str, Any], fleet: Fleet) -> Connections:
        """SSH (and vCenter) settings of ``fleet``'s hosts and guests through ``gpufleet.connections``: the lab's
        env file, or the ``ssh`` specs; the vCenter password from the stack config is handed over in a private
        mapping (never the process environment)."""
        spec = VcenterSpec.model_validate(dict(vcenter))
        environ = dict(os.environ)
        if not spec.lab:
            environ[_PASSWORD_VAR] = self.vcenter_settings(vcenter).password.reveal()
            spec = spec.model_copy(update={"password": SecretRef(env=_PASSWORD_VAR)})
        return resolve_connections(Stack("pulumi", None, fleet, spec, {}), environ)

    @contextmanager
    def session(self, vcenter: Mapping[str, Any]) -> Iterator[vim.ServiceInstance]:
        """A vCenter session for this call only."""
        with connect(self.vcenter_settings(vcenter)) as si:
            yield si
