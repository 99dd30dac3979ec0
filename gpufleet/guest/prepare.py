"""Preparing the guest side of GPU VMs over SSH (``gpufleet guests prepare`` and the ``GuestPreparation`` resource):
the NVIDIA guest driver of the host's branch, nouveau out of the way, kernel parameters, the NVIDIA Container
Toolkit, Docker's nvidia runtime, then the assert (``nvidia-smi`` with the wanted driver, a GPU container) and the
existing licensing step (``gpufleet.licensing.guest``).

Each step is check (read-only, from ``GuestFacts``) / apply / assert (the facts read again, the same check), as
host preparation's steps are. Packages named by a local path are uploaded over SFTP when the guest lacks them
(size and SHA-256 compared). At most one reboot, only when a change needs it (nouveau was loaded, the NVIDIA module
is installed but not loaded, kernel parameters not in effect) and ``guest.allowReboot`` allows it; anything still
pending after that reboot fails the VM (no reboot loop). Guests are prepared ``max_unavailable`` at a time; after
``failure_threshold`` failed VMs no new one starts.

Named outcomes per VM (``state``): ``converged`` (nothing to do, or done and asserted), ``changes-pending`` (dry
run), ``reboot-required`` (a reboot is needed and not allowed), ``failed`` (with the step and its output),
``skipped`` (failure threshold reached).
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
import shlex
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpufleet.catalog.guest_drivers import branch_of
from gpufleet.connections import Secret
from gpufleet.errors import ConnectError, GpufleetError
from gpufleet.guest.facts import TOOLKIT_PACKAGES, GuestFacts, read_guest_facts
from gpufleet.hosts.steps.base import Check  # one check shape for host and guest steps (reboot: effective at boot)
from gpufleet.licensing.guest import GuestRunner, apply_licensing
from gpufleet.readers import guest as rd
from gpufleet.readers.esxcli import compare_versions
from gpufleet.spec.guest_desired import GuestDesired

STAGE_DIR = "/var/cache/gpufleet"
BLACKLIST_FILE = "/etc/modprobe.d/blacklist-nouveau.conf"
BLACKLIST_TEXT = "# written by gpufleet: the NVIDIA driver needs nouveau out of the way\nblacklist nouveau\noptions nouveau modeset=0\n"
CUDA_IMAGE = "nvidia/cuda:12.4.1-base-ubuntu22.04"


class GuestStepFailed(GpufleetError):
    """A guest step failed: the message carries the command and its output."""


@dataclass
class GuestStepResult:
    name: str
    state: str  # ok | needed | done | failed | pending-reboot | skipped
    detail: str
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"name": self.name, "state": self.state, "detail": self.detail, "seconds": round(self.seconds, 2)}


@dataclass
class GuestReport:
    name: str
    state: str = "converged"
    changed: bool = False
    steps: list[GuestStepResult] = field(default_factory=list)
    error: dict | None = None  # {"step", "message"}
    reboots: int = 0
    seconds: float = 0.0
    facts: dict | None = None

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "state": self.state,
            "changed": self.changed,
            "steps": [s.to_json() for s in self.steps],
            "error": self.error,
            "reboots": self.reboots,
            "seconds": round(self.seconds, 2),
            "facts": self.facts,
        }


@dataclass
class GuestContext:
    desired: GuestDesired
    runner: Any  # GuestSshRunner (run, run_input, upload)
    local_path: Callable[[str], Path]
    note: Callable[[str], None] = field(default=lambda message: None)


def _run(ctx: GuestContext, argv: Sequence[str], what: str, timeout: float = 900.0) -> str:
    result = ctx.runner.run(list(argv), timeout=timeout)
    if result.rc != 0:
        raise GuestStepFailed(f"{what}: `{result.command}` exited {result.rc}: {result.output.strip()[-800:]}")
    return result.output


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stage(ctx: GuestContext, local: Path, remote: str) -> str:
    """``local`` at ``remote`` on the guest (SFTP when missing or different; size and SHA-256 compared)."""
    if not local.is_file():
        raise GuestStepFailed(f"the package {local} is not there locally (the spec's path)")
    want = _sha256(local)
    have = ctx.runner.run(["sha256sum", remote], timeout=300)
    if have.rc == 0 and have.output.split()[:1] == [want]:
        return f"{posixpath.basename(remote)} already on the guest"
    if have.rc == 0:
        _run(ctx, ["rm", "-f", remote], f"removing the differing {remote}")
    ctx.note(f"uploading {local.name}")
    ctx.runner.upload(local, remote)
    check = ctx.runner.run(["sha256sum", remote], timeout=300)
    if check.rc != 0 or check.output.split()[:1] != [want]:
        raise GuestStepFailed(f"{remote}: SHA-256 after the upload is not {want}: {check.output.strip()[-300:]}")
    return f"uploaded {local.name} ({local.stat().st_size} bytes, sha256 {want[:12]}...)"


def _write(ctx: GuestContext, path: str, text: str, what: str) -> None:
    script = f"mkdir -p {shlex.quote(posixpath.dirname(path))} && cat > {shlex.quote(path)}"
    result = ctx.runner.run_input(["sh", "-c", script], text.encode(), timeout=60)
    if result.rc != 0:
        raise GuestStepFailed(f"writing {what} ({path}): exit {result.rc}: {result.output.strip()[-500:]}")


# ---------------------------------------------------------------- steps
class NouveauStep:
    name = "nouveau"

    def check(self, d: GuestDesired, f: GuestFacts) -> Check:
        if d.spec.driver is None:
            return Check(False, "no driver block: nouveau left as is")
        if not f.nouveau_blacklisted:
            return Check(
                True, "blacklist nouveau" + (" (loaded: reboot)" if f.nouveau_loaded else ""), reboot=f.nouveau_loaded
            )
        if f.nouveau_loaded:
            return Check(False, "nouveau blacklisted, still loaded until the reboot", reboot=True)
        return Check(False, "nouveau blacklisted and not loaded")

    def apply(self, ctx: GuestContext, f: GuestFacts) -> str:
        _write(ctx, BLACKLIST_FILE, BLACKLIST_TEXT, "the nouveau blacklist")
        return f"wrote {BLACKLIST_FILE}" + ("; nouveau unloads at the reboot" if f.nouveau_loaded else "")


class KernelParamsStep:
    name = "kernel-params"

    def check(self, d: GuestDesired, f: GuestFacts) -> Check:
        wanted = d.spec.kernel_params
        if not wanted:
            return Check(False, "no kernel parameters asked")
        missing_grub = [p for p in wanted if p not in f.grub_params]
        missing_now = [p for p in wanted if p not in f.cmdline]
        if missing_grub:
            return Check(True, f"add {' '.join(missing_grub)} to GRUB_CMDLINE_LINUX_DEFAULT", reboot=True)
        if missing_now:
            return Check(False, f"{' '.join(missing_now)} configured, in effect after the reboot", reboot=True)
        return Check(False, f"{' '.join(wanted)} in effect")

    def apply(self, ctx: GuestContext, f: GuestFacts) -> str:
        text = rd.set_grub_cmdline(f.grub_text, ctx.desired.spec.kernel_params)
        _write(ctx, "/etc/default/grub", text, "/etc/default/grub")
        _run(ctx, ["update-grub"], "update-grub")
        return f"GRUB_CMDLINE_LINUX_DEFAULT has {' '.join(ctx.desired.spec.kernel_params)} (at the reboot)"


class GuestDriverStep:
    name = "driver"

    def check(self, d: GuestDesired, f: GuestFacts) -> Check:
        driver, want = d.spec.driver, d.driver_version
        if driver is None:
            return Check(False, "no driver block: the driver is left as is")
        if want is None:
            return Check(False, "", refused="no guest driver version (validate names the fix)")
        installed = f.driver_installed
        if installed is None:
            return Check(True, f"install {want}", reboot=f.nouveau_loaded)
        order = compare_versions(installed, want)
        if order > 0:
            return Check(
                False,
                f"{installed} installed",
                refused=(
                    f"the installed guest driver {installed} is newer than the wanted {want}: not downgrading "
                    f"(set guest.driver to {installed}'s package, or remove it first)"
                ),
            )
        if order < 0:
            return Check(True, f"upgrade {installed} -> {want}", reboot=f.nouveau_loaded)
        if f.driver_loaded != want:
            return Check(False, f"{installed} installed, {f.driver_loaded or 'none'} loaded", reboot=True)
        if driver.dkms and f.family == "deb" and "dkms" in f.packages and want not in f.dkms and driver.source == "run":
            return Check(True, f"{installed} loaded but not built with DKMS: reinstall with --dkms")
        return Check(False, f"{installed} loaded")

    def apply(self, ctx: GuestContext, f: GuestFacts) -> str:
        driver, want = ctx.desired.spec.driver, ctx.desired.driver_version
        assert driver is not None and want is not None
        done: list[str] = []
        if driver.dkms and f.family == "deb" and "dkms" not in f.packages:
            _run(ctx, ["apt-get", "install", "-y", "dkms"], "installing dkms")
            done.append("installed dkms")
        if driver.source == "run":
            local = ctx.local_path(driver.path)
            remote = f"{STAGE_DIR}/{local.name}"
            done.append(stage(ctx, local, remote))
            ctx.note(f"installing {want} ({local.name})")
            argv = ["sh", remote, "--silent"] + (["--dkms"] if driver.dkms else [])
            out = _run(ctx, argv, f"installing the NVIDIA guest driver {want}")
        else:
            out = self._packages(ctx, f, want)
        warn = [line for line in out.splitlines() if line.startswith("WARNING")]
        done.append(f"installed {want}" + (f" ({warn[0][9:].strip()[:120]})" if warn else ""))
        return "; ".join(done)

    def _packages(self, ctx: GuestContext, f: GuestFacts, want: str) -> str:
        driver = ctx.desired.spec.driver
        assert driver is not None
        branch = branch_of(want)
        if driver.path.startswith(("http://", "https://")):
            name = f"nvidia-linux-grid-{branch}"
            argv = (
                ["apt-get", "install", "-y", f"{name}={want}"]
                if f.family == "deb"
                else ["dnf", "install", "-y", f"{name}-{want}"]
            )
            return _run(ctx, argv, f"installing {name} {want} from the mirror")
        local_dir = ctx.local_path(driver.path)
        suffix = ".deb" if f.family == "deb" else ".rpm"
        files = (
            sorted(p for p in local_dir.glob(f"nvidia-linux-grid-{branch}*{want}*{suffix}"))
            if local_dir.is_dir()
            else []
        )
        if not files:
            raise GuestStepFailed(f"no nvidia-linux-grid-{branch} {want} {suffix} package in {local_dir}")
        remotes = []
        for file in files:
            remote = f"{STAGE_DIR}/{file.name}"
            stage(ctx, file, remote)
            remotes.append(remote)
        argv = ["apt-get", "install", "-y", *remotes] if f.family == "deb" else ["dnf", "install", "-y", *remotes]
        return _run(ctx, argv, f"installing the NVIDIA guest driver {want} packages")


class ToolkitStep:
    name = "toolkit"

    def check(self, d: GuestDesired, f: GuestFacts) -> Check:
        toolkit = d.spec.container_toolkit
        if toolkit is None:
            return Check(False, "no containerToolkit block")
        have = f.toolkit_version()
        if have == toolkit.upstream:
            return Check(False, f"nvidia-container-toolkit {have} installed")
        return Check(True, f"install nvidia-container-toolkit {toolkit.upstream}" + (f" (has {have})" if have else ""))

    def apply(self, ctx: GuestContext, f: GuestFacts) -> str:
        toolkit = ctx.desired.spec.container_toolkit
        assert toolkit is not None
        version = toolkit.version if "-" in toolkit.version else f"{toolkit.version}-1"
        if toolkit.path and not toolkit.path.startswith(("http://", "https://")):
            local_dir = ctx.local_path(toolkit.path)
            files = sorted(local_dir.glob(f"*{toolkit.upstream}*")) if local_dir.is_dir() else []
            if not files:
                raise GuestStepFailed(f"no Container Toolkit {toolkit.upstream} packages in {local_dir}")
            remotes = [f"{STAGE_DIR}/{p.name}" for p in files]
            for p, remote in zip(files, remotes, strict=True):
                stage(ctx, p, remote)
            targets = remotes
        elif f.family == "rpm":
            targets = [f"{name}-{version}" for name in TOOLKIT_PACKAGES]
        else:
            targets = [f"{name}={version}" for name in TOOLKIT_PACKAGES]
        manager = ["dnf", "install", "-y"] if f.family == "rpm" else ["apt-get", "install", "-y", "--allow-downgrades"]
        _run(ctx, [*manager, *targets], f"installing the NVIDIA Container Toolkit {toolkit.upstream}")
        return f"installed nvidia-container-toolkit {version}"


class DockerStep:
    name = "docker"

    def check(self, d: GuestDesired, f: GuestFacts) -> Check:
        if d.spec.docker_runtime == "none":
            return Check(False, "dockerRuntime: none: Docker left as is")
        if f.docker_runtimes is None:
            return Check(False, "", refused="docker does not answer (`docker info`): install Docker first")
        if "nvidia" not in f.daemon_runtimes:
            return Check(True, "nvidia-ctk runtime configure --runtime=docker; restart docker")
        if "nvidia" not in f.docker_runtimes:
            return Check(True, "daemon.json has the nvidia runtime; restart docker")
        return Check(False, "docker runs with the nvidia runtime")

    def apply(self, ctx: GuestContext, f: GuestFacts) -> str:
        done = []
        if "nvidia" not in f.daemon_runtimes:
            _run(ctx, ["nvidia-ctk", "runtime", "configure", "--runtime=docker"], "configuring Docker's nvidia runtime")
            done.append("nvidia-ctk runtime configure --runtime=docker")
        _run(ctx, ["systemctl", "restart", "docker"], "restarting docker")
        done.append("docker restarted")
        return "; ".join(done)


STEPS = (NouveauStep(), KernelParamsStep(), GuestDriverStep(), ToolkitStep(), DockerStep())


def reboot_reasons(d: GuestDesired, f: GuestFacts) -> list[str]:
    """What needs the guest to boot again (read from the guest, never from what an installer said)."""
    reasons = []
    if d.spec.driver is not None and f.nouveau_loaded:
        reasons.append("nouveau loaded")
    want = d.driver_version
    if d.spec.driver is not None and want and f.driver_installed == want and f.driver_loaded != want:
        reasons.append(f"driver {want} installed, {f.driver_loaded or 'none'} loaded")
    missing = [p for p in d.spec.kernel_params if p in f.grub_params and p not in f.cmdline]
    if missing:
        reasons.append(f"kernel parameters {' '.join(missing)} not in effect")
    return reasons


def assert_guest(ctx: GuestContext, f: GuestFacts, gpu_count: int) -> str:
    """nvidia-smi answers with the wanted driver and sees the VM's GPUs; the Container Toolkit and Docker's nvidia
    runtime are there; a GPU container sees the GPUs."""
    d = ctx.desired
    problems = []
    if d.spec.driver is not None:
        if f.driver_loaded != d.driver_version:
            problems.append(f"NVIDIA module {f.driver_loaded or 'not'} loaded, wanted {d.driver_version}")
        versions = {v for v, _ in f.smi}
        if versions != {d.driver_version}:
            problems.append(f"nvidia-smi answers {versions or 'nothing'}: {f.smi_output.strip()[-300:]}")
        if gpu_count and len(f.smi) != gpu_count:
            problems.append(f"nvidia-smi sees {len(f.smi)} GPU(s), the VM has {gpu_count}")
    for step in (ToolkitStep(), DockerStep()):
        check = step.check(d, f)
        if check.needed or check.refused:
            problems.append(f"{step.name}: {check.refused or check.detail}")
    detail = f"nvidia-smi: {', '.join(n for _, n in f.smi) or '-'} ({d.driver_version or '-'})"
    if d.spec.docker_runtime == "nvidia" and not problems:
        run = ctx.runner.run(["docker", "run", "--rm", "--gpus", "all", CUDA_IMAGE, "nvidia-smi", "-L"], timeout=600)
        listed = [line for line in run.output.splitlines() if line.startswith("GPU ")]
        if run.rc != 0 or (gpu_count and len(listed) != gpu_count):
            problems.append(
                f"a GPU container sees {len(listed)} GPU(s): `{run.command}` exited {run.rc}: "
                f"{run.output.strip()[-500:]}"
            )
        else:
            detail += f"; a GPU container sees {len(listed)} GPU(s)"
    if problems:
        raise GuestStepFailed("; ".join(problems))
    return detail


# ---------------------------------------------------------------- one guest
@dataclass
class GuestTarget:
    desired: GuestDesired
    gpu_count: int
    license_feature: int | None  # None: no licensing step for this VM


def _wait_back(runner: Any, old_boot: str, timeout: float, poll: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = runner.run(["cat", "/proc/sys/kernel/random/boot_id"], timeout=30)
            if result.rc == 0 and result.output.strip() and result.output.strip() != old_boot:
                return
        except (ConnectError, OSError):
            with contextlib.suppress(ConnectError):
                runner.reconnect(timeout=max(1.0, deadline - time.monotonic()))
        time.sleep(poll)
    raise GuestStepFailed(f"the guest is not back (a new boot id) within {timeout:.0f} s of its reboot")


def prepare_guest(
    target: GuestTarget,
    runner: Any,
    local_path: Callable[[str], Path],
    *,
    dry_run: bool = False,
    token: Secret | None = None,
    reboot_timeout: float = 600.0,
    note: Callable[[str], None] = lambda message: None,
) -> GuestReport:
    """Check, apply, (reboot once), assert and license one guest; never raises for the guest's own failures (the
    report's state and error say what happened)."""
    started = time.monotonic()
    d = target.desired
    report = GuestReport(d.vm)
    ctx = GuestContext(d, runner, local_path, note)
    step_name = "check"
    try:
        facts = read_guest_facts(runner)
        checks = [(s, s.check(d, facts)) for s in STEPS]
        refused = [(s, c) for s, c in checks if c.refused]
        if refused:
            step, check = refused[0]
            raise _Failed(step.name, str(check.refused))
        if dry_run:
            for step, check in checks:
                report.steps.append(GuestStepResult(step.name, "needed" if check.needed else "ok", check.detail))
            pending = any(c.needed for _, c in checks) or bool(reboot_reasons(d, facts))
            report.state = "changes-pending" if pending else "converged"
            report.facts = facts.to_json()
            return report
        for step, check in checks:
            step_name = step.name
            t0 = time.monotonic()
            if not check.needed:
                report.steps.append(GuestStepResult(step.name, "ok", check.detail))
                continue
            note(f"{step.name}: {check.detail}")
            try:
                detail = step.apply(ctx, facts)
            except GpufleetError as exc:
                raise _Failed(step.name, str(exc)) from exc
            report.changed = True
            report.steps.append(GuestStepResult(step.name, "done", detail, time.monotonic() - t0))
            facts = read_guest_facts(runner)  # the next step checks against what the guest shows now
        step_name = "reboot"
        reasons = reboot_reasons(d, facts)
        if reasons:
            if not d.spec.allow_reboot:
                report.steps.append(GuestStepResult("reboot", "pending-reboot", "; ".join(reasons)))
                report.state = "reboot-required"
                report.error = {
                    "step": "reboot",
                    "message": "needs a reboot ("
                    + "; ".join(reasons)
                    + ") and guest.allowReboot is false: reboot it, then rerun",
                }
                report.facts = facts.to_json()
                return report
            t0 = time.monotonic()
            note("rebooting: " + "; ".join(reasons))
            old = facts.boot_id
            with contextlib.suppress(ConnectError, OSError):  # the guest may drop us while going down
                runner.run(["systemctl", "reboot"], timeout=30)
            _wait_back(runner, old, reboot_timeout)
            report.reboots += 1
            report.changed = True
            facts = read_guest_facts(runner)
            still = reboot_reasons(d, facts)
            if still:
                raise _Failed("reboot", "still pending after its reboot: " + "; ".join(still) + " (no second reboot)")
            report.steps.append(
                GuestStepResult("reboot", "done", "rebooted (" + "; ".join(reasons) + ")", time.monotonic() - t0)
            )
            # A step whose change only shows after the boot is asserted now.
        for step in STEPS:
            check = step.check(d, facts)
            if check.needed or check.refused:
                raise _Failed(step.name, f"still not as wanted after apply: {check.refused or check.detail}")
        step_name = "assert"
        t0 = time.monotonic()
        try:
            detail = assert_guest(ctx, facts, target.gpu_count)
        except GpufleetError as exc:
            raise _Failed("assert", str(exc)) from exc
        report.steps.append(GuestStepResult("assert", "ok", detail, time.monotonic() - t0))
        if target.license_feature is not None and token is not None:
            step_name = "licensing"
            t0 = time.monotonic()
            try:
                lic = apply_licensing(runner, token, target.license_feature)
            except GpufleetError as exc:
                raise _Failed("licensing", str(exc)) from exc
            report.changed = report.changed or lic.changed
            report.steps.append(
                GuestStepResult("licensing", "done" if lic.changed else "ok", lic.status, time.monotonic() - t0)
            )
        report.facts = facts.to_json()
    except _Failed as exc:
        report.state = "failed"
        report.error = {"step": exc.step, "message": exc.message}
        report.steps.append(GuestStepResult(exc.step, "failed", exc.message))
    except GpufleetError as exc:  # unreachable guest, a command that could not run
        report.state = "failed"
        report.error = {"step": step_name, "message": str(exc)}
        report.steps.append(GuestStepResult(step_name, "failed", str(exc)))
    finally:
        report.seconds = time.monotonic() - started
    return report


