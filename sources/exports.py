"""Reading a backlink export file: encoding, delimiter and format detection, streaming rows."""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import os
import re
from collections.abc import Generator, Iterable, Iterator
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import BinaryIO

from sources.formats import FORMATS, ExportFormat, detect_format, normalize_header
from sources.model import Backlink, FormatError, ParseReport, SnapshotResult, SourceError

# Big enough that decoding and line cutting run in C for all but a few calls per file.
_CHUNK = 1 << 20
_DELIMITERS = ("\t", ";", ",")
# Ahrefs names files `<target>-backlinks-subdomains_2026-01-09_22-10-03.csv`; others carry
# at least a date. Either becomes the snapshot's time when nothing better is given.
_NAME_DATETIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[_T ](\d{2})[-:](\d{2})(?:[-:](\d{2}))?)?")

# `_Lines.state`: how far a reader has got towards the end of the file.
_READING = 0
_AT_TAIL = 1  # it has been handed the last line, which has no line end
_PAST_END = 2  # it asked for a line after the last one

# A header or a field longer than this is no export: it is refused or counted malformed
# (the csv module's own limit is process-wide; it is set here once).
MAX_FIELD = 64 * 1024
csv.field_size_limit(MAX_FIELD)


def detect_encoding(head: bytes) -> str:
    """The encoding a file's first bytes announce: a BOM, a UTF-16 pattern, else `utf-8`."""
    # No guess from the bytes beyond: a UTF-8 file decodes line by line (`_Lines`), so one
    # legacy byte cannot make the whole file Windows-1252.
    if head.startswith(codecs.BOM_UTF16_LE):
        return "utf-16"
    if head.startswith(codecs.BOM_UTF16_BE):
        return "utf-16"
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if len(head) >= 4 and head[1] == 0 and head[3] == 0:
        return "utf-16-le"
    if len(head) >= 4 and head[0] == 0 and head[2] == 0:
        return "utf-16-be"
    return "utf-8"


def file_digest(raw: BinaryIO) -> str:
    """The sha256 of what `raw` holds from its position on: it identifies an export's content."""
    digest = hashlib.sha256()  # the fastest digest here (hardware-accelerated)
    while chunk := raw.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _lines_of(text: str) -> io.StringIO:
    # newline="": cut at \n, \r\n and \r only, ends kept, as csv wants (not str.splitlines,
    # which also cuts at \u2028, \x85, \x0c and more, all legal inside a field).
    return io.StringIO(text, newline="")


