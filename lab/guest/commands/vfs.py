"""The guest's file system as commands see it: files under the persona's root, and the virtual files of /proc and
/sys (the NVIDIA driver version, the kernel modules, the command line, the InfiniBand devices)."""

from __future__ import annotations

import os
import posixpath

from lab.guest.commands.base import Guest


def _driver_version_file(g: Guest) -> str | None:
    version = g.view.driver_version
    if version is None:
        return None
    if version.startswith("580"):
        return (
            f"NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  {version}  Release Build  (dvs-builder@U16-I3-B03-4-3)  \n"
            "GCC version:  gcc version 12.3.0 (Ubuntu 12.3.0-1ubuntu1~22.04) \n"
        )
    return (
        f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {version}  Fri May 31 09:35:42 UTC 2024\n"
        "GCC version:  gcc version 12.3.0 (Ubuntu 12.3.0-1ubuntu1~22.04) \n"
    )


def virtual_read(g: Guest, path: str) -> tuple[bool, str | None, str | None]:
    """(handled, content, error) for /proc/driver/nvidia and /sys/class/infiniband paths."""
    norm = posixpath.normpath(path)
    if norm == "/proc/modules":
        rows = [line.split() for line in module_rows(g)]
        return (
            True,
            "".join(
                f"{r[0]} {r[1]} {r[2]} {','.join(r[3:]) + ',' if len(r) > 3 else '-'} Live 0x0000000000000000\n"
                for r in rows
            ),
            None,
        )
    if norm == "/proc/cmdline":
        from lab.guest.install import proc_cmdline

        return True, proc_cmdline(g), None
    if norm == "/proc/sys/kernel/random/boot_id":
        from lab.guest.install import boot_id

        return True, boot_id(g), None
    if norm.startswith("/proc/driver/nvidia"):
        if norm == "/proc/driver/nvidia/version":
            content = _driver_version_file(g)
            return True, content, None if content else "No such file or directory"
        return True, None, "No such file or directory"
    if norm.startswith("/sys/class/infiniband"):
        parts = norm.split("/")[4:]
        devices = {d.name: d for d in g.view.rdma}
        if not parts:
            return True, None, "Is a directory"
        dev = devices.get(parts[0])
        if dev is None:
            return True, None, "No such file or directory"
        rest = "/".join(parts[1:])
        if rest == "ports/1/state":
            return True, ("4: ACTIVE\n" if dev.state == "ACTIVE" else "1: DOWN\n"), None
        if rest == "node_guid":
            guid = dev.node_guid
            return True, ":".join(guid[i : i + 4] for i in range(0, 16, 4)) + "\n", None
        if rest == "ports/1/gid_attrs/types/0":
            return True, "IB/RoCE v1\n", None
        if rest == "ports/1/gid_attrs/types/1":
            return (True, "RoCE v2\n", None) if dev.roce == "v2" else (True, None, "Invalid argument")
        return True, None, "No such file or directory"
    return False, None, None


def virtual_list(g: Guest, path: str) -> list[str] | None:
    norm = posixpath.normpath(path)
    if norm == "/sys/class/infiniband":
        return sorted(d.name for d in g.view.rdma)
    if norm == "/proc/driver/nvidia":
        return ["version", "gpus", "params", "registry"] if g.view.driver_version else None
    return None


def module_rows(g: Guest) -> list[str]:
    rows: list[str] = []
    if g.view.driver_version:
        rows += [
            "nvidia_uvm           1540096  0",
            "nvidia_drm             77824  0",
            "nvidia_modeset       1306624  1 nvidia_drm",
            "nvidia              56713216  2 nvidia_uvm,nvidia_modeset",
        ]
    if any(d.name.startswith("vmw_pvrdma") for d in g.view.rdma):
        rows += [
            "vmw_pvrdma             69632  0",
            "ib_uverbs             163840  1 vmw_pvrdma",
            "ib_core               425984  2 vmw_pvrdma,ib_uverbs",
        ]
    if any(d.name.startswith("mlx5") for d in g.view.rdma):
        rows += [
            "mlx5_ib               409600  0",
            "mlx5_core            1900544  1 mlx5_ib",
            "ib_core               425984  1 mlx5_ib",
        ]
    if g.state.get("nouveau", {}).get("loaded"):
        rows += ["nouveau              2433024  0", "drm_ttm_helper         16384  1 nouveau"]
    rows += ["vmw_vmci               98304  1", "vmxnet3                77824  0"]
    return rows


def read_file(g: Guest, path: str) -> tuple[bytes | None, str | None]:
    handled, content, error = virtual_read(g, path)
    if handled:
        return (content.encode() if content is not None else None), error
    p = g.host_path(path)
    if p.is_dir():
        return None, "Is a directory"
    try:
        return p.read_bytes(), None
    except FileNotFoundError:
        return None, "No such file or directory"
    except PermissionError:
        return None, "Permission denied"


def write_file(g: Guest, path: str, data: bytes, append: bool = False) -> str | None:
    """Write (or append) to a guest file; returns an error text or None."""
    if path == "/dev/null":
        return None
    norm = posixpath.normpath(path if path.startswith("/") else "/root/" + path)
    if norm.startswith(("/proc", "/sys")):
        return "Read-only file system"
    p = g.host_path(norm)
    if not p.parent.is_dir():
        return "No such file or directory"
    if p.is_dir():
        return "Is a directory"
    existed = p.exists()
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC), 0o666 & ~g.umask)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    if not existed:
        os.chmod(p, 0o666 & ~g.umask)
    return None
