"""Ahrefs Site Explorer exports: backlinks (current, 2023 and pre-2021 columns; UTF-16 tab or
UTF-8 comma) and referring domains."""

from __future__ import annotations

from sources.formats.base import ColumnMap, DomainMap, ExportFormat, Variant
from sources.formats.values import spam_flag_toxicity

# Ahrefs' Domain Rating of the referring domain, 0-100.
AHREFS_DR = "Ahrefs DR"

AHREFS = ExportFormat(
    kind="ahrefs",
    description="Ahrefs backlinks export (Referring page URL, Target URL, Anchor, …)",
    variants=(
        Variant(
            name="backlinks",
            required=(("referring page url",), ("target url",)),
            columns=ColumnMap(
                url_from=("referring page url",),
                url_to=("target url",),
                anchor=("anchor",),
                nofollow=("nofollow",),
                ugc=("ugc",),
                sponsored=("sponsored",),
                domain_rating=("domain rating", "dr"),
                rating_metric=AHREFS_DR,
                first_seen=("first seen",),
                lost_if_nonempty=("lost",),
                lost_reason=("lost status", "drop reason"),
                # `Is spam` (2025 columns): Ahrefs' own verdict, true -> toxicity 100.
                toxicity=("is spam",),
                toxicity_scale=spam_flag_toxicity,
            ),
        ),
        # Before 2021 (header order seen in a public importer of these files: `#`, `Domain
        # Rating`, `URL Rating (desc)`, `Referring Domains`, `Referring Page URL`, `Referring
        # Page Title`, `Internal Links Count`, `External Links Count`, `Link URL`, `TextPre`,
        # `Link Anchor`, `TextPost`, `Type`, `Backlink Status`, `First Seen`, `Last Check`,
        # `Day Lost`, `Language`, `Traffic`, `Keywords`, `Js rendered`, `Linked Domains`).
        Variant(
            name="backlinks (before 2021)",
            required=(("referring page url",), ("link url",), ("link anchor", "textpre")),
            columns=ColumnMap(
                url_from=("referring page url",),
                url_to=("link url",),
                anchor=("link anchor",),
                # `Dofollow` / `Nofollow`; any other kind leaves nofollow unknown.
                follow_kind=("type",),
                domain_rating=("domain rating",),
                rating_metric=AHREFS_DR,
                first_seen=("first seen",),
                # `Day Lost` empty = live, a date = lost. `Backlink Status` marks a link lost
                # only when it says `lost`: its vocabulary is not documented, and an unknown
                # word must never make a link lost.
                lost_if_nonempty=("day lost",),
                lost_if_status=("backlink status",),
            ),
        ),
    ),
)

AHREFS_DOMAINS = ExportFormat(
    kind="ahrefs_domains",
    description="Ahrefs referring domains export (Domain, DR, Links to target, …)",
    coverage="domains",
    variants=(
        Variant(
            name="referring domains",
            required=(("domain",), ("dr",), ("links to target", "dofollow ref. domains")),
            columns=DomainMap(
                domain=("domain",),
                links=("links to target",),
                domain_rating=("dr",),
                rating_metric=AHREFS_DR,
                first_seen=("first seen",),
                lost_if_nonempty=("lost",),
            ),
        ),
    ),
)

# Site Explorer ▸ Broken backlinks (REFERENCE.md §1): the backlinks columns plus `Target page
# HTTP code` (after `Target URL`), `Target checked` and `Ref. page checked`. It lists only the
# links pointing at broken pages of the site, not the profile: filed in the complete `ahrefs`
# series, every link absent from it would go missing, then lost. Recognised to be refused.
AHREFS_BROKEN = ExportFormat(
    kind="ahrefs_broken",
    description="Ahrefs broken backlinks export (Referring page URL, Target URL, Target page "
    "HTTP code, …)",
    coverage="none",
    refusal=(
        "it holds only broken backlinks, not the profile: the links it lacks are not lost; "
        "import the Backlinks export instead"
    ),
    variants=(
        Variant(
            name="broken backlinks",
            required=(
                ("referring page url",),
                ("target url",),
                ("target page http code", "target checked"),
            ),
            columns=None,
        ),
    ),
)
