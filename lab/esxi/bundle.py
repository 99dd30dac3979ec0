"""Fake but well-formed NVIDIA host driver packages, and the reader the simulated ``esxcli`` uses.

Shapes follow real ESXi packaging (names from shared/reference/esxi_vib_list_and_vib_names.txt and
esxi_graphics_component_apply_nvaie_denneman.txt):

* a VIB is an ``ar`` archive: ``descriptor.xml`` (name, version, vendor, flags), ``sig.pkcs7``, a payload;
* an offline bundle / component zip (``NVD-AIE-800_<driver>-1OEM.800.1.0.20613240_<build>.zip``) holds
  ``index.xml``, ``vendor-index.xml``, ``metadata.zip`` (``vibs/*.xml`` descriptors, ``bulletins/*.xml`` with the
  component name and version) and ``vib20/<name>/<vib id>.vib``.

The payload is a few bytes of text: nothing executes it. ``build_depot`` writes an older, the lab's, and a newer
driver so that tests and users can exercise install, update (skip / replace) and downgrade.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree as ET

ESX_SUFFIX = "1OEM.800.1.0.20613240"  # built for ESXi 8.0.0 GA (20613240), as the real NVAIE 8.0 bundles
VIB_NAME = "NVD-AIE_ESXi_8.0.0_Driver"
VIB_VENDOR = "NVIDIA"
COMPONENT_NAME = "NVD-AIE-800"
COMPONENT_DISPLAY = "NVIDIA AI Enterprise vGPU driver for VMWare ESX-8.0.0"
# driver version -> (bundle build id, release date). 550.90.05's id is the one the lab's docs use as example.
DEPOT_DRIVERS: dict[str, tuple[str, str]] = {
    "535.183.04": ("23160511", "2024-05-14"),
    "550.90.05": ("23471011", "2024-06-04"),
    "550.127.06": ("24311452", "2024-10-22"),
}


class BundleError(Exception):
    """The file is not a readable VIB or offline bundle; ``kind`` is the esxcli error class to print."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


@dataclass(frozen=True)
class VibMeta:
    name: str
    version: str
    vendor: str
    summary: str
    description: str
    release_date: str  # YYYY-MM-DD
    acceptance: str  # esxcli spelling: VMwareAccepted, PartnerSupported, ...
    vib_type: str
    maintenance_mode: bool
    live_install: bool
    live_remove: bool
    stateless_ready: bool
    overlay: bool
    depends: tuple[str, ...]
    tags: tuple[str, ...]
    payloads: tuple[str, ...]
    component: str
    component_display: str
    component_version: str
    component_display_version: str

    @property
    def vib_id(self) -> str:
        return f"{self.vendor}_{self.vib_type}_{self.name}_{self.version}"

    def to_dict(self) -> dict:
        d = self.__dict__.copy()
        for key in ("depends", "tags", "payloads"):
            d[key] = list(d[key])
        return d


_ACCEPTANCE_XML = {
    "certified": "VMwareCertified",
    "accepted": "VMwareAccepted",
    "partner": "PartnerSupported",
    "community": "CommunitySupported",
}


def driver_version_string(driver: str) -> str:
    return f"{driver}-{ESX_SUFFIX}"


def bundle_file_name(driver: str) -> str:
    build = DEPOT_DRIVERS.get(driver, (_build_id(driver), ""))[0]
    return f"{COMPONENT_NAME}_{driver_version_string(driver)}_{build}.zip"


def vib_file_name(driver: str) -> str:
    return f"{VIB_NAME}_{driver_version_string(driver)}.vib"


def _build_id(driver: str) -> str:
    return str(20000000 + int(hashlib.sha256(driver.encode()).hexdigest(), 16) % 9000000)


def driver_meta(driver: str) -> VibMeta:
    release = DEPOT_DRIVERS.get(driver, ("", "2024-01-01"))[1]
    return VibMeta(
        name=VIB_NAME,
        version=driver_version_string(driver),
        vendor=VIB_VENDOR,
        summary=COMPONENT_DISPLAY,
        description=f"NVIDIA AI Enterprise vGPU host driver {driver} for VMware ESXi 8.0",
        release_date=release,
        acceptance="VMwareAccepted",
        vib_type="bootbank",
        maintenance_mode=True,
        # Live-installable, so esxcli says "Reboot Required: false", yet the module only loads at boot.
        live_install=True,
        live_remove=False,
        stateless_ready=True,
        overlay=False,
        depends=("esx-version >= 8.0.0",),
        tags=("driver", "module"),
        payloads=("nvd-aie",),
        component=COMPONENT_NAME,
        component_display=COMPONENT_DISPLAY,
        component_version=driver_version_string(driver),
        component_display_version=driver,
    )


# -- writing ------------------------------------------------------------------------------------------------


