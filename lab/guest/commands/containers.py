"""The container stack: ``nvidia-ctk`` (version, ``cdi list``, ``runtime configure``) and ``docker`` (version,
``info``, ``run`` with or without ``--gpus`` / the nvidia runtime)."""

from __future__ import annotations

import json

from lab.guest.commands import dispatch
from lab.guest.commands.base import Guest, Input, Result, not_found, ok
from lab.guest.commands.nvidia_smi import cmd_nvidia_smi
from lab.guest.commands.registry import command


@command("nvidia-ctk")
def cmd_nvidia_ctk(g: Guest, argv: list[str], stdin: Input) -> Result:
    version = g.state.get("container", {}).get("toolkit")
    if not version:
        return not_found("nvidia-ctk")
    args = argv[1:]
    if args in (["--version"], ["-v"], ["-version"]):
        return ok(f"NVIDIA Container Toolkit CLI version {version}\ncommit: a5a5833c14a15fd9c86bcece85d5ec6621b65652\n")
    if args[:2] == ["cdi", "list"]:
        names = [f"nvidia.com/gpu={i}" for i in range(len(g.view.gpus))]
        names += [f"nvidia.com/gpu={gpu.uuid}" for gpu in g.view.gpus] + (["nvidia.com/gpu=all"] if g.view.gpus else [])
        return ok(
            "".join(n + "\n" for n in names),
            f'time="2024-09-02T10:00:00Z" level=info msg="Found {len(names)} CDI devices"\n',
        )
    if args[:2] == ["runtime", "configure"] and any(a in ("--runtime=docker", "docker") for a in args):
        from lab.guest.install import ctk_configure

        return ctk_configure(g, args)
    return ok(err=f'time="2024-09-02T10:00:00Z" level=error msg="unsupported arguments: {" ".join(args)}"\n', rc=1)


def _docker_runtimes(g: Guest) -> dict[str, dict]:
    runtimes: dict[str, dict] = {"io.containerd.runc.v2": {"path": "runc"}, "runc": {"path": "runc"}}
    if g.state.get("container", {}).get("nvidia_runtime"):
        runtimes["nvidia"] = {"path": "nvidia-container-runtime"}
    return runtimes


@command("docker")
def cmd_docker(g: Guest, argv: list[str], stdin: Input) -> Result:
    if not g.state.get("container", {}).get("docker"):
        return not_found("docker")
    args = argv[1:]
    if args in (["--version"], ["-v"]):
        return ok("Docker version 27.2.0, build 3ab4256\n")
    if args and args[0] == "info":
        runtimes = _docker_runtimes(g)
        fmt = next((args[i + 1] for i, a in enumerate(args) if a in ("--format", "-f") and i + 1 < len(args)), None)
        fmt = fmt or next((a.split("=", 1)[1] for a in args if a.startswith("--format=")), None)
        if fmt is not None:
            if fmt.replace(" ", "") == "{{json.Runtimes}}":
                return ok(json.dumps(runtimes) + "\n")
            if fmt.replace(" ", "") == "{{.DefaultRuntime}}":
                return ok("runc\n")
            return ok(err=f"template: :1: unsupported by the lab guest: {fmt}\n", rc=1)
        return ok(
            "Client: Docker Engine - Community\n Version:    27.2.0\n Context:    default\n\n"
            "Server:\n Containers: 0\n Images: 1\n Server Version: 27.2.0\n Storage Driver: overlay2\n"
            " Cgroup Driver: systemd\n Cgroup Version: 2\n"
            f" Runtimes: {' '.join(sorted(runtimes))}\n Default Runtime: runc\n"
            f" Kernel Version: {g.state.get('kernel')}\n Operating System: Ubuntu 22.04.4 LTS\n"
            f" Architecture: {g.state.get('arch', 'x86_64')}\n"
        )
    if args and args[0] == "run":
        return _docker_run(g, args[1:])
    return ok(err=f"docker: '{args[0] if args else ''}' is not a docker command in the lab guest.\n", rc=1)


def _docker_run(g: Guest, args: list[str]) -> Result:
    gpus = runtime = None
    rest: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--gpus":
            gpus, i = args[i + 1], i + 2
            continue
        if a.startswith("--gpus="):
            gpus = a.split("=", 1)[1]
        elif a == "--runtime":
            runtime, i = args[i + 1], i + 2
            continue
        elif a.startswith("--runtime="):
            runtime = a.split("=", 1)[1]
        elif a in ("--rm", "-t", "-i", "-it", "--init"):
            pass
        elif a in ("-e", "--env", "--name"):
            i += 2
            continue
        else:
            rest = args[i:]
            break
        i += 1
    if not rest:
        return ok(err='"docker run" requires at least 1 argument.\n', rc=1)
    command = rest[1:]
    if gpus is not None or runtime == "nvidia":
        if not g.state.get("container", {}).get("nvidia_runtime") or not g.state.get("container", {}).get("toolkit"):
            return ok(
                err='docker: Error response from daemon: could not select device driver "" with capabilities: [[gpu]].\n',
                rc=125,
            )
        if g.view.driver_version is None:
            return ok(
                err="docker: Error response from daemon: failed to create task for container: failed to create shim task: "
                "OCI runtime create failed: runc create failed: unable to start container process: error during container init: "
                "error running hook #0: error running hook: exit status 1, stdout: , stderr: Auto-detected mode as 'legacy'\n"
                "nvidia-container-cli: initialization error: nvml error: driver not loaded: unknown.\n",
                rc=125,
            )
        if command and command[0] == "nvidia-smi":
            return cmd_nvidia_smi(g, command, Input(b""))
    elif command and command[0] == "nvidia-smi":
        return ok(
            err='docker: Error response from daemon: failed to create task for container: exec: "nvidia-smi": executable file not found in $PATH: unknown.\n',
            rc=127,
        )
    if not command:
        return ok()
    return dispatch.run_argv(g, command, Input(b""))
