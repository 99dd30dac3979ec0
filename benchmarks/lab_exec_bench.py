"""Benchmark: what one SSH command costs the embedded lab, through the fork server vs a fresh interpreter.

    .venv/bin/python benchmarks/lab_exec_bench.py [--commands 100]

It starts a private lab of one host (its own directory and ports), opens one SSH connection (gpufleet's SshRunner:
real sshd, pinned host key), and runs the same commands twice: through the lab's fork server (lab.forkserver: the
command runs in a fork of a warm simulator), then with the fork server's socket moved aside, so ``labexec`` falls
back to ``python -I -m lab.esxi.shell``, what every command cost before. For each it prints the wall time per
command and the lab's CPU per command (the fork server and its forks, the sshd sessions and what they ran: from
/proc, so nothing of this process is counted), side by side. Target: the fork server's CPU per command <= 0.25x
the fresh interpreter's (a ratio: these machines are shared and noisy).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from targets import Target, report

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET = 0.25
COMMANDS = [
    ["esxcli", "--formatter=xml", "software", "component", "list"],
    ["esxcli", "--formatter=xml", "graphics", "host", "get"],
    ["esxcli", "--formatter=xml", "system", "stats", "uptime", "get"],
    ["vmware", "-vl"],
    ["true"],
]


def _lab_cpu(root: Path) -> float:
    """CPU seconds (with reaped children) of this lab's fork server and of its sshd sessions (the descendants of
    its sshd listeners: what each session ran is reaped into them)."""
    tick = os.sysconf("SC_CLK_TCK")
    procs: dict[int, tuple[int, str, int]] = {}  # pid -> (ppid, cmdline, cpu ticks)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        procs[int(entry)] = (int(stat[1]), cmdline, sum(int(x) for x in stat[11:15]))  # utime stime cutime cstime
    listeners = {pid for pid, (_, cmd, _) in procs.items() if "sshd" in cmd and f"-f {root}/" in cmd}

    def counted(pid: int) -> bool:
        ppid, cmd, _ = procs[pid]
        if "lab.forkserver" in cmd and str(root) in cmd:
            return (
                ppid not in procs or "lab.forkserver" not in procs[ppid][1]
            )  # the server (its forks are reaped into it)
        while ppid in procs:
            if ppid in listeners:
                return True
            ppid = procs[ppid][0]
        return False

    return sum(procs[pid][2] for pid in procs if counted(pid)) / tick


def _measure(runner: Any, root: Path, n: int) -> tuple[float, float]:
    """(wall ms, lab CPU ms) per command over ``n`` commands."""
    runner.run(["true"])
    cpu, started = _lab_cpu(root), time.monotonic()
    for i in range(n):
        result = runner.run(COMMANDS[i % len(COMMANDS)])
        if result.rc != 0:
            raise SystemExit(f"{result.command} exited {result.rc}: {result.output[-300:]}")
    wall = (time.monotonic() - started) / n * 1000
    return wall, (_lab_cpu(root) - cpu) / n * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=100)
    args = parser.parse_args()
    lab_dir = Path(tempfile.mkdtemp(prefix="gpufleet-lab-exec-bench-"))
    os.environ["GPUFLEET_LAB_DIR"] = str(lab_dir)
    from hosts_bench import _free_port, _stack

    from lab import forkserver
    from lab.manager import LabShape, down, up
    from lab.paths import LabPaths
    from lab.topology import build_topology

    addresses = [h.address for h in build_topology(hosts=1).hosts]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        vcenter_port = s.getsockname()[1]
    paths = LabPaths.resolve(lab_dir)
    shape = LabShape(hosts=1, reboot_seconds=1, ssh_port=_free_port(addresses), vcenter_port=vcenter_port)
    try:
        up(shape, paths)
        from gpufleet.connections import resolve_connections
        from gpufleet.remote.ssh import SshRunner
        from gpufleet.spec.stack import load_stack

        conns = resolve_connections(load_stack(_stack(1, lab_dir / "Pulumi.bench.yaml", 1)))
        runner = SshRunner(conns.host("esxi-01.lab"))
        try:
            fork_wall, fork_cpu = _measure(runner, lab_dir, args.commands)
            sock = forkserver.socket_path(paths)
            aside = sock.with_name(sock.name + ".aside")
            os.replace(sock, aside)  # labexec finds no server: it becomes `python -I -m lab.esxi.shell`
            try:
                fresh_wall, fresh_cpu = _measure(runner, lab_dir, args.commands)
            finally:
                os.replace(aside, sock)
        finally:
            runner.close()
    finally:
        down(paths)
        shutil.rmtree(lab_dir, ignore_errors=True)
    ratio = fork_cpu / fresh_cpu if fresh_cpu else float("inf")
    print(f"\none lab SSH command ({args.commands} commands, {len(COMMANDS)} kinds, one connection)")
    print(f"  {'':<44} {'wall / command':>15} {'lab CPU / command':>18}")
    print(f"  {'fork server (lab.forkserver)':<44} {fork_wall:12.1f} ms {fork_cpu:15.1f} ms   {ratio:.3f}x")
    print(f"  {'fresh interpreter (python -I -m, baseline)':<44} {fresh_wall:12.1f} ms {fresh_cpu:15.1f} ms   baseline")
    return report([Target("lab_command_cpu_vs_fresh_interpreter", ratio <= TARGET, f"{ratio:.3f}x", f"<= {TARGET}x")])


if __name__ == "__main__":
    raise SystemExit(main())