def _descriptor_xml(meta: VibMeta, payload: bytes) -> bytes:
    acc = {v: k for k, v in _ACCEPTANCE_XML.items()}[meta.acceptance]
    deps = "".join(
        f'<constraint name="{d.split()[0]}" relation="{_xml_escape(d.split()[1])}" version="{d.split()[2]}"/>'
        for d in meta.depends
    )
    tags = "".join(f"<tag>{t}</tag>" for t in meta.tags)
    sha = hashlib.sha256(payload).hexdigest()
    text = (
        '<vib version="5.0">'
        f"<type>{meta.vib_type}</type><name>{meta.name}</name><version>{meta.version}</version>"
        f"<vendor>{meta.vendor}</vendor><summary>{_xml_escape(meta.summary)}</summary>"
        f"<description>{_xml_escape(meta.description)}</description>"
        f"<release-date>{meta.release_date}T00:00:00</release-date><urls/>"
        f"<relationships><depends>{deps}</depends><conflicts/><replaces/><provides/><compatibleWith/></relationships>"
        f"<software-tags>{tags}</software-tags>"
        f"<system-requires><maintenance-mode>{str(meta.maintenance_mode).lower()}</maintenance-mode></system-requires>"
        "<file-list><file>usr/lib/vmware/vmkmod/nvidia</file></file-list>"
        f"<acceptance-level>{acc}</acceptance-level>"
        f"<live-install-allowed>{str(meta.live_install).lower()}</live-install-allowed>"
        f"<live-remove-allowed>{str(meta.live_remove).lower()}</live-remove-allowed>"
        "<cimom-restart>false</cimom-restart>"
        f"<stateless-ready>{str(meta.stateless_ready).lower()}</stateless-ready>"
        f"<overlay>{str(meta.overlay).lower()}</overlay>"
        f'<payloads><payload name="{meta.payloads[0]}" type="vgz" size="{len(payload)}">'
        f'<checksum checksum-type="sha-256">{sha}</checksum></payload></payloads>'
        "</vib>"
    )
    return text.encode()


def _bulletin_xml(meta: VibMeta) -> bytes:
    cid = f"{meta.component}_{meta.component_version}"
    return (
        "<bulletin>"
        f"<id>{cid}</id><vendor>{meta.vendor}</vendor><summary>{_xml_escape(meta.summary)}</summary>"
        f"<severity>general</severity><category>enhancement</category><releaseType>extension</releaseType>"
        f"<releaseDate>{meta.release_date}T00:00:00</releaseDate>"
        f'<componentNameSpec name="{meta.component}" uiString="{_xml_escape(meta.component_display)}"/>'
        f'<componentVersionSpec version="{meta.component_version}" uiString="{meta.component_display_version}"/>'
        f"<vibList><vibID>{meta.vib_id}</vibID></vibList>"
        "</bulletin>"
    ).encode()


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _ar(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    out.write(b"!<arch>\n")
    for name, data in members:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode()
        out.write(header)
        out.write(data)
        if len(data) % 2:
            out.write(b"\n")
    return out.getvalue()


def build_vib(meta: VibMeta) -> bytes:
    payload = f"lab payload of {meta.vib_id}\n".encode()
    return _ar([("descriptor.xml", _descriptor_xml(meta, payload)), ("sig.pkcs7", b""), (meta.payloads[0], payload)])


def build_bundle(meta: VibMeta) -> bytes:
    vib = build_vib(meta)
    meta_zip = io.BytesIO()
    with zipfile.ZipFile(meta_zip, "w", zipfile.ZIP_DEFLATED) as mz:
        mz.writestr(f"vibs/{meta.name}-{hashlib.sha1(vib).hexdigest()[:20]}.xml", _descriptor_xml(meta, vib))
        mz.writestr(f"bulletins/{meta.component}_{meta.component_version}.xml", _bulletin_xml(meta))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(
            "index.xml",
            f"<vendorList><vendor><name>{meta.vendor}</name><code>NVD</code><indexfile>vendor-index.xml</indexfile>"
            "<relativePath></relativePath></vendor></vendorList>",
        )
        z.writestr(
            "vendor-index.xml",
            "<vendor><metadata><url>metadata.zip</url>"
            "<productId>embeddedEsx</productId><version>8.0.0</version></metadata></vendor>",
        )
        z.writestr("metadata.zip", meta_zip.getvalue())
        z.writestr(f"vib20/{meta.name}/{meta.vib_id}.vib", vib)
    return out.getvalue()


def build_depot(depot_dir: Path, drivers: list[str] | None = None) -> list[Path]:
    """Write a bundle zip and a bare VIB per driver version into ``depot_dir``; return the zips."""
    depot_dir.mkdir(parents=True, exist_ok=True)
    zips = []
    for driver in drivers or list(DEPOT_DRIVERS):
        meta = driver_meta(driver)
        path = depot_dir / bundle_file_name(driver)
        if not path.exists():
            path.write_bytes(build_bundle(meta))
        vib_path = depot_dir / vib_file_name(driver)
        if not vib_path.exists():
            vib_path.write_bytes(build_vib(meta))
        zips.append(path)
    return zips


# -- reading (what the simulated esxcli does) -------------------------------------------------------------


def _parse_ar(data: bytes) -> dict[str, bytes]:
    if not data.startswith(b"!<arch>\n"):
        raise ValueError("not an ar archive")
    pos, members = 8, {}
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        members[name] = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size % 2)
    return members