class _Lines:
    """An export's decoded lines, cut where a file opened with newline='' cuts them.

    A UTF-8 or legacy file decodes line by line: a line that is valid UTF-8 is UTF-8, any
    other is Windows-1252 (counted in `legacy`), so one legacy byte cannot change how the
    rest of the file reads. UTF-16 decodes strictly. `state` tells the reader when it has
    been handed an unterminated last line or has asked past the end: the row it then
    returns may have been cut short.
    """

    def __init__(self, raw: BinaryIO, encoding: str, chunk: int = _CHUNK) -> None:
        self._chunk = chunk
        self.legacy = 0
        self.state = _READING
        # The last line has no line end (and is not blank).
        self.unterminated = False
        self.lines: Iterator[str] = chain.from_iterable(self._pieces(raw, encoding))

    def _pieces(self, raw: BinaryIO, encoding: str) -> Generator[Iterable[str], None, None]:
        if encoding.startswith("utf-16"):
            rest = yield from self._utf16(raw, encoding)
        else:
            rest = yield from self._mixed(raw)
        cut = max(rest.rfind("\n"), rest.rfind("\r")) + 1
        if cut:
            yield _lines_of(rest[:cut])
        tail = rest[cut:]
        if tail:
            # Handed out alone, and the state set first, so the row it ends is known.
            if tail.strip():
                self.unterminated = True
                self.state = _AT_TAIL
            yield (tail,)
        self.state = _PAST_END

    def _mixed(self, raw: BinaryIO) -> Generator[io.StringIO, None, str]:
        held: list[bytes] = []
        while chunk := raw.read(self._chunk):
            # Cut after the last line end, so no line straddles two chunks; a \r at the very
            # end waits, as a \n may follow it in the next chunk.
            cut = max(chunk.rfind(b"\n"), chunk.rfind(b"\r", 0, -1)) + 1
            if not cut:
                held.append(chunk)
                continue
            if held:
                held.append(chunk[:cut])
                data = b"".join(held)
            else:
                data = chunk[:cut]
            held = [chunk[cut:]]
            yield _lines_of(self._decode(data))
        return self._decode(b"".join(held))

    def _decode(self, data: bytes) -> str:
        try:
            return data.decode()
        except UnicodeDecodeError as exc:
            bad = exc.start
        # Lines before the first bad byte are UTF-8: one call decodes them; the rest of this
        # chunk goes line by line.
        start = max(data.rfind(b"\n", 0, bad), data.rfind(b"\r", 0, bad)) + 1
        pieces = [data[:start].decode()]
        # bytes.splitlines cuts at \n, \r\n and \r only: the lines csv counts.
        for line in data[start:].splitlines(keepends=True):
            try:
                pieces.append(line.decode())
            except UnicodeDecodeError:
                pieces.append(line.decode("cp1252", "replace"))
                self.legacy += 1
        return "".join(pieces)

    def _utf16(self, raw: BinaryIO, encoding: str) -> Generator[io.StringIO, None, str]:
        decode = codecs.getincrementaldecoder(encoding)("strict").decode
        held: list[str] = []
        while chunk := raw.read(self._chunk):
            text = decode(chunk)
            cut = max(text.rfind("\n"), text.rfind("\r", 0, -1)) + 1
            if not cut:
                held.append(text)
                continue
            held.append(text[:cut])
            whole = "".join(held)
            held = [text[cut:]]
            yield _lines_of(whole)
        held.append(decode(b"", True))
        return "".join(held)


def detect_delimiter(header_line: str) -> str:
    """The most frequent of tab, semicolon and comma in the header line (comma on a tie)."""
    counts = {d: header_line.count(d) for d in _DELIMITERS}
    best = max(counts.values())
    if best == 0 or counts[","] == best:
        return ","
    return next(d for d in _DELIMITERS if counts[d] == best)


def taken_at_from_name(path: Path) -> datetime | None:
    """The export time an export's file name carries, if any (as UTC)."""
    m = _NAME_DATETIME.search(path.name)
    if m is None:
        return None
    y, mo, d, h, mi, s = (int(g) if g else 0 for g in m.groups())
    try:
        return datetime(y, mo, d, h, mi, s, tzinfo=UTC)
    except ValueError:
        return None


def export_time(path: Path, mtime: float) -> datetime:
    """When an export was taken: the date in its name, else its modification time."""
    return taken_at_from_name(path) or datetime.fromtimestamp(int(mtime), tz=UTC)


def file_stamp(st: os.stat_result) -> str:
    """A file's identity beyond its name: `size:mtime_ns`; a rewritten file gets a new one."""
    return f"{st.st_size}:{st.st_mtime_ns}"


