"""The lab's vCenter: build the Go vcsim main (lab/vcsim), give it a lab CA, start/stop it, and talk to its
``/lab/`` admin endpoints.

- :func:`build_vcsim` compiles the Go module ``lab/vcsim`` (govmomi pinned in its go.mod/go.sum, fetched through the Go
  module proxy into the module cache) once and caches the binary under ``$GPUFLEET_LAB_CACHE`` (default
  ``~/.cache/gpufleet``), keyed by go.mod, go.sum, the sources and ``go version``.
- :func:`make_lab_ca` writes a lab CA and a server certificate for 127.0.0.1/localhost signed by it.
- :func:`start_vcsim` / :func:`stop_vcsim` run the simulator in its own session; start returns once ``/lab/health``
  answers over TLS verified against the lab CA.
- :class:`LabAdmin` is the client of ``/lab/hosts/NAME``, ``/lab/vms/NAME`` (HTTP basic auth, verified TLS).
"""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpufleet.errors import ConnectError, GpufleetError, TlsVerificationError

VCSIM_SOURCES = Path(__file__).resolve().parent / "vcsim"
EXEC_CLIENT_SOURCES = Path(__file__).resolve().parent / "execclient"
GO_MIN_VERSION = (1, 26)  # lab/vcsim/go.mod: go 1.26.0
CACHE_ENV = "GPUFLEET_LAB_CACHE"
PASSWORD_ENV = "GPUFLEET_VCSIM_PASSWORD"  # how start_vcsim hands the password over (not on the command line)
BUILD_TIMEOUT_S = 600
HOST_FIELDS = ("inMaintenanceMode", "connectionState", "graphicsType", "assignmentPolicy", "driverActive")


class VcsimError(GpufleetError):
    """The lab's vCenter could not be built, started or stopped."""


class LabAdminError(GpufleetError):
    """The /lab/ admin endpoint refused a request (bad field or value)."""


class LabNotFound(LabAdminError, LookupError):
    """No lab host or VM of that name."""


# -- build ----------------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "gpufleet"


def _go_env(cache: Path | None = None) -> dict[str, str]:
    """Module mode, whatever the caller's Go settings: the go.mod/go.sum in lab/vcsim decide the dependencies
    (read-only: a build never edits them), no go.work above it applies, the local toolchain only (never one
    downloaded for the go line of go.mod), no cgo, no VCS stamping."""
    env = dict(os.environ)
    env.update(
        GO111MODULE="on",
        GOWORK="off",
        GOTOOLCHAIN="local",
        GOFLAGS="-mod=readonly -buildvcs=false",
        CGO_ENABLED="0",
    )
    if cache is not None and not any(env.get(k) for k in ("GOCACHE", "XDG_CACHE_HOME", "HOME")):
        env["GOCACHE"] = str(cache / "go-build")  # go needs a build cache directory
    if cache is not None and not any(env.get(k) for k in ("GOMODCACHE", "GOPATH", "HOME")):
        env["GOMODCACHE"] = str(cache / "go-mod")  # ... and a module cache
    return env


def _go_version(go: str) -> str:
    """``go version`` as the toolchain prints it, e.g. ``go version go1.26.8 linux/amd64``."""
    # Retried: on a machine short of memory a fork can fail for a moment, and one empty answer must not read as
    # "not a Go toolchain" for a whole test session.
    proc = None
    for attempt in range(3):
        try:
            proc = subprocess.run([go, "version"], capture_output=True, text=True, timeout=60, env=_go_env())
        except (OSError, subprocess.TimeoutExpired) as exc:
            if attempt == 2:
                raise VcsimError(f"cannot build the lab vCenter (vcsim): `{go} version` failed: {exc}") from exc
            time.sleep(1.0)
            continue
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.strip()
        time.sleep(1.0)
    if proc is not None and proc.returncode != 0:
        raise VcsimError(
            f"cannot build the lab vCenter (vcsim): `{go} version` exited {proc.returncode}: {proc.stderr.strip()[-300:]}"
        )
    return proc.stdout.strip() if proc is not None else ""


def _need_go(found: str) -> VcsimError:
    wanted = ".".join(map(str, GO_MIN_VERSION))
    return VcsimError(
        f"cannot build the lab vCenter (vcsim): {found}; Go >= {wanted} must be on PATH "
        f"(the Go module {VCSIM_SOURCES} needs it; its modules come through the Go module proxy)"
    )


