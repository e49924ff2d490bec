"""csv_dir source: every new or changed export file in a folder becomes a snapshot, oldest first."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from daemon.templates import check_template, parse_template, render_template
from daemon.textsafe import shown_path
from daemon.types import Duration, PositiveDuration
from sources.exports import ExportFile, export_time, file_stamp, is_zip, open_archive
from sources.formats import FORMATS
from sources.model import SnapshotResult, SourceError

_ONLY_PLACEHOLDER = "the only placeholder is {domain}"
_PATH_FIELDS = frozenset({"domain"})
# A folder path longer than Linux's PATH_MAX cannot be opened anyway.
_PATH_MAX = 4096
MAX_CONFIRM_AFTER = 1000
MAX_PATTERNS = 50
MAX_SETTLE = timedelta(hours=1)


def check_path_template(template: str) -> str:
    """Refuse a folder template using anything but a bare `{domain}` placeholder."""
    # `format` would follow `domain.x` / `domain[0]` and apply any spec, so a template could
    # reach object internals or build huge strings: only the bare name is allowed.
    return check_template(
        template, _PATH_FIELDS, hint=_ONLY_PLACEHOLDER, specs=False, max_length=_PATH_MAX
    )


def _check_pattern(pattern: str) -> str:
    # A pattern names files in the folder: `../*` or `**` would read outside it or every
    # folder below it, and Path.glob raises on an empty pattern.
    if not pattern or "/" in pattern or "\0" in pattern or "**" in pattern:
        raise ValueError(
            f"{pattern!r} is not a file name pattern (like *.csv): no '/', '**' or empty pattern"
        )
    if pattern in (".", ".."):
        raise ValueError(f"{pattern!r} is not a file name pattern (like *.csv)")
    if len(pattern) > 255:
        raise ValueError("a file name pattern is at most 255 characters long")
    return pattern


FilePattern = Annotated[str, AfterValidator(_check_pattern)]


class CsvDirSettings(BaseModel):
    """Settings of a `csv_dir` source."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["csv_dir"]
    path: str = Field(
        description="folder of export files; {domain}, the only placeholder, is the site's domain"
    )
    format: str | None = Field(default=None, description="force one export format")
    interval: PositiveDuration = Field(default=timedelta(hours=1), description="how often to look")
    confirm_after: int = Field(
        default=2, ge=1, le=MAX_CONFIRM_AFTER, description="absent snapshots before lost"
    )
    suspect_below: float = Field(
        default=0.5,
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="a snapshot smaller than this share is suspect",
    )
    sample_ttl: Duration = Field(
        default=timedelta(days=90),
        description="how long a sample export (Search Console) vouches for a link that no "
        "complete export lists; after that the link is unconfirmed",
    )
    patterns: list[FilePattern] = Field(
        # A zip archive (Search Console's Links report "Download CSV") is read member by member.
        default_factory=lambda: ["*.csv", "*.tsv", "*.txt", "*.zip"],
        min_length=1,
        max_length=MAX_PATTERNS,
    )
    settle: Duration = Field(
        default=timedelta(seconds=5),
        description="a file is read only if its size and modification time stay the same "
        "over this long (it may still be being written)",
    )

    @field_validator("sample_ttl")
    @classmethod
    def _sane_ttl(cls, value: timedelta) -> timedelta:
        if not timedelta(days=1) <= value <= timedelta(days=3660):
            raise ValueError("must be between 1d and 10 years")
        return value

    @field_validator("settle")
    @classmethod
    def _sane_settle(cls, value: timedelta) -> timedelta:
        # A poll waits this long in-process: hours would stall every other job.
        if value > MAX_SETTLE:
            raise ValueError("must be between 0s and 1h")
        return value

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str | None) -> str | None:
        if value is not None and value not in FORMATS:
            raise ValueError(f"unknown export format {value!r} (known: {', '.join(FORMATS)})")
        return value

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        if "\0" in value:
            raise ValueError("contains a NUL character")
        return check_path_template(value)


@dataclass(frozen=True)
class PendingExport:
    """An export file not yet stored, with the time its snapshot is taken at."""

    path: Path
    taken_at: datetime
    # `size:mtime_ns` when the file was found settled; stored with the snapshot.
    stamp: str
    # Why the file is refused unread (a symlink, a device, a folder, an archive without
    # links): source health says it.
    problem: str | None = None
    # The table inside a zip archive (`path`) this export is; its origin is `archive:member`.
    member: str | None = None
    # What the snapshot tells besides its rows (the members of its archive that were skipped).
    notes: tuple[str, ...] = ()

    @property
    def origin(self) -> str:
        """The name the snapshot is stored under: the file's, or `archive.zip:member.csv`."""
        name = self.path.name if self.member is None else f"{self.path.name}:{self.member}"
        return shown_path(name)


def _regular_stat(path: Path) -> os.stat_result | None:
    """The file's own status (a symlink is not followed), or None if it is gone or not a
    regular file."""
    try:
        st = path.lstat()
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def _names(path: Path) -> tuple[str, ...]:
    """The names a file's reads are stored under: as shown, and as it is, which is how
    versions before names were shown stored them (a tab, a bidi mark, a newline)."""
    shown = shown_path(path.name)
    return (shown,) if shown == path.name else (shown, path.name)


