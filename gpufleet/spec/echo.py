"""How a value from a stack file is echoed back in a message: short, one line, safe to print; and the rule that
text in a stack is printable (``PrintableModel``, the base of every spec model).

A stack is hostile input like any other: a value may be 5,000 characters, an integer of thousands of digits
(``str()`` of it raises past Python's 4,300-digit limit), carry control characters or a whole mapping. Every
message that names a value goes through ``shown``; secrets never do (see ``gpufleet.spec.issues``).
"""

from __future__ import annotations

import math
import re

from pydantic import BaseModel, field_validator

MAX_SHOWN = 60  # characters of a value echoed in a message
_BIG_INT_BITS = 256  # beyond this an integer is described, not printed


def shown(value: object) -> str:
    """``value`` as the stack spells it (``true``, ``null``, ``'text'``, ``12``), bounded to ``MAX_SHOWN``
    characters; control characters escaped; containers described, not dumped (they may hold anything)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if value.bit_length() > _BIG_INT_BITS:
            digits = int(value.bit_length() * math.log10(2)) + 1
            return f"a number of about {digits} digits"
        text = str(value)
    elif isinstance(value, float):
        text = repr(value)
    elif isinstance(value, str):
        text = repr(value[: MAX_SHOWN + 1])  # repr escapes control characters; slice first: bounded work
    elif isinstance(value, dict):
        return f"a mapping of {len(value)} key(s)"
    elif isinstance(value, (list, tuple)):
        return f"a list of {len(value)} item(s)"
    else:
        return f"a {type(value).__name__}"
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


# Control characters (C0, DEL, C1) and the bidirectional overrides: a name carrying one prints as something else
# on a terminal, breaks XML reports and log lines, and is never what an operator meant.
CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(value: str) -> str:
    """``value`` when it holds no control character; else ValueError naming the character and its position."""
    bad = CONTROL_CHARACTER.search(value)
    if bad:
        raise ValueError(
            f"contains a control character (U+{ord(bad.group()):04X}) at position {bad.start() + 1}: "
            "names and values in a stack are printable text"
        )
    return value


class PrintableModel(BaseModel):
    """A model whose every text field (and text list item) is printable."""

    @field_validator("*", mode="after", check_fields=False)
    @classmethod
    def _no_control_characters(cls, value: object) -> object:
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                printable(text)
        return value
