"""Reading a backlink export file: encoding, delimiter and format detection, streaming rows."""

from __future__ import annotations

import codecs
import csv
import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from sources.formats import FORMATS, ExportFormat, detect_format, normalize_header
from sources.model import Backlink, FormatError, ParseReport, SnapshotResult, SourceError

_SNIFF_BYTES = 1 << 16
_DELIMITERS = ("\t", ";", ",")
# Ahrefs names files `<target>-backlinks-subdomains_2026-01-09_22-10-03.csv`; others carry
# at least a date. Either becomes the snapshot's time when nothing better is given.
_NAME_DATETIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[_T ](\d{2})[-:](\d{2})(?:[-:](\d{2}))?)?")


def detect_encoding(head: bytes, *, whole: bool = True) -> str:
    """BOM first (UTF-16 LE/BE, UTF-8), then UTF-8 if it decodes, else Windows-1252.

    `whole` says `head` is the entire file, so a sequence cut at its end is an error.
    """
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
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=whole)
    except UnicodeDecodeError:
        return "cp1252"
    return "utf-8"


def scan_file(path: Path, *, check_utf8: bool) -> tuple[str, bool]:
    """One pass over the raw bytes: (content digest, whether it is all valid UTF-8)."""
    digest = hashlib.sha256()  # the fastest digest here (hardware-accelerated)
    decoder = codecs.getincrementaldecoder("utf-8")() if check_utf8 else None
    with path.open("rb") as raw:
        while chunk := raw.read(1 << 20):
            digest.update(chunk)
            # ASCII chunks are valid UTF-8 unless a multi-byte sequence is pending.
            if decoder is not None and not (chunk.isascii() and not decoder.getstate()[0]):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    decoder = None
                    check_utf8 = False
    if decoder is not None:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            check_utf8 = False
    return digest.hexdigest(), check_utf8


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


class ExportFile:
    """An opened export: encoding, delimiter, header and format are known before any row is read."""

    def __init__(self, path: Path, site: str, format_kind: str | None = None) -> None:
        self.path = path
        self.site = site
        try:
            with path.open("rb") as raw:
                head = raw.read(_SNIFF_BYTES)
            self.encoding = detect_encoding(head, whole=len(head) < _SNIFF_BYTES)
            check_utf8 = self.encoding == "utf-8" and len(head) == _SNIFF_BYTES
            self.digest, utf8 = scan_file(path, check_utf8=check_utf8)
            if check_utf8 and not utf8:
                self.encoding = "cp1252"
            errors = "strict" if self.encoding.startswith("utf-16") else "replace"
            self._text = path.open("r", encoding=self.encoding, errors=errors, newline="")
        except OSError as exc:
            raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        try:
            header_line = self._text.readline()
            self.delimiter = detect_delimiter(header_line)
            header_cells = next(csv.reader([header_line], delimiter=self.delimiter), [])
            self.header_names = [c.strip() for c in header_cells]
            self.header = {
                normalize_header(name): i for i, name in reversed(list(enumerate(header_cells)))
            }
            self.format = self._choose_format(format_kind)
            self._parse_row = self.format.row_parser(self.header, len(header_cells), site)
        except (UnicodeDecodeError, csv.Error, OSError) as exc:
            self._text.close()
            raise SourceError(f"{path}: cannot read the header: {exc}") from exc
        except BaseException:
            self._text.close()
            raise

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
            sample=self.format.sample,
        )
        result.records = self._rows(result)
        return result

    def _rows(self, result: SnapshotResult) -> Iterator[Backlink]:
        report: ParseReport = result.report
        parse = self._parse_row
        reader = csv.reader(self._text, delimiter=self.delimiter)
        line = 1
        try:
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    report.add(reader.line_num + 1, f"unreadable CSV: {exc}")
                    continue
                line = reader.line_num + 1  # +1: the header was read before the reader
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
            self._text.close()

    def close(self) -> None:
        """Close the file without reading it."""
        self._text.close()
