"""Typed readers and writers for ``esxcli``.

Every call asks esxcli's structured formatter (``esxcli --formatter=xml ...``) and parses it into plain Python
(``parse_xml``); when a host or an older build answers in text instead, the same keys are read from the text
(``parse_text``: ``Key: value`` stanzas and column tables), so both give the same dicts with the space-free
field names of the structured output (``Reboot Required`` -> ``RebootRequired``). Field names follow
shared/reference/esxi_esxcli_structured_field_names.txt.

    maintenance_mode(runner) -> bool
    components(runner) -> [Component]         vibs(runner) -> [Vib]
    graphics_host(runner) -> GraphicsHost     set_graphics_default(runner, "SharedPassthru")
    kernel_setting(runner, "atsSupport")      set_kernel_setting(runner, "atsSupport", "TRUE")
    install(runner, "/vmfs/volumes/...zip", kind="component") -> InstallResult
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from gpufleet.errors import TaskError
from gpufleet.remote.ssh import CommandResult, Runner

# -- parsing -----------------------------------------------------------------------------------------------


class EsxcliParseError(TaskError):
    """esxcli printed something we cannot read; the message carries the output."""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _xml_value(node: ET.Element) -> Any:
    tag = _local(node.tag)
    if tag == "string":
        return node.text or ""
    if tag == "integer":
        return int((node.text or "0").strip())
    if tag == "boolean":
        return (node.text or "").strip().lower() == "true"
    if tag == "list":
        return [_xml_value(child) for child in node]
    if tag == "structure":
        return {child.get("name", ""): _xml_value(child[0]) if len(child) else None for child in node}
    if tag == "field":  # only inside a structure, handled there
        return _xml_value(node[0]) if len(node) else None
    return (node.text or "").strip()


def parse_xml(text: str) -> Any:
    """esxcli ``--formatter=xml`` output -> str | int | bool | list | dict (structures keyed by field name)."""
    try:
        root = ET.fromstring(text.strip())
    except ET.ParseError as exc:
        raise EsxcliParseError(f"esxcli XML output is not well formed: {exc}: {text[:500]!r}") from exc
    if _local(root.tag) == "output":
        root = next(iter(root), root)
    if _local(root.tag) == "root":
        children = list(root)
        if not children:
            return None
        return _xml_value(children[0])
    return _xml_value(root)


def _key(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", label)


_KV = re.compile(r"^\s*([A-Za-z][A-Za-z0-9 ./()-]*?):\s?(.*)$")


def parse_key_values(text: str) -> dict[str, str]:
    """``   Key Name: value`` lines -> {"KeyName": "value"} (a title line without a colon is skipped)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = _KV.match(line)
        if m:
            out[_key(m.group(1))] = m.group(2).strip()
    return out


