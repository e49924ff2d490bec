"""Read queries: status, link listings and the window counts metrics are built from."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from daemon.timefmt import from_db, to_db


@dataclass(frozen=True)
class WindowCounts:
    """Link and referring-domain movement of one site over (start, end]."""

    new_links: int
    lost_links: int
    new_refdomains: int
    lost_refdomains: int
    refdomains_at_start: int
    live_links: int
    live_refdomains: int
    # The domains counted in lost_refdomains: alert messages name exactly these.
    domains_lost: frozenset[str] = frozenset()


@dataclass(frozen=True)
class LostDomain:
    """A referring domain with links lost in a window, and one of those links."""

    refdomain: str
    domain_rating: float | None
    domain_lost: bool
    url_from: str
    url_to: str
    anchor: str | None
    reason: str | None


# Events that set a link's state, and the state each leaves it in (docs/evidence.md).
STATE_AFTER = {
    "new": "live",
    "appeared": "live",
    "restored": "live",
    "missing": "missing",
    "lost": "lost",
    "unconfirmed": "unconfirmed",
}
_STATE_KINDS = ", ".join(f"'{kind}'" for kind in STATE_AFTER)
_STATE_CASE = " ".join(f"WHEN '{kind}' THEN '{state}'" for kind, state in STATE_AFTER.items())
_STATE_AT = f"""
CASE WHEN l.added_at IS NOT NULL AND l.added_at > {{t}} THEN NULL
ELSE coalesce((
    SELECT CASE e.kind {_STATE_CASE} END
    FROM link_events e
    WHERE e.link_id = l.id AND e.kind IN ({_STATE_KINDS}) AND e.at <= {{t}}
    ORDER BY e.at DESC, e.id DESC LIMIT 1), 'live')
