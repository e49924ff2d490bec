"""Moz Link Explorer / Open Site Explorer inbound links: preamble lines, then a header starting
`URL,Title,Anchor Text`; URLs without a scheme; `Yes`/`No` flags."""

from __future__ import annotations

from sources.formats.base import ColumnMap, ExportFormat, Variant
from sources.formats.values import moz_legacy_spam_score, percent_toxicity

# Moz's Domain Authority of the linking domain, 0-100.
MOZ_DA = "Moz DA"

_START = (("url",), ("title",), ("anchor text",), ("target url",))

MOZ = ExportFormat(
    kind="moz",
    description="Moz inbound links export (URL, Title, Anchor Text, …, Target URL)",
    variants=(
        # `URL,Title,Anchor Text,Spam Score,Page Authority,Domain Authority,Number of Domains
        # Linking to this Page,Number of Domains Linking to Domain,Origin,Target URL,Link
        # Equity,No Link Equity,Only rel=nofollow,Only follow,301` (REFERENCE §4).
        Variant(
            name="inbound links (Open Site Explorer)",
            required=(*_START, ("only rel=nofollow",)),
            after_preamble=True,
            columns=ColumnMap(
                url_from=("url",),
                url_to=("target url",),
                anchor=("anchor text",),
                nofollow=("only rel=nofollow",),
                domain_rating=("domain authority",),
                rating_metric=MOZ_DA,
                # Open Site Explorer counted 17 spam flags: scaled to 0-100.
                toxicity=("spam score",),
                toxicity_scale=moz_legacy_spam_score,
                add_scheme=True,
            ),
        ),
        # `URL,Title,Anchor Text,Page Authority,Domain Authority,Number of Links,Number of
        # Domains Linking to Domain,Followable,301,Origin,Target URL` (REFERENCE §4).
        Variant(
            name="inbound links (Open Site Explorer, 11 columns)",
            required=(*_START, ("followable",)),
            after_preamble=True,
            columns=ColumnMap(
                url_from=("url",),
                url_to=("target url",),
                anchor=("anchor text",),
                followed=("followable",),
                domain_rating=("domain authority",),
                rating_metric=MOZ_DA,
                add_scheme=True,
            ),
        ),
        # Link Explorer (2018 on): only the start of the header is evidenced; what else is
        # recognised is read, and its Spam Score is Moz's current 1-100 % scale.
        Variant(
            name="inbound links (Link Explorer)",
            required=_START,
            after_preamble=True,
            columns=ColumnMap(
                url_from=("url",),
                url_to=("target url",),
                anchor=("anchor text",),
                nofollow=("only rel=nofollow", "nofollow"),
                domain_rating=("domain authority", "da"),
                rating_metric=MOZ_DA,
                toxicity=("spam score",),
                toxicity_scale=percent_toxicity,
                add_scheme=True,
            ),
        ),
    ),
)
