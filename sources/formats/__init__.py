"""Export formats, registered by kind; detection tries them in this order."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from sources.fingerprint import note_code
from sources.formats.ahrefs import AHREFS, AHREFS_BROKEN, AHREFS_DOMAINS
from sources.formats.base import Detection, ExportFormat, Recognised, Variant, normalize_header
from sources.formats.bing import BING, BING_ANCHORS, BING_DOMAINS
from sources.formats.generic import GENERIC
from sources.formats.gsc import GSC_LATEST_LINKS, GSC_TOP_PAGES, GSC_TOP_SITES, GSC_TOP_TEXT
from sources.formats.majestic import MAJESTIC
from sources.formats.moz import MOZ
from sources.formats.semrush import SEMRUSH, SEMRUSH_AUDIT, SEMRUSH_DOMAINS

# The formats linkwatch imports, by kind (a kind names the observation series too). The
# Backlink Audit comes before the backlinks export, whose columns it may also carry.
FORMATS: dict[str, ExportFormat] = {
    f.kind: f
    for f in (
        AHREFS,
        SEMRUSH_AUDIT,
        SEMRUSH,
        MAJESTIC,
        MOZ,
        BING,
        GSC_LATEST_LINKS,
        AHREFS_DOMAINS,
        SEMRUSH_DOMAINS,
        BING_DOMAINS,
        GSC_TOP_SITES,
        GENERIC,
    )
}
# Files linkwatch recognises in order to refuse them by name: they hold no links or domains.
NO_LINK_FORMATS: dict[str, ExportFormat] = {
    f.kind: f for f in (AHREFS_BROKEN, BING_ANCHORS, GSC_TOP_PAGES, GSC_TOP_TEXT)
}
# The generic CSV comes last: its two columns are the loosest test. Ahrefs' broken backlinks
# come first: they carry every column of the backlinks export too.
_ORDER = (
    AHREFS_BROKEN,
    *(f for f in FORMATS.values() if f is not GENERIC),
    *(f for f in NO_LINK_FORMATS.values() if f is not AHREFS_BROKEN),
    GENERIC,
)


def detect(header: Mapping[str, int], *, after_preamble: bool = False) -> Detection | None:
    """The first format (and variant) whose required columns the header has; with
    `after_preamble`, only formats whose header may follow preamble lines (Moz)."""
    for fmt in _ORDER:
        for variant in fmt.variants:
            if after_preamble and not variant.after_preamble:
                continue
            if variant.matches(header):
                how: Recognised = "header" if variant.language is None else "translated header"
                return Detection(fmt, variant, how)
    return None


def detect_format(header: Mapping[str, int]) -> ExportFormat | None:
    """The first registered format whose required columns the header has."""
    found = detect(header)
    return None if found is None else found.format


def known_formats() -> str:
    """Every format linkwatch knows, for error messages: `kind (description), …`."""
    return ", ".join(f"{f.kind} ({f.description})" for f in FORMATS.values())


__all__ = [
    "FORMATS",
    "NO_LINK_FORMATS",
    "Detection",
    "ExportFormat",
    "Variant",
    "detect",
    "detect_format",
    "known_formats",
    "normalize_header",
]

# Fingerprints are salted with these formats as they run (sources/fingerprint.py).
note_code(*sorted(Path(__file__).parent.glob("*.py")))
