"""Reading a backlink export file: encoding, delimiter and format detection, streaming rows."""

from __future__ import annotations

import codecs
import contextlib
import csv
import hashlib
import io
import lzma
import os
import re
import stat
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path, PurePosixPath
from typing import IO, TypeVar

from daemon.textsafe import shown_path
from sources.fingerprint import RowFingerprint, note_code, row_fingerprint, stable_repr
from sources.formats import (
    FORMATS,
    Detection,
    ExportFormat,
    detect,
    known_formats,
    normalize_header,
)
from sources.formats.base import (
    ColumnMap,
    Recognised,
    RowIssues,
    build_domain_parser,
    build_row_parser,
)
from sources.formats.shape import SHAPE_ROWS, ShapeMatch, detect_by_shape
from sources.model import (
    KNOWN_ROW,
    Backlink,
    FormatError,
    ParseReport,
    RefDomain,
    SnapshotResult,
    SourceError,
)

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

# A header may follow this many preamble lines (Moz's report title, target, date, filters).
PREAMBLE_LINES = 20
# Lines looked at to judge a file's shape: SHAPE_ROWS rows, some spanning several lines.
_SHAPE_LINES = 4 * SHAPE_ROWS
# Names of the files in an archive that may be exports.
EXPORT_SUFFIXES = (".csv", ".tsv", ".txt")
# An archive of exports is refused beyond these (a zip bomb expands a few kilobytes into
# gigabytes): members, total uncompressed size, and the compression ratio of a big member.
MAX_ZIP_MEMBERS = 100
MAX_ZIP_BYTES = 4 << 30
MAX_ZIP_RATIO = 200
_RATIO_FROM = 1 << 20
# The compression methods Python's zipfile reads (Deflate64, PPMd, … raise NotImplementedError).
_ZIP_METHODS = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflate",
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "lzma",
}
# What reading a damaged or unreadable archive member raises besides OSError: a bad CRC or
# header, a method zipfile cannot read, a damaged deflate or lzma stream, a truncated one.
ZIP_READ_ERRORS: tuple[type[Exception], ...] = (
    zipfile.BadZipFile,
    NotImplementedError,
    zlib.error,
    EOFError,
    lzma.LZMAError,
)

T = TypeVar("T", Backlink, RefDomain)

# A header or a field longer than this is no export: it is refused or counted malformed
# (the csv module's own limit is process-wide; it is set here once).
MAX_FIELD = 64 * 1024
csv.field_size_limit(MAX_FIELD)
# Bytes (UTF-16: characters) read without a line end after which a file is no export: a
# binary or a one-line dump must not be held whole in memory before any limit is checked.
MAX_LINE = 4 * MAX_FIELD


class LineTooLongError(ValueError):
    """A file ran on past MAX_LINE without a line end."""

    def __init__(self) -> None:
        super().__init__(
            f"more than {MAX_LINE:,} bytes without a line end (an export line is at most "
            f"{MAX_LINE:,}): not an export, or a damaged one"
        )


# What reading a file's lines may raise: it is unreadable from there on.
_READ_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    UnicodeDecodeError,
    LineTooLongError,
    *ZIP_READ_ERRORS,
)
_HEADER_ERRORS: tuple[type[Exception], ...] = (csv.Error, *_READ_ERRORS)


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