def _text(root: ET.Element, path: str, default: str = "") -> str:
    node = root.find(path)
    return (node.text or "").strip() if node is not None and node.text is not None else default


def parse_descriptor(xml: bytes, bulletin: ET.Element | None = None) -> VibMeta:
    root = ET.fromstring(xml)
    depends = tuple(
        f"{c.get('name')} {c.get('relation')} {c.get('version')}".strip()
        for c in root.findall("relationships/depends/constraint")
    )
    name = _text(root, "name")
    version = _text(root, "version")
    component, display, cversion, cdisplay = name, _text(root, "summary"), version, version.split("-")[0]
    if bulletin is not None:
        spec = bulletin.find("componentNameSpec")
        vspec = bulletin.find("componentVersionSpec")
        if spec is not None and vspec is not None:
            component, display = spec.get("name", name), spec.get("uiString", display)
            cversion, cdisplay = vspec.get("version", version), vspec.get("uiString", cdisplay)
    return VibMeta(
        name=name,
        version=version,
        vendor=_text(root, "vendor"),
        summary=_text(root, "summary"),
        description=_text(root, "description"),
        release_date=_text(root, "release-date")[:10],
        acceptance=_ACCEPTANCE_XML.get(_text(root, "acceptance-level"), "PartnerSupported"),
        vib_type=_text(root, "type", "bootbank"),
        maintenance_mode=_text(root, "system-requires/maintenance-mode") == "true",
        live_install=_text(root, "live-install-allowed") == "true",
        live_remove=_text(root, "live-remove-allowed") == "true",
        stateless_ready=_text(root, "stateless-ready") == "true",
        overlay=_text(root, "overlay") == "true",
        depends=depends,
        tags=tuple(t.text or "" for t in root.findall("software-tags/tag")),
        payloads=tuple(p.get("name", "") for p in root.findall("payloads/payload")),
        component=component,
        component_display=display,
        component_version=cversion,
        component_display_version=cdisplay,
    )


def read_vib(path: Path) -> VibMeta:
    try:
        members = _parse_ar(path.read_bytes())
        return parse_descriptor(members["descriptor.xml"])
    except (ValueError, KeyError, ET.ParseError) as exc:
        raise BundleError("VibFormatError", f"Bad VIB archive header ({exc})") from exc


def read_bundle(path: Path, url: str) -> list[VibMeta]:
    """VIBs of an offline bundle; errors carry the esxcli error class and message of a real host."""
    try:
        z = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise BundleError(
            "MetadataDownloadError",
            f"Could not download from depot at {url}, skipping (('{url}', '', 'Error extracting index.xml from {path_esx(url)}: "
            f'"File is not a zip file"\'))\n        url = {url}',
        ) from exc
    with z:
        names = set(z.namelist())
        if "index.xml" not in names:
            raise BundleError(
                "MetadataDownloadError",
                f"Could not download from depot at {url}, skipping (('{url}', '', 'Error extracting index.xml from {path_esx(url)}: "
                f"\"There is no item named \\'index.xml\\' in the archive\"'))\n        url = {url}",
            )
        if "metadata.zip" not in names:
            raise BundleError(
                "MetadataDownloadError", f"Could not download from depot at {url}: no metadata.zip\n        url = {url}"
            )
        with zipfile.ZipFile(io.BytesIO(z.read("metadata.zip"))) as mz:
            bulletins = [ET.fromstring(mz.read(n)) for n in mz.namelist() if n.startswith("bulletins/")]
            metas = []
            for n in mz.namelist():
                if n.startswith("vibs/"):
                    xml = mz.read(n)
                    vib_name = _text(ET.fromstring(xml), "name")
                    bulletin = next(
                        (b for b in bulletins if vib_name and any(vib_name in (v.text or "") for v in b.iter("vibID"))),
                        None,
                    )
                    metas.append(parse_descriptor(xml, bulletin))
    return metas


def path_esx(url: str) -> str:
    return re.sub(r"^zip:(.*)\?index\.xml$", r"\1", url)


def version_key(version: str) -> tuple:
    """Order VIB versions the way ESXi does for these packages: numeric fields left to right."""
    return tuple(int(x) if x.isdigit() else x for x in re.split(r"[.\-]", version))
