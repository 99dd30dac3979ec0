"""What ``gpufleet promote FROM TO`` carries from one stack to the next: the promotable settings, matched by role.

Promotable settings (each a *kind*, the names ``--only`` takes):

- ``driver``: the NVIDIA host driver, the fleet's ``driver:`` and each host's own ``driver:``: version, kind and the
  bundle's file name. The directories stay TO's (each stack has its own datastore and depot): TO's
  ``/vmfs/volumes/vsan-staging/depot/`` gets FROM's ``NVD-AIE-800_550.127.06-....zip``.
- ``guest``: the guest driver of the ``guest:`` blocks (source, the .run file's name, version), per VM role,
  written where TO's VM takes it from (its own ``guest:`` or its template's).
- ``vgpu`` / ``mig``: a VM role's vGPU profiles (``mig`` when a profile is MIG-backed); TO's GPU pins are kept.
- ``licensing``: ``licensing.featureType``.

A *role* is what a host or VM is across stacks: its ``role:`` when the stack gives one, else its name without the
stack's prefix, the first ``-`` part when every VM (every host) of the stack starts with that same part
(``dev-notebook-01`` -> ``notebook-01`` in a stack whose VMs all start ``dev-``, ``stg-notebook-01`` -> the same
role in one whose VMs all start ``stg-``), else the name itself. Several VMs may share a role: FROM's must agree on
each setting, and TO's all get it.

``content_hash(stack)`` stamps a stack's promotable settings (by role, directories left out), so a recorded proof
names the content it proved. ``apply_edits`` writes TO's stack file by a ruamel round trip: comments, order, quotes
and flow style stay as they were; only the promoted values change.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from gpufleet.catalog import lookup_profile, profile_key
from gpufleet.errors import SpecError, SpecIssue
from gpufleet.spec.dump import stack_form
from gpufleet.spec.guest_models import GuestDriverSpec
from gpufleet.spec.models import DriverSpec, Fleet, HostSpec, VmSpec
from gpufleet.spec.stack import FLEET_KEY, Stack

__all__ = [
    "KINDS",
    "PromotionChange",
    "Edit",
    "Promotion",
    "apply_edits",
    "content_hash",
    "parse_kinds",
    "promotion",
    "roles_of",
]

KINDS = ("driver", "guest", "vgpu", "mig", "licensing")
DELETE = object()  # an Edit value: remove the key

Key = str | int


@dataclass(frozen=True)
class Edit:
    """Set ``value`` at ``keys`` inside TO's fleet mapping (``("vms", 3, "vgpu", 0, "profile")``)."""

    keys: tuple[Key, ...]
    value: Any


@dataclass(frozen=True)
class PromotionChange:
    """One promotable setting that differs: where in TO (a named path), TO's value now, FROM's (what TO gets)."""

    kind: str
    path: str
    role: str | None
    current: Any
    promoted: Any
    edits: tuple[Edit, ...] = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": self.path,
            "role": self.role,
            "current": self.current,
            "promoted": self.promoted,
        }


@dataclass(frozen=True)
class Unmatched:
    """A host or VM role found on one side only: nothing is promoted for it (listed, never dropped silently)."""

    kind: str  # "host" or "vm"
    name: str
    role: str
    side: str  # "from" or "to": the stack that has it

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "role": self.role, "onlyIn": self.side}


@dataclass(frozen=True)
class Promotion:
    changes: list[PromotionChange]
    unmatched: list[Unmatched]

    @property
    def edits(self) -> list[Edit]:
        return [e for c in self.changes for e in c.edits]


def parse_kinds(only: str | None) -> tuple[str, ...]:
    """``--only driver,vgpu`` -> ``("driver", "vgpu")``; SpecError naming the unknown ones and the valid kinds."""
    if not only:
        return KINDS
    kinds = tuple(dict.fromkeys(k.strip() for k in only.split(",") if k.strip()))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise SpecError(
            [SpecIssue("--only", f"unknown kind(s) {', '.join(map(repr, unknown)) or 'none given'}", valid=KINDS)]
        )
    return kinds


# -- roles ----------------------------------------------------------------------------------------------------