def file_digest(raw: IO[bytes]) -> str:
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

    def __init__(self, raw: IO[bytes], encoding: str, chunk: int = _CHUNK) -> None:
        self._chunk = chunk
        self.legacy = 0
        self.state = _READING
        # The last line has no line end (and is not blank).
        self.unterminated = False
        self._source: Iterator[str] = chain.from_iterable(self._pieces(raw, encoding))
        # Lines read ahead by `peek`, each with the state it was read in; the source ended.
        self._ahead: deque[tuple[str, int]] = deque()
        self._ended = False
        # A read error met while reading ahead, raised when the reader gets there.
        self._failure: Exception | None = None
        # Past the lines read ahead, the source's own lines go through untouched: chain
        # hands them on in C (the hot path), not through a Python generator.
        self.lines: Iterator[str] = chain(self._replay(), self._source)

    def _replay(self) -> Generator[str, None, None]:
        while self._ahead:
            line, self.state = self._ahead.popleft()
            yield line
        if self._failure is not None:
            raise self._failure
        if self._ended:
            self.state = _PAST_END

    def peek(self, count: int) -> list[str]:
        """The next `count` lines (fewer at the end), left to be read again."""
        while len(self._ahead) < count and not self._ended:
            try:
                line = next(self._source)
            except StopIteration:
                self._ended = True
                break
            except _READ_ERRORS as exc:
                if not self._ahead:
                    raise  # not one line could be read: the header is unreadable
                # The lines before it are rows; the rows after it are never read, and the
                # snapshot is partial, as when the error comes while streaming.
                self._failure, self._ended = exc, True
                break
            self._ahead.append((line, self.state))
        # Reading ahead is not reading: the state is replayed with each line.
        self.state = _READING
        return [line for line, _ in list(self._ahead)[:count]]

    def drop(self, count: int) -> None:
        """Forget the next `count` lines, which `peek` has read."""
        for _ in range(count):
            self._ahead.popleft()

    def _pieces(self, raw: IO[bytes], encoding: str) -> Generator[Iterable[str], None, None]:
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

    def _mixed(self, raw: IO[bytes]) -> Generator[io.StringIO, None, str]:
        held: list[bytes] = []
        pending = 0  # bytes held since the last line end
        while chunk := raw.read(self._chunk):
            # Cut after the last line end, so no line straddles two chunks; a \r at the very
            # end waits, as a \n may follow it in the next chunk.
            cut = max(chunk.rfind(b"\n"), chunk.rfind(b"\r", 0, -1)) + 1
            if not cut:
                held.append(chunk)
                pending += len(chunk)
                if pending > MAX_LINE:
                    raise LineTooLongError
                continue
            if held:
                held.append(chunk[:cut])
                data = b"".join(held)
            else:
                data = chunk[:cut]
            held = [chunk[cut:]]
            yield _lines_of(self._decode(data))
            pending = len(held[0])
            if pending > MAX_LINE:
                raise LineTooLongError
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

    def _utf16(self, raw: IO[bytes], encoding: str) -> Generator[io.StringIO, None, str]:
        decode = codecs.getincrementaldecoder(encoding)("strict").decode
        held: list[str] = []
        pending = 0  # characters held since the last line end
        while chunk := raw.read(self._chunk):
            text = decode(chunk)
            cut = max(text.rfind("\n"), text.rfind("\r", 0, -1)) + 1
            if not cut:
                held.append(text)
                pending += len(text)
                if pending > MAX_LINE:
                    raise LineTooLongError
                continue
            held.append(text[:cut])
            whole = "".join(held)
            held = [text[cut:]]
            yield _lines_of(whole)
            pending = len(held[0])
            if pending > MAX_LINE:
                raise LineTooLongError
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

    `member` names a table inside a zip archive (`path`): it is streamed from the archive,
    and the snapshot's origin is `archive.zip:member.csv`. With `digest=False` the content is
    not hashed (enough to recognise the format, not to make a snapshot).
    """

    def __init__(
        self,
        path: Path,
        site: str,
        format_kind: str | None = None,
        *,
        member: str | None = None,
        digest: bool = True,
    ) -> None:
        self.path = path
        self.site = site
        self.member = member
        self.origin = shown_path(path.name if member is None else f"{path.name}:{member}")
        # How the file is named in messages: the archive's path and the member's name.
        self.where = shown_path(path if member is None else f"{path}:{member}")
        # What the snapshot should tell besides its rows (members of an archive skipped).
        self.notes: list[str] = []
        self.digest: str | None = None
        self._closers: list[Callable[[], object]] = []
        try:
            self._raw, self.stamp = self._open(path, member)
        except OSError as exc:
            self.close()
            raise SourceError(f"{self.where}: cannot read: {exc.strerror or exc}") from exc
        except BaseException:
            self.close()
            raise
        try:
            try:
                self._encoding = detect_encoding(self._raw.read(4))
                self._raw.seek(0)
                if digest:
                    self.digest = file_digest(self._raw)
                # The utf-16 codec reads its own BOM; the UTF-8 one is skipped here.
                self._raw.seek(len(codecs.BOM_UTF8) if self._encoding == "utf-8-sig" else 0)
            except OSError as exc:
                raise SourceError(f"{self.where}: cannot read: {exc.strerror or exc}") from exc
            except ZIP_READ_ERRORS as exc:
                raise SourceError(f"{self.where}: damaged archive member: {_why(exc)}") from exc
            self._lines = _Lines(self._raw, self._encoding)
            try:
                self._read_header(format_kind)
            except LineTooLongError as exc:
                raise FormatError(f"{self.where}: {exc}") from exc
            except _HEADER_ERRORS as exc:
                raise SourceError(f"{self.where}: cannot read the header: {_why(exc)}") from exc
        except BaseException:
            self.close()
            raise

    def _open(self, path: Path, member: str | None) -> tuple[IO[bytes], str]:
        """The raw bytes of the file, or of one member of a zip archive, and its stamp."""
        handle: IO[bytes] = path.open("rb")
        self._closers.append(handle.close)
        stamp = file_stamp(os.fstat(handle.fileno()))
        if member is None:
            return handle, stamp
        try:
            archive = zipfile.ZipFile(handle)
        except zipfile.BadZipFile as exc:
            raise SourceError(f"{shown_path(path)}: not a readable zip archive: {exc}") from exc
        self._closers.append(archive.close)
        try:
            info = archive.getinfo(member)
        except KeyError as exc:
            raise SourceError(f"{self.where}: no such member in the archive") from exc
        _check_member(path, info)
        _check_method(path, info)
        try:
            raw: IO[bytes] = archive.open(info)
        except ZIP_READ_ERRORS as exc:
            raise SourceError(f"{self.where}: damaged archive member: {_why(exc)}") from exc
        self._closers.append(raw.close)
        return raw, stamp

    def _read_header(self, format_kind: str | None) -> None:
        """Find the header (after a preamble, for Moz), recognise the format, build the parser."""
        forced = None
        if format_kind is not None:
            forced = FORMATS.get(format_kind)
            if forced is None:
                raise FormatError(
                    f"{self.where}: unknown format {format_kind!r}; known: {known_formats()}"
                )
        head = self._lines.peek(PREAMBLE_LINES + 1)
        first = head[0] if head else ""
        if len(first) > MAX_FIELD:
            raise FormatError(
                f"{self.where}: the header line is {len(first):,} characters long;"
                f" an export header is at most {MAX_FIELD:,}"
            )
        at = 0
        cells = _cells(first)
        found = self._recognise(cells, forced, after_preamble=False)
        if found is None:
            # A format whose header follows preamble lines (Moz) is looked for further down.
            for i, line in enumerate(head[1:], start=1):
                try:
                    later = _cells(line) if len(line) <= MAX_FIELD else []
                except csv.Error:
                    continue  # a preamble line need not be CSV
                if (match := self._recognise(later, forced, after_preamble=True)) is not None:
                    at, cells, found = i, later, match
                    break
        self.delimiter = detect_delimiter(head[at] if head else "")
        self._lines.drop(at + 1 if head else 0)
        # The file line the header is on: data lines are counted from it.
        self._header_line = at + 1
        self.header_names = [c.strip() for c in cells]
        self.header = {normalize_header(name): i for i, name in reversed(list(enumerate(cells)))}
        # The columns rows are read by: the header's own, unless recognised by shape.
        self._row_header: dict[str, int] = self.header
        if found is None:
            found = self._by_shape(forced)
        self.detection = found
        self.format: ExportFormat = found.format
        columns = found.variant.columns
        width = len(cells)
        self._issues = RowIssues()
        self._metric = columns.rating_metric if columns is not None else None
        self._fingerprint_spec: tuple[str, int, list[tuple[int, str]]] | None = None
        self.fingerprinted: tuple[int, ...] = ()
        if isinstance(columns, ColumnMap):
            self._parse_link, read = build_row_parser(
                self.format, columns, self._row_header, width, self._issues
            )
            # The cells a row's fingerprint covers: every one its parser reads.
            self.fingerprinted = read
            names = {i: name for name, i in self._row_header.items()}
            self._fingerprint_spec = (
                f"{self.format.kind}:{stable_repr(columns)}",
                width,
                [(i, names.get(i, "")) for i in read],
            )
        elif columns is not None:
            self._parse_domain = build_domain_parser(
                self.format, columns, self._row_header, width, self._issues
            )

    def _recognise(
        self, cells: list[str], forced: ExportFormat | None, *, after_preamble: bool
    ) -> Detection | None:
        header = {normalize_header(name): i for i, name in enumerate(cells)}
        if forced is None:
            return detect(header, after_preamble=after_preamble)
        variant = forced.variant_for(header)
        if variant is None or (after_preamble and not variant.after_preamble):
            return None
        # A forced format never makes a table without the profile one (Ahrefs' broken
        # backlinks carry every backlinks column): it is still recognised, to be refused.
        found = detect(header, after_preamble=after_preamble)
        if found is not None and found.format.coverage == "none":
            return found
        how: Recognised = "header" if variant.language is None else "translated header"
        return Detection(forced, variant, how)

    def _by_shape(self, forced: ExportFormat | None) -> Detection:
        """Recognise a file of unknown columns by its first rows (Search Console in another
        language), or refuse it naming what was seen and what is known."""
        sample = self._lines.peek(_SHAPE_LINES)
        rows: list[list[str]] = []
        # The rows read before an unreadable one are enough, or none is.
        with contextlib.suppress(csv.Error):
            rows.extend(csv.reader(sample, delimiter=self.delimiter))
        if rows and (len(sample) == _SHAPE_LINES or not sample[-1].endswith(("\n", "\r"))):
            rows.pop()  # it may continue past the lines looked at, or be cut short
        match = detect_by_shape(self.header_names, rows, self.site) if self.header else None
        if forced is not None and (match is None or match.detection.format is not forced):
            raise FormatError(
                f"{self.where}: header does not fit format {forced.kind!r}; "
                f"saw columns {self.header_names!r}"
            )
        if match is None:
            raise FormatError(
                f"{self.where}: not a backlink export linkwatch knows; saw columns "
                f"{self.header_names!r} (and rows of no Search Console table); "
                f"known formats: {known_formats()}"
            )
        self._check_shape(match)
        self._row_header = match.header
        return match.detection

    def _check_shape(self, match: ShapeMatch) -> None:
        if match.problem is not None:
            raise FormatError(
                f"{self.where}: {match.detection.describe()} (columns "
                f"{self.header_names!r}): {match.problem}; nothing to import"
            )

    def refuse_if_no_links(self) -> None:
        """Raise FormatError if the file is a table linkwatch recognises but that holds no
        links and no referring domains (Bing anchors, Search Console Top linked pages)."""
        if self.format.coverage == "none":
            raise FormatError(
                f"{self.where}: {self.detection.describe()}: {self.format.refusal}; "
                "nothing to import"
            )

    @property
    def encoding(self) -> str:
        """How the file decodes, as far as it has been read (see the class docstring)."""
        return f"{self._encoding}+cp1252" if self._lines.legacy else self._encoding

    @property
    def legacy_lines(self) -> int:
        """How many lines read so far were not UTF-8 and were decoded as Windows-1252."""
        return self._lines.legacy

    def snapshot(self, taken_at: datetime) -> SnapshotResult:
        """A snapshot whose records stream the file's rows; malformed rows land in its report.

        A domain-level export streams RefDomains in `domain_records` and no links; a file
        that holds neither is refused (FormatError) and closed."""
        try:
            self.refuse_if_no_links()
        except FormatError:
            self.close()
            raise
        result = SnapshotResult(
            taken_at=taken_at,
            records=iter(()),
            origin=self.origin,
            format=self.format.kind,
            digest=self.digest,
            origin_stamp=self.stamp,
            closer=self.close,
            sample=self.format.sample,
            notes=list(self.notes),
        )
        if self.format.domains:
            result.domain_records = self._rows(result, self._parse_domain)
        else:
            result.records = self._link_rows(result)
            result.fingerprints = self._fingerprint_spec is not None
        return result

    def row_fingerprint(self, secret: bytes = b"") -> RowFingerprint | None:
        """How this file's link rows are fingerprinted under a database's `secret`; None
        for a file of no link rows."""
        if self._fingerprint_spec is None:
            return None
        return row_fingerprint(*self._fingerprint_spec, secret)

    def _link_rows(self, result: SnapshotResult) -> Iterator[Backlink]:
        """The file's links; with `result.known_rows` set, fingerprinted (SnapshotResult)."""
        known = result.known_rows
        fingerprint = self.row_fingerprint(result.fingerprint_secret)
        if known is None or fingerprint is None:
            yield from self._rows(result, self._parse_link)
            return
        issues = self._issues
        parse = self._parse_link
        unknown = known.get

        def read(row: list[str]) -> Backlink:
            fp = fingerprint(row)
            if fp is not None:
                packed = unknown(fp)
                if packed is not None:
                    result.known = packed
                    return KNOWN_ROW
            before = issues.bad_ratings
            record = parse(row)
            # A row with a rating out of scale is counted each time it is read.
            result.fingerprint = fp if issues.bad_ratings == before else None
            return record

        yield from self._rows(result, read)

    def _rows(self, result: SnapshotResult, parse: Callable[[list[str]], T]) -> Iterator[T]:
        report: ParseReport = result.report
        lines = self._lines
        reader = csv.reader(lines.lines, delimiter=self.delimiter)
        top = self._header_line
        line = top  # the last line of the row last read; the header was read before the reader
        try:
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    line = top + reader.line_num
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
                line = top + reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                result.line = line
                try:
                    yield parse(row)
                except (ValueError, IndexError) as exc:
                    report.add(line, str(exc))
        except _READ_ERRORS as exc:
            result.error = f"{self.where}: read failed near line {line}: {_why(exc)}"
        finally:
            self.close()
            result.notes.extend(self._issues.notes(self._metric or "rating"))

    def close(self) -> None:
        """Close the file (and the archive it is in) without reading it."""
        while self._closers:
            self._closers.pop()()


