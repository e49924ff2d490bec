"""Bing Webmaster Tools "Download all" backlinks: three CSVs, of which the backlinks one holds
links, the referring domains one domains, and the anchors one neither."""

from __future__ import annotations

from sources.formats.base import ColumnMap, DomainMap, ExportFormat, Variant

BING = ExportFormat(
    kind="bing",
    description="Bing Webmaster Tools backlinks CSV (Source Url, Anchor text, Target Url)",
    variants=(
        Variant(
            name="backlinks",
            required=(("source url",), ("target url",), ("anchor text",)),
            columns=ColumnMap(
                url_from=("source url",), url_to=("target url",), anchor=("anchor text",)
            ),
        ),
    ),
)

BING_DOMAINS = ExportFormat(
    kind="bing_domains",
    description="Bing Webmaster Tools referring domains CSV (Domain, Backlinks Count)",
    coverage="domains",
    variants=(
        Variant(
            name="referring domains",
            required=(("domain",), ("backlinks count",)),
            # Domain values are URLs (`https://news.example.io/`): their host is the domain.
            columns=DomainMap(domain=("domain",), links=("backlinks count",)),
        ),
    ),
)

BING_ANCHORS = ExportFormat(
    kind="bing_anchors",
    description="Bing Webmaster Tools anchors CSV (Anchor, Backlinks Count)",
    coverage="none",
    refusal=(
        "it lists anchor texts and how many backlinks use each: it holds no links and no "
        "referring domains; import the backlinks file of the same download"
    ),
    variants=(Variant(name="anchors", required=(("anchor",), ("backlinks count",)), columns=None),),
)
