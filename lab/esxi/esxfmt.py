"""esxcli output formatting: the human formats (simple, table) and ``--formatter=xml|csv|keyvalue|json|python``.

Behaviour reimplemented from how ESXi's esxcli formats results (vmware esxcli ``Formatters.py`` as published in
VMware's pyVpx): a result is a data object (``Struct``), a list of them, or a primitive.

* simple: optional header line, then ``   Display Name: value`` (3-space indent), objects separated by a blank
  line, lists of primitives joined with ``", "``;
* table: columns padded to their widest cell, two spaces between columns, a dashes row (the last column's
  dashes as long as its title), integer columns right-justified, trailing blanks stripped;
* xml / keyvalue / csv / json / python: every field (sorted by field name), typed ``string``/``integer``/
  ``boolean``/``structure``; csv has a trailing comma on each line, as esxcli does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


def split_camel(name: str) -> str:
    name = _CAMEL.sub(" ", name)
    return name[0].upper() + name[1:]


@dataclass
class Field:
    name: str  # field name in structured output (e.g. "VIBsInstalled")
    value: Any  # str | int | bool | None | list | Struct
    label: str | None = None  # display name in simple/table output (default: camel case split)
    printf: str | None = None  # text-only printf format, e.g. "0x%02x"
    hidden: bool = False  # structured output only (e.g. an ID shown as the header line)

    @property
    def display(self) -> str:
        return self.label if self.label is not None else split_camel(self.name)


@dataclass
class Struct:
    type_name: str
    fields: list[Field] = field(default_factory=list)
    header: str | None = None  # simple format: first line of the object (e.g. its ID)

    def get(self, name: str) -> Any:
        return next(f.value for f in self.fields if f.name == name)


# -- primitives ---------------------------------------------------------------------------------------------


def _prim(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _text_value(f: Field) -> str:
    if f.printf and isinstance(f.value, int) and not isinstance(f.value, bool):
        return f.printf % f.value
    return _prim(f.value)


# -- simple / table -------------------------------------------------------------------------------------------


def render_simple(value: Any) -> str:
    lines = _simple_lines(value, 0)
    return "\n".join(lines) + ("\n" if lines else "")


def _simple_lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, Struct):
        return _struct_lines(value, indent)
    if isinstance(value, list):
        if value and isinstance(value[0], Struct):
            out: list[str] = []
            for i, item in enumerate(value):
                if i:
                    out.append("")
                out.extend(_struct_lines(item, indent))
            return out
        return [pad + ", ".join(_prim(v) for v in value)]
    if value is None:
        return []
    return [pad + _prim(value)]


def _struct_lines(s: Struct, indent: int) -> list[str]:
    pad = " " * indent
    out = [pad + s.header] if s.header is not None else []
    inner = " " * (indent + 3)
    for f in s.fields:
        if f.hidden:
            continue
        if isinstance(f.value, Struct) or (isinstance(f.value, list) and f.value and isinstance(f.value[0], Struct)):
            out.append(f"{inner}{f.display}: ")
            out.extend(_simple_lines(f.value, indent + 6))
        elif isinstance(f.value, list):
            out.append(f"{inner}{f.display}: {', '.join(_prim(v) for v in f.value)}")
        else:
            out.append(f"{inner}{f.display}: {_text_value(f)}")
    return out


def render_table(rows: list[Struct], columns: list[str] | None = None) -> str:
    """Table of structs; ``columns`` are field names (default: all visible fields of the first row)."""
    if not rows:
        return ""
    names = columns or [f.name for f in rows[0].fields if not f.hidden]
    first = {f.name: f for f in rows[0].fields}
    titles = [first[n].display for n in names]
    right = [isinstance(first[n].value, int) and not isinstance(first[n].value, bool) for n in names]
    cells = []
    for row in rows:
        by_name = {f.name: f for f in row.fields}
        cells.append(
            [
                _text_value(by_name[n])
                if not isinstance(by_name[n].value, list)
                else ", ".join(map(_prim, by_name[n].value))
                for n in names
            ]
        )
    widths = [max([len(t)] + [len(r[i]) for r in cells]) for i, t in enumerate(titles)]
    dashes = ["-" * w for w in widths]
    if not right[-1]:
        dashes[-1] = "-" * len(titles[-1])
    out = []
    for line in [titles, dashes, *cells]:
        parts = []
        for i, (cell, width) in enumerate(zip(line, widths, strict=True)):
            if right[i]:
                parts.append(cell.rjust(width))
            elif i == len(line) - 1:
                parts.append(cell)
            else:
                parts.append(cell.ljust(width))
        out.append("  ".join(parts).rstrip())
    return "\n".join(out) + "\n"


# -- structured formatters ------------------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    if isinstance(value, Struct):
        return "structure"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return "string"


def _sorted_fields(s: Struct) -> list[Field]:
    return sorted(s.fields, key=lambda f: f.name)


def _list_item_type(lst: list) -> str:
    return _type_name(lst[0]) if lst else "string"


def _xml_escape(text: str) -> str:
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&apos;")
    )


def render_xml(value: Any) -> str:
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<output xmlns="http://www.vmware.com/Products/ESX/5.0/esxcli">',
        "<root>",
    ]

    def visit(v: Any, depth: int) -> None:
        pad = "   " * depth
        if isinstance(v, Struct):
            lines.append(f'{pad}<structure typeName="{_xml_escape(v.type_name)}">')
            for f in _sorted_fields(v):
                lines.append(f'{pad}   <field name="{_xml_escape(f.name)}">')
                visit(f.value, depth + 2)
                lines.append(f"{pad}   </field>")
            lines.append(f"{pad}</structure>")
        elif isinstance(v, list):
            lines.append(f'{pad}<list type="{_list_item_type(v)}">')
            for item in v:
                visit(item, depth + 1)
            lines.append(f"{pad}</list>")
        else:
            t = _type_name(v)
            lines.append(f"{pad}<{t}>{_xml_escape(_prim(v))}</{t}>")

    if value is not None:
        visit(value, 1)
    lines += ["</root>", "</output>"]
    return "\n".join(lines) + "\n"


def render_keyvalue(value: Any) -> str:
    out: list[str] = []

    def visit(v: Any, keys: list[str]) -> None:
        if isinstance(v, Struct):
            for f in _sorted_fields(v):
                visit(f.value, [*keys, v.type_name, f.name])
        elif isinstance(v, list):
            t = _list_item_type(v)
            if not v:
                out.append(".".join([*keys, t]) + "[] = ")
            for i, item in enumerate(v):
                visit(item, [*keys, f"{t}[{i}]"])
        else:
            key = ".".join([*keys, _type_name(v)])
            text = _prim(v).replace("\n", "\\n")
            out.append(f"{key}={text}")

    if value is not None:
        visit(value, [])
    return "".join(line + "\n" for line in out)


def render_csv(value: Any) -> str:
    """esxcli's csv: a header of field names and one line per object, each cell followed by a comma."""
    if value is None:
        return ""
    rows = value if isinstance(value, list) else [value]
    if rows and not isinstance(rows[0], Struct):
        return ",".join(_csv_cell(v, 1) for v in rows) + ",\n"
    out = []
    if rows:
        out.append(",".join(f.name for f in _sorted_fields(rows[0])) + ",")
    for row in rows:
        out.append("".join(_csv_cell(f.value, 1) + "," for f in _sorted_fields(row)))
    return "\n".join(out) + "\n"


