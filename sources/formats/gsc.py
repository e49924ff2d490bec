"""Google Search Console Links report exports, in English and in the UI languages whose headers
are evidenced; files in other languages are recognised by their shape (sources.formats.shape).

Evidence for the translated headers (docs/exports.md has the details):
- Hebrew: `דף מקשר,נסרק לאחרונה`, `אתר,דפים מקשרים,דפי יעד`, `דף יעד,קישורים נכנסים,אתרים
  מקשרים`: a public Search Console links importer and its test exports.
- Spanish: `Página de enlace,Último rastreo`: a public parser (REFERENCE.md §5); `Último
  rastreo` is also the date column of Spanish Search Console CSVs in public code.
- Italian: `Pagina con link,Ultima scansione`: named in issue 8; not found in public code.
German, French, Portuguese, Dutch, Japanese, … Links exports are read by shape.
"""

from __future__ import annotations

from sources.formats.base import ColumnMap, DomainMap, ExportFormat, Variant

# (language, linking page, last crawled), English first.
_LATEST_LINKS = (
    (None, "linking page", "last crawled"),
    ("Hebrew", "דף מקשר", "נסרק לאחרונה"),
    ("Spanish", "página de enlace", "último rastreo"),
    ("Italian", "pagina con link", "ultima scansione"),
)
_LINKING_PAGE = tuple(page for _, page, _ in _LATEST_LINKS)
# (language, site, linking pages, target pages).
_TOP_SITES = (
    (None, "site", "linking pages", "target pages"),
    ("Hebrew", "אתר", "דפים מקשרים", "דפי יעד"),
)
# (language, target page, incoming links, linking sites).
_TOP_PAGES = (
    (None, "target page", "incoming links", "linking sites"),
    ("Hebrew", "דף יעד", "קישורים נכנסים", "אתרים מקשרים"),
)

GSC_LATEST_LINKS = ExportFormat(
    kind="gsc",
    description="Google Search Console linking pages (Latest links, More sample links)",
    # Search Console exports at most a sample of the links (REFERENCE.md §5).
    coverage="sample",
    variants=(
        *(
            Variant(
                name="Latest links",
                required=((page,), (crawled,)),
                language=language,
                columns=ColumnMap(url_from=_LINKING_PAGE),
            )
            for language, page, crawled in _LATEST_LINKS
        ),
        *(
            Variant(
                name="More sample links",
                required=((page,),),
                language=language,
                columns=ColumnMap(url_from=_LINKING_PAGE),
            )
            for language, page, _ in _LATEST_LINKS
        ),
    ),
)

GSC_TOP_SITES = ExportFormat(
    kind="gsc_sites",
    description="Google Search Console Top linking sites (Site, Linking pages, Target pages)",
    # A sample too, but a domains series never makes anything missing.
    coverage="domains",
    variants=tuple(
        Variant(
            name="Top linking sites",
            required=((site,), (pages,), (targets,)),
            language=language,
            columns=DomainMap(domain=(site,), links=(pages,)),
        )
        for language, site, pages, targets in _TOP_SITES
    ),
)

GSC_TOP_PAGES = ExportFormat(
    kind="gsc_pages",
    description="Google Search Console Top linked pages (Target page, Incoming links, …)",
    coverage="none",
    refusal=(
        "it lists your own pages and how many links each receives: it names no linking page "
        "and no linking site; import Latest links or Top linking sites instead"
    ),
    variants=tuple(
        Variant(
            name="Top linked pages",
            required=((page,), (incoming,), (sites,)),
            language=language,
            columns=None,
        )
        for language, page, incoming, sites in _TOP_PAGES
    ),
)

GSC_TOP_TEXT = ExportFormat(
    kind="gsc_text",
    description="Google Search Console Top linking text (Linking text, …)",
    coverage="none",
    refusal="it lists anchor texts: it names no linking page and no linking site",
    variants=(Variant(name="Top linking text", required=(("linking text",),), columns=None),),
)