def _check_toolchain() -> tuple[str, str]:
    """The `go` binary and its ``go version``; a clear error when there is none or it is older than go.mod needs."""
    go = shutil.which("go")
    if go is None:
        raise _need_go("no `go` on PATH")
    version = _go_version(go)
    match = re.search(r"\bgo(\d+)\.(\d+)", version)
    if match is None or (int(match.group(1)), int(match.group(2))) < GO_MIN_VERSION:
        raise _need_go(f"{go} is {version or 'not a Go toolchain (no version)'}")
    return go, version


def _source_key(version: str, sources_dir: Path | None = None, what: str = "the lab vCenter (vcsim)") -> str:
    """go.mod, go.sum (where the module has dependencies: vcsim's pinned govmomi), every *.go and the toolchain's
    ``go version``."""
    sources_dir = VCSIM_SOURCES if sources_dir is None else sources_dir
    digest = hashlib.sha256()
    module_files = ["go.mod", "go.sum"] if sources_dir != EXEC_CLIENT_SOURCES else ["go.mod"]  # labexec: stdlib only
    sources = [*(sources_dir / f for f in module_files), *sorted(sources_dir.glob("*.go"))]
    for src in sources:
        try:
            data = src.read_bytes()
        except OSError as exc:
            raise VcsimError(f"cannot build {what}: {src}: {exc.strerror}") from exc
        digest.update(src.name.encode() + b"\0" + data + b"\0")
    digest.update(version.encode())
    return digest.hexdigest()[:20]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive file lock: parallel test workers build once, the others wait and reuse the binary."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_vcsim(cache_dir: Path | None = None) -> Path:
    """Path of the built vcsim binary, compiling it only when no cached build matches the sources and toolchain."""
    return _build_go(VCSIM_SOURCES, "vcsim", "the lab vCenter (vcsim)", cache_dir)


def build_exec_client(cache_dir: Path | None = None) -> Path:
    """Path of the built ``labexec`` (lab/execclient: the lab sshd's ForceCommand, see lab.forkserver)."""
    return _build_go(EXEC_CLIENT_SOURCES, "labexec", "the lab's SSH command client (labexec)", cache_dir)


