"""Backlink sources, registered by kind."""

from __future__ import annotations

from sources.csv_dir import CsvDirSettings, CsvDirSource

SOURCE_KINDS: dict[str, type[CsvDirSource]] = {CsvDirSource.kind: CsvDirSource}
SourceSettings = CsvDirSettings

__all__ = ["SOURCE_KINDS", "SourceSettings"]
