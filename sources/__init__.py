"""Backlink sources, registered by kind."""

from __future__ import annotations

from typing import TypeAlias

from sources.api import ApiSource
from sources.csv_dir import CsvDirSettings, CsvDirSource
from sources.dataforseo import DataForSeoSettings, DataForSeoSource

Source: TypeAlias = CsvDirSource | ApiSource
SOURCE_KINDS: dict[str, type[CsvDirSource] | type[ApiSource]] = {
    cls.kind: cls for cls in (CsvDirSource, DataForSeoSource)
}
SourceSettings: TypeAlias = CsvDirSettings | DataForSeoSettings


def build_source(name: str, settings: SourceSettings) -> Source:
    """The source a settings block describes."""
    if isinstance(settings, CsvDirSettings):
        return CsvDirSource(name, settings)
    cls = SOURCE_KINDS[settings.kind]
    assert issubclass(cls, ApiSource)
    return cls(name, settings)


__all__ = ["SOURCE_KINDS", "ApiSource", "Source", "SourceSettings", "build_source"]
