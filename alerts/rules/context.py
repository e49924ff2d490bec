"""What a rule sees when it is evaluated, and what it answers."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from alerts.message import LinkItem
from alerts.metrics import Metrics, Wanted, metrics_of, window_counts_of
from daemon.store import Store
from daemon.store.reads import (
    LinkFilter,
    LostDomain,
    LostLink,
    LostRating,
    MovedLinks,
    WindowCounts,
    lost_links_in,
    lost_ratings,
    rank_lost_domains,
    rank_lost_domains_head,
    show_lost_links,
)


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


@dataclass(frozen=True)
class MetricNeed:
    """A window of a site a rule will ask about in an evaluation pass."""

    site: str
    window: timedelta
    # None: the evaluation instant.
    end: datetime | None = None
    link_filter: LinkFilter | None = None


@dataclass(frozen=True)
class _Losses:
    """A site's losses over the `reach` ending at the evaluation instant, as a lost-domain
    list reads them (`lost_ratings`): all of them, or the first rows only."""

    reach: timedelta
    ratings: list[LostRating]
    complete: bool


@dataclass
class _Shown:
    """The lost links of the domains a site's lists showed (one filter), in (`since`, the
    evaluation instant], by domain: a later list reads only the domains not read yet."""

    since: datetime
    links: dict[str, list[LostLink]]


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
    _counts: dict[tuple[str, Wanted], WindowCounts | None] = field(default_factory=dict)
    _metrics: dict[tuple[str, Wanted], Metrics | None] = field(default_factory=dict)
    _reach: dict[tuple[str, LinkFilter | None], timedelta] = field(default_factory=dict)
    # All such windows: the one with the fewest losses needs the most rows of the reach.
    _windows: dict[tuple[str, LinkFilter | None], set[timedelta]] = field(default_factory=dict)
    _lost: dict[tuple[str, LinkFilter | None], _Losses] = field(default_factory=dict)
    _unhealthy: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Per site, the moved links of its last pass: its lost-domain lists read them.
    _moved: dict[str, MovedLinks] = field(default_factory=dict)
    _shown: dict[tuple[str, LinkFilter | None], _Shown] = field(default_factory=dict)

    def prepare(self, needs: Iterable[MetricNeed]) -> None:
        """Compute every window the rules will ask about, one pass per site (the windows
        already known are not computed again)."""
        by_site: dict[str, dict[Wanted, None]] = {}
        for need in needs:
            key = self._key(need.site, need.window, need.end, need.link_filter)
            if key[1][1] == self.at:
                # The longest window ending now of each site and filter: the lost-domain
                # lists of alerts firing together share one read of the losses over it.
                reach = (need.site, key[1][2])
                self._reach[reach] = max(self._reach.get(reach, need.window), need.window)
                self._windows.setdefault(reach, set()).add(need.window)
            if key not in self._counts:
                by_site.setdefault(need.site, {})[key[1]] = None
        for site, wanted in by_site.items():
            try:
                computed, moved = window_counts_of(self.store, site, list(wanted))
            except Exception:
                # Left to the rules: each asks on its own, and its failure is logged with
                # its name (one broken site must not silence the others).
                continue
            for w, counts in computed.items():
                self._counts[(site, w)] = counts
            if moved is not None:
                self._moved[site] = moved

    def _key(
        self, site: str, window: timedelta, end: datetime | None, link_filter: LinkFilter | None
    ) -> tuple[str, Wanted]:
        if link_filter is not None and link_filter.empty:
            link_filter = None  # the same numbers: computed and cached once
        return site, (window, self.at if end is None else end, link_filter)

    def window_counts(
        self,
        site: str,
        window: timedelta,
        end: datetime | None = None,
        link_filter: LinkFilter | None = None,
    ) -> WindowCounts | None:
        """The site's counts over `window` ending at `end` (default `at`; None without
        data), of the links matching `link_filter` if given, computed once per pass."""
        key = self._key(site, window, end, link_filter)
        if key not in self._counts:
            computed, moved = window_counts_of(self.store, site, [key[1]])
            self._counts[key] = computed[key[1]]
            if moved is not None:
                self._moved[site] = moved
        return self._counts[key]

    def metrics(
        self,
        site: str,
        window: timedelta,
        end: datetime | None = None,
        link_filter: LinkFilter | None = None,
    ) -> Metrics | None:
        """The site's metrics over `window` ending at `end` (default `at`; None without
        data), of the links matching `link_filter` if given, computed once per pass."""
        key = self._key(site, window, end, link_filter)
        if key not in self._metrics:
            counts = self.window_counts(site, window, end, link_filter)
            m = None if counts is None else metrics_of(site, window, key[1][1], counts)
            self._metrics[key] = m
        return self._metrics[key]

    def lost_domains(
        self, site: str, window: timedelta, link_filter: LinkFilter | None, limit: int
    ) -> list[LostDomain]:
        """The strongest referring domains with (matching) links lost in the window ending
        at `at`, those the window's lost_refdomains counts first: marked by the same pass
        as the metric, so the list and the count agree."""
        counts = self.window_counts(site, window, None, link_filter)
        if counts is not None and not counts.lost_links:
            return []  # no matching link lost in the window: nothing to read
        whole = counts.domains_lost if counts is not None else frozenset()
        link_filter = self._key(site, window, None, link_filter)[1][2]
        start = self.at - window
        key = (site, link_filter)
        losses = self._lost.get(key)
        if losses is None or losses.reach < window:
            reach = max(window, self._reach.get(key, window))
            losses = self._read_losses(site, link_filter, reach, self._head_rows(key, reach, limit))
        if not losses.complete:

            def rank_apart(domains: list[str]) -> list[tuple[str, float | None]]:
                # Wholly lost domains rated below the head: ranked from their own losses.
                theirs = lost_ratings(
                    self.store.conn,
                    self.store.site_id(site),
                    start,
                    self.at,
                    link_filter,
                    domains=domains,
                )
                return rank_lost_domains(theirs, start, self.at, frozenset(domains), limit)

            head = rank_lost_domains_head(losses.ratings, start, self.at, whole, limit, rank_apart)
            if head is not None:
                return self._show(site, start, head, whole, link_filter)
            # The list runs past the head: every loss of the reach, read once for all.
            losses = self._read_losses(site, link_filter, losses.reach, None)
        ranked = rank_lost_domains(losses.ratings, start, self.at, whole, limit)
        return self._show(site, start, ranked, whole, link_filter)

    def _read_losses(
        self, site: str, link_filter: LinkFilter | None, reach: timedelta, rows: int | None
    ) -> _Losses:
        """The site's losses over `reach` (the first `rows` of them if given), from the pass's
        moved links when it covered this reach and filter, and kept for the other lists."""
        moved = self._moved.get(site)
        start = self.at - reach
        ratings = moved.lost_ratings(start, self.at, link_filter, rows) if moved else None
        if ratings is None:
            ratings = lost_ratings(
                self.store.conn, self.store.site_id(site), start, self.at, link_filter, limit=rows
            )
        losses = _Losses(reach, ratings, rows is None or len(ratings) < rows)
        self._lost[(site, link_filter)] = losses
        return losses

    def _head_rows(
        self, key: tuple[str, LinkFilter | None], reach: timedelta, limit: int
    ) -> int | None:
        """How many of the reach's losses, strongest first, the lists of its windows should
        need (None: all of them): a window holding a tenth of the losses finds its domains
        among ten times as many rows, and a domain may lose more than one link."""
        site, link_filter = key
        lost = []
        for window in self._windows.get(key, set()) | {reach}:
            counts = self._counts.get((site, (window, self.at, link_filter)))
            if counts is None:
                return None
            lost.append(counts.lost_links)
        fewest = min((n for n in lost if n), default=0)
        if not fewest:
            return None
        rows = 2 * max(limit, 1) * -(-max(lost) // fewest) + max(limit, 1)
        return None if rows >= max(lost) else rows

    def _show(
        self,
        site: str,
        start: datetime,
        ranked: list[tuple[str, float | None]],
        whole: frozenset[str],
        link_filter: LinkFilter | None,
    ) -> list[LostDomain]:
        """The ranked domains as the list of the window from `start` shows them. Their links
        are read over the longest window of the site and filter ending now, and kept: the
        lists of alerts firing together share the domains they have in common."""
        key = (site, link_filter)
        held = self._shown.get(key)
        if held is None or held.since > start:
            since = min(start, self.at - self._reach.get(key, timedelta(0)))
            held = self._shown[key] = _Shown(since, {})
        unread = [d for d, _ in ranked if d not in held.links]
        if unread:
            for domain in unread:
                held.links[domain] = []
            for link in lost_links_in(
                self.store.conn, self.store.site_id(site), held.since, self.at, unread, link_filter
            ):
                held.links[link[0]].append(link)
        links = itertools.chain.from_iterable(held.links[d] for d, _ in ranked)
        return show_lost_links(links, start, self.at, ranked, whole)

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
