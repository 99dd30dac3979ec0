"""known_hosts files as OpenSSH writes them, read for paramiko.

paramiko's ``HostKeys.load`` raises ``InvalidHostKey`` on a marker line (``@revoked``, ``@cert-authority``: it
takes the marker for the host names), and a paramiko that skipped them would accept a revoked key that is also
listed plainly. So gpufleet reads the file itself: plain lines become paramiko host keys, ``@revoked`` keys are
kept apart (refused by name, never trusted, whatever other line lists them), ``@cert-authority`` lines are kept
to be reported (paramiko cannot verify host certificates: the host's own key must be listed or pinned), and a line
that is not a key is skipped, as OpenSSH skips it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

REVOKED, CERT_AUTHORITY = "@revoked", "@cert-authority"


@dataclass(frozen=True)
class MarkedLine:
    """A ``@revoked`` or ``@cert-authority`` line: where it is, its host patterns and its key."""

    line: int
    patterns: str
    key: paramiko.PKey


@dataclass
class KnownHosts:
    """What a known_hosts file says: trusted keys, revoked keys, CA lines (not supported), skipped lines."""

    path: Path
    keys: paramiko.HostKeys = field(default_factory=paramiko.HostKeys)
    revoked: list[MarkedLine] = field(default_factory=list)
    cert_authorities: list[MarkedLine] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # line numbers of lines that are no key

    def revoked_line(self, key: paramiko.PKey) -> int | None:
        """The line that revokes ``key`` (for any host: a revoked key is compromised), or None."""
        return next((m.line for m in self.revoked if m.key == key), None)

    def cert_authorities_for(self, hostname: str) -> list[MarkedLine]:
        """The ``@cert-authority`` lines whose host patterns match ``hostname`` (``[addr]:port`` or ``addr``)."""
        return [m for m in self.cert_authorities if host_matches(m.patterns, hostname)]


def _hashed_match(pattern: str, hostname: str) -> bool:
    """``|1|salt|hash``: HMAC-SHA1 of the host name keyed with the salt (OpenSSH's HashKnownHosts)."""
    try:
        _, _, salt, digest = pattern.split("|", 3)
        mac = hmac.new(base64.b64decode(salt), hostname.encode(), hashlib.sha1).digest()
        return hmac.compare_digest(mac, base64.b64decode(digest))
    except (ValueError, binascii.Error):
        return False


def _glob(pattern: str, hostname: str) -> bool:
    """OpenSSH's wildcards are ``*`` and ``?`` only (``[`` is literal: ``[addr]:port``), case-insensitive."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, hostname, re.IGNORECASE) is not None


def host_matches(patterns: str, hostname: str) -> bool:
    """OpenSSH host pattern lists: comma-separated, ``*`` and ``?`` wildcards, ``!`` negates, hashed entries."""
    matched = False
    for pattern in patterns.split(","):
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!")
        hit = _hashed_match(pattern, hostname) if pattern.startswith("|1|") else _glob(pattern, hostname)
        if hit and negated:
            return False
        matched = matched or hit
    return matched


def _key(key_type: str, blob: str) -> paramiko.PKey | None:
    try:
        return paramiko.PKey.from_type_string(key_type, base64.b64decode(blob, validate=True))
    except (binascii.Error, ValueError, paramiko.SSHException):
        return None  # an unknown key type or a broken blob: no key (OpenSSH skips it too)


def load_known_hosts(path: Path, into: paramiko.HostKeys | None = None) -> KnownHosts:
    """Read ``path`` (OSError when it cannot be read), its trusted keys added to ``into`` (a client's host keys)
    when given. Never raises on the file's content."""
    found = KnownHosts(path, into if into is not None else paramiko.HostKeys())
    plain: list[paramiko.hostkeys.HostKeyEntry] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split()
            marker = fields.pop(0) if fields[0].startswith("@") else None
            key = _key(fields[1], fields[2]) if len(fields) >= 3 else None
            if key is None or marker not in (None, REVOKED, CERT_AUTHORITY):
                found.skipped.append(number)
            elif marker == REVOKED:
                found.revoked.append(MarkedLine(number, fields[0], key))
            elif marker == CERT_AUTHORITY:
                found.cert_authorities.append(MarkedLine(number, fields[0], key))
            else:
                plain.append(paramiko.hostkeys.HostKeyEntry(fields[0].split(","), key))
    # A revoked key is never trusted, even where another line lists it for a host. (HostKeys.add would keep one
    # key per host and type; a host may list several during a key rotation, as OpenSSH allows.)
    found.keys._entries.extend(e for e in plain if found.revoked_line(e.key) is None)
    return found
