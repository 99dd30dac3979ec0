"""Readers of what a Linux guest shows about its NVIDIA stack. Standard library only: the same functions serve
``gpufleet guests prepare``, ``verify`` (gpufleet.readers.guest_smi re-exports them), ``audit`` and
``scripts/guest_assert_real.py`` (which loads this file by path on a machine without gpufleet's dependencies)."""

from __future__ import annotations

import json
import re


def parse_driver_version_file(text: str) -> str | None:
    """``/proc/driver/nvidia/version`` -> "550.90.07" (the kernel module's version)."""
    m = re.search(r"NVRM version:.*?\s(\d+\.\d+(?:\.\d+)?)\s", text)
    return m.group(1) if m else None


def driver_branch(version: str) -> str:
    """``550.90.07`` -> ``550`` (NVIDIA's major release branch)."""
    return version.strip().split(".", 1)[0]


def parse_lsmod(text: str) -> set[str]:
    """``lsmod`` (a header line, then one module per line) -> module names."""
    return {line.split()[0] for line in text.splitlines()[1:] if line.strip()}


def parse_proc_modules(text: str) -> set[str]:
    """``/proc/modules`` (``nvidia 56713216 2 nvidia_uvm,nvidia_modeset, Live 0x0000000000000000``) -> names."""
    return {line.split()[0] for line in text.splitlines() if line.strip()}


class ReadError(ValueError):
    """A command printed something this reader does not understand."""


def parse_docker_runtimes(text: str) -> set[str]:
    """``docker info --format '{{json .Runtimes}}'`` -> runtime names."""
    try:
        value = json.loads(text.strip() or "{}")
    except json.JSONDecodeError as exc:
        raise ReadError(f"docker info did not print JSON runtimes: {text[:300]!r}") from exc
    return set(value) if isinstance(value, dict) else set()


def parse_daemon_json_runtimes(text: str) -> set[str]:
    """``/etc/docker/daemon.json`` -> the runtimes it declares (empty for an empty or missing file)."""
    if not text.strip():
        return set()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReadError(f"/etc/docker/daemon.json is not JSON: {text[:300]!r}") from exc
    runtimes = value.get("runtimes", {}) if isinstance(value, dict) else {}
    return set(runtimes) if isinstance(runtimes, dict) else set()


def parse_ctk_version(text: str) -> str | None:
    """``nvidia-ctk --version`` -> "1.16.2"."""
    m = re.search(r"NVIDIA Container Toolkit CLI version (\S+)", text)
    return m.group(1) if m else None


def parse_smi_query(text: str) -> list[tuple[str, str]]:
    """``nvidia-smi --query-gpu=driver_version,name --format=csv,noheader`` -> [(driver, GPU name)]."""
    rows = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",", 1)]
        if len(parts) == 2 and re.fullmatch(r"\d+\.\d+(\.\d+)?", parts[0]):
            rows.append((parts[0], parts[1]))
    return rows


def parse_dpkg_query(text: str) -> dict[str, str]:
    """``dpkg-query -W -f '${Package}\\t${Version}\\n' ...`` -> {package: version}."""
    out = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and parts[0] and parts[1]:
            out[parts[0]] = parts[1]
    return out


def parse_rpm_query(text: str) -> dict[str, str]:
    """``rpm -q --qf '%{NAME}\\t%{VERSION}-%{RELEASE}\\n' ...`` -> {package: version} ("is not installed" lines
    skipped)."""
    return parse_dpkg_query("\n".join(line for line in text.splitlines() if "is not installed" not in line))


def parse_os_release(text: str) -> dict[str, str]:
    """``/etc/os-release`` -> {KEY: value}."""
    out = {}
    for line in text.splitlines():
        m = re.match(r'^([A-Z_]+)=("?)(.*)\2\s*$', line.strip())
        if m:
            out[m.group(1)] = m.group(3)
    return out


def package_family(os_release: dict[str, str]) -> str | None:
    """ "deb" (dpkg/apt) or "rpm" (rpm/dnf) from os-release's ID / ID_LIKE; None when neither."""
    ids = {os_release.get("ID", ""), *os_release.get("ID_LIKE", "").split()}
    if ids & {"debian", "ubuntu"}:
        return "deb"
    if ids & {"rhel", "fedora", "centos", "rocky", "almalinux", "suse", "sles", "opensuse"}:
        return "rpm"
    return None


def nouveau_blacklisted(text: str) -> bool:
    """A modprobe.d file blacklists nouveau (``blacklist nouveau``)."""
    return bool(re.search(r"^\s*blacklist\s+nouveau\s*$", text, re.M))


def parse_dkms_status(text: str, module: str = "nvidia") -> list[str]:
    """``dkms status`` -> versions of ``module`` installed (``nvidia/550.90.07, 5.15.0-119-generic, x86_64:
    installed`` and the older ``nvidia, 550.90.07, ...`` form)."""
    versions = []
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(module)}[/,]\s*([\d.]+)[,:].*installed", line.strip())
        if m:
            versions.append(m.group(1))
    return versions


def grub_cmdline(text: str) -> list[str]:
    """GRUB_CMDLINE_LINUX_DEFAULT of /etc/default/grub -> its parameters."""
    m = re.search(r'^GRUB_CMDLINE_LINUX_DEFAULT="([^"]*)"', text, re.M)
    return m.group(1).split() if m else []


def set_grub_cmdline(text: str, params: list[str]) -> str:
    """/etc/default/grub with ``params`` added to GRUB_CMDLINE_LINUX_DEFAULT (kept in order, none twice)."""
    current = grub_cmdline(text)
    wanted = current + [p for p in params if p not in current]
    line = f'GRUB_CMDLINE_LINUX_DEFAULT="{" ".join(wanted)}"'
    if re.search(r"^GRUB_CMDLINE_LINUX_DEFAULT=", text, re.M):
        return re.sub(r"^GRUB_CMDLINE_LINUX_DEFAULT=.*$", line, text, count=1, flags=re.M)
    return text.rstrip("\n") + "\n" + line + "\n"
