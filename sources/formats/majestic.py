"""Majestic Advanced Report / DownloadBackLinks CSV (Target URL, Source URL, Anchor Text, Flag…)."""

from __future__ import annotations

from sources.formats.base import ColumnMap, ExportFormat

MAJESTIC = ExportFormat(
    kind="majestic",
    description="Majestic backlinks CSV (Target URL, Source URL, Anchor Text, FlagNoFollow, …)",
    required=(("source url",), ("target url",), ("flagnofollow",)),
    columns=ColumnMap(
        url_from=("source url",),
        url_to=("target url",),
        anchor=("anchor text",),
        nofollow=("flagnofollow",),
        first_seen=("source first found date",),
        flags_nonempty_true=True,
    ),
)
