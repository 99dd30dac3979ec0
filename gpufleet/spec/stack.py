"""Read a Pulumi stack config file (``stacks/Pulumi.<name>.yaml``) into a ``Stack``.

The fleet lives under ``config: gpufleet:fleet``, the vCenter connection under ``config: gpufleet:vcenter``.
Shape errors become one ``SpecIssue`` per problem with the path in the fleet (``vms[vm-mig-01].vgpu[1].profile``);
nothing is half-read: either a whole ``Stack`` or a ``SpecError`` listing every issue. The file is hostile input:
read bounded (``MAX_STACK_BYTES``, never hanging on a device or a FIFO), decoded as UTF-8, and a YAML error names
the file, line and column.
"""

from __future__ import annotations

import difflib
import os
import re
import select
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError

from gpufleet.errors import SpecError, SpecIssue
from gpufleet.spec.issues import issues_from_validation, with_names
from gpufleet.spec.models import Fleet, VcenterSpec

__all__ = ["FLEET_KEY", "VCENTER_KEY", "Stack", "issues_from_validation", "load_stack", "parse_stack", "stack_name"]

FLEET_KEY = "gpufleet:fleet"
VCENTER_KEY = "gpufleet:vcenter"


@dataclass(frozen=True)
class Stack:
    """A stack config file: its name (``lab`` for Pulumi.lab.yaml), the fleet and the vCenter connection."""

    name: str
    path: Path | None
    fleet: Fleet
    vcenter: VcenterSpec
    config: dict[str, Any]  # the whole `config:` mapping (other keys, Pulumi secrets as {secure: ...})


MAX_STACK_BYTES = 4 * 1024 * 1024  # a real stack is a few KiB: more is a mistake (a log, a disk image, /dev/zero)
READ_TIMEOUT_SECONDS = 10.0  # a pipe or FIFO that sends nothing for this long is refused, not waited on forever


def _refuse(where: str, message: str) -> SpecError:
    return SpecError([SpecIssue(where, message)])


def _read_bounded(path: Path) -> bytes:
    """The file's bytes, at most ``MAX_STACK_BYTES``; a directory, a symlink loop, a device or a silent FIFO is
    refused with a message, never a traceback or a hang (non-blocking open: a FIFO without a writer is empty)."""
    where = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise _refuse(where, "stack file not found") from exc
    except OSError as exc:
        raise _refuse(where, f"cannot open the stack file: {exc.strerror or exc}") from exc
    try:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            hint = " (an empty path names the current directory)" if where in ("", ".") else ""
            raise _refuse(where, f"is a directory, not a stack file{hint}; give e.g. stacks/Pulumi.lab.yaml")
        chunks: list[bytes] = []
        total = 0
        deadline = time.monotonic() + READ_TIMEOUT_SECONDS
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:  # a pipe whose writer has not written yet
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _refuse(
                        where, f"no data within {READ_TIMEOUT_SECONDS:.0f} s (a pipe or FIFO that sends nothing)"
                    ) from None
                select.select([fd], [], [], min(left, 0.5))
                continue
            except OSError as exc:
                raise _refuse(where, f"cannot read the stack file: {exc.strerror or exc}") from exc
            if not chunk:
                return b"".join(chunks)
            total += len(chunk)
            if total > MAX_STACK_BYTES:
                raise _refuse(
                    where, f"larger than {MAX_STACK_BYTES // (1024 * 1024)} MiB, the most a stack file may be"
                )
            chunks.append(chunk)
    finally:
        os.close(fd)


def _line_col(text: str | bytes, offset: int) -> tuple[int, int]:
    """1-based line and column of ``offset``."""
    newline = "\n" if isinstance(text, str) else b"\n"
    line = text.count(newline, 0, offset) + 1  # type: ignore[arg-type]
    return line, offset - (text.rfind(newline, 0, offset) + 1) + 1  # type: ignore[arg-type]


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _line_col(data, exc.start)
        raise _refuse(
            f"{path}:{line}:{col}", f"not UTF-8 text: byte 0x{data[exc.start]:02x} cannot start or continue a character"
        ) from exc