def _refused(path: Path, known: set[tuple[str, str | None]]) -> PendingExport | None:
    """A name in the folder that is not a regular file: refused once, never followed
    (a symlink to /etc/passwd must not end up in an alert)."""
    try:
        st = path.lstat()
    except OSError:
        return None
    if stat.S_ISREG(st.st_mode):
        return None
    stamp = file_stamp(st)
    if any((name, stamp) in known for name in _names(path)):
        return None
    what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
    return PendingExport(
        path,
        datetime.fromtimestamp(int(st.st_mtime), tz=UTC),
        stamp,
        problem=f"{shown_path(path)}: refused: {what};"
        " linkwatch reads only regular files in the folder",
    )


def _stored_tables(known: set[tuple[str, str | None]]) -> dict[str, list[str]]:
    """The origins stored with a stamp, by stamp, for the archives among them
    (`archive.zip:member.csv`)."""
    tables: dict[str, list[str]] = {}
    for origin, stamp in known:
        if stamp is not None and ":" in origin:
            tables.setdefault(stamp, []).append(origin)
    return tables


def _archive_read(
    name: str,
    stamp: str,
    stored_tables: dict[str, list[str]],
    known: set[tuple[str, str | None]],
) -> bool:
    """True for a zip archive, as it is now, whose tables were stored: it is not opened,
    judged or waited for again until it changes. One whose table failed to be read in a way
    worth retrying (`retry`) is looked at again, to find that table."""
    if (name, "retry") in known:
        return False
    prefix = name + ":"
    return any(origin.startswith(prefix) for origin in stored_tables.get(stamp, ()))


class CsvDirSource:
    """Reads backlink exports dropped into a folder; each new or changed file is one snapshot."""

    kind = "csv_dir"
    Settings = CsvDirSettings

    def __init__(self, name: str, settings: CsvDirSettings) -> None:
        self.name = name
        self.settings = settings
        self._path = parse_template(
            settings.path, _PATH_FIELDS, hint=_ONLY_PLACEHOLDER, specs=False, max_length=_PATH_MAX
        )

    def folder(self, site: str) -> Path:
        """The folder this source reads for a site."""
        return Path(render_template(self._path, {"domain": site}))

    def pending(
        self,
        site: str,
        known: set[tuple[str, str | None]],
        now: datetime,
        sleep: Callable[[float], object] = time.sleep,
    ) -> list[PendingExport]:
        """Export files not yet stored as they are now and no longer being written, oldest first.

        `known` holds the (file name, stamp) pairs already stored; a file's time is the
        date in its name, else its modification time. `now` is unused: whether a file is
        settled is judged by watching it, not by comparing its mtime with the clock.
        """
        folder = self.folder(site)
        if not folder.is_dir():
            raise SourceError(f"{folder}: export folder does not exist")
        # Stored before stamps were kept: what was read then is unknown, so the name counts
        # as read rather than re-reading every old export at once after an upgrade.
        read_names = {name for name, stamp in known if stamp is None}
        files: dict[Path, None] = {}
        for pattern in self.settings.patterns:
            for path in folder.glob(pattern):
                if read_names.isdisjoint(_names(path)):
                    files[path] = None
        first: dict[Path, str] = {}
        refused = [r for r in (_refused(path, known) for path in files) if r is not None]
        stored_tables = _stored_tables(known)
        for path in files:
            st = _regular_stat(path)
            if st is None:
                continue
            stamp = file_stamp(st)
            if not any(
                (name, stamp) in known or _archive_read(name, stamp, stored_tables, known)
                for name in _names(path)
            ):
                first[path] = stamp
        if not first:
            return refused
        settle = self.settings.settle.total_seconds()
        if settle > 0:
            sleep(settle)
        found: list[PendingExport] = []
        for path, before in first.items():
            st = _regular_stat(path)
            if st is None or file_stamp(st) != before:
                continue  # gone, or still being written: a later poll takes it
            export = PendingExport(path, export_time(path, st.st_mtime), before)
            found.extend(self._tables(site, export, known) if is_zip(path) else [export])
        return refused + sorted(found, key=lambda p: (p.taken_at, p.path.name, p.member or ""))

    def _tables(
        self, site: str, archive: PendingExport, known: set[tuple[str, str | None]]
    ) -> list[PendingExport]:
        """One pending export per member of a zip archive that holds links or domains and
        is not stored yet; the archive refused as a whole if none does or it is unsafe."""
        try:
            opened = open_archive(archive.path, site, self.settings.format, digest=False)
        except SourceError as exc:
            return [replace(archive, problem=str(exc))]
        for export in opened:
            export.close()
        notes = tuple(opened[0].notes)
        tables = [
            replace(archive, member=export.member, notes=notes if i == 0 else ())
            for i, export in enumerate(opened)
        ]
        return [t for t in tables if (t.origin, t.stamp) not in known]

    def open(self, site: str, export: PendingExport) -> SnapshotResult:
        """Open one pending export (a file, or a table in a zip archive) as a snapshot; raises
        FormatError for an unknown format or a file that holds no links."""
        opened = ExportFile(export.path, site, self.settings.format, member=export.member)
        result = opened.snapshot(export.taken_at)
        # The stamp seen when the file was found settled: if it changes before or while it
        # is read, the next poll sees a new stamp and reads it again.
        result.origin_stamp = export.stamp
        result.notes.extend(export.notes)
        return result
