"""Link-velocity metrics of a site over a window ending at a given instant."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from daemon.store import Store
from daemon.store.reads import (
    LinkFilter,
    MovedLinks,
    WindowCounts,
    WindowSpec,
    window_counts_kept,
)

METRICS = (
    "new_links",
    "lost_links",
    "net_links",
    "new_refdomains",
    "lost_refdomains",
    "net_refdomains",
    "lost_refdomains_pct",
    "live_links",
    "live_refdomains",
)


@dataclass(frozen=True)
class Metrics:
    """The metrics of one site over (at - window, at]; None where there is no data."""

    site: str
    window: timedelta
    at: datetime
    new_links: int
    lost_links: int
    net_links: int
    new_refdomains: int
    lost_refdomains: int
    net_refdomains: int
    lost_refdomains_pct: float | None
    live_links: int
    live_refdomains: int

    def value(self, metric: str) -> float | None:
        """One metric by name."""
        v = asdict(self)[metric]
        return None if v is None else float(v)


# The metrics that count movement over a window (spike rules compare these).
WINDOW_METRICS = (
    "new_links",
    "lost_links",
    "new_refdomains",
    "lost_refdomains",
    "net_links",
    "net_refdomains",
)


def compute_metrics(
    store: Store,
    site: str,
    window: timedelta,
    at: datetime,
    link_filter: LinkFilter | None = None,
) -> Metrics | None:
    """The site's metrics over the window ending at `at`, or None when nothing is known yet.

    No data is not zero: a site with no accepted snapshot by `at` has no metrics. With
    `link_filter`, every metric is taken over the matching links alone.
    """
    if not store.has_data(site, at):
        return None
    return metrics_of(site, window, at, store.window_counts(site, at - window, at, link_filter))


def metrics_of(site: str, window: timedelta, at: datetime, c: WindowCounts) -> Metrics:
    """The metrics a window's counts make."""
    pct = (
        round(100.0 * c.lost_refdomains / c.refdomains_at_start, 2)
        if c.refdomains_at_start
        else None
    )
    return Metrics(
        site=site,
        window=window,
        at=at,
        new_links=c.new_links,
        lost_links=c.lost_links,
        net_links=c.new_links - c.lost_links,
        new_refdomains=c.new_refdomains,
        lost_refdomains=c.lost_refdomains,
        net_refdomains=c.new_refdomains - c.lost_refdomains,
        lost_refdomains_pct=pct,
        live_links=c.live_links,
        live_refdomains=c.live_refdomains,
    )


# One window a rule asks about: its length, its end and the links it counts (None: all).
Wanted = tuple[timedelta, datetime, LinkFilter | None]


def window_counts_of(
    store: Store, site: str, wanted: Sequence[Wanted]
) -> tuple[dict[Wanted, WindowCounts | None], MovedLinks | None]:
    """The counts of each wanted window of one site, all from one evaluation pass
    (docs/evidence.md, "One evaluation pass"), None for a window that ends before the
    site has data; and the pass's moved links, which its windows' lost-domain lists read
    (None when no window had data)."""
    ends = {end: store.has_data(site, end) for end in {end for _, end, _ in wanted}}
    specs = {w: WindowSpec(w[1] - w[0], w[1], w[2]) for w in wanted if ends[w[1]]}
    counts, moved = window_counts_kept(store.conn, store.site_id(site), list(specs.values()))
    return {w: counts[specs[w]] if w in specs else None for w in wanted}, moved