def _csv_cell(value: Any, level: int) -> str:
    if isinstance(value, list):
        inner = "".join(_csv_cell(v, level + 1) + "," for v in value)
        return '"' * level + inner + '"' * level if value else ""
    if isinstance(value, Struct):
        inner = "".join(_csv_cell(f.value, level + 1) + "," for f in _sorted_fields(value))
        return '"' * level + inner + '"' * level
    text = _prim(value).replace("\n", "\\n")
    quote = False
    if "," in text:
        quote = True
    if '"' in text:
        text = text.replace('"', '"' * (2 * level))
        quote = True
    q = '"' * (level if level > 1 else 1)
    return f"{q}{text}{q}" if quote else text


def _json_str(text: str) -> str:
    for a, b in (
        ("\\", "\\\\"),
        ("/", "\\/"),
        ("\b", "\\b"),
        ("\f", "\\f"),
        ("\n", "\\n"),
        ("\r", "\\r"),
        ("\t", "\\t"),
        ('"', '\\"'),
    ):
        text = text.replace(a, b)
    return f'"{text}"'


def _py_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"') + '"'


def _render_script(value: Any, json_mode: bool) -> str:
    def visit(v: Any) -> str:
        if isinstance(v, Struct):
            return "{" + ", ".join(f'"{f.name}": {visit(f.value)}' for f in _sorted_fields(v)) + "}"
        if isinstance(v, list):
            return "[" + ", ".join(visit(i) for i in v) + "]"
        if isinstance(v, bool):
            return ("true" if v else "false") if json_mode else ("True" if v else "False")
        if isinstance(v, int | float):
            return str(v)
        if v is None:
            return "null" if json_mode else '""'
        return _json_str(str(v)) if json_mode else _py_str(str(v))

    return visit(value) + "\n"


def render_json(value: Any) -> str:
    return _render_script(value, json_mode=True)


def render_python(value: Any) -> str:
    return _render_script(value, json_mode=False)


STRUCTURED = {
    "xml": render_xml,
    "csv": render_csv,
    "keyvalue": render_keyvalue,
    "json": render_json,
    "python": render_python,
}
