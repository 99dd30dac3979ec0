"""NVIDIA vGPU guest licensing as one idempotent step (used by ``gpufleet license apply`` and by the Pulumi
Licensing component): place the client configuration token, set ``FeatureType`` in gridd.conf, restart
nvidia-gridd, wait until nvidia-smi says Licensed.

    with GuestSshRunner(conns.guest("vm-ts-01")) as guest:
        result = apply_licensing(guest, token, feature_type=1)     # LicensingResult(changed=..., status=...)

Facts followed (shared/reference/gridd_conf_and_client_token_facts.txt): the token lives in
/etc/nvidia/ClientConfigToken/ (or gridd.conf's ClientConfigTokenPath) as
``client_configuration_token_MM-DD-YYYY-HH-MM-SS.tok`` with mode 744; FeatureType 0 unlicensed, 1 vGPU
(auto from the vGPU type), 2 RTX vWS, 4 vCS; restart nvidia-gridd after a change.

The token never appears on a command line, in a log line or in an error: it is sent on the command's stdin,
and tokens already on the guest are compared by SHA-256, never read back.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import re
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

from gpufleet.catalog.licensing import FEATURE_TYPES
from gpufleet.connections import Secret, resolve_stack_secret
from gpufleet.errors import SpecError, SpecIssue, TaskError
from gpufleet.readers.guest_smi import GuestSmiReport, parse_guest_xml
from gpufleet.remote.ssh import CommandResult, SshRunner
from gpufleet.spec.json_keys import jsonable
from gpufleet.spec.models import Fleet
from gpufleet.spec.stack import Stack

log = logging.getLogger(__name__)

TOKEN_DIR = "/etc/nvidia/ClientConfigToken"
GRIDD_CONF = "/etc/nvidia/gridd.conf"
GRIDD_TEMPLATE = "/etc/nvidia/gridd.conf.template"
TOKEN_MODE = "744"  # NVIDIA: owner read/write/execute, group and others read


class LicensingError(TaskError):
    """The guest could not be licensed; the message says where it stopped (never the token)."""


class GuestRunner(Protocol):
    """What the step needs from a guest connection: commands, and commands fed on stdin."""

    name: str

    def run(self, argv: Sequence[str], *, timeout: float | None = None) -> CommandResult: ...

    def run_input(self, argv: Sequence[str], data: bytes, *, timeout: float | None = None) -> CommandResult: ...


class GuestSshRunner(SshRunner):
    """gpufleet's SSH runner (host keys verified) with ``GuestRunner.run_input`` over ``SshRunner.run(stdin=)``:
    a secret reaches a guest file without appearing on a command line."""

    def run_input(self, argv: Sequence[str], data: bytes, *, timeout: float | None = None) -> CommandResult:
        return self.run(argv, timeout=timeout, stdin=data)


@dataclass(frozen=True)
class LicensingResult:
    """What the step found and did on one guest."""

    vm: str
    changed: bool
    token_file: str
    token_written: bool
    stale_tokens_removed: tuple[str, ...]
    gridd_conf_changed: bool
    restarted: bool
    feature_type: int
    status: str  # the final License Status value(s), e.g. "Licensed (Expiry: 2026-7-7 16:1:44 GMT)"
    products: tuple[str, ...]

    def to_json(self) -> dict:
        return jsonable(self)


def token_file_name(now: datetime | None = None) -> str:
    """``client_configuration_token_MM-DD-YYYY-HH-MM-SS.tok`` (the name the NLS portal gives a token)."""
    now = now or datetime.now(UTC)
    return now.strftime("client_configuration_token_%m-%d-%Y-%H-%M-%S.tok")


def set_feature_type(conf: str, feature_type: int) -> str:
    """gridd.conf with exactly one active ``FeatureType=N`` line (the first active one is replaced in place,
    later active ones removed; appended when there is none). Comments and other keys are kept."""
    lines = conf.splitlines()
    out: list[str] = []
    done = False
    for line in lines:
        if re.match(r"^\s*FeatureType\s*=", line):
            if not done:
                out.append(f"FeatureType={feature_type}")
                done = True
            continue
        out.append(line)
    if not done:
        if out and out[-1].strip():
            out.append("")
        out.append(f"FeatureType={feature_type}")
    return "\n".join(out) + "\n"


def conf_value(conf: str, key: str) -> str | None:
    """The value of an active ``KEY=value`` line of gridd.conf."""
    for line in conf.splitlines():
        m = re.match(rf"^\s*{re.escape(key)}\s*=\s*(.*?)\s*$", line)
        if m:
            return m.group(1).strip('"')
    return None


def _run(runner: GuestRunner, argv: Sequence[str], what: str, timeout: float = 60.0) -> CommandResult:
    result = runner.run(argv, timeout=timeout)
    if result.rc != 0:
        raise LicensingError(
            f"{runner.name}: {what} failed: `{result.command}` exited {result.rc}: {result.output.strip()[-800:]}"
        )
    return result


def _write(runner: GuestRunner, path: str, data: bytes, mode: str, what: str) -> None:
    """Write ``data`` to ``path`` through a private temporary file, then set ``mode`` and rename (readers never
    see a half-written file; the data is created 0600 before its final mode is set)."""
    partial = f"{path}.gpufleet-partial"
    script = f"umask 077 && cat > {shlex.quote(partial)} && chmod {mode} {shlex.quote(partial)} && mv {shlex.quote(partial)} {shlex.quote(path)}"
    result = runner.run_input(["sh", "-c", script], data, timeout=60.0)
    if result.rc != 0:
        # The output of `cat` to a file is empty, so the error text cannot carry the data.
        raise LicensingError(
            f"{runner.name}: writing {what} ({path}) failed: exit {result.rc}: {result.output.strip()[-800:]}"
        )


def read_smi(runner: GuestRunner) -> GuestSmiReport:
    result = _run(runner, ["nvidia-smi", "-q", "-x"], "reading nvidia-smi")
    return parse_guest_xml(result.output)


def _status(report: GuestSmiReport) -> tuple[bool, str, tuple[str, ...]]:
    vgpus = [g for g in report.gpus if g.is_vgpu]
    licensed = bool(vgpus) and all(g.license is not None and g.license.licensed for g in vgpus)
    status = "; ".join(g.license.raw if g.license else "no licence status" for g in vgpus)
    return licensed, status, tuple(g.licensed_product or "" for g in vgpus)


def _place_token(runner: GuestRunner, token: Secret, token_dir: str) -> tuple[str, bool, tuple[str, ...]]:
    """Make ``token`` the only client configuration token in ``token_dir``. Returns (file, written, removed)."""
    data = token.reveal().strip().encode()
    digest = hashlib.sha256(data).hexdigest()
    _run(runner, ["mkdir", "-p", token_dir], f"creating {token_dir}")
    listing = _run(runner, ["ls", "-1", token_dir], f"listing {token_dir}")
    existing = sorted(n for n in listing.output.split() if n.endswith(".tok"))
    keep: str | None = None
    if existing:
        sums = _run(
            runner, ["sha256sum", *(posixpath.join(token_dir, n) for n in existing)], "hashing the tokens there"
        )
        for line in sums.output.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == digest:
                keep = parts[1]
                break
    written = False
    if keep is None:
        keep = posixpath.join(token_dir, token_file_name())
        _write(runner, keep, data, TOKEN_MODE, "the client configuration token")
        written = True
    else:
        mode = _run(runner, ["stat", "-c", "%a", keep], "reading the token's mode").output.strip()
        if mode != TOKEN_MODE:
            _run(runner, ["chmod", TOKEN_MODE, keep], "setting the token's mode")
            written = True
    stale = tuple(posixpath.join(token_dir, n) for n in existing if posixpath.join(token_dir, n) != keep)
    if stale:
        _run(runner, ["rm", "-f", *stale], "removing stale tokens")
    return keep, written, stale


def apply_licensing(
    runner: GuestRunner,
    token: Secret,
    feature_type: int = 1,
    *,
    timeout: float = 120.0,
    poll: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> LicensingResult:
    """License one guest's vGPUs; a second call with the same token and FeatureType changes nothing."""
    if feature_type not in FEATURE_TYPES:
        raise LicensingError(f"FeatureType {feature_type} is not valid (valid: {', '.join(map(str, FEATURE_TYPES))})")
    report = read_smi(runner)
    if not any(g.is_vgpu for g in report.gpus):
        names = ", ".join(g.product_name for g in report.gpus) or "no GPU"
        raise LicensingError(f"{runner.name}: no vGPU to license (nvidia-smi shows {names})")

    current = runner.run(["cat", GRIDD_CONF], timeout=60.0)
    if current.rc == 0:
        conf = current.output
    else:
        template = runner.run(["cat", GRIDD_TEMPLATE], timeout=60.0)
        conf = template.output if template.rc == 0 else ""
    token_dir = conf_value(conf, "ClientConfigTokenPath") or TOKEN_DIR
    token_path, token_written, stale = _place_token(runner, token, token_dir)

    new_conf = set_feature_type(conf, feature_type)
    conf_changed = current.rc != 0 or new_conf != conf
    if conf_changed:
        _write(runner, GRIDD_CONF, new_conf.encode(), "644", "gridd.conf")

    active = runner.run(["systemctl", "is-active", "nvidia-gridd"], timeout=60.0).output.strip() == "active"
    licensed, status, products = _status(report)
    restarted = False
    if token_written or stale or conf_changed or not active or not licensed:
        _run(runner, ["systemctl", "restart", "nvidia-gridd"], "restarting nvidia-gridd")
        restarted = True
        licensed, status, products = _wait_licensed(runner, timeout, poll, sleep)
    changed = token_written or bool(stale) or conf_changed or restarted
    log.info("%s: licensing %s (%s)", runner.name, "applied" if changed else "already in place", status)
    return LicensingResult(
        vm=runner.name,
        changed=changed,
        token_file=token_path,
        token_written=token_written,
        stale_tokens_removed=stale,
        gridd_conf_changed=conf_changed,
        restarted=restarted,
        feature_type=feature_type,
        status=status,
        products=products,
    )


