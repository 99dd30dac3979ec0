"""Connect to vCenter over verified TLS and log out when done.

    with connect(conns.vcenter) as si:          # VcenterSettings, or a VcenterSpec (resolved here)
        content = si.RetrieveContent()

TLS is always verified, one of two ways:

- ``ca_file``: a PEM bundle; the certificate must chain to it and match the host name (standard verification).
- ``thumbprint``: a pinned SHA-256 fingerprint of vCenter's certificate. We fetch the peer certificate once,
  compare its fingerprint (refusing a mismatch with ``TlsVerificationError``), then trust exactly that
  certificate for every later connection of the session (a context whose only trust anchor is the pinned
  certificate), so a certificate swapped mid-session fails too. Host names are not checked in this mode: the
  pin identifies the server.

The ServiceInstance is thread-safe enough for the rollout's worker threads (pyvmomi pools its HTTP
connections); share one per process rather than logging in per thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from gpufleet.connections import VcenterSettings, resolve_vcenter
from gpufleet.errors import ConnectError, TlsVerificationError
from gpufleet.spec.models import VcenterSpec


def sha256_fingerprint(der: bytes) -> str:
    """``AA:BB:...`` SHA-256 fingerprint of a DER certificate (the format of ``VcenterSpec.thumbprint``)."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _normalise_thumbprint(value: str) -> str:
    hexdigits = value.replace(":", "").strip().upper()
    return ":".join(hexdigits[i : i + 2] for i in range(0, len(hexdigits), 2))


def fetch_peer_certificate(host: str, port: int, timeout: float = 10.0) -> bytes:
    """The DER certificate the server presents. Unverified on purpose: the caller checks its fingerprint."""
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE  # we only read the certificate here; trust is decided by the pin
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, probe.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
    except OSError as exc:
        raise ConnectError(f"vCenter {host}:{port} is unreachable: {exc}") from exc
    if not der:
        raise TlsVerificationError(f"vCenter {host}:{port} presented no certificate")
    return der


def ssl_context_for(settings: VcenterSettings, timeout: float = 10.0) -> ssl.SSLContext:
    """A verifying SSL context for this vCenter: CA bundle, else the pinned (and checked) certificate."""
    if settings.ca_file:
        ca = Path(settings.ca_file)
        if not ca.is_file():
            raise TlsVerificationError(f"vCenter CA bundle {ca} does not exist")
        try:
            return ssl.create_default_context(cafile=str(ca))
        except ssl.SSLError as exc:
            raise TlsVerificationError(f"vCenter CA bundle {ca} is not a PEM bundle: {exc}") from exc
    if settings.thumbprint:
        der = fetch_peer_certificate(settings.host, settings.port, timeout)
        actual = sha256_fingerprint(der)
        wanted = _normalise_thumbprint(settings.thumbprint)
        if actual != wanted:
            raise TlsVerificationError(
                f"vCenter {settings.host}:{settings.port} presented a certificate with SHA-256 fingerprint {actual}, "
                f"not the pinned {wanted}: refusing to connect (if the certificate was renewed on purpose, pin the "
                "new fingerprint after checking it out of band)"
            )
        pinned = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        pinned.check_hostname = False  # the pin, not the name, identifies the server
        pinned.verify_mode = ssl.CERT_REQUIRED
        # Accept the pinned certificate as a trust anchor even when it is not self-signed (a CA-issued leaf).
        pinned.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        pinned.load_verify_locations(cadata=ssl.DER_cert_to_PEM_cert(der))
        return pinned
    raise TlsVerificationError("TLS is always verified: give vCenter a CA bundle (caFile) or a pinned thumbprint")


@contextmanager
def connect(vcenter: VcenterSettings | VcenterSpec, timeout: float = 30.0) -> Iterator[vim.ServiceInstance]:
    """Log in to vCenter over verified TLS; logs out on exit. Raises ``TlsVerificationError`` when the
    certificate is not the trusted one, ``ConnectError`` when vCenter is unreachable or refuses the login."""
    settings = resolve_vcenter(vcenter) if isinstance(vcenter, VcenterSpec) else vcenter
    context = ssl_context_for(settings, timeout)
    where = f"vCenter {settings.host}:{settings.port}"
    try:
        si = SmartConnect(
            host=settings.host,
            port=settings.port,
            user=settings.user,
            pwd=settings.password.reveal(),
            sslContext=context,
            httpConnectionTimeout=int(timeout),
        )
    except ssl.SSLCertVerificationError as exc:
        raise TlsVerificationError(f"{where}: certificate not trusted ({exc.verify_message})") from exc
    except ssl.SSLError as exc:
        raise TlsVerificationError(f"{where}: TLS handshake failed: {exc}") from exc
    except vim.fault.InvalidLogin as exc:
        raise ConnectError(f"{where} refused the login of {settings.user!r} (wrong user or password)") from exc
    except (OSError, vim.fault.HostConnectFault) as exc:
        raise ConnectError(f"{where} is unreachable: {exc}") from exc
    try:
        yield si
    finally:
        # Logging out of a dead session must not hide the error that killed it.
        with contextlib.suppress(Exception):
            Disconnect(si)
