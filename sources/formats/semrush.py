"""Semrush exports: Backlink Analytics backlinks (current and pre-2020 columns, comma or
semicolon), Backlink Audit, and referring domains."""

from __future__ import annotations

from sources.formats.base import ColumnMap, DomainMap, ExportFormat, Variant
from sources.formats.values import percent_toxicity

# Semrush's Authority Score of the referring domain, 0-100 (Backlink Audit `Domain Authority
# Score`, referring domains `Domain ascore`). The backlinks export carries only the linking
# page's score (`Page ascore`), which is no domain rating: it is not read.
SEMRUSH_AS = "Semrush AS"

_BACKLINKS = ColumnMap(
    url_from=("source url",),
    url_to=("target url",),
    anchor=("anchor",),
    nofollow=("nofollow",),
    ugc=("ugc",),
    sponsored=("sponsored",),
    first_seen=("first seen",),
    lost_if_true=("lost link",),
)

SEMRUSH = ExportFormat(
    kind="semrush",
    description="Semrush backlinks export (Source url, Target url, Anchor, …)",
    variants=(
        # `Page score,Page trust score,Source title,Source url,Target url,Anchor,…` (REFERENCE §2).
        Variant(
            name="backlinks (before 2020)",
            required=(("source url",), ("target url",), ("page trust score",)),
            columns=_BACKLINKS,
        ),
        Variant(
            name="backlinks",
            required=(("source url",), ("target url",), ("source title",)),
            columns=_BACKLINKS,
        ),
    ),
)

SEMRUSH_AUDIT = ExportFormat(
    kind="semrush_audit",
    description="Semrush Backlink Audit export (Source URL, Target URL, Anchor, Toxic Score, …)",
    variants=(
        Variant(
            name="backlink audit",
            required=(("source url",), ("target url",), ("toxic score", "toxicity score")),
            columns=ColumnMap(
                url_from=("source url",),
                url_to=("target url",),
                anchor=("anchor",),
                # TRUE / FALSE.
                nofollow=("no follow", "nofollow"),
                ugc=("ugc",),
                sponsored=("sponsored",),
                first_seen=("first seen",),
                domain_rating=("domain authority score", "domain ascore", "authority score"),
                rating_metric=SEMRUSH_AS,
                # Semrush's Toxic Score is already 0-100.
                toxicity=("toxic score", "toxicity score"),
                toxicity_scale=percent_toxicity,
            ),
        ),
    ),
)

SEMRUSH_DOMAINS = ExportFormat(
    kind="semrush_domains",
    description="Semrush referring domains export (Domain ascore, Domain, Backlinks, …)",
    coverage="domains",
    variants=(
        # `Domain ascore,Domain,Backlinks,IP Address,Country,First seen,Last seen`: the dates
        # are required too, so a hand-cut table of three columns is not taken for one.
        Variant(
            name="referring domains",
            required=(("domain ascore",), ("domain",), ("backlinks",), ("first seen",)),
            columns=DomainMap(
                domain=("domain",),
                links=("backlinks",),
                domain_rating=("domain ascore",),
                rating_metric=SEMRUSH_AS,
                first_seen=("first seen",),
            ),
        ),
    ),
)
