"""Semrush Backlink Analytics backlinks export (comma or semicolon, current and legacy columns)."""

from __future__ import annotations

from sources.formats.base import ColumnMap, ExportFormat

SEMRUSH = ExportFormat(
    kind="semrush",
    description="Semrush backlinks export (Source url, Target url, Anchor, …)",
    required=(("source url",), ("target url",), ("source title",)),
    columns=ColumnMap(
        url_from=("source url",),
        url_to=("target url",),
        anchor=("anchor",),
        nofollow=("nofollow",),
        ugc=("ugc",),
        sponsored=("sponsored",),
        first_seen=("first seen",),
        lost_if_true=("lost link",),
    ),
)
