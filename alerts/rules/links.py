"""Link filters as rule files write them, and what link_lost and link_new share."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, Field, StrictBool, field_validator

from alerts.message import LinkItem
from alerts.rules.common import RuleBase, RuleConfig
from alerts.rules.context import Check, EvaluationContext
from daemon.settings import hostname_problem
from daemon.store import Store
from daemon.store.reads import LinkFilter, window_links
from daemon.templates import Piece, check_template, parse_template, render_template
from daemon.timefmt import format_duration
from daemon.types import PositiveDuration
from sources.urls import canonical_escapes, idna_host, join_normalized, split_url

# A rule naming more referring domains than this is a list better kept elsewhere; the
# bound also keeps the SQL condition (two tests per domain) far below SQLite's limits.
MAX_DOMAINS = 500
MAX_PREFIX = 2048
# How many links one message names; the rest are counted.
MAX_LISTED = 20
MAX_COUNT = 1_000_000


def _domains(values: list[str]) -> list[str]:
    """Hostnames in the form stored referring URLs have: IDNA, lower case, no `www.`."""
    out: list[str] = []
    for value in values:
        text = value.strip().rstrip(".")
        problem = hostname_problem(text)
        if problem is not None:
            raise ValueError(f"{value!r} {problem}")
        host = idna_host(text)
        # Stored URLs drop a leading `www.`, so `www.example.org` can only mean example.org.
        host = host.removeprefix("www.")
        if host not in out:
            out.append(host)
    return out


def normalize_target_prefix(value: str) -> str:
    """A target URL prefix in the stored form of url_to (`https://www.example.com/blog` ->
    `example.com/blog`), or a path prefix (`/blog/`) with canonical escapes."""
    text = value.strip()
    if text.startswith("/"):
        return canonical_escapes(text)
    parts = split_url(text)
    if parts is None:
        raise ValueError(
            "expected a URL such as https://example.com/blog/ or a path starting with /,"
            f" got {value!r}"
        )
    host, rest = parts
    # split_url gives a bare host the path `/`: `example.com` means the whole site.
    return join_normalized(host, rest)


Domains = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=253)]],
    Field(min_length=1, max_length=MAX_DOMAINS),
    AfterValidator(_domains),
]
TargetPrefix = Annotated[
    str, Field(min_length=1, max_length=MAX_PREFIX), AfterValidator(normalize_target_prefix)
]
Rating = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]


def make_filter(
    *,
    dofollow_only: bool,
    min_domain_rating: float | None,
    domains: list[str] | None,
    target_prefix: str | None,
) -> LinkFilter | None:
    """The filter of validated rule keys; None when it lets every link through."""
    f = LinkFilter(
        dofollow_only=dofollow_only,
        min_domain_rating=min_domain_rating,
        domains=tuple(domains or ()),
        target_prefix=target_prefix,
    )
    return None if f.empty else f


def describe_filter(f: LinkFilter | None) -> str:
    """The filter in a few words for a summary: `dofollow, DR >= 50, from example.org`."""
    if f is None:
        return "all links"
    parts = []
    if f.dofollow_only:
        parts.append("dofollow")
    if f.min_domain_rating is not None:
        parts.append(f"DR >= {number(f.min_domain_rating)}")
    if f.domains:
        shown = " or ".join(f.domains[:3])
        more = f" and {len(f.domains) - 3} more" if len(f.domains) > 3 else ""
        parts.append(f"from {shown}{more}")
    if f.target_prefix is not None:
        parts.append(f"to {f.target_prefix}")
    return ", ".join(parts)


def number(v: float) -> str:
    """A value as a message writes it: `12`, `0.5`."""
    return str(int(v)) if v == int(v) else f"{v:g}"


def links_found(
    store: Store,
    site: str,
    start: datetime,
    end: datetime,
    change: str,
    link_filter: LinkFilter | None,
) -> tuple[tuple[LinkItem, ...], int]:
    """The strongest MAX_LISTED links lost or gained ("lost" / "gained") in (start, end]
    that match the filter, and how many matched in all."""
    # The SQL lives in the store package (daemon/store/reads.py); this only reads.
    found, total = window_links(
        store.conn, store.site_id(site), start, end, change, link_filter, MAX_LISTED
    )
    items = tuple(
        LinkItem(
            refdomain=w.refdomain,
            url_from=w.url_from,
            url_to=w.url_to,
            anchor=w.anchor,
            domain_rating=w.domain_rating,
            reason=w.reason,
        )
        for w in found
    )
    return items, total


LINK_SUMMARY_FIELDS = frozenset(
    {"site", "rule", "metric", "value", "links", "op", "threshold", "window", "severity", "filter"}
)
_LINK_HINT = "use " + ", ".join("{" + n + "}" for n in sorted(LINK_SUMMARY_FIELDS))


class LinkRuleConfig(RuleConfig):
    """The keys link_lost and link_new rule files share."""

    window: PositiveDuration = timedelta(days=1)
    min_count: int = Field(default=1, ge=1, le=MAX_COUNT)
    min_domain_rating: Rating | None = None
    dofollow_only: StrictBool = False
    domains: Domains | None = None
    target_prefix: TargetPrefix | None = None
    summary: str | None = None

    @field_validator("summary")
    @classmethod
    def _known_placeholders(cls, v: str | None) -> str | None:
        return None if v is None else check_template(v, LINK_SUMMARY_FIELDS, hint=_LINK_HINT)


@dataclass(frozen=True, kw_only=True)
class LinkRule(RuleBase):
    """Fires for a site while at least `min_count` matching links changed in `window`."""

    window: timedelta
    min_count: int
    link_filter: LinkFilter | None
    summary_template: str
    _summary: tuple[Piece, ...] = field(init=False, repr=False, compare=False)

    # Set by each kind: which change it lists, the metric it counts, its summaries.
    change: ClassVar[str] = ""
    metric: ClassVar[str] = ""
    default_summary: ClassVar[str] = ""
    default_filtered_summary: ClassVar[str] = ""
    op: ClassVar[str] = ">="

    @property
    def threshold(self) -> float:
        """The count at which the rule fires."""
        return float(self.min_count)

    @classmethod
    def common_fields(cls, name: str, cfg: LinkRuleConfig) -> dict[str, Any]:
        """The fields of a link rule built from its validated file."""
        link_filter = make_filter(
            dofollow_only=cfg.dofollow_only,
            min_domain_rating=cfg.min_domain_rating,
            domains=cfg.domains,
            target_prefix=cfg.target_prefix,
        )
        default = cls.default_summary if link_filter is None else cls.default_filtered_summary
        return dict(
            **RuleBase.common(name, cfg),
            window=cfg.window,
            min_count=cfg.min_count,
            link_filter=link_filter,
            summary_template=cfg.summary or default,
        )

    def __post_init__(self) -> None:
        pieces = parse_template(self.summary_template, LINK_SUMMARY_FIELDS, hint=_LINK_HINT)
        object.__setattr__(self, "_summary", pieces)

    def check(self, ctx: EvaluationContext, site: str) -> Check:
        """Count the matching links the window changed and name the strongest."""
        if not ctx.store.has_data(site, ctx.at):
            return Check(None, None, self.summary(site, None))
        items, total = links_found(
            ctx.store, site, ctx.at - self.window, ctx.at, self.change, self.link_filter
        )
        return Check(
            float(total),
            total >= self.min_count,
            self.summary(site, total),
            links=items,
            more_links=total - len(items),
        )

    def summary(self, site: str, count: int | None) -> str:
        """The rule's summary line for one site and count."""
        links = "no data" if count is None else f"{count} link{'' if count == 1 else 's'}"
        values = dict(
            site=site,
            rule=self.name,
            metric=self.metric,
            value="no data" if count is None else str(count),
            links=links,
            op=self.op,
            threshold=str(self.min_count),
            window=format_duration(self.window),
            severity=self.severity,
            filter=describe_filter(self.link_filter),
        )
        return render_template(self._summary, values)