class ExportFile:
    """An opened export: encoding, delimiter, header and format are known before any row is read.

    `encoding` is `utf-16`, `utf-16-le` or `utf-16-be` (strict), else `utf-8` or `utf-8-sig`
    (with a BOM), to which `+cp1252` is added once a line read so far was not UTF-8 and fell
    back to Windows-1252; `legacy_lines` counts those lines.
    """

    def __init__(self, path: Path, site: str, format_kind: str | None = None) -> None:
        self.path = path
        self.site = site
        try:
            self._raw: BinaryIO = path.open("rb")
            self.stamp = file_stamp(os.fstat(self._raw.fileno()))
        except OSError as exc:
            raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        try:
            try:
                self._encoding = detect_encoding(self._raw.read(4))
                self._raw.seek(0)
                self.digest = file_digest(self._raw)
                # The utf-16 codec reads its own BOM; the UTF-8 one is skipped here.
                self._raw.seek(len(codecs.BOM_UTF8) if self._encoding == "utf-8-sig" else 0)
            except OSError as exc:
                raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from exc
            self._lines = _Lines(self._raw, self._encoding)
            try:
                header_line = next(self._lines.lines, "")
                if len(header_line) > MAX_FIELD:
                    raise FormatError(
                        f"{path}: the header line is {len(header_line):,} characters long;"
                        f" an export header is at most {MAX_FIELD:,}"
                    )
                self.delimiter = detect_delimiter(header_line)
                header_cells = next(csv.reader([header_line], delimiter=self.delimiter), [])
                self.header_names = [c.strip() for c in header_cells]
                self.header = {
                    normalize_header(name): i for i, name in reversed(list(enumerate(header_cells)))
                }
                self.format = self._choose_format(format_kind)
                self._parse_row = self.format.row_parser(self.header, len(header_cells), site)
            except (UnicodeDecodeError, csv.Error, OSError) as exc:
                raise SourceError(f"{path}: cannot read the header: {exc}") from exc
        except BaseException:
            self._raw.close()
            raise

    @property
    def encoding(self) -> str:
        """How the file decodes, as far as it has been read (see the class docstring)."""
        return f"{self._encoding}+cp1252" if self._lines.legacy else self._encoding

    @property
    def legacy_lines(self) -> int:
        """How many lines read so far were not UTF-8 and were decoded as Windows-1252."""
        return self._lines.legacy

    def _choose_format(self, format_kind: str | None) -> ExportFormat:
        known = ", ".join(f"{f.kind} ({f.description})" for f in FORMATS.values())
        if format_kind is not None:
            fmt = FORMATS.get(format_kind)
            if fmt is None:
                raise FormatError(f"{self.path}: unknown format {format_kind!r}; known: {known}")
            if not fmt.matches(self.header):
                raise FormatError(
                    f"{self.path}: header does not fit format {format_kind!r}; "
                    f"saw columns {self.header_names!r}"
                )
            return fmt
        fmt = detect_format(self.header)
        if fmt is None:
            raise FormatError(
                f"{self.path}: not a backlink export linkwatch knows; "
                f"saw columns {self.header_names!r}; known formats: {known}"
            )
        return fmt

    def snapshot(self, taken_at: datetime) -> SnapshotResult:
        """A snapshot whose records stream the file's rows; malformed rows land in its report."""
        result = SnapshotResult(
            taken_at=taken_at,
            records=iter(()),
            origin=self.path.name,
            format=self.format.kind,
            digest=self.digest,
            origin_stamp=self.stamp,
            closer=self.close,
            sample=self.format.sample,
        )
        result.records = self._rows(result)
        return result

    def _rows(self, result: SnapshotResult) -> Iterator[Backlink]:
        report: ParseReport = result.report
        parse = self._parse_row
        lines = self._lines
        reader = csv.reader(lines.lines, delimiter=self.delimiter)
        line = 1  # the last line of the row last read; the header was read before the reader
        try:
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    line = reader.line_num + 1
                    report.add(line, f"unreadable CSV: {exc}")
                    continue
                if lines.state:
                    # The row ends at the end of the file, not at a line end: a file still
                    # being written or cut short in a copy. The csv module returns such a
                    # row without complaint, even from inside an open quoted field.
                    problem = (
                        "last row has no line end"
                        if lines.unterminated
                        else "file ends inside a quoted field"
                    )
                    report.add(line + 1, f"{problem}: the file may be cut short")
                    break
                line = reader.line_num + 1
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                result.line = line
                try:
                    yield parse(row)
                except (ValueError, IndexError) as exc:
                    report.add(line, str(exc))
        except (OSError, UnicodeDecodeError) as exc:
            result.error = f"{self.path}: read failed near line {line}: {exc}"
        finally:
            self._raw.close()

    def close(self) -> None:
        """Close the file without reading it."""
        self._raw.close()