def _why(exc: BaseException) -> str:
    """What went wrong reading, for a message: the exception's text, else its kind."""
    return str(exc) or type(exc).__name__


def _cells(line: str) -> list[str]:
    """The cells of one header line, split at the delimiter it uses most."""
    return next(csv.reader([line], delimiter=detect_delimiter(line)), [])


# --- zip archives (Search Console's "Download CSV" of the Links report) -------------------


def is_zip(path: Path) -> bool:
    """True for a zip archive: by its name, or by its first bytes whatever its name."""
    if path.suffix.lower() == ".zip":
        return True
    try:
        with path.open("rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _check_member(path: Path, info: zipfile.ZipInfo) -> None:
    """Refuse a member that is encrypted, escapes the archive, or expands implausibly."""
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise SourceError(
            f"{shown_path(path)}: refused: member {name!r} names a path outside the archive"
        )
    if info.flag_bits & 0x1:
        raise SourceError(
            f"{shown_path(path)}: refused: member {name!r} is encrypted;"
            " export it again without a password"
        )
    if info.file_size > _RATIO_FROM and info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1):
        raise SourceError(
            f"{shown_path(path)}: refused: member {name!r} expands"
            f" {info.compress_size:,} bytes into "
            f"{info.file_size:,} (more than {MAX_ZIP_RATIO}x): not an export, a zip bomb"
        )