_LONG_NUMBER = re.compile(rf"\d{{{sys.get_int_max_str_digits() or 4300},}}")


def _parse_yaml(path: Path, text: str) -> Any:
    """The YAML document; a syntax error names the file, line and column (``stack.yaml:12:5``)."""
    try:
        return YAML(typ="safe").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = (exc.problem or exc.context or "syntax error").strip()
        context = ""
        if exc.context and exc.problem and exc.context_mark is not None:
            context = f" ({exc.context} at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1})"
        raise _refuse(where, f"not valid YAML: {problem}{context}") from exc
    except ReaderError as exc:
        line, col = _line_col(text, exc.position)
        raise _refuse(
            f"{path}:{line}:{col}", f"not valid YAML: {exc.reason} (character #x{exc.character:04x})"
        ) from exc
    except YAMLError as exc:
        raise _refuse(str(path), f"not valid YAML: {str(exc).strip().splitlines()[0]}") from exc
    except ValueError as exc:  # the YAML constructor's int(): a number past Python's digit limit
        long = _LONG_NUMBER.search(text)
        line, col = _line_col(text, long.start()) if long else (0, 0)
        where = f"{path}:{line}:{col}" if long else str(path)
        raise _refuse(where, f"a number too long to read ({len(long.group()) if long else 'many'} digits)") from exc
    except RecursionError as exc:
        raise _refuse(str(path), "nested too deeply to be a stack file") from exc


def _read_yaml(path: Path) -> Any:
    document = _parse_yaml(path, _decode(path, _read_bounded(path)))
    if document is None:
        raise _refuse(str(path), "the stack file is empty (no YAML document in it)")
    return document


def _close_key(wanted: str, mapping: Any) -> str | None:
    """A key of ``mapping`` that looks like a misspelling of ``wanted`` (``gpufleet:flet``, ``Config``)."""
    if not isinstance(mapping, dict):
        return None
    keys = [k for k in mapping if isinstance(k, str) and k != wanted]
    by_case = [k for k in keys if k.lower() == wanted.lower()]
    return (by_case or difflib.get_close_matches(wanted, keys, n=1, cutoff=0.75) or [None])[0]


def parse_stack(document: Any, name: str = "stack", path: Path | None = None) -> Stack:
    """Build a Stack from an already-parsed stack document (``{"config": {...}}``)."""
    source = str(path) if path else name
    if not isinstance(document, dict) or not isinstance(document.get("config"), dict):
        meant = _close_key("config", document)
        hint = f"; did you mean `config` (not `{meant}`)?" if meant else ""
        raise SpecError([SpecIssue("config", f"a Pulumi stack file needs a top-level `config:` mapping{hint}")], source)
    config = document["config"]
    issues: list[SpecIssue] = []
    fleet = vcenter = None
    if FLEET_KEY not in config:
        meant = _close_key(FLEET_KEY, config)
        hint = f"; did you mean it, not `{meant}`?" if meant else ""
        issues.append(SpecIssue(f"config.{FLEET_KEY}", f"missing: the fleet description lives under this key{hint}"))
    else:
        try:
            fleet = Fleet.model_validate(config[FLEET_KEY])
        except ValidationError as exc:
            issues.extend(with_names(issues_from_validation(exc), config[FLEET_KEY]))
    try:
        vcenter = VcenterSpec.model_validate(config.get(VCENTER_KEY) or {})
    except ValidationError as exc:
        issues.extend(issues_from_validation(exc, root="vcenter", model=VcenterSpec))
    if issues or fleet is None or vcenter is None:
        raise SpecError(issues, source)
    return Stack(name=name, path=path, fleet=fleet, vcenter=vcenter, config=config)


def stack_name(path: Path) -> str:
    """``stacks/Pulumi.lab.yaml`` -> ``lab``."""
    stem = path.name
    for suffix in (".yaml", ".yml"):
        stem = stem.removesuffix(suffix)
    return stem.removeprefix("Pulumi.")


def load_stack(path: str | Path) -> Stack:
    """Read and shape-check a stack config file. Hardware rules: ``gpufleet.spec.validate.validate_fleet``."""
    path = Path(path)
    return parse_stack(_read_yaml(path), name=stack_name(path), path=path)