def _build_go(sources: Path, name: str, what: str, cache_dir: Path | None) -> Path:
    """Build the Go main package in ``sources`` into ``<cache>/<name>-<key>`` unless a build of the same sources
    and toolchain is there (parallel test workers build once: the others wait for the lock and reuse it)."""
    go, version = _check_toolchain()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    binary = cache / f"{name}-{_source_key(version, sources, what)}"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    with _locked(cache / f"{name}-build.lock"):
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
        tmp = binary.with_name(binary.name + f".tmp{os.getpid()}")
        try:
            proc = subprocess.run(
                [go, "build", "-trimpath", "-o", str(tmp), "."],
                cwd=sources,
                env=_go_env(cache),
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise VcsimError(f"building {what} took longer than {BUILD_TIMEOUT_S} s") from exc
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise VcsimError(f"building {what} failed (go build in {sources}):\n{proc.stderr.strip()}")
        tmp.replace(binary)
        _prune_old_builds(cache, name, keep=binary)
    return binary


def _prune_old_builds(cache: Path, name: str, keep: Path, count: int = 4) -> None:
    """Keep the newest ``count`` builds (a running lab keeps its binary's inode even if removed)."""
    builds = sorted(
        (p for p in cache.glob(f"{name}-*") if p.is_file() and ".tmp" not in p.name and p.suffix != ".lock"),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in builds[count:]:
        if old != keep:
            old.unlink(missing_ok=True)


# -- TLS ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabTls:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    thumbprint: str  # SHA-256 of the server certificate, "AA:BB:..."


def cert_thumbprint(pem_or_der: bytes) -> str:
    """SHA-256 thumbprint of a certificate (PEM or DER), as vSphere shows it: upper-case hex pairs joined by ':'."""
    der = ssl.PEM_cert_to_DER_cert(pem_or_der.decode()) if pem_or_der.lstrip().startswith(b"-----") else pem_or_der
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _reusable(tls: LabTls) -> bool:
    from cryptography import x509

    paths = (tls.ca_cert, tls.ca_key, tls.server_cert, tls.server_key)
    if not all(p.is_file() for p in paths):
        return False
    cert = x509.load_pem_x509_certificate(tls.server_cert.read_bytes())
    return cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=1)


def _key_usage(**enabled: bool) -> Any:
    from cryptography import x509

    flags = (
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    )
    return x509.KeyUsage(**{f: enabled.get(f, False) for f in flags})


def make_lab_ca(directory: Path) -> LabTls:
    """A lab CA and a server certificate for 127.0.0.1/localhost signed by it (reused while still valid)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = dict(
        ca_cert=directory / "ca.pem",
        ca_key=directory / "ca.key",
        server_cert=directory / "vcsim.pem",
        server_key=directory / "vcsim.key",
    )
    existing = LabTls(**paths, thumbprint="")
    if _reusable(existing):
        return LabTls(**paths, thumbprint=cert_thumbprint(existing.server_cert.read_bytes()))

    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gpufleet lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, "gpufleet lab CA"),
        ]
    )
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gpufleet lab"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
                ]
            )
        )
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=397))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(digital_signature=True),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_format = dict(
        encoding=pem, format=serialization.PrivateFormat.PKCS8, encryption_algorithm=serialization.NoEncryption()
    )
    _write_private(paths["ca_key"], ca_key.private_bytes(**key_format))
    _write_private(paths["server_key"], server_key.private_bytes(**key_format))
    paths["ca_cert"].write_bytes(ca_cert.public_bytes(pem))
    server_pem = server_cert.public_bytes(pem)
    paths["server_cert"].write_bytes(server_pem)
    return LabTls(**paths, thumbprint=cert_thumbprint(server_pem))


# -- admin client -------------------------------------------------------------------------------------------


def _lab_env_vcenter() -> dict[str, Any]:
    from lab.paths import LabPaths

    env_file = LabPaths.resolve().env_file
    try:
        return json.loads(env_file.read_text())["vcenter"]
    except (OSError, ValueError, KeyError) as exc:
        raise ConnectError(f"no running lab: cannot read the vCenter entry of {env_file} ({exc})") from exc


class LabAdmin:
    """Client of vcsim's /lab/ endpoints. Without arguments it reads the running lab's env file."""

    def __init__(
        self,
        url: str | None = None,
        user: str | None = None,
        password: str | None = None,
        ca_file: Path | str | None = None,
        timeout: float = 10.0,
    ) -> None:
        if url is None:
            vc = _lab_env_vcenter()
            url = f"https://{vc['host']}:{vc['port']}"
            user, password, ca_file = vc["user"], vc["password"], vc["ca_file"]
        if not (user and password and ca_file):
            raise ValueError("LabAdmin needs user, password and ca_file along with url")
        parsed = urllib.parse.urlsplit(url)
        self.base = f"{parsed.scheme}://{parsed.netloc}"
        self.timeout = timeout
        self._auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self._ssl = ssl.create_default_context(cafile=str(ca_file))

    def __repr__(self) -> str:  # never shows the credentials
        return f"LabAdmin({self.base!r})"

    def _request(self, method: str, path: str, body: dict | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", self._auth)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._ssl) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", exc.reason)
            except ValueError:
                message = exc.reason
            if exc.code == 404:
                raise LabNotFound(message) from exc
            raise LabAdminError(f"{method} {path}: HTTP {exc.code}: {message}") from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ssl.SSLCertVerificationError):
                raise TlsVerificationError(f"lab vCenter {self.base}: {exc.reason.verify_message}") from exc
            raise ConnectError(f"lab vCenter {self.base} unreachable: {exc.reason}") from exc
        except (TimeoutError, ConnectionError) as exc:
            raise ConnectError(f"lab vCenter {self.base} unreachable: {exc}") from exc

    def health(self) -> dict:
        """{"ok": true, "pid": vcsim's process id}"""
        return self._request("GET", "/lab/health")

    def hosts(self) -> list[str]:
        return list(self._request("GET", "/lab/hosts")["hosts"])

    def host(self, name: str) -> dict:
        """{"name","inMaintenanceMode","connectionState","graphicsType","assignmentPolicy","driverActive","vgpuProfiles"}"""
        return self._request("GET", "/lab/hosts/" + urllib.parse.quote(name, safe=""))

    def update_host(self, name: str, **fields: Any) -> dict:
        """Change any of HOST_FIELDS on a host; returns the host as vCenter now shows it."""
        unknown = sorted(set(fields) - set(HOST_FIELDS))
        if unknown:
            raise LabAdminError(f"host {name}: unknown field(s) {', '.join(unknown)}; valid: {', '.join(HOST_FIELDS)}")
        return self._request("POST", "/lab/hosts/" + urllib.parse.quote(name, safe=""), fields)

    def vm(self, name: str) -> dict:
        """{"name","host","powerState","template","vgpus","passthrough":[{"id","vendorId","deviceId","dynamic"}],
        "nics":[{"type","deviceProtocol","network","macAddress"}],"extraConfig":{k: v}}"""
        return self._request("GET", "/lab/vms/" + urllib.parse.quote(name, safe=""))


# -- run --------------------------------------------------------------------------------------------------


def _log_tail(log_file: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log_file.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _default_datastore_parent(topology_file: Path) -> Path:
    """tmpfs when there is one (a 2,000-VM lab starts several times faster), else next to the topology."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm
    return Path(topology_file).resolve().parent


def _remove_stale_datastores(parent: Path) -> None:
    """Remove ``vcsim-ds-<pid>-*`` directories whose vcsim is gone (killed before its own cleanup)."""
    for path in parent.glob("vcsim-ds-*-*"):
        try:
            pid = int(path.name.split("-")[2])
        except (IndexError, ValueError):
            continue
        if not _is_vcsim(pid):
            shutil.rmtree(path, ignore_errors=True)


def start_vcsim(
    binary: Path,
    topology_file: Path,
    tls: LabTls,
    port: int,
    username: str,
    password: str,
    log_file: Path,
    *,
    address: str = "127.0.0.1",
    datastore_dir: Path | None = None,
    events_file: Path | None = None,
    timeout: float = 60.0,
) -> subprocess.Popen:
    """Start vcsim in a new session; return once /lab/health answers over TLS verified with the lab CA."""
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    ds_parent = Path(datastore_dir) if datastore_dir is not None else _default_datastore_parent(topology_file)
    ds_parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_datastores(ds_parent)
    cmd = [
        str(binary),
        "-listen",
        f"{address}:{port}",
        "-cert",
        str(tls.server_cert),
        "-key",
        str(tls.server_key),
        "-topology",
        str(topology_file),
        "-username",
        username,
        "-datastore-dir",
        str(ds_parent),
    ]
    if events_file is not None:  # vcsim appends each maintenance transition to the lab's events log
        cmd += ["-events", str(events_file)]
    env = dict(os.environ, **{PASSWORD_ENV: password})
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
    admin = LabAdmin(f"https://{address}:{port}", username, password, tls.ca_cert, timeout=2.0)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise VcsimError(f"vcsim exited with status {proc.returncode}; log {log_file}:\n{_log_tail(log_file)}")
        try:
            health = admin.health()
            if health.get("ok") and health.get("pid") == proc.pid:
                return proc
            if health.get("ok"):  # another vcsim (same CA and credentials) holds the port
                stop_vcsim(proc.pid)
                raise VcsimError(f"port {port} is served by another vcsim (pid {health.get('pid')})")
        except TlsVerificationError:
            stop_vcsim(proc.pid)
            raise
        except ConnectError:
            pass
        if time.monotonic() > deadline:
            stop_vcsim(proc.pid)
            raise VcsimError(
                f"vcsim did not answer /lab/health within {timeout:.0f} s; log {log_file}:\n{_log_tail(log_file)}"
            )
        time.sleep(0.1)


def _is_vcsim(pid: int) -> bool:
    try:
        exe = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False
    return Path(exe.decode(errors="replace")).name.startswith("vcsim")


def _reap(pid: int) -> bool:
    """True when ``pid`` is gone (reaping it if it is our child)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return True
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return not _is_vcsim(pid)  # a zombie not ours or a reused pid: not our vcsim any more


def stop_vcsim(pid: int, timeout: float = 10.0) -> bool:
    """Stop the vcsim with this pid (SIGTERM, then SIGKILL after ``timeout``). False if no vcsim had that pid."""
    if not _is_vcsim(pid):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _reap(pid):
            return True
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    for _ in range(100):
        if _reap(pid):
            break
        time.sleep(0.05)
    return True