def _wait_licensed(
    runner: GuestRunner, timeout: float, poll: float, sleep: Callable[[float], None]
) -> tuple[bool, str, tuple[str, ...]]:
    last: list[tuple[bool, str, tuple[str, ...]]] = []

    def attempt() -> bool:
        last.append(_status(read_smi(runner)))
        return last[-1][0]

    retrying = Retrying(
        retry=retry_if_result(lambda ok: not ok), stop=stop_after_delay(timeout), wait=wait_fixed(poll), sleep=sleep
    )
    try:
        retrying(attempt)
    except RetryError as exc:
        journal = runner.run(["journalctl", "-u", "nvidia-gridd", "-n", "8", "--no-pager"], timeout=60.0).output.strip()
        status = last[-1][1] if last else "unknown"
        raise LicensingError(
            f"{runner.name}: not licensed after {timeout:.0f} s (License Status: {status}); nvidia-gridd says:\n{journal}"
        ) from exc
    return last[-1]


# ---------------------------------------------------------------- stack helpers (CLI)
TOKEN_KEY = "licensing.nvidiaClientToken"


def licensing_targets(fleet: Fleet, only: list[str] | None = None) -> list[str]:
    """VMs of the fleet that get NVIDIA licensing: those with vGPUs and ``nvidiaLicensing`` on. ``only`` names
    must be such VMs (SpecError otherwise, listing the valid ones)."""
    eligible = [vm.name for vm in fleet.vms if vm.vgpu and vm.nvidia_licensing]
    if only:
        unknown = [n for n in only if n not in eligible]
        if unknown:
            raise SpecError(
                [SpecIssue("--vm", f"{', '.join(unknown)}: not a vGPU VM with NVIDIA licensing", tuple(eligible))]
            )
        return [n for n in eligible if n in only]
    return eligible


def resolve_client_token(stack: Stack, environ: Mapping[str, str] | None = None) -> Secret:
    """The NLS client configuration token of ``licensing.nvidiaClientToken``: its environment variable, or, for
    a lab stack (vcenter.lab: true) whose variable is unset, the token the running lab generated
    (``gpufleet.connections.resolve_stack_secret``)."""
    secret = resolve_stack_secret(stack, stack.fleet.licensing.nvidia_client_token, TOKEN_KEY, environ)
    if secret is None:
        raise SpecError(
            [SpecIssue(TOKEN_KEY, "missing: the NLS client configuration token (a secret reference)")], stack.name
        )
    return secret
