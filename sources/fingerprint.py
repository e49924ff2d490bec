"""Row fingerprints: an export row seen before is recognised before it is parsed."""

from __future__ import annotations

import hashlib
import sys
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import fields, is_dataclass
from functools import lru_cache
from operator import itemgetter
from pathlib import Path

RowFingerprint = Callable[[list[str]], "int | None"]

# The modules that turn a row into a link key and stored values; each notes its code as it
# is imported (`note_code`). A change to any of them, or to these libraries, must never let
# a row recognised by an older fingerprint skip the new reading.
_SALTED = ("sources.fingerprint", "sources.formats", "sources.urls", "sources.exports",
           "daemon.store.ledger")  # fmt: skip
_PACKAGES = ("idna", "tldextract")
_ROOT = Path(__file__).resolve().parent.parent
_CODE: dict[str, bytes] = {}


def note_code(*files: str | Path) -> None:
    """Record the code of a module as it is imported: fingerprints are salted with the
    code that runs, not with what an upgrade in place has since put on disk."""
    for file in files:
        path = Path(file).resolve()
        name = path.relative_to(_ROOT).as_posix() if path.is_relative_to(_ROOT) else path.name
        _CODE[name] = hashlib.blake2b(path.read_bytes(), digest_size=16).digest()


@lru_cache(maxsize=1)
def code_salt() -> bytes:
    """A digest of the code, Python and library versions that turn a row into what is
    stored."""
    from importlib import import_module, metadata

    for module in _SALTED:
        import_module(module)  # a module not imported yet notes its code now
    h = hashlib.blake2b(digest_size=32)
    for name in sorted(_CODE):
        h.update(name.encode())
        h.update(_CODE[name])
    h.update(f"python {sys.version_info[:2]} unicode {unicodedata.unidata_version}".encode())
    for package in _PACKAGES:
        try:
            h.update(f"{package}={metadata.version(package)}".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{package}=?".encode())
    return h.digest()


def stable_repr(value: object) -> str:
    """`repr`, with functions named instead of shown at their address (which changes with
    every process): what a fingerprint's key may be built from."""
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    if is_dataclass(value) and not isinstance(value, type):
        inner = ", ".join(f"{f.name}={stable_repr(getattr(value, f.name))}" for f in fields(value))
        return f"{type(value).__qualname__}({inner})"
    return repr(value)


def row_fingerprint(
    kind: str, width: int, columns: Sequence[tuple[int, str]], secret: bytes = b""
) -> RowFingerprint:
    """How rows of one export are fingerprinted: the cells at `columns` (index, header name)
    under a key naming the format, the columns, the code and the database's `secret` (no
    one who writes a linking page can then make two rows that collide); None for a row
    whose width is not `width` (such a row is malformed, and must be read to be reported)."""
    indexes = sorted({i for i, _ in columns})
    # BLAKE2b's own salt parameter (16 bytes) costs nothing per row, unlike a key.
    salt = hashlib.blake2b(
        secret + repr((kind, width, sorted(set(columns)))).encode(),
        key=code_salt(),
        digest_size=16,
    ).digest()
    cells: Callable[[list[str]], Sequence[str]]
    if len(indexes) == 1:
        only = indexes[0]
        cells = lambda row: (row[only],)  # noqa: E731 - itemgetter of one index is no tuple
    else:
        cells = itemgetter(*indexes)
    blake2b, from_bytes = hashlib.blake2b, int.from_bytes
    separators = len(indexes) - 1

    def fingerprint(row: list[str]) -> int | None:
        if len(row) != width:
            return None
        joined = "\x1f".join(cells(row))
        if joined.count("\x1f") != separators:
            # A cell holding the separator could spell another row's cells: read in full.
            return None
        data = joined.encode("utf-8", "surrogatepass")
        return from_bytes(blake2b(data, digest_size=8, salt=salt).digest(), "big", signed=True)

    return fingerprint


note_code(__file__)
