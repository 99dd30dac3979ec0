#!/usr/bin/env python3
"""The assert half of ``gpufleet guests prepare`` on a real machine, read-only: is the NVIDIA driver loaded
(/proc/driver/nvidia/version, lsmod), what nvidia-smi answers (driver version, GPU names), is the NVIDIA Container
Toolkit there (nvidia-ctk --version, libnvidia-container, /etc/docker/daemon.json's nvidia runtime, docker's
runtimes). Writes one JSON report to $OUT/guest_assert_real.json when $OUT is set, else to stdout.

Standard library only. It never changes the driver or GPU settings: nvidia-smi runs only with query flags
(``--query-gpu=... --format=csv,noheader``), nothing is installed, configured or restarted. The parsers are
gpufleet's own (gpufleet/readers/guest.py, loaded by path so none of gpufleet's dependencies are needed).

    python3 scripts/guest_assert_real.py            # exit 0: driver loaded and nvidia-smi answers; 2: not; 1: error
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

READERS = Path(__file__).resolve().parents[1] / "gpufleet" / "readers" / "guest.py"
QUERY = ["nvidia-smi", "--query-gpu=driver_version,name", "--format=csv,noheader"]


def _readers():  # noqa: ANN202 - a module object
    spec = importlib.util.spec_from_file_location("guest_readers", READERS)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {READERS}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(argv: list[str]) -> dict:
    if shutil.which(argv[0]) is None:
        return {"command": " ".join(argv), "rc": None, "output": f"{argv[0]}: not installed"}
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"command": " ".join(argv), "rc": None, "output": str(exc)}
    return {"command": " ".join(argv), "rc": proc.returncode, "output": (proc.stdout + proc.stderr)[-4000:]}


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def main() -> int:
    rd = _readers()
    report: dict = {"host": platform.node(), "kernel": platform.release(), "machine": platform.machine()}
    version_file = _read("/proc/driver/nvidia/version")
    report["proc_driver_version"] = rd.parse_driver_version_file(version_file) if version_file else None
    modules_text = _read("/proc/modules") or ""
    lsmod = _run(["lsmod"])
    modules = rd.parse_lsmod(lsmod["output"]) if lsmod["rc"] == 0 else rd.parse_proc_modules(modules_text)
    report["modules"] = sorted(m for m in modules if m.startswith(("nvidia", "nouveau")))
    smi = _run(QUERY)
    report["nvidia_smi"] = {
        "command": smi["command"],
        "rc": smi["rc"],
        "gpus": [{"driver": v, "name": n} for v, n in rd.parse_smi_query(smi["output"])],
    }
    ctk = _run(["nvidia-ctk", "--version"])
    report["nvidia_ctk"] = rd.parse_ctk_version(ctk["output"]) if ctk["rc"] == 0 else None
    cli = _run(["nvidia-container-cli", "--version"])
    report["libnvidia_container"] = cli["output"].splitlines()[0] if cli["rc"] == 0 and cli["output"] else None
    libs = [
        str(p)
        for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib/aarch64-linux-gnu")
        for p in sorted(Path(d).glob("libnvidia-container.so*"))
        if Path(d).is_dir()
    ]
    report["libnvidia_container_libs"] = libs
    daemon = _read("/etc/docker/daemon.json")
    try:
        report["daemon_json_runtimes"] = sorted(rd.parse_daemon_json_runtimes(daemon)) if daemon is not None else None
    except rd.ReadError as exc:
        report["daemon_json_runtimes"] = f"unreadable: {exc}"
    docker = _run(["docker", "info", "--format", "{{json .Runtimes}}"])
    try:
        report["docker_runtimes"] = sorted(rd.parse_docker_runtimes(docker["output"])) if docker["rc"] == 0 else None
    except rd.ReadError:
        report["docker_runtimes"] = None
    report["raw"] = {
        "lsmod_rc": lsmod["rc"],
        "nvidia_smi": smi["output"][-1500:],
        "nvidia_ctk": ctk["output"][-500:],
        "docker": docker["output"][-500:],
    }
    versions = {g["driver"] for g in report["nvidia_smi"]["gpus"]}
    loaded = report["proc_driver_version"] is not None and "nvidia" in modules
    report["verdict"] = {
        "driver_loaded": loaded,
        "nvidia_smi_matches_module": bool(versions) and versions == {report["proc_driver_version"]},
        "container_toolkit": report["nvidia_ctk"] is not None,
        "docker_nvidia_runtime": bool(report["docker_runtimes"]) and "nvidia" in report["docker_runtimes"],
    }
    text = json.dumps(report, indent=2) + "\n"
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "guest_assert_real.json").write_text(text)
        print(f"wrote {Path(out) / 'guest_assert_real.json'}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0 if loaded and report["verdict"]["nvidia_smi_matches_module"] else 2


if __name__ == "__main__":
    sys.exit(main())
