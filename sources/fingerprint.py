"""Row fingerprints: an export row seen before is recognised before it is parsed."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import fields, is_dataclass
from functools import lru_cache
from importlib import metadata
from operator import itemgetter
from pathlib import Path

RowFingerprint = Callable[[list[str]], "int | None"]

# What decides how a row becomes a link key and stored values: a change to any of these
# must never let a row recognised by an older fingerprint skip the new reading.
_CODE = ("sources/formats", "sources/urls.py", "sources/exports.py", "daemon/store/ledger.py")
_PACKAGES = ("idna", "tldextract")
_ROOT = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=1)
def code_salt() -> bytes:
    """A digest of the code and library versions that turn a row into what is stored."""
    h = hashlib.blake2b(digest_size=32)
    for name in _CODE:
        path = _ROOT / name
        files = sorted(path.glob("*.py")) if path.is_dir() else [path]
        for file in files:
            h.update(file.relative_to(_ROOT).as_posix().encode())
            h.update(file.read_bytes())
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


def row_fingerprint(kind: str, width: int, columns: Sequence[tuple[int, str]]) -> RowFingerprint:
    """How rows of one export are fingerprinted: the cells at `columns` (index, header name)
    under a key naming the format, the columns and the code; None for a row whose width is
    not `width` (such a row is malformed, and must be read to be reported)."""
    indexes = sorted({i for i, _ in columns})
    # BLAKE2b's own salt parameter (16 bytes) costs nothing per row, unlike a key.
    salt = hashlib.blake2b(
        repr((kind, width, sorted(set(columns)))).encode(), key=code_salt(), digest_size=16
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
