"""Shared fixtures: the embedded lab for integration tests (marker ``lab``).

``lab_env`` starts ONE lab for the whole test session - also under pytest-xdist: the workers serialize on the lab's
lock file, the first starts it, the others reuse it. It lives in its own directory and ports so that it never
collides with a developer's ``.lab``: ``$GPUFLEET_TEST_LAB_DIR`` (default ``/tmp/gpufleet-test-lab``), SSH port
``$GPUFLEET_TEST_LAB_SSH_PORT`` (2022), vCenter port ``$GPUFLEET_TEST_LAB_VCENTER_PORT`` (18443), reboots 1 s.
``GPUFLEET_LAB_DIR`` is pointed at it for the session, so ``lab.env.load_lab_env()`` and ``LabAdmin()`` find it.

Teardown: each test process (xdist worker, or parallel pytest runs of several engineers) holds a lease (its pid)
while it runs; the last one to finish stops the lab with ``lab down`` if a test session started it. A lab
started by hand (``GPUFLEET_LAB_DIR=/tmp/gpufleet-test-lab gpufleet lab up ...``) is reused and left running.
``GPUFLEET_LAB_KEEP=1`` keeps it; ``GPUFLEET_LAB_DIR=/tmp/gpufleet-test-lab gpufleet lab down`` stops it.

``lab_host("esxi-01.lab")`` gives a test exclusive use of one host (a lock shared by all workers), reset to its
freshly installed state before and after the test (no driver, MIG off, no faults, not in maintenance).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

TEST_LAB_DIR = Path(os.environ.get("GPUFLEET_TEST_LAB_DIR", "/tmp/gpufleet-test-lab"))
TEST_SSH_PORT = int(os.environ.get("GPUFLEET_TEST_LAB_SSH_PORT", "2022"))
TEST_VCENTER_PORT = int(os.environ.get("GPUFLEET_TEST_LAB_VCENTER_PORT", "18443"))
TEST_REBOOT_SECONDS = 1.0
_COORD_DIR = Path(f"{TEST_LAB_DIR}.coord")  # leases and per-host locks, outside the lab dir that `down` removes


def pytest_configure(config: pytest.Config) -> None:
    os.environ["GPUFLEET_LAB_DIR"] = str(TEST_LAB_DIR)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "lab_env" in getattr(item, "fixturenames", ()) or "lab_host" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.lab)


def _run_id() -> str:
    return "pytest:" + (os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid-{os.getpid()}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _missing_tools() -> list[str]:
    missing = [tool for tool in ("/usr/sbin/sshd", "/usr/bin/ssh-keygen") if not Path(tool).exists()]
    if shutil.which("go") is None:
        missing.append("go (Go >= 1.26 on PATH, for the Go module lab/vcsim)")
    return missing


@pytest.fixture(scope="session")
def lab_paths() -> Any:
    from lab.paths import LabPaths

    return LabPaths.resolve(TEST_LAB_DIR)


@pytest.fixture(scope="session")
def lab_env(lab_paths: Any) -> Iterator[Any]:
    """The running test lab's LabEnv (vcenter, hosts, guests); started once for all workers."""
    missing = _missing_tools()
    if missing:
        pytest.skip(
            f"the embedded lab needs {', '.join(missing)} (sshd and ssh-keygen: apt-get install -y openssh-server)"
        )
    from lab import manager

    os.environ["GPUFLEET_LAB_RUN_ID"] = _run_id()
    leases = _COORD_DIR / "leases"
    leases.mkdir(parents=True, exist_ok=True)
    lease = leases / str(os.getpid())
    lease.write_text(_run_id())
    shape = manager.LabShape(
        hosts=4,
        vms_per_host=0,
        reboot_seconds=TEST_REBOOT_SECONDS,
        ssh_port=TEST_SSH_PORT,
        vcenter_port=TEST_VCENTER_PORT,
    )
    try:
        result = manager.up(shape, lab_paths)
    except manager.LabError as exc:
        lease.unlink(missing_ok=True)
        if "another shape" in str(exc):
            pytest.fail(f"{exc} (the test lab dir {TEST_LAB_DIR} holds a lab started with other options)")
        raise
    yield result.env
    lease.unlink(missing_ok=True)
    if os.environ.get("GPUFLEET_LAB_KEEP"):
        return
    with manager.lab_lock(lab_paths):
        live = [p for p in leases.iterdir() if p.name.isdigit() and _pid_alive(int(p.name))]
        record = manager.read_record(lab_paths) or {}
        started_by_tests = str(record.get("run_id", "")).startswith("pytest:")
    if not live and started_by_tests:
        manager.down(lab_paths)


@contextlib.contextmanager
def _host_lock(name: str) -> Iterator[None]:
    locks = _COORD_DIR / "hosts"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{name}.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@pytest.fixture
def lab_host(lab_env: Any, lab_paths: Any) -> Iterator[Callable[[str], Any]]:
    """``lab_host(name)`` -> the host's SshEndpoint, exclusively this test's and freshly reset (also afterwards)."""
    from lab import manager

    held: list[tuple[str, contextlib.ExitStack, list[str]]] = []

    def take(name: str) -> Any:
        endpoint = lab_env.host(name)
        stack = contextlib.ExitStack()
        stack.enter_context(_host_lock(name))
        stopped: list[str] = []
        held.append((name, stack, stopped))
        manager.reset_host(name, lab_paths)
        stopped.extend(_set_power_of_vms_on(name, "poweredOff"))
        return endpoint

    yield take
    for name, stack, stopped in reversed(held):
        try:
            manager.reset_host(name, lab_paths)
            _set_power_of_vms_on(name, "poweredOn", only=stopped)
        finally:
            stack.close()


def _set_power_of_vms_on(host: str, power: str, only: list[str] | None = None) -> list[str]:
    """Power the VMs registered on ``host`` (``only`` these, if given) off or on; returns those changed. A freshly
    reset host runs no VMs (the lab's persona VMs start poweredOn): a test holding it can enter maintenance without
    evacuating, and a guest test powers its VM on itself (tests/checks/lab_guests.py's ``lab_guest``)."""
    if only is not None and not only:
        return []
    from pyVmomi import vim

    from gpufleet.connections import read_lab_env, vcenter_from_lab
    from gpufleet.vsphere.connect import connect
    from gpufleet.vsphere.inventory import collect
    from gpufleet.vsphere.tasks import wait_for_task

    changed: list[str] = []
    with connect(vcenter_from_lab(read_lab_env(TEST_LAB_DIR))) as si:
        for row in collect(si, vim.VirtualMachine, ["name", "runtime.host", "runtime.powerState", "config.template"]):
            vm = row["obj"]
            if row["config.template"] or str(row["runtime.powerState"]) == power:
                continue
            if (only is not None and row["name"] not in only) or (only is None and row["runtime.host"].name != host):
                continue
            task = vm.PowerOnVM_Task() if power == "poweredOn" else vm.PowerOffVM_Task()
            wait_for_task(task, what=f"{power} {row['name']} (lab_host {host})", timeout=60)
            changed.append(row["name"])
    return changed
