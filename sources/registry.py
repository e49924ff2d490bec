"""Backlink sources, registered by kind."""

from __future__ import annotations

from typing import TypeAlias

from sources.ahrefs import AhrefsSettings, AhrefsSource
from sources.api import ApiSource
from sources.bing import BingSettings, BingSource
from sources.csv_dir import CsvDirSettings, CsvDirSource
from sources.dataforseo import DataForSeoSettings, DataForSeoSource
from sources.majestic import MajesticSettings, MajesticSource
from sources.moz import MozSettings, MozSource

Source: TypeAlias = CsvDirSource | ApiSource
SOURCE_KINDS: dict[str, type[CsvDirSource] | type[ApiSource]] = {
    cls.kind: cls
    for cls in (CsvDirSource, DataForSeoSource, AhrefsSource, MozSource, MajesticSource, BingSource)
}
SourceSettings: TypeAlias = (
    CsvDirSettings
    | DataForSeoSettings
    | AhrefsSettings
    | MozSettings
    | MajesticSettings
    | BingSettings
)


def build_source(name: str, settings: SourceSettings) -> Source:
    """The source a settings block describes."""
    if isinstance(settings, CsvDirSettings):
        return CsvDirSource(name, settings)
    cls = SOURCE_KINDS[settings.kind]
    assert issubclass(cls, ApiSource)
    return cls(name, settings)


__all__ = ["SOURCE_KINDS", "ApiSource", "Source", "SourceSettings", "build_source"]
