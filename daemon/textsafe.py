"""Third-party text made safe to print: one line, nothing a terminal or reader acts on."""

from __future__ import annotations

import unicodedata


def one_line(text: str) -> str:
    """`text` as one line of inert characters: every control or format character (C0, C1,
    DEL, newlines, tabs, bidi overrides, line separators) shown as its Python escape
    (`\\x1b`, `\\n`, `\\u202e`), any other space as a plain space."""
    # An anchor or URL from an export is shown, never obeyed: a newline must not start a
    # line of its own (a forged "Why:"), nor an escape sequence drive the terminal. csv and
    # json output carry such text exactly instead.
    if text.isprintable():
        return text
    return "".join(_shown(c) for c in text)


def _shown(ch: str) -> str:
    if ch.isprintable():
        return ch
    if unicodedata.category(ch) == "Zs":
        return " "
    return repr(ch)[1:-1]
