"""Third-party text made safe to print: one line, nothing a terminal or reader acts on."""

from __future__ import annotations

import os
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


def shown_path(path: str | os.PathLike[str]) -> str:
    """A file name or path as one printable line that SQLite and any terminal take: bytes
    that are not UTF-8 shown as `\\xff`, control characters (a newline) escaped as in
    `one_line`."""
    # Python hands a name whose bytes are not UTF-8 over as lone surrogates
    # (surrogateescape): printing or storing those raises, and names nothing readable.
    text = os.fspath(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    # Spaces stay as they are (macOS puts U+202F before "AM" in names): a name is shown
    # as close to itself as a line allows, and two names never show alike.
    return "".join(c if unicodedata.category(c) == "Zs" else _shown(c) for c in text)