END"""
# Events that count as a gained link: a new one, or one restored after it was lost.
_GAIN = "({e}kind = 'new' OR ({e}kind = 'restored' AND {e}reason = 'lost'))"

_ALIVE = ("live", "missing")


def _state_at(t: str) -> str:
    return _STATE_AT.format(t=t)


def has_data(conn: sqlite3.Connection, site_id: int, at: datetime) -> bool:
    """True when the site has an accepted snapshot at or before `at`: no data is not zero."""
    row = conn.execute(
        "SELECT 1 FROM snapshots WHERE site_id = ? AND status IN ('baseline', 'complete')"
        " AND taken_at <= ? LIMIT 1",
        (site_id, to_db(at)),
    ).fetchone()
    return row is not None


@dataclass
class _DomainMove:
    """How one referring domain's links differ between now and the window's ends."""

    live_end: int = 0
    alive_start: int = 0
    alive_end: int = 0
    gained: bool = False
    lost: bool = False


def window_counts(
    conn: sqlite3.Connection, site_id: int, start: datetime, end: datetime
) -> WindowCounts:
    """Counts over (start, end] by the definitions of docs/evidence.md.

    The states at `start` and `end` are reconstructed from the current state: only links
    with events after `start` can differ, so only they are replayed.
    """
    t0, t1 = to_db(start), to_db(end)
    x = conn.execute
    new_links, lost_links = x(
        f"""SELECT coalesce(sum({_GAIN.format(e="")}), 0), coalesce(sum(kind = 'lost'), 0)
        FROM link_events WHERE site_id = ? AND at > ? AND at <= ?""",
        (site_id, t0, t1),
    ).fetchone()
    moved = x(
        f"""SELECT l.refdomain, l.state, {_state_at(":t0")}, {_state_at(":t1")},
                   EXISTS (SELECT 1 FROM link_events g WHERE g.link_id = l.id
                           AND g.at > :t0 AND g.at <= :t1 AND {_GAIN.format(e="g.")}),
                   EXISTS (SELECT 1 FROM link_events g WHERE g.link_id = l.id
                           AND g.at > :t0 AND g.at <= :t1 AND g.kind = 'lost')
        FROM links l
        WHERE l.id IN (SELECT link_id FROM link_events
                       WHERE site_id = :site AND at > :t0 AND kind IN ({_STATE_KINDS}))""",
        {"site": site_id, "t0": t0, "t1": t1},
    ).fetchall()
    live_now, live_domains_now, alive_domains_now = x(
        """SELECT (SELECT count(*) FROM links WHERE site_id = :s AND state = 'live'),
                  (SELECT count(DISTINCT refdomain) FROM links
                   WHERE site_id = :s AND state = 'live'),
                  (SELECT count(DISTINCT refdomain) FROM links
                   WHERE site_id = :s AND state IN ('live', 'missing'))""",
        {"s": site_id},
    ).fetchone()

    moves: dict[str, _DomainMove] = defaultdict(_DomainMove)
    live_links = int(live_now)
    for refdomain, now_state, at0, at1, gained, lost in moved:
        m = moves[refdomain]
        now_live, now_alive = now_state == "live", now_state in _ALIVE
        live_links += (at1 == "live") - now_live
        m.live_end += (at1 == "live") - now_live
        m.alive_start += (at0 in _ALIVE) - now_alive
        m.alive_end += (at1 in _ALIVE) - now_alive
        m.gained = m.gained or bool(gained)
        m.lost = m.lost or bool(lost)
    current = _domain_counts(conn, site_id, list(moves))
    live_refdomains = int(live_domains_now)
    refdomains_at_start = int(alive_domains_now)
    new_refdomains = 0
    domains_lost: set[str] = set()
    for refdomain, m in moves.items():
        live, alive = current[refdomain]  # the moved link itself is one of them
        live_refdomains += (live + m.live_end > 0) - (live > 0)
        alive0, alive1 = alive + m.alive_start > 0, alive + m.alive_end > 0
        refdomains_at_start += alive0 - (alive > 0)
        new_refdomains += not alive0 and alive1 and m.gained
        if alive0 and not alive1 and m.lost:
            domains_lost.add(refdomain)
    return WindowCounts(
        new_links=int(new_links),
        lost_links=int(lost_links),
        new_refdomains=new_refdomains,
        lost_refdomains=len(domains_lost),
        refdomains_at_start=refdomains_at_start,
        live_links=live_links,
        live_refdomains=live_refdomains,
        domains_lost=frozenset(domains_lost),
    )


def _domain_counts(
    conn: sqlite3.Connection, site_id: int, domains: list[str]
) -> dict[str, tuple[int, int]]:
    """(live links, live or missing links) now, per referring domain."""
    current: dict[str, tuple[int, int]] = {}
    for i in range(0, len(domains), 500):
        chunk = domains[i : i + 500]
        marks = ",".join("?" * len(chunk))
        for refdomain, live, alive in conn.execute(
            f"""SELECT refdomain, sum(state = 'live'), sum(state IN ('live', 'missing'))
            FROM links WHERE site_id = ? AND refdomain IN ({marks}) GROUP BY refdomain""",
            (site_id, *chunk),
        ):
            current[refdomain] = (int(live), int(alive))
    return current


def lost_domains(
    conn: sqlite3.Connection,
    site_id: int,
    start: datetime,
    end: datetime,
    domains_lost: frozenset[str],
    limit: int,
) -> list[LostDomain]:
    """Domains with links lost in (start, end], wholly lost ones first, strongest first."""
    rows = conn.execute(
        """SELECT l.refdomain, l.domain_rating, l.url_from, l.url_to, l.anchor, e.reason
        FROM link_events e JOIN links l ON l.id = e.link_id
        WHERE e.site_id = ? AND e.kind = 'lost' AND e.at > ? AND e.at <= ?
        ORDER BY l.domain_rating IS NULL, l.domain_rating DESC, l.refdomain, l.url_from""",
        (site_id, to_db(start), to_db(end)),
    ).fetchall()
    by_domain: dict[str, LostDomain] = {}
    for refdomain, dr, url_from, url_to, anchor, reason in rows:
        if refdomain not in by_domain:
            by_domain[refdomain] = LostDomain(
                refdomain=refdomain,
                domain_rating=dr,
                domain_lost=refdomain in domains_lost,
                url_from=url_from,
                url_to=url_to,
                anchor=anchor,
                reason=reason,
            )
    ranked = sorted(
        by_domain.values(),
        key=lambda d: (not d.domain_lost, d.domain_rating is None, -(d.domain_rating or 0)),
    )
    return ranked[:limit]


@dataclass(frozen=True)
class SourceHealth:
    """The latest poll of one (site, source) and its last accepted snapshot, as of an instant."""

    source: str
    latest_status: str
    latest_note: str | None
    last_accepted_at: datetime | None


def source_health(conn: sqlite3.Connection, site_id: int, at: datetime) -> list[SourceHealth]:
    """Each source of a site that had polled by `at`: its latest outcome and freshness."""
    rows = conn.execute(
        """SELECT src.source,
               (SELECT status FROM snapshots WHERE site_id = :site AND source = src.source
                  AND created_at <= :at ORDER BY created_at DESC, id DESC LIMIT 1),
               (SELECT note FROM snapshots WHERE site_id = :site AND source = src.source
                  AND created_at <= :at ORDER BY created_at DESC, id DESC LIMIT 1),
               (SELECT max(taken_at) FROM snapshots WHERE site_id = :site
                  AND source = src.source AND created_at <= :at
                  AND status IN ('baseline', 'complete'))
        FROM (SELECT DISTINCT source FROM snapshots
              WHERE site_id = :site AND created_at <= :at) src
        ORDER BY src.source""",
        {"site": site_id, "at": to_db(at)},
    ).fetchall()
    return [
        SourceHealth(source, status, note, from_db(accepted) if accepted else None)
        for source, status, note, accepted in rows
    ]
