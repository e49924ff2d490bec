"""Generic CSV: `url_from,url_to` plus optional anchor, nofollow, first_seen, domain_rating."""

from __future__ import annotations

from sources.formats.base import ColumnMap, ExportFormat, Variant

GENERIC = ExportFormat(
    kind="generic",
    description=(
        "generic CSV (url_from, url_to[, anchor, nofollow, first_seen, last_seen, domain_rating])"
    ),
    variants=(
        Variant(
            name="links",
            required=(("url_from",), ("url_to",)),
            columns=ColumnMap(
                url_from=("url_from",),
                url_to=("url_to",),
                anchor=("anchor",),
                nofollow=("nofollow",),
                domain_rating=("domain_rating",),
                first_seen=("first_seen",),
            ),
        ),
    ),
)
