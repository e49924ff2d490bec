"""`linkwatch backtest`: stored history replayed through the current rules, nothing written.

The replay evaluates the rules with the real engine into an in-memory alert book at:

* the start of the period (an alert already firing then shows as fired at the start);
* every snapshot's `taken_at` in the period, whatever its status (the daemon evaluates
  after every ingest, and failures feed source_health);
* one second after each snapshot plus each rule's window (a loss leaving the window, a
  source going stale past `max_age`);
* when a pending alert's `for`, or a firing alert's `keep_firing_for`, runs out;
* a regular pass every `evaluate_every`, made coarser if that would exceed GRID_PASSES
  passes (every 65 minutes over 90 days), so nothing else goes unseen for long.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from alerts.engine import MemoryAlertBook, evaluate
from alerts.rules import Rule
from alerts.rules.context import EvaluationContext
from daemon.store import Store
from daemon.timefmt import from_db

log = logging.getLogger(__name__)

GRID_PASSES = 2000
# A window's events leave it just after `taken_at + window`; staleness is "older than".
PAST_EDGE = timedelta(seconds=1)
# Far more passes than any real history needs; a bound on a runaway schedule.
MAX_PASSES = 200_000


@dataclass
class Episode:
    """One firing of one alert in the replay: when it fired, resolved, and its peak."""

    rule: str
    site: str
    labels: tuple[tuple[str, str], ...]
    fired_at: datetime
    resolved_at: datetime | None = None
    reason: str | None = None
    peak: float | None = None
    # Firing already at the first pass: it may have started before the period.
    at_start: bool = False

    def as_json(self) -> dict[str, Any]:
        """The episode as a JSON-ready object."""
        return {
            "rule": self.rule,
            "site": self.site,
            "labels": dict(self.labels),
            "fired_at": self.fired_at.isoformat(),
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "resolve_reason": self.reason,
            "peak_value": self.peak,
            "firing_at_start": self.at_start,
        }


@dataclass
class Replay:
    """What a backtest did and found."""

    start: datetime
    end: datetime
    step: timedelta
    passes: int = 0
    episodes: list[Episode] = field(default_factory=list)


def _grid_step(start: datetime, end: datetime, every: timedelta) -> timedelta:
    """`every`, or coarser (whole minutes) so the period holds at most GRID_PASSES passes."""
    coarse = (end - start) / GRID_PASSES
    if coarse <= every:
        return max(every, timedelta(seconds=1))
    return timedelta(minutes=-((-coarse) // timedelta(minutes=1)))


@contextmanager
def quiet_transitions() -> Iterator[None]:
    """The engine's INFO line per transition held back (a replay makes thousands), unless
    debug logging is on (-v)."""
    engine = logging.getLogger("alerts.engine")
    level = engine.level
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        engine.setLevel(logging.WARNING)
    try:
        yield
    finally:
        engine.setLevel(level)


def _worse(rule: Rule, old: float | None, new: float | None) -> float | None:
    """The value further past the threshold: lower for `<`/`<=` rules, else higher."""
    if new is None:
        return old
    if old is None:
        return new
    op = getattr(rule, "op", ">")
    return min(old, new) if op in ("<", "<=") else max(old, new)


def snapshot_instants(
    store: Store, sites: Sequence[str], since: datetime, end: datetime
) -> list[datetime]:
    """`taken_at` of every stored snapshot of these sites (any status) in [since, end]."""
    found: set[datetime] = set()
    for site in sites:
        try:
            snapshots = store.snapshots(site)
        except KeyError:
            continue  # configured, never stored
        for snap in snapshots:
            at = from_db(str(snap["taken_at"]))
            if since <= at <= end:
                found.add(at)
    return sorted(found)


def replay(
    store: Store,
    rules: Sequence[Rule],
    *,
    start: datetime,
    end: datetime,
    every: timedelta,
    own_sites: list[str],
    all_sites: list[str],
    competitors: dict[str, tuple[str, ...]] | None = None,
) -> Replay:
    """Evaluate `rules` over (start, end] as the daemon would have; nothing is written."""
    rules = list(rules)
    by_name = {r.name: r for r in rules}
    step = _grid_step(start, end, every)
    result = Replay(start, end, step)
    windows = {w for r in rules if isinstance(w := getattr(r, "window", None), timedelta) and w}
    # Snapshots before the period whose window edge falls inside it count too.
    snaps = snapshot_instants(store, all_sites, start - max(windows, default=timedelta(0)), end)
    queue: list[datetime] = [start]
    queue.extend(s for s in snaps if start < s <= end)
    for s in snaps:
        for w in windows:
            edge = s + w + PAST_EDGE
            if start < edge <= end:
                queue.append(edge)
    t = start + step
    while t <= end:
        queue.append(t)
        t += step
    heapq.heapify(queue)
    with quiet_transitions():
        _run(store, rules, by_name, queue, result, own_sites, all_sites, competitors or {})
    result.episodes.sort(key=lambda e: (e.fired_at, e.rule, e.site))
    return result


def _run(
    store: Store,
    rules: list[Rule],
    by_name: dict[str, Rule],
    queue: list[datetime],
    result: Replay,
    own_sites: list[str],
    all_sites: list[str],
    competitors: dict[str, tuple[str, ...]],
) -> None:
    """The passes of a replay, in time order, into `result`."""
    start, end = result.start, result.end
    book = MemoryAlertBook()
    open_: dict[tuple[str, str, tuple[tuple[str, str], ...]], Episode] = {}
    last: datetime | None = None
    while queue and result.passes < MAX_PASSES:
        at = heapq.heappop(queue)
        if last is not None and at <= last:
            continue  # the same instant scheduled twice
        last = at
        result.passes += 1
        ctx = EvaluationContext(store, at, at, own_sites, all_sites, competitors)
        for tr in evaluate(store, rules, ctx, book=book):
            key = (tr.rule, tr.site, tr.labels)
            if tr.state == "firing":
                episode = Episode(tr.rule, tr.site, tr.labels, at, at_start=at == start)
                open_[key] = episode
                result.episodes.append(episode)
            elif tr.state == "resolved" and key in open_:
                episode = open_.pop(key)
                episode.resolved_at, episode.reason = at, tr.reason
        for alert in book.alerts():
            rule = by_name.get(alert.rule)
            if rule is None:
                continue
            key = (alert.rule, alert.site, alert.labels)
            if alert.state == "firing" and key in open_:
                open_[key].peak = _worse(rule, open_[key].peak, alert.value)
            # The engine decides only when it evaluates: be there when a hold runs out.
            due = None
            if alert.state == "pending" and alert.active_at is not None:
                due = alert.active_at + rule.for_
            elif alert.state == "firing" and rule.keep_firing_for and alert.held_at:
                due = alert.held_at + rule.keep_firing_for
            if due is not None and at < due <= end:
                heapq.heappush(queue, due)
    if queue and result.passes >= MAX_PASSES:
        log.warning("backtest stopped after %d evaluation passes", MAX_PASSES)


__all__ = ["Episode", "Replay", "replay"]
