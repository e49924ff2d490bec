"""Bing Webmaster Tools backlinks CSV (Source Url, Anchor text, Target Url); no dates or rel."""

from __future__ import annotations

from sources.formats.base import ColumnMap, ExportFormat

BING = ExportFormat(
    kind="bing",
    description="Bing Webmaster Tools backlinks CSV (Source Url, Anchor text, Target Url)",
    required=(("source url",), ("target url",), ("anchor text",)),
    columns=ColumnMap(url_from=("source url",), url_to=("target url",), anchor=("anchor text",)),
)
