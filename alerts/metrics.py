"""Link-velocity metrics of a site over a window ending at a given instant."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from daemon.store import Store
from daemon.store.reads import LinkFilter

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
    c = store.window_counts(site, at - window, at, link_filter)
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
