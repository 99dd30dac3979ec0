"""One read-only pass over a Linux guest's NVIDIA stack over SSH (``guests prepare``'s check and assert, and the
audit): OS family and packages, the NVIDIA module installed and loaded, nouveau, DKMS, kernel parameters, the
Container Toolkit, Docker's configured and running runtimes. Commands are argv lists (quoted by the runner)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gpufleet.catalog.guest_drivers import pairing_problem
from gpufleet.readers import guest as rd
from gpufleet.remote.ssh import Runner
from gpufleet.spec.guest_desired import GuestDesired

DAEMON_JSON = "/etc/docker/daemon.json"
BLACKLIST_FILES = ("/etc/modprobe.d/blacklist-nouveau.conf", "/etc/modprobe.d/nvidia-installer-disable-nouveau.conf")
TOOLKIT_PACKAGES = (
    "nvidia-container-toolkit",
    "nvidia-container-toolkit-base",
    "libnvidia-container-tools",
    "libnvidia-container1",
)
DPKG_FORMAT = "${Package}\t${Version}\n"
RPM_FORMAT = "%{NAME}\t%{VERSION}-%{RELEASE}\n"


@dataclass
class GuestFacts:
    family: str | None  # "deb" | "rpm" | None
    packages: dict[str, str] = field(default_factory=dict)  # the NVIDIA / dkms packages that are installed
    driver_installed: str | None = None  # modinfo -F version nvidia
    driver_loaded: str | None = None  # /proc/driver/nvidia/version
    modules: set[str] = field(default_factory=set)
    smi: list[tuple[str, str]] = field(default_factory=list)  # (driver version, GPU name) per GPU
    smi_output: str = ""
    dkms: list[str] = field(default_factory=list)  # nvidia module versions DKMS has built
    nouveau_blacklisted: bool = False
    cmdline: list[str] = field(default_factory=list)
    grub_params: list[str] = field(default_factory=list)
    grub_text: str = ""
    ctk_version: str | None = None
    daemon_runtimes: set[str] = field(default_factory=set)
    docker_runtimes: set[str] | None = None  # None: docker does not answer
    boot_id: str = ""

    @property
    def nouveau_loaded(self) -> bool:
        return "nouveau" in self.modules

    def toolkit_version(self) -> str | None:
        """The Container Toolkit package version (upstream part), else what nvidia-ctk says."""
        version = self.packages.get("nvidia-container-toolkit")
        return version.split("-", 1)[0] if version else self.ctk_version

    def to_json(self) -> dict:
        return {
            "family": self.family,
            "packages": self.packages,
            "driverInstalled": self.driver_installed,
            "driverLoaded": self.driver_loaded,
            "nouveauLoaded": self.nouveau_loaded,
            "nouveauBlacklisted": self.nouveau_blacklisted,
            "gpus": [name for _, name in self.smi],
            "dkms": self.dkms,
            "cmdline": self.cmdline,
            "containerToolkit": self.toolkit_version(),
            "daemonJsonRuntimes": sorted(self.daemon_runtimes),
            "dockerRuntimes": sorted(self.docker_runtimes) if self.docker_runtimes is not None else None,
        }


def _out(runner: Runner, argv: Sequence[str]) -> tuple[int, str]:
    result = runner.run(argv, timeout=60)
    return result.rc, result.output


def read_guest_facts(runner: Runner, extra_packages: Sequence[str] = ()) -> GuestFacts:
    rc, text = _out(runner, ["cat", "/etc/os-release"])
    family = rd.package_family(rd.parse_os_release(text)) if rc == 0 else None
    facts = GuestFacts(family=family)
    names = [*TOOLKIT_PACKAGES, "dkms", *extra_packages]
    if family == "deb":
        rc, text = _out(runner, ["dpkg-query", "-W", "-f", DPKG_FORMAT, *names])
        facts.packages = rd.parse_dpkg_query(text)
    elif family == "rpm":
        rc, text = _out(runner, ["rpm", "-q", "--qf", RPM_FORMAT, *names])
        facts.packages = rd.parse_rpm_query(text)
    rc, text = _out(runner, ["modinfo", "-F", "version", "nvidia"])
    facts.driver_installed = text.strip().splitlines()[0] if rc == 0 and text.strip() else None
    rc, text = _out(runner, ["cat", "/proc/driver/nvidia/version"])
    facts.driver_loaded = rd.parse_driver_version_file(text) if rc == 0 else None
    rc, text = _out(runner, ["cat", "/proc/modules"])
    facts.modules = rd.parse_proc_modules(text) if rc == 0 else set()
    rc, text = _out(runner, ["nvidia-smi", "--query-gpu=driver_version,name", "--format=csv,noheader"])
    facts.smi, facts.smi_output = (rd.parse_smi_query(text) if rc == 0 else []), text
    if "dkms" in facts.packages:
        rc, text = _out(runner, ["dkms", "status"])
        facts.dkms = rd.parse_dkms_status(text) if rc == 0 else []
    for path in BLACKLIST_FILES:
        rc, text = _out(runner, ["cat", path])
        facts.nouveau_blacklisted = facts.nouveau_blacklisted or (rc == 0 and rd.nouveau_blacklisted(text))
    rc, text = _out(runner, ["cat", "/proc/cmdline"])
    facts.cmdline = text.split() if rc == 0 else []
    rc, text = _out(runner, ["cat", "/etc/default/grub"])
    facts.grub_text = text if rc == 0 else ""
    facts.grub_params = rd.grub_cmdline(facts.grub_text)
    rc, text = _out(runner, ["nvidia-ctk", "--version"])
    facts.ctk_version = rd.parse_ctk_version(text) if rc == 0 else None
    rc, text = _out(runner, ["cat", DAEMON_JSON])
    try:
        facts.daemon_runtimes = rd.parse_daemon_json_runtimes(text) if rc == 0 else set()
    except rd.ReadError:
        facts.daemon_runtimes = set()
    rc, text = _out(runner, ["docker", "info", "--format", "{{json .Runtimes}}"])
    try:
        facts.docker_runtimes = rd.parse_docker_runtimes(text) if rc == 0 else None
    except rd.ReadError:
        facts.docker_runtimes = None
    rc, text = _out(runner, ["cat", "/proc/sys/kernel/random/boot_id"])
    facts.boot_id = text.strip() if rc == 0 else ""
    return facts


@dataclass(frozen=True)
class GuestDrift:
    """One part of a guest's NVIDIA stack that is not as its ``guest:`` block wants (the audit's finding)."""

    field: str  # driver | driver_branch | toolkit | docker_runtime
    desired: str
    actual: str
    message: str


def guest_drift(d: GuestDesired, f: GuestFacts) -> list[GuestDrift]:
    """What the audit reports of a running guest: the loaded driver vs the wanted one, its branch vs the host's
    vGPU Manager (NVIDIA's pairing rule, the catalog's), the Container Toolkit version, Docker's nvidia runtime
    (configured in daemon.json and running)."""
    out: list[GuestDrift] = []
    if d.spec.driver is not None:
        loaded = f.driver_loaded or "not loaded"
        if d.driver_version and f.driver_loaded != d.driver_version:
            out.append(GuestDrift("driver", d.driver_version, loaded, f"NVIDIA guest driver {loaded}"))
        if d.vgpu and d.host_driver and f.driver_loaded:
            problem = pairing_problem(d.host_driver, f.driver_loaded)
            if problem:
                out.append(GuestDrift("driver_branch", f"pairs with {d.host_driver}", f.driver_loaded, problem))
    toolkit = d.spec.container_toolkit
    if toolkit is not None and f.toolkit_version() != toolkit.upstream:
        have = f.toolkit_version() or "not installed"
        out.append(GuestDrift("toolkit", toolkit.upstream, have, f"nvidia-container-toolkit {have}"))
    if d.spec.docker_runtime == "nvidia":
        running = "docker not answering" if f.docker_runtimes is None else ", ".join(sorted(f.docker_runtimes))
        if f.docker_runtimes is None or "nvidia" not in f.docker_runtimes or "nvidia" not in f.daemon_runtimes:
            configured = "configured" if "nvidia" in f.daemon_runtimes else "not in daemon.json"
            out.append(
                GuestDrift(
                    "docker_runtime",
                    "nvidia",
                    running or "none",
                    f"Docker's nvidia runtime {configured}; runs: {running or 'none'}",
                )
            )
    return out