def roles_of(items: Sequence[HostSpec] | Sequence[VmSpec]) -> dict[str, str]:
    """Name -> role for the hosts or the VMs of one stack (see the module's docstring)."""
    names = [i.name for i in items]
    firsts = {n.split("-", 1)[0] for n in names}
    shared = len(firsts) == 1 and all("-" in n and n.split("-", 1)[1] for n in names)
    return {i.name: i.role or (i.name.split("-", 1)[1] if shared else i.name) for i in items}


def _by_role(items: Sequence[Any], roles: dict[str, str]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {}
    for item in items:
        grouped.setdefault(roles[item.name], []).append(item)
    return grouped


# -- identities: what is compared and hashed (no stack-local directory) --------------------------------------------


def _base(path: str | None) -> str | None:
    return path.rsplit("/", 1)[-1] if path else None


def _dir(path: str) -> str:
    return path.rsplit("/", 1)[0] + "/" if "/" in path else ""


def _driver_id(d: DriverSpec | None) -> dict[str, Any] | None:
    return None if d is None else {"version": d.version, "kind": d.kind, "bundle": _base(d.bundle)}


def _guest_id(d: GuestDriverSpec | None) -> dict[str, Any] | None:
    if d is None:
        return None
    return {"source": d.source, "file": _base(d.path) if d.source == "run" else None, "version": d.named_version}


def _profiles(vm: VmSpec) -> list[str]:
    """The VM's vGPU profiles as its stack writes them (what an edit writes and a change shows)."""
    return [v.profile.spelled for v in vm.vgpu]


def _same_profiles(a: list[str], b: list[str]) -> bool:
    # grid_ and nvidia_ spell the same profile
    return [profile_key(p) for p in a] == [profile_key(p) for p in b]


def _vgpu_kind(*lists: list[str]) -> str:
    mig = any((found := lookup_profile(p)) is not None and found[1].mig_backed for ps in lists for p in ps)
    return "mig" if mig else "vgpu"


def _guest_driver(fleet: Fleet, vm: VmSpec) -> GuestDriverSpec | None:
    guest = fleet.guest_for(vm)
    return guest.driver if guest else None


def settings(stack: Stack) -> dict[str, Any]:
    """A stack's promotable settings by role, as compared and hashed."""
    fleet = stack.fleet
    hosts, vms = roles_of(fleet.hosts), roles_of(fleet.vms)

    def per_role(items: Sequence[Any], roles: dict[str, str], value: Any) -> dict[str, list[Any]]:
        grouped: dict[str, list[Any]] = {}
        for item in items:
            grouped.setdefault(roles[item.name], []).append(value(item))
        return {r: sorted(v, key=lambda x: json.dumps(x, sort_keys=True)) for r, v in sorted(grouped.items())}

    return {
        "driver": _driver_id(fleet.driver),
        "hosts": per_role(fleet.hosts, hosts, lambda h: _driver_id(fleet.driver_for(h))),
        "guest": per_role(fleet.vms, vms, lambda v: _guest_id(_guest_driver(fleet, v))),
        "vgpu": per_role(fleet.vms, vms, lambda v: [str(r.profile) for r in v.vgpu]),
        "licensing": {"featureType": fleet.licensing.feature_type},
    }


def content_hash(stack: Stack) -> str:
    """``sha256:<hex>`` of the stack's promotable settings (canonical JSON)."""
    canonical = json.dumps(settings(stack), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


# -- the diff -------------------------------------------------------------------------------------------------


def _one(values: Iterable[Any], what: str, role: str, names: list[str]) -> Any:
    """FROM's single value for a role; SpecError when FROM's hosts / VMs of the role disagree."""
    distinct = {json.dumps(v, sort_keys=True): v for v in values}
    if len(distinct) > 1:
        raise SpecError(
            [
                SpecIssue(
                    f"role {role}",
                    f"FROM's {', '.join(names)} share this role but not their {what}: promote what?",
                    valid=tuple(distinct),
                )
            ]
        )
    return next(iter(distinct.values()))


def _driver_edits(
    base: tuple[Key, ...], source: DriverSpec, into: DriverSpec | None, layout: DriverSpec | None
) -> tuple[list[Edit], dict[str, Any]]:
    """The edits that give TO's driver mapping at ``base`` FROM's driver, keeping ``layout``'s directories."""
    if layout is None:
        whole = stack_form(source)
        return [Edit(base, whole)], whole
    values: dict[str, Any] = {
        "version": source.version,
        "kind": source.kind,
        "bundle": _dir(layout.bundle) + (_base(source.bundle) or ""),
    }
    if layout.local_path:
        values["localPath"] = _dir(layout.local_path) + (_base(source.local_path) or _base(source.bundle) or "")
    if into is None:  # a host gets an override of its own
        return [Edit(base, values)], values
    current = stack_form(into)
    return [Edit((*base, k), v) for k, v in values.items() if current.get(k) != v], values


def _show_driver(d: DriverSpec | None) -> str | None:
    return None if d is None else f"{d.version} ({d.kind} {_base(d.bundle)})"


def _show_guest(d: GuestDriverSpec | None) -> str | None:
    if d is None:
        return None
    what = _base(d.path) if d.source == "run" else f"packages {d.path}"
    return f"{d.named_version or 'paired with the host'} ({what})"


def promotion(source: Stack, target: Stack, kinds: Sequence[str] = KINDS) -> Promotion:
    """The promotable settings of ``source`` (FROM) that differ in ``target`` (TO), as changes with their edits."""
    src, dst = source.fleet, target.fleet
    changes: list[PromotionChange] = []
    unmatched: list[Unmatched] = []
    host_roles, src_host_roles = roles_of(dst.hosts), roles_of(src.hosts)
    vm_roles, src_vm_roles = roles_of(dst.vms), roles_of(src.vms)
    src_hosts, src_vms = _by_role(src.hosts, src_host_roles), _by_role(src.vms, src_vm_roles)
    for kind, items, roles, by_role in (("host", dst.hosts, host_roles, src_hosts), ("vm", dst.vms, vm_roles, src_vms)):
        if (kind == "host" and "driver" not in kinds) or (kind == "vm" and not {"guest", "vgpu", "mig"} & set(kinds)):
            continue  # roles of no interest to the kinds asked for
        mine = set(roles.values())
        unmatched += [Unmatched(kind, i.name, roles[i.name], "to") for i in items if roles[i.name] not in by_role]
        unmatched += [
            Unmatched(kind, i.name, r, "from") for r, group in by_role.items() if r not in mine for i in group
        ]

    if "driver" in kinds:
        if src.driver is not None and _driver_id(src.driver) != _driver_id(dst.driver):
            edits, values = _driver_edits(("driver",), src.driver, dst.driver, dst.driver)
            changes.append(
                PromotionChange(
                    "driver", "driver", None, _show_driver(dst.driver), _show_driver(src.driver), tuple(edits)
                )
            )
        for index, host in enumerate(dst.hosts):
            group = src_hosts.get(host_roles[host.name])
            if not group:
                continue
            role = host_roles[host.name]
            wanted_id = _one((_driver_id(src.driver_for(h)) for h in group), "driver", role, [h.name for h in group])
            wanted = next(src.driver_for(h) for h in group)
            has_own = any(h.driver is not None for h in group)
            if wanted is None or (host.driver is None and not (has_own and wanted_id != _driver_id(src.driver))):
                continue  # TO's host follows TO's fleet driver, as FROM's follows FROM's
            if _driver_id(host.driver) == wanted_id:
                continue
            edits, _ = _driver_edits(("hosts", index, "driver"), wanted, host.driver, host.driver or dst.driver)
            changes.append(
                PromotionChange(
                    "driver",
                    f"hosts[{host.name}].driver",
                    role,
                    _show_driver(dst.driver_for(host)),
                    _show_driver(wanted),
                    tuple(edits),
                )
            )

    template_edits: dict[int, tuple[Any, PromotionChange]] = {}
    for index, vm in enumerate(dst.vms):
        role = vm_roles[vm.name]
        group = src_vms.get(role)
        if not group:
            continue
        names = [v.name for v in group]
        profiles = _one((_profiles(v) for v in group), "vGPU profiles", role, names)
        kind = _vgpu_kind(profiles, _profiles(vm))
        if kind in kinds and profiles and not _same_profiles(profiles, _profiles(vm)):
            if len(profiles) == len(vm.vgpu):
                edits = tuple(Edit(("vms", index, "vgpu", i, "profile"), p) for i, p in enumerate(profiles))
            else:  # another count: the list itself, TO's pins kept where the position still exists
                items = [
                    {"profile": p, **({"gpu": vm.vgpu[i].gpu} if i < len(vm.vgpu) and vm.vgpu[i].gpu else {})}
                    for i, p in enumerate(profiles)
                ]
                edits = (Edit(("vms", index, "vgpu"), items),)
            changes.append(PromotionChange(kind, f"vms[{vm.name}].vgpu", role, _profiles(vm), profiles, edits))
        if "guest" in kinds:
            wanted_id = _one((_guest_id(_guest_driver(src, v)) for v in group), "guest driver", role, names)
            wanted = next(_guest_driver(src, v) for v in group)
            change = _guest_change(dst, index, vm, role, wanted, wanted_id)
            if change is None:
                continue
            if change.path.startswith("templates["):  # one template, several VMs: one change, if they agree
                t_index = change.edits[0].keys[1]
                seen = template_edits.get(t_index)  # type: ignore[arg-type]
                if seen is not None:
                    if seen[0] != wanted_id:
                        raise SpecError(
                            [
                                SpecIssue(
                                    change.path,
                                    "TO's VMs of this template have roles whose FROM "
                                    "guest drivers differ: give them guest blocks of their own",
                                )
                            ]
                        )
                    continue
                template_edits[t_index] = (wanted_id, change)  # type: ignore[index]
            changes.append(change)

    if "licensing" in kinds and src.licensing.feature_type != dst.licensing.feature_type:
        raw = (target.config.get(FLEET_KEY) or {}).get("licensing")
        edit = (
            Edit(("licensing", "featureType"), src.licensing.feature_type)
            if isinstance(raw, dict)
            else Edit(("licensing",), {"featureType": src.licensing.feature_type})
        )
        changes.append(
            PromotionChange(
                "licensing",
                "licensing.featureType",
                None,
                dst.licensing.feature_type,
                src.licensing.feature_type,
                (edit,),
            )
        )
    return Promotion(changes, unmatched)


def _guest_change(
    dst: Fleet, index: int, vm: VmSpec, role: str, wanted: GuestDriverSpec | None, wanted_id: Any
) -> PromotionChange | None:
    """FROM's guest driver for TO's VM, written where TO's VM takes its guest block from."""
    if wanted is None:
        return None
    if vm.guest is not None:
        base: tuple[Key, ...] = ("vms", index, "guest")
        path, guest = f"vms[{vm.name}].guest.driver", vm.guest
    else:
        template = dst.template(vm.template)
        if template is None or template.guest is None:
            return None  # TO does not manage this guest's software: nothing to carry
        t_index = dst.templates.index(template)
        base, path, guest = ("templates", t_index, "guest"), f"templates[{template.name}].guest.driver", template.guest
    current = guest.driver
    if _guest_id(current) == wanted_id:
        return None
    if current is None:
        whole = stack_form(wanted)
        edits: tuple[Edit, ...] = (Edit((*base, "driver"), whole),)
    else:
        values: dict[str, Any] = {"source": wanted.source}
        if wanted.source == "run":
            values["path"] = (_dir(current.path) if current.source == "run" else "") + (_base(wanted.path) or "")
        elif current.source != "packages":
            values["path"] = wanted.path
        if wanted.version is not None or current.version is not None:
            values["version"] = wanted.version if wanted.version is not None else DELETE
        have = stack_form(current)
        edits = tuple(
            Edit((*base, "driver", k), v)
            for k, v in values.items()
            if have.get(k) != v and not (v is DELETE and k not in have)
        )
    return PromotionChange("guest", path, role, _show_guest(current), _show_guest(wanted), edits)


# -- writing TO's stack file ------------------------------------------------------------------------------------


# The layouts stack files are written in (indentation of mappings, of sequences, of the dash; line width): the one
# whose plain round trip gives the file back byte for byte is used, so an edit changes only the promoted lines.
_LAYOUTS = [(2, 4, 2, 4096), (2, 2, 0, 4096), (2, 4, 2, 80), (2, 2, 0, 80)]


def _round_trip_yaml(layout: tuple[int, int, int, int] = _LAYOUTS[0]) -> YAML:
    mapping, sequence, offset, width = layout
    yaml = YAML()  # round trip: comments, key order, flow style kept
    yaml.preserve_quotes = True
    yaml.width = width
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    yaml.brace_single_entry_mapping_in_flow_sequence = True  # [{profile: x}] stays [{profile: x}]
    return yaml


def _dump(yaml: YAML, document: Any) -> str:
    out = io.StringIO()
    yaml.dump(document, out)
    return out.getvalue()


def _yaml_for(text: str) -> tuple[YAML, bool]:
    """The round-trip YAML in the file's own layout (the first that reproduces it, else the closest), and whether
    one reproduced it."""
    scored = []
    for layout in _LAYOUTS:
        yaml = _round_trip_yaml(layout)
        dumped = _dump(yaml, yaml.load(text))
        if dumped == text:
            return yaml, True
        matcher = difflib.SequenceMatcher(None, dumped.splitlines(), text.splitlines(), autojunk=False)
        scored.append((matcher.ratio(), -len(scored), yaml))
    return max(scored, key=lambda s: s[:2])[2], False  # the closest layout (a generated file)


def _carry_over(original: str, dumped: str, edited: str) -> str:
    """``edited`` as lines changed in ``original``: the lines the edits changed in ``dumped`` (the file through
    ruamel unedited, in a layout that does not reproduce it) replaced where ``original`` has them verbatim; when a
    changed line is not found verbatim, the whole ``edited`` text (re-laid out, same content)."""
    orig, base, new = original.splitlines(True), dumped.splitlines(True), edited.splitlines(True)
    to_orig: dict[int, int] = {}
    for tag, i1, i2, j1, _ in difflib.SequenceMatcher(None, base, orig, autojunk=False).get_opcodes():
        if tag == "equal":
            to_orig.update({i1 + k: j1 + k for k in range(i2 - i1)})
    out, at = [], 0
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, base, new, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        span = [to_orig.get(i) for i in range(i1, i2)]
        anchor = to_orig.get(i1) if i1 < i2 else (to_orig.get(i1 - 1, -1) + 1 if i1 else 0)
        if anchor is None or None in span or span != list(range(anchor, anchor + len(span))) or anchor < at:
            return edited
        out += orig[at:anchor] + new[j1:j2]
        at = anchor + len(span)
    return "".join(out + orig[at:])


def _plain(value: Any, flow: bool) -> Any:
    """A Python value as ruamel nodes (a flow-style sequence stays flow style)."""
    if isinstance(value, dict):
        mapping = CommentedMap((k, _plain(v, flow)) for k, v in value.items())
        if flow:
            mapping.fa.set_flow_style()
        return mapping
    if isinstance(value, list):
        seq = CommentedSeq(_plain(v, flow) for v in value)
        if flow:
            seq.fa.set_flow_style()
        return seq
    return value


def apply_edits(text: str, edits: Sequence[Edit]) -> str:
    """TO's stack file text with ``edits`` applied inside ``config: gpufleet:fleet``, everything else as it was."""
    yaml, exact = _yaml_for(text)
    document = yaml.load(text)
    fleet = document["config"][FLEET_KEY]
    for edit in edits:
        node = fleet
        for key in edit.keys[:-1]:
            if isinstance(node, dict) and key not in node:
                node[key] = CommentedMap()
            node = node[key]
        last = edit.keys[-1]
        if edit.value is DELETE:
            node.pop(last, None)
            continue
        old = node.get(last) if isinstance(node, dict) else node[last]
        flow = bool(getattr(getattr(old, "fa", None), "flow_style", lambda: False)())
        node[last] = _plain(edit.value, flow)
    edited = _dump(yaml, document)
    return edited if exact else _carry_over(text, _dump(yaml, yaml.load(text)), edited)


def round_trip(text: str) -> str:
    """The text through the same load and dump with no edit (a stack file must come back byte for byte)."""
    return apply_edits(text, [])