def _check_method(path: Path, info: zipfile.ZipInfo) -> None:
    """Refuse a member compressed with a method zipfile cannot read (Deflate64, PPMd, …)."""
    if info.compress_type not in _ZIP_METHODS:
        raise SourceError(
            f"{shown_path(path)}: refused: member {info.filename!r} is compressed with method"
            f" {info.compress_type}, which linkwatch cannot read (it reads"
            f" {', '.join(_ZIP_METHODS.values())}; Windows uses Deflate64, method 9, for big"
            " files); zip the exports again with another tool"
        )


def archive_members(path: Path) -> list[str]:
    """The members of a zip archive that may be exports, after checking the whole archive
    against zip bombs (too many members, too big, encrypted or escaping members)."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except zipfile.BadZipFile as exc:
        raise SourceError(f"{shown_path(path)}: not a readable zip archive: {exc}") from exc
    except OSError as exc:
        raise SourceError(f"{shown_path(path)}: cannot read: {exc.strerror or exc}") from exc
    if len(infos) > MAX_ZIP_MEMBERS:
        raise SourceError(
            f"{shown_path(path)}: refused: {len(infos):,} members;"
            " an archive of exports has at most "
            f"{MAX_ZIP_MEMBERS}"
        )
    total = 0
    names = []
    for info in infos:
        _check_member(path, info)
        total += info.file_size
        if total > MAX_ZIP_BYTES:
            raise SourceError(
                f"{shown_path(path)}: refused: its members expand to more than"
                f" {MAX_ZIP_BYTES:,} bytes"
            )
        # Folders, and the resource forks macOS adds to archives it makes, are no exports.
        if not info.is_dir() and not info.filename.startswith("__MACOSX/"):
            if info.filename.lower().endswith(EXPORT_SUFFIXES):
                _check_method(path, info)
            names.append(info.filename)
    return names


def open_archive(
    path: Path, site: str, format_kind: str | None = None, *, digest: bool = True
) -> list[ExportFile]:
    """Every member of a zip archive that holds links or referring domains, opened; the
    others are skipped, each with a note on the first one opened. FormatError if none does."""
    opened: list[ExportFile] = []
    notes: list[str] = []
    try:
        for name in archive_members(path):
            if not name.lower().endswith(EXPORT_SUFFIXES):
                notes.append(f"{shown_path(f'{path.name}:{name}')}: skipped: not a CSV file")
                continue
            try:
                export = ExportFile(path, site, format_kind, member=name, digest=digest)
            except FormatError as exc:
                notes.append(_skipped(path, name, exc))
                continue
            if export.format.coverage == "none":
                export.close()
                what = f"{export.detection.variant.name} ({export.format.kind})"
                notes.append(
                    f"{shown_path(f'{path.name}:{name}')}: skipped: {what}: {export.format.refusal}"
                )
                continue
            opened.append(export)
    except BaseException:
        for export in opened:
            export.close()
        raise
    if not opened:
        raise FormatError(
            f"{shown_path(path)}: no member of the archive holds links or referring domains: "
            + ("; ".join(notes) or "it is empty")
        )
    opened[0].notes.extend(notes)
    return opened


def _skipped(path: Path, member: str, exc: FormatError) -> str:
    """The note on an archive member that is skipped: its name and why, without the list of
    known formats (the archive as a whole was recognised)."""
    why = str(exc).removeprefix(f"{shown_path(f'{path}:{member}')}: ").split("; known formats:")[0]
    return f"{shown_path(f'{path.name}:{member}')}: skipped: {why}"


def refuse_if_not_regular(path: Path) -> None:
    """FormatError for a path that is not a regular file (a symlink to one is fine)."""
    # A device never ends (/dev/zero) and a FIFO blocks the open until a writer comes:
    # either would hang an import, so neither is opened at all.
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise FormatError(f"{shown_path(path)}: cannot be read: {exc.strerror or exc}") from exc
    if stat.S_ISREG(mode):
        return
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISSOCK, "a socket"),
    )
    kind = next((name for test, name in kinds if test(mode)), "not a regular file")
    raise FormatError(
        f"{shown_path(path)}: {kind}, not an export file; only regular files are imported"
    )


def open_export_files(path: Path, site: str, format_kind: str | None = None) -> list[ExportFile]:
    """The tables of one file linkwatch can import: the file itself, or the usable members of
    a zip archive. FormatError (nothing opened) for a file in no known format or one that
    holds no links."""
    refuse_if_not_regular(path)
    if is_zip(path):
        return open_archive(path, site, format_kind)
    export = ExportFile(path, site, format_kind)
    try:
        export.refuse_if_no_links()
    except BaseException:
        export.close()
        raise
    return [export]


# Fingerprints are salted with this code as it runs (sources/fingerprint.py).
note_code(__file__)