def parse_table(text: str) -> list[dict[str, str]]:
    """A column table with a ``----  ----`` rule under the header -> one dict per row, keys as in the header
    (space-free). Columns are cut at the rule's gaps, so values with spaces (descriptions) survive."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    for i in range(1, len(lines)):
        if re.fullmatch(r"[-\s]+", lines[i]) and "-" in lines[i]:
            rule, header = lines[i], lines[i - 1]
            spans = [(m.start(), m.end()) for m in re.finditer(r"-+", rule)]
            starts = [s for s, _ in spans] + [10**6]
            names = [_key(header[starts[j] : starts[j + 1]].strip()) for j in range(len(spans))]
            rows = []
            for line in lines[i + 1 :]:
                cells = [line[starts[j] : starts[j + 1]].strip() for j in range(len(spans))]
                rows.append(dict(zip(names, cells, strict=True)))
            return rows
    raise EsxcliParseError(f"no column table in esxcli output: {text[:500]!r}")


def parse_text(text: str) -> Any:
    """Text esxcli output -> a table (list of dicts), a stanza (dict) or a single word (str)."""
    stripped = text.strip()
    if not stripped:
        return None
    lines = stripped.splitlines()
    if any(re.fullmatch(r"[-\s]+", line.strip()) and "-" in line for line in lines[1:3]):
        return parse_table(stripped)
    values = parse_key_values(stripped)
    if values:
        return values
    return stripped


def parse_output(text: str) -> Any:
    """Structured (XML) output when that is what came back, else text."""
    stripped = text.lstrip()
    if stripped.startswith("<"):
        return parse_xml(stripped)
    return parse_text(text)


def argv(*args: str) -> list[str]:
    """The command line of ``esxcli ARGS`` with the structured formatter."""
    return ["esxcli", "--formatter=xml", *args]


def value_of(result: CommandResult, host: str = "") -> Any:
    """The parsed output of an esxcli command; ``CommandFailed`` when it failed."""
    return parse_output(result.check(host).output)


def esxcli(runner: Runner, *args: str, timeout: float | None = None) -> Any:
    """Run ``esxcli --formatter=xml ARGS`` and return the parsed result; ``CommandFailed`` on a non-zero exit."""
    return value_of(runner.run(argv(*args), timeout=timeout), runner.name)


# -- typed values --------------------------------------------------------------------------------------------


def version_key(version: str) -> tuple[int, ...]:
    """Comparable key of a driver version: ``550.90.05-1OEM.800.1.0.20613240`` and ``550.90.05`` -> (550, 90, 5)."""
    head = version.strip().split("-", 1)[0]
    parts = re.findall(r"\d+", head)
    if not parts:
        raise ValueError(f"{version!r} is not a driver version like 550.90.05")
    return tuple(int(p) for p in parts)


def compare_versions(installed: str, wanted: str) -> int:
    """-1 when ``installed`` is older than ``wanted``, 0 when the same driver release, 1 when newer."""
    a, b = version_key(installed), version_key(wanted)
    return (a > b) - (a < b)


@dataclass(frozen=True)
class Component:
    name: str
    version: str
    display_name: str = ""
    display_version: str = ""
    vendor: str = ""

    @property
    def driver_version(self) -> str:
        return self.display_version or self.version.split("-", 1)[0]


@dataclass(frozen=True)
class Vib:
    name: str
    version: str
    vendor: str = ""
    id: str = ""

    @property
    def driver_version(self) -> str:
        return self.version.split("-", 1)[0]


@dataclass(frozen=True)
class GraphicsHost:
    default_type: str  # Shared | SharedPassthru
    assignment_policy: str  # Performance | Consolidation


@dataclass(frozen=True)
class KernelSetting:
    name: str
    configured: str
    runtime: str
    default: str

    @property
    def configured_on(self) -> bool:
        return self.configured.strip().lower() == "true"

    @property
    def runtime_on(self) -> bool:
        return self.runtime.strip().lower() == "true"


@dataclass(frozen=True)
class InstallResult:
    message: str
    reboot_required: bool  # as printed; NVIDIA drivers print false and still need a reboot
    installed: tuple[str, ...]
    removed: tuple[str, ...]
    skipped: tuple[str, ...]


def _rows(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return value
    raise EsxcliParseError(f"expected a list of records from esxcli, got {value!r:.300}")


def _names(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, list):
        return tuple(str(v) for v in value if str(v))
    return tuple(v.strip() for v in str(value).split(",") if v.strip())


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() == "true"


def parse_install_result(value: Any) -> InstallResult:
    """The result of ``software component apply`` / ``software vib install`` (XML structure or text stanza)."""
    if isinstance(value, str):
        value = parse_output(value)
    if not isinstance(value, dict) or "Message" not in value:
        raise EsxcliParseError(f"not an esxcli installation result: {value!r:.300}")
    return InstallResult(
        message=str(value.get("Message", "")),
        reboot_required=_bool(value.get("RebootRequired", False)),
        installed=_names(value.get("ComponentsInstalled", value.get("VIBsInstalled"))),
        removed=_names(value.get("ComponentsRemoved", value.get("VIBsRemoved"))),
        skipped=_names(value.get("ComponentsSkipped", value.get("VIBsSkipped"))),
    )


_COMPONENT_LINE = re.compile(
    r"^(?P<name>\S+)\s{2,}(?P<display_name>.+?)\s{2,}(?P<version>\S+)\s{2,}(?P<display_version>\S+)\s{2,}"
    r"(?P<vendor>\S+)\s{2,}"
)


def parse_component_line(line: str) -> Component:
    """One line of ``esxcli software component list`` text (Name, Display Name, Version, Display Version,
    Vendor, Release Date, Acceptance Level, Install Method)."""
    m = _COMPONENT_LINE.match(line.strip())
    if not m:
        raise EsxcliParseError(f"not a `software component list` line: {line!r}")
    return Component(**m.groupdict())


def _component(row: dict[str, Any]) -> Component:
    return Component(
        name=str(row.get("Name", "")),
        version=str(row.get("Version", "")),
        display_name=str(row.get("DisplayName", "")),
        display_version=str(row.get("DisplayVersion", "")),
        vendor=str(row.get("Vendor", "")),
    )


def _vib(row: dict[str, Any]) -> Vib:
    return Vib(
        name=str(row.get("Name", "")),
        version=str(row.get("Version", "")),
        vendor=str(row.get("Vendor", "")),
        id=str(row.get("ID", "")),
    )


# -- host calls ----------------------------------------------------------------------------------------------


def maintenance_mode(runner: Runner) -> bool:
    """``esxcli system maintenanceMode get``: True when Enabled."""
    value = esxcli(runner, "system", "maintenanceMode", "get")
    word = str(value).strip()
    if word not in ("Enabled", "Disabled"):
        raise EsxcliParseError(f"{runner.name}: maintenanceMode get said {word!r}, not Enabled/Disabled")
    return word == "Enabled"


def components(runner: Runner) -> list[Component]:
    return [_component(r) for r in _rows(esxcli(runner, "software", "component", "list"))]


def vibs(runner: Runner) -> list[Vib]:
    return [_vib(r) for r in _rows(esxcli(runner, "software", "vib", "list"))]


def driver_list_argv(kind: str) -> list[str]:
    """The listing that shows the installed NVIDIA driver: components or VIBs."""
    return argv("software", "component" if kind == "component" else "vib", "list")


def nvidia_driver_from(value: Any, kind: str) -> str | None:
    """The installed (boot bank) NVIDIA driver version in a component / VIB list; None when absent."""
    rows = _rows(value)
    items: list[Component] | list[Vib] = (
        [_component(r) for r in rows] if kind == "component" else [_vib(r) for r in rows]
    )
    found = [i.driver_version for i in items if _is_nvidia(i.vendor, i.name)]
    return max(found, key=version_key) if found else None


def nvidia_driver(runner: Runner, kind: str) -> str | None:
    """The installed (boot bank) NVIDIA host driver version, from the component or VIB list; None when absent."""
    return nvidia_driver_from(value_of(runner.run(driver_list_argv(kind)), runner.name), kind)


def _is_nvidia(vendor: str, name: str) -> bool:
    return vendor.upper() == "NVIDIA" and bool(re.match(r"(NVD|NVIDIA)[-_]", name, re.IGNORECASE))


GRAPHICS_GET = argv("graphics", "host", "get")


def graphics_from(row: Any) -> GraphicsHost:
    if not isinstance(row, dict) or "DefaultGraphicsType" not in row:
        raise EsxcliParseError(f"unexpected `graphics host get` output: {row!r:.300}")
    return GraphicsHost(str(row["DefaultGraphicsType"]), str(row.get("SharedPassthruAssignmentPolicy", "")))


def graphics_host(runner: Runner) -> GraphicsHost:
    return graphics_from(value_of(runner.run(GRAPHICS_GET), runner.name))


def set_graphics_host(runner: Runner, default_type: str, assignment_policy: str | None = None) -> None:
    args = ["graphics", "host", "set", "--default-type", default_type]
    if assignment_policy:
        args += ["--shared-passthru-assignment-policy", assignment_policy]
    esxcli(runner, *args)


def kernel_setting_argv(name: str) -> list[str]:
    return argv("system", "settings", "kernel", "list", "-o", name)


def kernel_setting_from(value: Any, name: str) -> KernelSetting:
    row = next((r for r in _rows(value) if str(r.get("Name", "")) == name), None)
    if row is None:
        raise EsxcliParseError(f"kernel setting {name} not listed (ESXi too old for it?)")
    return KernelSetting(name, str(row.get("Configured", "")), str(row.get("Runtime", "")), str(row.get("Default", "")))


def kernel_setting(runner: Runner, name: str) -> KernelSetting:
    return kernel_setting_from(value_of(runner.run(kernel_setting_argv(name)), runner.name), name)


UPTIME_ARGV = ["esxcli", "system", "stats", "uptime", "get"]


def uptime_from(result: CommandResult) -> float | None:
    """Seconds since boot (``esxcli system stats uptime get`` prints microseconds); None when unreadable."""
    m = re.fullmatch(r"\s*(\d+)\s*", result.output) if result.ok else None
    return int(m.group(1)) / 1e6 if m else None


def set_kernel_setting(runner: Runner, name: str, value: str) -> None:
    esxcli(runner, "system", "settings", "kernel", "set", "-s", name, "-v", value)


def install(runner: Runner, path: str, kind: str, timeout: float, *, dry_run: bool = False) -> InstallResult:
    """``software component apply -d PATH`` or ``software vib install -d PATH`` (esxcli needs absolute paths).
    ``dry_run``: esxcli's own ``--dry-run`` (reads and checks the bundle, changes nothing), with
    ``--maintenance-mode`` so a host not yet in maintenance is checked as it will be at install time."""
    return parse_install_result(value_of(runner.run(install_argv(path, kind, dry_run), timeout=timeout), runner.name))


def install_argv(path: str, kind: str, dry_run: bool = False) -> list[str]:
    """The esxcli command line of ``install`` (for batching the dry run with other reads)."""
    if not path.startswith("/"):
        raise ValueError(f"esxcli needs an absolute path, got {path!r}")
    verb = ("software", "component", "apply") if kind == "component" else ("software", "vib", "install")
    extra = ("--dry-run", "--maintenance-mode") if dry_run else ()
    return argv(*verb, "-d", path, *extra)
