"""Google Search Console "Latest links" / "More sample links" export: linking pages to the site."""

from __future__ import annotations

from sources.formats.base import ColumnMap, ExportFormat

# English, Spanish and Hebrew headers are seen in public parsers; German is a guess.
_LINKING_PAGE = ("linking page", "página de enlace", "דף מקשר", "verweisende seite")

GSC_LATEST_LINKS = ExportFormat(
    kind="gsc",
    description="Google Search Console Latest links (Linking page, Last crawled)",
    required=(_LINKING_PAGE,),
    # Search Console exports at most a sample of the links (REFERENCE.md §5).
    sample=True,
    columns=ColumnMap(url_from=_LINKING_PAGE),
)
