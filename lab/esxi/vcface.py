"""The host's view of what vCenter holds (maintenance mode, graphics config, connection state, driver state).

Both faces must agree, so the simulator never keeps its own copy: it reads and writes vcsim's ``/lab/hosts/<name>``
admin endpoint (HTTPS, verified against the lab CA, basic auth with the lab's generated credentials from
``env.json``). This is the same contract as ``lab.vcenter.LabAdmin``; it is spoken here with the standard
library only, because every SSH command is a fresh process and must start fast.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
from typing import Any
from urllib.parse import quote

from lab.paths import LabPaths


class VcenterUnavailable(Exception):
    pass


class VcenterClient:
    """Minimal keep-alive client of vcsim's /lab/ endpoints."""

    def __init__(self, paths: LabPaths, timeout: float = 10.0) -> None:
        try:
            env = json.loads(paths.env_file.read_text())["vcenter"]
        except (OSError, KeyError, ValueError) as exc:
            raise VcenterUnavailable(f"lab env not readable at {paths.env_file}: {exc}") from exc
        self.host = env["host"]
        self.port = int(env["port"])
        self.timeout = timeout
        self._ctx = ssl.create_default_context(cafile=env["ca_file"])
        token = base64.b64encode(f"{env['user']}:{env['password']}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
        self._conn: http.client.HTTPSConnection | None = None

    def _request(self, method: str, path: str, body: dict | None = None) -> Any:
        payload = json.dumps(body).encode() if body is not None else None
        for attempt in (1, 2):  # one retry on a stale keep-alive connection
            if self._conn is None:
                self._conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self._ctx)
            try:
                self._conn.request(method, path, body=payload, headers=self._headers)
                resp = self._conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if attempt == 2:
                    raise VcenterUnavailable(f"vCenter at {self.host}:{self.port} unreachable: {exc}") from exc
                continue
            try:
                doc = json.loads(data or b"null")
            except ValueError as exc:
                raise VcenterUnavailable(f"vCenter answered {resp.status} with non-JSON") from exc
            if resp.status >= 400:
                raise VcenterUnavailable(
                    f"vCenter answered {resp.status}: {doc.get('error') if isinstance(doc, dict) else doc}"
                )
            return doc
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def host_view(self, name: str) -> dict[str, Any]:
        return self._request("GET", f"/lab/hosts/{quote(name)}")

    def update_host(self, name: str, **fields: Any) -> dict[str, Any]:
        return self._request("POST", f"/lab/hosts/{quote(name)}", fields)

    def host_names(self) -> list[str]:
        return self._request("GET", "/lab/hosts")["hosts"]

    def vm(self, name: str) -> dict[str, Any]:
        return self._request("GET", f"/lab/vms/{quote(name)}")

    def vms(self) -> list[dict[str, Any]]:
        """Every VM (``/lab/vms/``), each as :meth:`vm` shows it."""
        return self._request("GET", "/lab/vms/")["vms"]


# vSphere API values <-> esxcli spellings
GRAPHICS_TO_ESXCLI = {"shared": "Shared", "sharedDirect": "SharedPassthru"}
POLICY_TO_ESXCLI = {"performance": "Performance", "consolidation": "Consolidation"}
