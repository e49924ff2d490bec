"""Export formats, registered by kind; detection tries them in this order."""

from __future__ import annotations

from collections.abc import Mapping

from sources.formats.ahrefs import AHREFS
from sources.formats.base import ExportFormat, normalize_header
from sources.formats.bing import BING
from sources.formats.generic import GENERIC
from sources.formats.gsc import GSC_LATEST_LINKS
from sources.formats.majestic import MAJESTIC
from sources.formats.semrush import SEMRUSH

FORMATS: dict[str, ExportFormat] = {
    f.kind: f for f in (AHREFS, SEMRUSH, MAJESTIC, BING, GSC_LATEST_LINKS, GENERIC)
}


def detect_format(header: Mapping[str, int]) -> ExportFormat | None:
    """The first registered format whose required columns the header has."""
    for fmt in FORMATS.values():
        if fmt.matches(header):
            return fmt
    return None


__all__ = ["FORMATS", "ExportFormat", "detect_format", "normalize_header"]
