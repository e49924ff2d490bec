"""csv_dir source: every new export file in a folder becomes a snapshot, oldest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from daemon.types import Duration
from sources.exports import ExportFile, export_time
from sources.model import SnapshotResult, SourceError


class CsvDirSettings(BaseModel):
    """Settings of a `csv_dir` source."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["csv_dir"]
    path: str = Field(description="folder of export files; {domain} is the site's domain")
    format: str | None = Field(default=None, description="force one export format")
    interval: Duration = Field(default=timedelta(hours=1), description="how often to look")
    confirm_after: int = Field(default=2, ge=1, description="absent snapshots before lost")
    suspect_below: float = Field(
        default=0.5, gt=0, le=1, description="a snapshot smaller than this share is suspect"
    )
    patterns: list[str] = Field(default_factory=lambda: ["*.csv", "*.tsv", "*.txt"])
    settle: Duration = Field(
        default=timedelta(seconds=5),
        description="a file modified more recently than this may still be being written",
    )


@dataclass(frozen=True)
class PendingExport:
    """An export file not yet stored, with the time its snapshot is taken at."""

    path: Path
    taken_at: datetime


class CsvDirSource:
    """Reads backlink exports dropped into a folder; each new file is one snapshot."""

    kind = "csv_dir"
    Settings = CsvDirSettings

    def __init__(self, name: str, settings: CsvDirSettings) -> None:
        self.name = name
        self.settings = settings

    def folder(self, site: str) -> Path:
        """The folder this source reads for a site."""
        return Path(self.settings.path.format(domain=site))

    def pending(self, site: str, known: set[str], now: datetime) -> list[PendingExport]:
        """Export files not yet stored and no longer being written, oldest first.

        A file's time is the date in its name, else its modification time.
        """
        folder = self.folder(site)
        if not folder.is_dir():
            raise SourceError(f"{folder}: export folder does not exist")
        files: dict[Path, None] = {}
        for pattern in self.settings.patterns:
            for path in folder.glob(pattern):
                if path.is_file() and path.name not in known:
                    files[path] = None
        found = []
        settled_before = now.timestamp() - self.settings.settle.total_seconds()
        for path in files:
            try:
                mtime = path.stat().st_mtime
            except OSError:
                continue  # vanished since the listing
            if mtime > settled_before:
                continue  # perhaps still being copied; the next poll takes it
            found.append(PendingExport(path, export_time(path, mtime)))
        return sorted(found, key=lambda p: (p.taken_at, p.path.name))

    def open(self, site: str, export: PendingExport) -> SnapshotResult:
        """Open one pending export as a snapshot (raises FormatError for an unknown format)."""
        return ExportFile(export.path, site, self.settings.format).snapshot(export.taken_at)
