"""Text for rich: every value that comes from outside (a stack's names and paths, a host's output, an error
message) is printed through ``esc``, so ``[/]`` or ``[bold]`` in it is shown as written, not parsed as markup
(rich raises ``MarkupError`` on an unmatched closing tag, and would restyle the rest)."""

from __future__ import annotations

from rich.markup import escape


def esc(value: object) -> str:
    """``value`` as text that rich prints literally. (A trailing backslash is doubled, as rich's ``escape`` does, so
    that it cannot escape a closing tag written right after it: ``f"[red]{esc(x)}[/]"``.)"""
    return escape(value if isinstance(value, str) else str(value))
