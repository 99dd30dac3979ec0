"""The SSH runner against a real throwaway sshd: host keys verified (never added), output, quoting, timeouts,
retries only on connection errors, SFTP upload only when missing, secrets never logged."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
from host_setup_sshd import Sshd, _keygen

from gpufleet.connections import Secret
from gpufleet.errors import ConnectError, HostKeyError
from gpufleet.remote.ssh import CommandFailed, CommandTimeout, ConnectionLost, SshRunner


def test_output_is_stdout_and_stderr_together_with_the_exit_status(sshd: Sshd) -> None:
    with SshRunner(sshd.settings()) as ssh:
        result = ssh.run(["sh", "-c", "echo out; echo err >&2; echo again; exit 3"])
    assert result.rc == 3
    # One text with both streams; sshd sends them on separate pipes, so only each stream's own order is kept.
    assert sorted(result.output.splitlines()) == ["again", "err", "out"]
    assert result.output.index("out") < result.output.index("again")
    with pytest.raises(CommandFailed, match=r"(?s)exited 3: .*err"):
        result.check("test-host")


def test_arguments_are_quoted(sshd: Sshd) -> None:
    tricky = ["a b", "it's", "$HOME", "; touch /tmp/gpufleet-pwned", "`id`"]
    with SshRunner(sshd.settings()) as ssh:
        result = ssh.run(["printf", "%s|", *tricky])
        assert result.output == "|".join(tricky) + "|"
        with pytest.raises(TypeError):
            ssh.run("echo unquoted")  # type: ignore[arg-type]
    assert not Path("/tmp/gpufleet-pwned").exists()


def test_command_timeout(sshd: Sshd) -> None:
    with SshRunner(sshd.settings()) as ssh:
        started = time.monotonic()
        # Raised, not returned: had the timeout not fired, `sleep 10` would have ended with exit 0 (no clock bound).
        with pytest.raises(CommandTimeout, match="did not finish within 1 s"):
            ssh.run(["sleep", "10"], timeout=1)
        assert time.monotonic() - started >= 1  # and not before its time
        assert ssh.run(["echo", "still usable"]).output == "still usable\n"


def test_unknown_host_key_is_refused_with_its_fingerprint(sshd: Sshd) -> None:
    empty = sshd.root / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyError, match=r"unknown ssh-ed25519 host key SHA256:\S+.*refusing.*trust it explicitly"):
        SshRunner(sshd.settings(known_hosts=empty)).connect()
    assert empty.read_text() == ""  # never added


def test_changed_host_key_is_refused(sshd: Sshd) -> None:
    other = _keygen(sshd.root / "other_key")
    changed = sshd.root / "changed_known_hosts"
    changed.write_text(f"[{sshd.address}]:{sshd.port} {' '.join(other.split()[:2])}\n")
    with pytest.raises(HostKeyError, match="CHANGED host key"):
        SshRunner(sshd.settings(known_hosts=changed)).connect()


def test_pinned_host_key(sshd: Sshd) -> None:
    pinned = " ".join(sshd.host_pub.split()[:2])
    with SshRunner(sshd.settings(known_hosts=None, host_key=pinned)) as ssh:
        assert ssh.run(["true"]).ok
    wrong = " ".join(_keygen(sshd.root / "wrong").split()[:2])
    with pytest.raises(HostKeyError):
        SshRunner(sshd.settings(known_hosts=None, host_key=wrong)).connect()
    with pytest.raises(HostKeyError, match="always verified"):
        SshRunner(sshd.settings(known_hosts=None, host_key=None)).connect()


class CountingRunner(SshRunner):
    attempts = 0

    def _connect_once(self):  # type: ignore[no-untyped-def]
        self.attempts += 1
        return super()._connect_once()


def test_connection_errors_are_retried_then_reported(sshd: Sshd) -> None:
    sshd.stop()
    runner = CountingRunner(sshd.settings(), connect_attempts=3, backoff_max=0.2, connect_timeout=2)
    with pytest.raises(ConnectError, match="unreachable over SSH"):
        runner.connect()
    assert runner.attempts == 3


def test_a_refused_login_is_not_retried(sshd: Sshd, caplog: pytest.LogCaptureFixture) -> None:
    stranger = sshd.root / "stranger"
    _keygen(stranger)
    runner = CountingRunner(sshd.settings(key_file=stranger, password=Secret("hunter2-not-logged")), connect_attempts=4)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConnectError, match="refused the login of 'root'"):
        runner.connect()
    assert runner.attempts == 1
    assert "hunter2-not-logged" not in caplog.text
    assert "hunter2" not in repr(runner.settings)


def test_reconnect_waits_for_the_host_to_come_back(sshd: Sshd) -> None:
    runner = SshRunner(sshd.settings(), connect_timeout=2)
    runner.connect()
    sshd.stop()
    assert runner.wait_until_down(timeout=5) is True
    restarting = threading.Event()

    def restart() -> None:
        restarting.set()  # before the daemon listens: a reconnect that succeeds must come after this
        sshd.start()

    threading.Timer(1.0, restart).start()
    runner.reconnect(timeout=15)
    assert restarting.is_set()  # it waited for the host to come back (ordering, not a clock bound)
    assert runner.run(["echo", "back"]).output == "back\n"
    runner.close()


def test_connection_lost_while_a_command_runs(sshd: Sshd) -> None:
    with SshRunner(sshd.settings()) as ssh:
        with pytest.raises(ConnectionLost, match="connection lost while running"):
            ssh.run(["sh", "-c", "kill -9 $PPID; sleep 5"], timeout=10)
        assert ssh.run(["echo", "reopened"]).output == "reopened\n"


def test_upload_only_when_missing_and_never_half(sshd: Sshd, tmp_path: Path) -> None:
    local = tmp_path / "bundle.zip"
    local.write_bytes(b"x" * 100_000)
    remote = str(sshd.root / "datastore" / "nvidia" / "bundle.zip")
    with SshRunner(sshd.settings()) as ssh:
        assert ssh.remote_size(remote) is None
        assert ssh.upload(local, remote) is True
        assert Path(remote).read_bytes() == local.read_bytes()
        assert ssh.remote_size(remote) == 100_000
        assert ssh.upload(local, remote) is False  # same size there: not sent again
        assert not Path(remote + ".gpufleet-partial").exists()
        Path(remote).write_bytes(b"truncated")
        assert ssh.upload(local, remote) is True  # a different file there: replaced
        assert Path(remote).read_bytes() == local.read_bytes()


def test_reads_in_one_round_trip(sshd: Sshd) -> None:
    with SshRunner(sshd.settings()) as ssh:
        results = ssh.run_many(
            [
                ["echo", "first line"],
                ["sh", "-c", "echo oops >&2; exit 4"],
                ["printf", "no newline @@gpufleet-0000000000000000-3:0@@"],
                ["printf", "%s\n", "it's; quoted"],
            ]
        )
    assert [r.rc for r in results] == [0, 1, 0, 0]
    assert results[0].output == "first line\n"
    assert results[1].output == "oops\n"  # stderr goes with its own command
    assert results[2].output == "no newline @@gpufleet-0000000000000000-3:0@@"  # a fake marker is just output
    assert results[3].output == "it's; quoted\n"


def test_paramikos_transport_thread_errors_never_reach_the_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    # A reset during the banner is retried by SshRunner.connect; paramiko's own traceback of it must not be printed
    # by Python's last-resort handler (the secrets-every-verb test found one in an audit's output under load).
    import logging

    logging.getLogger("paramiko.transport").error("Exception (client): Error reading SSH protocol banner")
    assert capsys.readouterr().err == ""
