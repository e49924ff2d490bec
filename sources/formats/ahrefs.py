"""Ahrefs Site Explorer backlinks export: UTF-16 tab or UTF-8 comma, 2023 or current columns."""

from __future__ import annotations

from sources.formats.base import ColumnMap, ExportFormat

AHREFS = ExportFormat(
    kind="ahrefs",
    description="Ahrefs backlinks export (Referring page URL, Target URL, Anchor, …)",
    required=(("referring page url",), ("target url",)),
    columns=ColumnMap(
        url_from=("referring page url",),
        url_to=("target url",),
        anchor=("anchor",),
        nofollow=("nofollow",),
        ugc=("ugc",),
        sponsored=("sponsored",),
        domain_rating=("domain rating", "dr"),
        first_seen=("first seen",),
        lost_if_nonempty=("lost",),
        lost_reason=("lost status", "drop reason"),
    ),
)
