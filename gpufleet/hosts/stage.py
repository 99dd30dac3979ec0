"""Pre-staging the driver bundle: before the first host of a rollout enters maintenance, every host that needs
the driver gets its bundle on the datastore, proven whole (size, then SHA-256 against the local file) and
accepted by esxcli's own ``--dry-run`` — so a bad or truncated bundle, a full datastore or an unreachable host
fails that host untouched, and a maintenance window holds only the install, the reboot and the verification.

Copying a file to a datastore changes nothing on the host, so staging runs outside maintenance and in parallel
(``hosts prepare``: ``Rollout.prestage``; ``pulumi up``: the ``BundleStaging`` resources every host of the
cluster waits for).
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from gpufleet.hosts.steps.base import StepContext, StepFailed
from gpufleet.readers import esxcli
from gpufleet.remote.ssh import CommandFailed, CommandResult

_SHA_CACHE: dict[tuple[str, int, int], str] = {}
_SHA_LOCK = threading.Lock()


def local_sha256(path: Path) -> str:
    """SHA-256 of a local file, computed once per (path, size, mtime): 24 hosts share one bundle."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _SHA_LOCK:
        if key not in _SHA_CACHE:
            digest = hashlib.sha256()
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            _SHA_CACHE[key] = digest.hexdigest()
        return _SHA_CACHE[key]


def _sha_of(result: CommandResult) -> str | None:
    head = result.output.strip().split() if result.ok else []
    return head[0].lower() if head else None


def proof(ctx: StepContext, remote: str, kind: str) -> tuple[str | None, CommandResult]:
    """The datastore file's SHA-256 (busybox ``sha256sum``; None: not there) and esxcli's ``--dry-run`` of it, read
    in one round trip (both change nothing)."""
    digest, dry = ctx.runner.run_many(
        [["sha256sum", remote], esxcli.install_argv(remote, kind, dry_run=True)], timeout=ctx.install_timeout
    )
    return _sha_of(digest), dry


def stage_bundle(ctx: StepContext, *, dry_run: bool = False, present: bool | None = None) -> str:
    """Put the driver bundle on the host's datastore (SFTP, when missing or not the same file), prove it is the
    local file (SHA-256), and have esxcli check it (``--dry-run``). Returns what was done, one line; raises
    ``StepFailed`` naming what is wrong. ``dry_run`` (``hosts prepare --dry-run``): uploads nothing, checks what
    is there. ``present``: what the plan already read (``test -f``); False spares hashing a file that is not there."""
    driver = ctx.desired.driver
    if driver is None:
        return "no driver for this host"
    local = ctx.local_bundle if ctx.local_bundle and ctx.local_bundle.is_file() else None
    remote = driver.bundle
    done: list[str] = []
    uploaded = False
    if local is not None and present is False:  # the plan saw no file there: no need to ask before copying
        if dry_run:
            return f"would upload {local.name} (not on the datastore)"
        ctx.note(f"staging {local.name}")
        ctx.runner.upload(local, remote)
        uploaded = True
    there, dry = proof(ctx, remote, driver.kind)
    if local is not None:
        want = local_sha256(local)
        if there != want and not uploaded:
            if dry_run:
                return f"would upload {local.name} ({'not on the datastore' if there is None else 'differs'})"
            if there is not None:  # same name, other bytes (a truncated copy, another build): replace it
                ctx.runner.run(["rm", "-f", remote]).check(ctx.desired.name)
            ctx.note(f"staging {local.name}")
            ctx.runner.upload(local, remote)
            uploaded = True
            there, dry = proof(ctx, remote, driver.kind)
        if there != want:
            raise StepFailed(
                f"{remote}: SHA-256 on the host is {there or 'unreadable'} after the upload, the local "
                f"{local.name} is {want}: the copy is damaged (datastore full or failing?)"
            )
        done += [f"uploaded {local.name}"] if uploaded else []
        done.append(f"sha256 {want[:12]} matches")
    elif there is None:
        if dry_run:
            return f"{remote} is not on the datastore and no driver.localPath to upload"
        raise StepFailed(f"{remote} is not on the host's datastore and no local bundle (driver.localPath) to upload")
    try:
        result = esxcli.parse_install_result(esxcli.value_of(dry, ctx.desired.name))
    except (CommandFailed, esxcli.EsxcliParseError) as exc:
        raise StepFailed(f"esxcli --dry-run refused {remote}: {exc}") from exc
    would = ", ".join(result.installed) or "nothing (already installed)"
    done.append(f"esxcli --dry-run: would install {would}")
    return "; ".join(done)