class _Failed(Exception):
    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step, self.message = step, message


# ---------------------------------------------------------------- the fleet
@dataclass
class GuestsReport:
    dry_run: bool
    max_unavailable: int
    failure_threshold: int
    guests: list[GuestReport]
    peak_in_progress: int
    seconds: float

    @property
    def exit_code(self) -> int:
        if any(g.state in ("failed", "reboot-required", "skipped") for g in self.guests):
            return 1
        if self.dry_run and any(g.state == "changes-pending" for g in self.guests):
            return 2
        return 0

    def to_json(self) -> dict:
        states = [g.state for g in self.guests]
        return {
            "dryRun": self.dry_run,
            "maxUnavailable": self.max_unavailable,
            "failureThreshold": self.failure_threshold,
            "guests": [g.to_json() for g in self.guests],
            "summary": {
                "guests": len(states),
                **{
                    s: states.count(s) for s in ("converged", "changes-pending", "reboot-required", "failed", "skipped")
                },
                "changed": sum(1 for g in self.guests if g.changed),
            },
            "peakInProgress": self.peak_in_progress,
            "seconds": round(self.seconds, 2),
            "exitCode": self.exit_code,
        }


def prepare_guests(
    targets: Sequence[GuestTarget],
    connect: Callable[[str], GuestRunner],
    local_path: Callable[[str], Path],
    *,
    max_unavailable: int = 1,
    failure_threshold: int = 1,
    dry_run: bool = False,
    token: Secret | None = None,
    on_event: Callable[[str, str], None] = lambda vm, message: None,
) -> GuestsReport:
    """Prepare ``targets``, at most ``max_unavailable`` at a time; after ``failure_threshold`` failures no new
    guest starts (the rest are ``skipped``)."""
    started = time.monotonic()
    lock = threading.Lock()
    failed = 0
    active = peak = 0
    reports: dict[str, GuestReport] = {}

    def one(target: GuestTarget) -> None:
        nonlocal failed, active, peak
        name = target.desired.vm
        with lock:
            if failed >= failure_threshold:
                reports[name] = GuestReport(
                    name,
                    state="skipped",
                    error={"step": "rollout", "message": f"not started: {failed} guest(s) failed (failure threshold)"},
                )
                on_event(name, "skipped")
                return
            active += 1
            peak = max(peak, active)
        try:
            try:
                runner = connect(name)
            except GpufleetError as exc:
                report = GuestReport(name, state="failed", error={"step": "connect", "message": str(exc)})
            else:
                try:
                    report = prepare_guest(
                        target,
                        runner,
                        local_path,
                        dry_run=dry_run,
                        token=token,
                        note=lambda message: on_event(name, message),
                    )
                finally:
                    runner.close()
        finally:
            with lock:
                active -= 1
        with lock:
            reports[name] = report
            if report.state in ("failed", "reboot-required"):
                failed += 1
        on_event(name, report.state)

    with ThreadPoolExecutor(max_workers=max(1, max_unavailable)) as pool:
        list(pool.map(one, targets))
    ordered = [reports[t.desired.vm] for t in targets]
    return GuestsReport(dry_run, max_unavailable, failure_threshold, ordered, peak, time.monotonic() - started)
