"""Test helpers: run the ESXi simulator in-process against a throw-away lab directory (no sshd, no vCenter),
and talk to the running lab over SSH with pinned host keys."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REFERENCE = Path(__file__).resolve().parents[2] / "data" / "reference"


def reference(name: str) -> str:
    return (REFERENCE / name).read_text()


class SimLab:
    """All topology hosts' state in ``root``; ``run(host, "esxcli ...")`` runs one command (no pipes)."""

    def __init__(self, root: Path) -> None:
        from lab.esxi.bundle import build_depot
        from lab.esxi.state import HostStore, initial_state, prepare_host_fs
        from lab.paths import LabPaths
        from lab.topology import build_topology

        self.paths = LabPaths(root)
        topo = json.loads(build_topology().to_json())
        self.hosts = {h["name"]: h for h in topo["hosts"]}
        for h in topo["hosts"]:
            HostStore(self.paths, h["name"]).write(initial_state(h))
            prepare_host_fs(self.paths, h["name"], topo["datastore"])
        self.depot = build_depot(self.paths.depot_dir)

    def run(self, host: str, command: str) -> Any:
        from lab.esxi.context import Ctx
        from lab.esxi.shell import run_argv

        return run_argv(Ctx(self.paths, host), shlex.split(command), "")

    def upload(self, host: str, depot_file: Path, dest: str = "/vmfs/volumes/datastore1") -> str:
        from lab.esxi.state import host_fs_path

        target = f"{dest}/{depot_file.name}"
        shutil.copy(depot_file, host_fs_path(self.paths, host, target))
        return target

    def bundle(self, driver: str) -> Path:
        return next(p for p in self.depot if f"_{driver}-" in p.name)

    def boot(self, host: str) -> None:
        """What the supervisor does at the end of a reboot."""
        from lab.esxi.state import HostStore, apply_reboot

        with HostStore(self.paths, host).edit() as state:
            apply_reboot(state)

    def install_driver(self, host: str, driver: str = "550.90.05") -> Any:
        path = self.upload(host, self.bundle(driver))
        return self.run(host, f"esxcli software vib install -d {path} --maintenance-mode")


def table_columns(header: str) -> list[str]:
    """Column titles of an esxcli table header (titles are separated by 2+ spaces)."""
    return re.split(r"\s{2,}", header.strip())


def split_row(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def simple_labels(text: str) -> list[str]:
    """Labels of an esxcli "simple" object (``   Label: value`` lines)."""
    return [m.group(1) for m in re.finditer(r"^ {2,3}(\S[^:]*?):(?: |$)", text, flags=re.M)]


# -- SSH to the running lab ------------------------------------------------------------------------------------


def ssh_client(endpoint: Any, timeout: float = 10.0) -> Any:
    import paramiko

    client = paramiko.SSHClient()
    client.load_host_keys(endpoint.known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        endpoint.address,
        port=endpoint.port,
        username=endpoint.user,
        key_filename=endpoint.key_file,
        look_for_keys=False,
        allow_agent=False,
        timeout=timeout,
        banner_timeout=timeout,
        auth_timeout=timeout,
    )
    return client


def ssh_run(client: Any, command: str, timeout: float = 60.0) -> tuple[int, str, str]:
    _stdin, stdout, stderr = client.exec_command(command, timeout=timeout)
    out = stdout.read().decode()
    err = stderr.read().decode()
    return stdout.channel.recv_exit_status(), out, err


def install_driver(client: Any, bundle: Path) -> tuple[int, str, str]:
    """As an operator would: maintenance on, the bundle over SFTP, `esxcli software vib install`; its result."""
    assert ssh_run(client, "esxcli system maintenanceMode set -e true")[0] == 0
    sftp = client.open_sftp()
    sftp.put(str(bundle), f"/tmp/{bundle.name}")
    sftp.close()
    return ssh_run(client, f"esxcli software vib install -d /tmp/{bundle.name}")


def wait_for(condition: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def try_ssh(endpoint: Any) -> Any:
    try:
        return ssh_client(endpoint, timeout=3)
    except Exception:  # noqa: BLE001 - any failure means "not back yet"
        return None
