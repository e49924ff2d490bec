"""What a rule sees when it is evaluated, and what it answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from alerts.message import LinkItem
from alerts.metrics import Metrics, compute_metrics
from daemon.store import Store
from daemon.store.reads import LinkFilter


@dataclass(frozen=True)
class Check:
    """A rule's verdict for one site: the value, whether the condition holds, a summary.

    `holds` is None when there is no data: the alert keeps the state it had.
    """

    value: float | None
    holds: bool | None
    summary: str
    # Whether the message should list the strongest lost referring domains of the
    # rule's window (threshold rules on losses).
    with_lost_domains: bool = False
    # The threshold this site was compared with, when the rule computes it (spike).
    threshold: float | None = None
    # Individual links the alert is about (link_lost / link_new), at most a message's
    # worth, and how many more matched.
    links: tuple[LinkItem, ...] = ()
    more_links: int = 0


@dataclass
class EvaluationContext:
    """One evaluation pass at `at` (real time `now`): the store, the sites, and metrics
    computed once each."""

    store: Store
    at: datetime
    now: datetime
    own_sites: list[str]
    all_sites: list[str]
    # Own site -> the competitor sites it names (competitor_pace rules).
    competitors: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _metrics: dict[tuple[str, timedelta, datetime, LinkFilter | None], Metrics | None] = field(
        default_factory=dict
    )
    _unhealthy: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def metrics(
        self,
        site: str,
        window: timedelta,
        end: datetime | None = None,
        link_filter: LinkFilter | None = None,
    ) -> Metrics | None:
        """The site's metrics over `window` ending at `end` (default `at`; None without
        data), of the links matching `link_filter` if given, computed once per pass."""
        end = self.at if end is None else end
        if link_filter is not None and link_filter.empty:
            link_filter = None  # the same numbers: computed and cached once
        key = (site, window, end, link_filter)
        if key not in self._metrics:
            self._metrics[key] = compute_metrics(self.store, site, window, end, link_filter)
        return self._metrics[key]

    def unhealthy_sources(self, site: str) -> tuple[str, ...]:
        """The site's sources whose latest link poll by `at` failed, was partial or
        suspect. A referring-domains snapshot says nothing about links: it holds no rule."""
        if site not in self._unhealthy:
            self._unhealthy[site] = tuple(
                s.source
                for s in self.store.source_health(site, self.at)
                if s.latest_status in UNHEALTHY and not s.domains
            )
        return self._unhealthy[site]


# A source whose latest poll ended so has a gap, not news: see source_health.
UNHEALTHY = ("error", "partial", "suspect")

# Error text can hold anything a file or server said: an alert quotes only its start.
NOTE_LIMIT = 300


def quote_note(note: str | None) -> str:
    """Third-party or error text for an alert summary: one line, at most NOTE_LIMIT long."""
    text = " ".join((note or "").split())
    return text if len(text) <= NOTE_LIMIT else text[: NOTE_LIMIT - 1] + "…"
