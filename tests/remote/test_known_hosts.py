"""known_hosts files with OpenSSH's marker lines: a ``@revoked`` key is refused by name (host and fingerprint) even
where another line lists it, a ``@cert-authority`` line is reported as not supported (never a crash), and the other
lines of such a file still work. Against a real throwaway sshd."""

from __future__ import annotations

import base64

import paramiko
import pytest
from host_setup_sshd import Sshd, _keygen

from gpufleet.errors import HostKeyError
from gpufleet.remote.known_hosts import host_matches, load_known_hosts
from gpufleet.remote.ssh import SshRunner, fingerprint


def _key(pub: str) -> str:
    return " ".join(pub.split()[:2])


def _fp(pub: str) -> str:
    key_type, blob = pub.split()[:2]
    return fingerprint(paramiko.PKey.from_type_string(key_type, base64.b64decode(blob)))


def _name(sshd: Sshd) -> str:
    return f"[{sshd.address}]:{sshd.port}"


def test_a_revoked_key_is_refused_by_name_even_when_listed_plainly(sshd: Sshd) -> None:
    known = sshd.root / "known_hosts_revoked"
    known.write_text(f"{_name(sshd)} {_key(sshd.host_pub)}\n@revoked * {_key(sshd.host_pub)}\n")
    with pytest.raises(HostKeyError) as caught:
        SshRunner(sshd.settings(known_hosts=known)).connect()
    message = str(caught.value)
    assert "test-host" in message and _name(sshd) in message
    assert _fp(sshd.host_pub) in message and "@revoked" in message and "line 2" in message


def test_a_revoked_key_offered_where_another_key_is_listed_is_named_revoked(sshd: Sshd) -> None:
    other = _keygen(sshd.root / "other_key")
    known = sshd.root / "known_hosts_revoked_other"
    known.write_text(f"{_name(sshd)} {_key(other)}\n@revoked {_name(sshd)} {_key(sshd.host_pub)}\n")
    with pytest.raises(HostKeyError, match=r"marks @revoked") as caught:
        SshRunner(sshd.settings(known_hosts=known)).connect()
    assert _fp(sshd.host_pub) in str(caught.value)


def test_a_cert_authority_line_for_the_host_is_reported_not_supported(sshd: Sshd) -> None:
    ca = _keygen(sshd.root / "ca_key")
    known = sshd.root / "known_hosts_ca"
    known.write_text(f"# the fleet's host CA\n@cert-authority {sshd.address},[{sshd.address}]:* {_key(ca)}\n")
    with pytest.raises(HostKeyError) as caught:
        SshRunner(sshd.settings(known_hosts=known)).connect()
    message = str(caught.value)
    assert "line 2" in message and "@cert-authority" in message and "not supported" in message
    assert _fp(sshd.host_pub) in message  # the offered key, to pin it


def test_marker_lines_of_other_hosts_do_not_stop_the_plain_entry(sshd: Sshd) -> None:
    ca, old = _keygen(sshd.root / "ca_key"), _keygen(sshd.root / "old_key")
    known = sshd.root / "known_hosts_mixed"
    known.write_text(
        f"@cert-authority *.example.com {_key(ca)}\n"
        f"@revoked old.example.com {_key(old)}\n"
        "@unknown-marker x ssh-ed25519 AAAA\n"
        "not a key line\n"
        f"{_name(sshd)} {_key(sshd.host_pub)}\n"
    )
    with SshRunner(sshd.settings(known_hosts=known)) as ssh:
        assert ssh.run(["echo", "ok"]).output == "ok\n"
    loaded = load_known_hosts(known)
    assert [m.line for m in loaded.cert_authorities] == [1] and [m.line for m in loaded.revoked] == [2]
    assert loaded.skipped == [3, 4]
    assert loaded.cert_authorities_for(_name(sshd)) == []
    assert [m.line for m in loaded.cert_authorities_for("esxi-01.example.com")] == [1]


def test_host_patterns_follow_openssh() -> None:
    assert host_matches("*.lab,!esxi-09.lab", "esxi-01.lab")
    assert not host_matches("*.lab,!esxi-09.lab", "esxi-09.lab")
    assert host_matches("[10.0.0.?]:2022", "[10.0.0.5]:2022")
    assert not host_matches("10.0.0.5", "[10.0.0.5]:2022")
    hashed = paramiko.HostKeys.hash_host("esxi-01.lab")
    assert host_matches(hashed, "esxi-01.lab") and not host_matches(hashed, "esxi-02.lab")
