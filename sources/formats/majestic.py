"""Majestic backlinks: the Advanced Report / DownloadBackLinks CSV, or a file using the API's
GetBackLinkData field names (SourceURL, TargetURL, AnchorText, FlagNoFollow, DateLost, …)."""

from __future__ import annotations

from sources.formats.base import ColumnMap, ExportFormat, Variant

# Majestic's Trust Flow of the linking page (`SourceTrustFlow`), 0-100.
MAJESTIC_TF = "Majestic TF"

MAJESTIC = ExportFormat(
    kind="majestic",
    description="Majestic backlinks CSV (Target URL, Source URL, Anchor Text, FlagNoFollow, …)",
    variants=(
        Variant(
            name="advanced report",
            required=(("source url",), ("target url",), ("flagnofollow",)),
            columns=ColumnMap(
                url_from=("source url",),
                url_to=("target url",),
                anchor=("anchor text",),
                nofollow=("flagnofollow",),
                first_seen=("source first found date",),
                domain_rating=("sourcetrustflow",),
                rating_metric=MAJESTIC_TF,
                flags_nonempty_true=True,
            ),
        ),
        # GetBackLinkData field names (REFERENCE §7.4): flags 0/1, `DateLost` empty when live.
        Variant(
            name="API field names",
            required=(("sourceurl",), ("targeturl",)),
            columns=ColumnMap(
                url_from=("sourceurl",),
                url_to=("targeturl",),
                anchor=("anchortext",),
                nofollow=("flagnofollow",),
                first_seen=("firstindexeddate",),
                domain_rating=("sourcetrustflow",),
                rating_metric=MAJESTIC_TF,
                lost_if_nonempty=("datelost",),
                lost_reason=("reasonlost",),
                flags_nonempty_true=True,
            ),
        ),
    ),
)
