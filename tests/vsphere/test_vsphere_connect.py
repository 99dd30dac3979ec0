"""gpufleet.vsphere.connect: TLS is verified (CA bundle or pinned SHA-256) before any login is sent."""

from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gpufleet.connections import Secret, VcenterSettings
from gpufleet.errors import TlsVerificationError
from gpufleet.vsphere.connect import connect, sha256_fingerprint, ssl_context_for


def _cert(tmp: Path, name: str) -> tuple[Path, Path, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.77.2"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / f"{name}.pem", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path, cert.public_bytes(serialization.Encoding.DER)


class TlsServer:
    """Accepts TLS connections (handshake, then close) on 127.0.77.2; counts what it received after the handshake."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.sock = socket.socket()
        self.sock.bind(("127.0.77.2", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                continue
            try:
                with self.context.wrap_socket(raw, server_side=True) as tls:
                    tls.settimeout(0.5)
                    with contextlib.suppress(OSError):
                        self.received += tls.recv(4096)
            except (OSError, ssl.SSLError):
                raw.close()

    def close(self) -> None:
        self._stop = True
        self.thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[TlsServer, bytes, TlsServer, bytes, Path]]:
    cert_a, key_a, der_a = _cert(tmp_path, "vcenter-a")
    cert_b, key_b, der_b = _cert(tmp_path, "vcenter-b")
    a, b = TlsServer(cert_a, key_a), TlsServer(cert_b, key_b)
    try:
        yield a, der_a, b, der_b, cert_a
    finally:
        a.close()
        b.close()


def settings(port: int, **kw: object) -> VcenterSettings:
    return VcenterSettings(
        host="127.0.77.2", port=port, user="administrator@vsphere.local", password=Secret("s3cret-pw"), **kw
    )  # type: ignore[arg-type]


def test_pinned_thumbprint_mismatch_is_refused_before_login(servers) -> None:  # type: ignore[no-untyped-def]
    a, der_a, b, der_b, _ = servers
    with (
        pytest.raises(TlsVerificationError, match=f"fingerprint {sha256_fingerprint(der_b)}, not the pinned"),
        connect(settings(b.port, thumbprint=sha256_fingerprint(der_a))),
    ):
        pass
    assert b"s3cret-pw" not in b.received and b.received == b""


def test_pinned_context_trusts_exactly_the_pinned_certificate(servers) -> None:  # type: ignore[no-untyped-def]
    a, der_a, b, der_b, _ = servers
    context = ssl_context_for(settings(a.port, thumbprint=sha256_fingerprint(der_a).lower().replace(":", "")))
    with socket.create_connection(("127.0.77.2", a.port)) as raw, context.wrap_socket(raw) as tls:
        assert tls.getpeercert(binary_form=True) == der_a
    # The same context refuses another certificate (a swap after the pin was checked).
    with socket.create_connection(("127.0.77.2", b.port)) as raw, pytest.raises(ssl.SSLCertVerificationError):
        context.wrap_socket(raw)


def test_ca_bundle_that_did_not_sign_the_certificate_is_refused(servers) -> None:  # type: ignore[no-untyped-def]
    a, der_a, b, der_b, cert_a = servers
    with (
        pytest.raises(TlsVerificationError, match="certificate not trusted"),
        connect(settings(b.port, ca_file=cert_a)),
    ):
        pass
    assert b"s3cret-pw" not in b.received


def test_tls_is_never_optional(tmp_path: Path) -> None:
    with pytest.raises(TlsVerificationError, match="always verified"):
        ssl_context_for(settings(443))
    with pytest.raises(TlsVerificationError, match="does not exist"):
        ssl_context_for(settings(443, ca_file=tmp_path / "nope.pem"))
