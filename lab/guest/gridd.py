"""nvidia-gridd of a guest persona: reads /etc/nvidia/gridd.conf and the client configuration token when it
(re)starts, then holds a licence after a short delay, the way the real daemon does (messages from
shared/reference/gridd_conf_and_client_token_facts.txt).

The lab's "license server" accepts exactly the token ``gpufleet lab up`` generated: the guest state keeps its
SHA-256 (never the token), so a wrong or stale token fails the way a real NLS rejects it.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from pathlib import Path

from gpufleet.catalog.licensing import FEATURE_PRODUCTS

LICENSE_SERVER = "dls.lab.local"
LICENSE_LIFETIME_S = 90 * 24 * 3600


def read_gridd_conf(root: Path) -> dict[str, str]:
    """KEY=VALUE lines of /etc/nvidia/gridd.conf (comments skipped); empty when the file is missing."""
    conf = root / "etc" / "nvidia" / "gridd.conf"
    values: dict[str, str] = {}
    if not conf.exists():
        return values
    for line in conf.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _token_dir(root: Path, conf: dict[str, str]) -> Path:
    custom = conf.get("ClientConfigTokenPath", "").strip().strip('"')
    guest_path = custom or "/etc/nvidia/ClientConfigToken"
    return root / guest_path.lstrip("/")


def _log(gridd: dict, now: float, message: str) -> None:
    stamp = datetime.fromtimestamp(now, UTC).strftime("%b %d %H:%M:%S")
    gridd.setdefault("log", []).append(f"{stamp} {{host}} nvidia-gridd[{gridd.get('pid', 0)}]: {message}")
    del gridd["log"][:-40]


def start(state: dict, root: Path, series: str | None, now: float | None = None) -> None:
    """(Re)start the daemon: decide now what licence it will hold, and from when."""
    from lab.guest.profiles import licensed_product_for_series

    now = time.time() if now is None else now
    gridd = state.setdefault("gridd", {})
    gridd.update(active=True, started_at=now, license=None, pid=int(now * 1000) % 60000 + 1000)
    _log(gridd, now, f"Started ({gridd['pid']})")
    _log(gridd, now, "vGPU Software package (0)")
    _log(gridd, now, "Ignore service provider licensing")
    if series is None:
        _log(gridd, now, "No vGPU device found; licensing not required")
        return
    conf = read_gridd_conf(root)
    try:
        feature = int(conf.get("FeatureType", "0"))
    except ValueError:
        feature = 0
        _log(gridd, now, f"Invalid FeatureType value {conf.get('FeatureType')!r}")
    if feature == 0:
        _log(gridd, now, "Licensing disabled (FeatureType=0)")
        return
    wanted = licensed_product_for_series(series) if feature == 1 else FEATURE_PRODUCTS.get(feature)
    tokens = sorted(_token_dir(root, conf).glob("*.tok"))
    if not tokens:
        _log(gridd, now, "Unable to fetch the client configuration token file")
        return
    _log(gridd, now, "Ignore service provider and node-locked licensing")
    _log(gridd, now, "NLS initialized")
    _log(gridd, now, f"Acquiring license. (Info: {LICENSE_SERVER}; {wanted})")
    accepted = state.get("license_token_sha256")
    digests = {hashlib.sha256(t.read_bytes().strip()).hexdigest() for t in tokens}
    if state.get("faults", {}).get("license_server_down"):
        error = "Error: Failed to connect to the license server"
    elif accepted is None or accepted not in digests:
        error = "Error: [1,7E2,2,0[7000000B,0,702C7]] Invalid client configuration token"
    elif wanted is None or wanted != licensed_product_for_series(series):
        error = "Error: [1,7E2,2,0[7000000B,0,702C7]] Requested feature was not found."
    else:
        error = None
    if error:
        _log(
            gridd,
            now,
            f"Failed to acquire/renew license from license server. (Info: {LICENSE_SERVER}; {wanted} - {error})",
        )
        return
    acquired = now + float(state.get("license_delay_s", 1.0))
    gridd["license"] = {"product": wanted, "acquired_at": acquired, "expiry": acquired + LICENSE_LIFETIME_S}
    expiry = _expiry_text(acquired + LICENSE_LIFETIME_S)
    gridd["pending_log"] = f"License acquired successfully. (Info: {LICENSE_SERVER}, {wanted}; Expiry: {expiry})"


def stop(state: dict, now: float | None = None) -> None:
    now = time.time() if now is None else now
    gridd = state.setdefault("gridd", {})
    if gridd.get("active"):
        _log(gridd, now, "Shutdown (license returned)")
    gridd.update(active=False, license=None)


def _expiry_text(ts: float) -> str:
    # nvidia-smi prints the expiry without zero padding: "2026-7-7 16:1:44 GMT".
    d = datetime.fromtimestamp(ts, UTC)
    return f"{d.year}-{d.month}-{d.day} {d.hour}:{d.minute}:{d.second} GMT"


def license_status(state: dict, now: float | None = None) -> str:
    """The guest's "License Status" value, in the real forms of the reference captures."""
    now = time.time() if now is None else now
    gridd = state.get("gridd") or {}
    lic = gridd.get("license")
    if gridd.get("active") and lic and now >= lic["acquired_at"]:
        return f"Licensed (Expiry: {_expiry_text(lic['expiry'])})"
    return "Unlicensed (Unrestricted)"


def journal(state: dict, host: str, now: float | None = None) -> list[str]:
    now = time.time() if now is None else now
    gridd = state.get("gridd") or {}
    lines = [line.replace("{host}", host) for line in gridd.get("log", [])]
    lic = gridd.get("license")
    if gridd.get("active") and lic and now >= lic["acquired_at"] and gridd.get("pending_log"):
        stamp = datetime.fromtimestamp(lic["acquired_at"], UTC).strftime("%b %d %H:%M:%S")
        lines.append(f"{stamp} {host} nvidia-gridd[{gridd.get('pid', 0)}]: {gridd['pending_log']}")
    return lines
