"""Read queries: status, link listings and the window counts metrics are built from."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from daemon.timefmt import from_db, to_db
from sources.urls import host_name, normalize_target, registrable_domain, split_url


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


@dataclass(frozen=True)
class LinkFilter:
    """Which links a filtered metric or link rule counts (docs/rules.md, "Link filters")."""

    # Only links not flagged nofollow, ugc or sponsored (unknown flags count as followed).
    dofollow_only: bool = False
    # Only links whose referring domain's rating is known and at least this.
    min_domain_rating: float | None = None
    # Referring hosts in canonical form (lower case, IDNA, no `www.`); each also matches
    # its subdomains.
    domains: tuple[str, ...] = ()
    # A target prefix in canonical URL form (sources/urls.normalize_url): `example.com/blog/`
    # (host and path), or `/blog/` (the path on any host); compared character for character.
    target_prefix: str | None = None

    @property
    def empty(self) -> bool:
        """True when the filter lets every link through."""
        return not (
            self.dofollow_only
            or self.min_domain_rating is not None
            or self.domains
            or self.target_prefix is not None
        )

    def condition(self, alias: str) -> tuple[str, dict[str, object]]:
        """` AND …` over the `links` row `alias` (empty for no filter), and its named
        parameters (all prefixed `lf_`, so they never clash with a query's own). Domain and
        target tests call the SQL functions `register_functions` adds."""
        parts: list[str] = []
        params: dict[str, object] = {}
        a = alias
        if self.dofollow_only:
            parts.append(
                f"coalesce({a}.nofollow, 0) = 0 AND coalesce({a}.ugc, 0) = 0"
                f" AND coalesce({a}.sponsored, 0) = 0"
            )
        if self.min_domain_rating is not None:
            parts.append(f"{a}.domain_rating >= :lf_dr")
            params["lf_dr"] = self.min_domain_rating
        if self.domains:
            cheap, narrowed = [], []
            for i, domain in enumerate(self.domains):
                d, r = f":lf_d{i}", f":lf_r{i}"
                params[f"lf_d{i}"] = domain
                registrable = registrable_domain(domain)
                if domain.endswith("." + registrable):
                    # Below the registrable domain (`blog.alpha.com`): the stored
                    # refdomain narrows the rows, the canonical host decides.
                    params[f"lf_r{i}"] = registrable
                    narrowed.append(
                        f"({a}.refdomain = {r} AND linkwatch_host_under({a}.url_from, {d}))"
                    )
                else:
                    # A registrable domain matches its own refdomain; a public suffix
                    # (`org`, `co.uk`) every refdomain under it.
                    cheap.append(
                        f"{a}.refdomain = {d} OR substr({a}.refdomain, -length({d}) - 1)"
                        f" = '.' || {d}"
                    )
            # Plain comparisons first: SQLite stops at the first term that holds.
            parts.append(" OR ".join(cheap + narrowed))
        if self.target_prefix is not None:
            # Last: the other tests are cheaper and usually narrow the rows first.
            params["lf_to"] = self.target_prefix
            parts.append(f"linkwatch_target_starts({a}.url_to, :lf_to)")
        return "".join(f" AND ({p})" for p in parts), params


def _host_under(url: str | None, domain: str) -> bool:
    """Whether a referring URL's canonical host (no port, no `www.`) is `domain` or under it."""
    parts = split_url(url) if url else None
    if parts is None:
        return False
    host = host_name(parts[0])
    host = host[4:] if host.startswith("www.") else host
    return host == domain or host.endswith("." + domain)


def _target_starts(url: str | None, prefix: str) -> bool:
    """Whether a target URL's canonical form starts with `prefix`; a prefix starting with
    `/` is matched against its path (a canonical target always has one after its host)."""
    target = normalize_target(url) if url else None
    if target is None:
        # A Search Console page-only row has no target: it matches no target filter.
        return False
    if prefix.startswith("/"):
        target = target[target.index("/") :]
    return target.startswith(prefix)


def register_functions(conn: sqlite3.Connection) -> None:
    """SQL functions for link filters: stored URLs are kept as first reported, so a filter
    compares their canonical forms (sources/urls.py), the forms link keys are made of."""
    conn.create_function("linkwatch_host_under", 2, _host_under, deterministic=True)
    conn.create_function("linkwatch_target_starts", 2, _target_starts, deterministic=True)


def _condition(
    conn: sqlite3.Connection, link_filter: LinkFilter | None, alias: str
) -> tuple[str, dict[str, object]]:
    if link_filter is None or link_filter.empty:
        return "", {}
    register_functions(conn)
    return link_filter.condition(alias)


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


def live_at(
    conn: sqlite3.Connection, site_id: int, links: list[tuple[str, str, str]], at: datetime
) -> list[tuple[str, str, str]]:
    """Which of these (refdomain, url_from, url_to) links of a site were live at `at`; an
    empty url_from stands for any link of the referring domain."""
    live = []
    for refdomain, url_from, url_to in links:
        sql = (
            f"SELECT 1 FROM links l WHERE l.site_id = :site AND l.refdomain = :domain"
            f" AND ({_state_at(':at')}) = 'live'"
        )
        args = {"site": site_id, "domain": refdomain, "at": to_db(at)}
        if url_from:
            sql += " AND l.url_from = :url_from AND l.url_to = :url_to"
            args |= {"url_from": url_from, "url_to": url_to}
        if conn.execute(sql + " LIMIT 1", args).fetchone() is not None:
            live.append((refdomain, url_from, url_to))
    return live


def has_data(conn: sqlite3.Connection, site_id: int, at: datetime) -> bool:
    """True when the site has an accepted snapshot at or before `at`: no data is not zero."""
    # A referring-domain snapshot says nothing about links: it is no link data.
    row = conn.execute(
        "SELECT 1 FROM snapshots WHERE site_id = ? AND status IN ('baseline', 'complete')"
        " AND taken_at <= ? AND NOT EXISTS (SELECT 1 FROM series se"
        " WHERE se.id = snapshots.series_id AND se.coverage = 'domains') LIMIT 1",
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
    conn: sqlite3.Connection,
    site_id: int,
    start: datetime,
    end: datetime,
    link_filter: LinkFilter | None = None,
) -> WindowCounts:
    """Counts over (start, end] by the definitions of docs/evidence.md.

    The states at `start` and `end` are reconstructed from the current state: only links
    with events after `start` can differ, so only they are replayed. With a filter, every
    count is taken over the matching links alone, as if no other link existed: a domain is
    gained or lost by its matching links.
    """
    cond, fparams = _condition(conn, link_filter, "l")
    params: dict[str, object] = {"site": site_id, "t0": to_db(start), "t1": to_db(end), **fparams}
    x = conn.execute
    if cond:
        new_links, lost_links = x(
            f"""SELECT coalesce(sum({_GAIN.format(e="e.")}), 0), coalesce(sum(e.kind = 'lost'), 0)
            FROM link_events e JOIN links l ON l.id = e.link_id
            WHERE e.site_id = :site AND e.at > :t0 AND e.at <= :t1{cond}""",
            params,
        ).fetchone()
    else:
        # No join without a filter: the events alone answer, off their (site, at) index.
        new_links, lost_links = x(
            f"""SELECT coalesce(sum({_GAIN.format(e="")}), 0), coalesce(sum(kind = 'lost'), 0)
            FROM link_events WHERE site_id = :site AND at > :t0 AND at <= :t1""",
            params,
        ).fetchone()
    moved = x(
        f"""SELECT l.refdomain, l.state, {_state_at(":t0")}, {_state_at(":t1")},
                   EXISTS (SELECT 1 FROM link_events g WHERE g.link_id = l.id
                           AND g.at > :t0 AND g.at <= :t1 AND {_GAIN.format(e="g.")}),
                   EXISTS (SELECT 1 FROM link_events g WHERE g.link_id = l.id
                           AND g.at > :t0 AND g.at <= :t1 AND g.kind = 'lost')
        FROM links l
        WHERE l.id IN (SELECT link_id FROM link_events
                       WHERE site_id = :site AND at > :t0 AND kind IN ({_STATE_KINDS})){cond}""",
        params,
    ).fetchall()
    if cond:
        # One pass: the filter may test each row in Python (canonical URLs), once is enough.
        live_now, live_domains_now, alive_domains_now = x(
            f"""SELECT coalesce(sum(l.state = 'live'), 0),
                      count(DISTINCT CASE WHEN l.state = 'live' THEN l.refdomain END),
                      count(DISTINCT l.refdomain)
            FROM links l WHERE l.site_id = :site AND l.state IN ('live', 'missing'){cond}""",
            {"site": site_id, **fparams},
        ).fetchone()
    else:
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
    current = _domain_counts(conn, site_id, list(moves), link_filter)
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
    conn: sqlite3.Connection,
    site_id: int,
    domains: list[str],
    link_filter: LinkFilter | None = None,
) -> dict[str, tuple[int, int]]:
    """(live links, live or missing links) now, per referring domain (matching links only)."""
    cond, fparams = _condition(conn, link_filter, "l")
    current: dict[str, tuple[int, int]] = {}
    for i in range(0, len(domains), 500):
        chunk = domains[i : i + 500]
        names = {f"rd{n}": domain for n, domain in enumerate(chunk)}
        marks = ",".join(f":{name}" for name in names)
        for refdomain, live, alive in conn.execute(
            f"""SELECT l.refdomain, sum(l.state = 'live'), sum(l.state IN ('live', 'missing'))
            FROM links l WHERE l.site_id = :site AND l.refdomain IN ({marks}){cond}
            GROUP BY l.refdomain""",
            {"site": site_id, **names, **fparams},
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
    link_filter: LinkFilter | None = None,
) -> list[LostDomain]:
    """Domains with (matching) links lost in (start, end], wholly lost ones first, strongest
    first."""
    cond, fparams = _condition(conn, link_filter, "l")
    rows = conn.execute(
        f"""SELECT l.refdomain, l.domain_rating, l.url_from, l.url_to, l.anchor, e.reason
        FROM link_events e JOIN links l ON l.id = e.link_id
        WHERE e.site_id = :site AND e.kind = 'lost' AND e.at > :t0 AND e.at <= :t1{cond}
        ORDER BY l.domain_rating IS NULL, l.domain_rating DESC, l.refdomain, l.url_from""",
        {"site": site_id, "t0": to_db(start), "t1": to_db(end), **fparams},
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
class WindowLink:
    """One link lost or gained in a window, as a link rule lists it."""

    refdomain: str
    url_from: str
    url_to: str
    anchor: str | None
    domain_rating: float | None
    # The lost reason of its latest loss in the window; for a gain, "restored" when the
    # link came back after it was lost, else None.
    reason: str | None


# What each link rule lists: losses, or counted gains (as new_links counts them).
WINDOW_LINK_EVENTS = {"lost": "e.kind = 'lost'", "gained": _GAIN.format(e="e.")}


def window_links(
    conn: sqlite3.Connection,
    site_id: int,
    start: datetime,
    end: datetime,
    change: str,
    link_filter: LinkFilter | None,
    limit: int,
) -> tuple[list[WindowLink], int]:
    """The strongest `limit` links (domain rating high to low, unknown last) with a `change`
    ("lost" or "gained") in (start, end], each once, and how many there are in all."""
    cond, fparams = _condition(conn, link_filter, "l")
    rows = conn.execute(
        f"""SELECT refdomain, url_from, url_to, anchor, domain_rating, reason, count(*) OVER ()
        FROM (
            -- One row per link; with max(), SQLite takes the bare columns from the latest
            -- event's row: its reason is the one the link was last lost (or gained) with.
            SELECT l.refdomain, l.url_from, l.url_to, l.anchor, l.domain_rating,
                   CASE WHEN e.kind = 'restored' THEN 'restored'
                        WHEN e.kind = 'lost' THEN e.reason END AS reason,
                   max(e.at)
            FROM link_events e JOIN links l ON l.id = e.link_id
            WHERE e.site_id = :site AND e.at > :t0 AND e.at <= :t1
              AND {WINDOW_LINK_EVENTS[change]}{cond}
            GROUP BY l.id)
        ORDER BY domain_rating IS NULL, domain_rating DESC, refdomain, url_from, url_to
        LIMIT :limit""",
        {"site": site_id, "t0": to_db(start), "t1": to_db(end), "limit": limit, **fparams},
    ).fetchall()
    links = [WindowLink(*row[:6]) for row in rows]
    return links, int(rows[0][6]) if rows else 0


@dataclass(frozen=True)
class SourceHealth:
    """The latest poll of one (site, source) and its last accepted snapshot, as of an instant.

    A source is judged from its link snapshots (complete and sample series, and failed
    polls); its referring-domains snapshots, which say nothing about links, are judged
    apart (`domains`), so they neither hide a bad link snapshot nor keep it fresh."""

    source: str
    latest_status: str
    latest_note: str | None
    last_accepted_at: datetime | None
    # True for the source's referring-domains (coverage `domains`) snapshots.
    domains: bool = False
    # True when the source had delivered link snapshots too by then (the entry for them
    # comes first); False for a source that delivered only referring domains.
    has_links: bool = True


def source_health(conn: sqlite3.Connection, site_id: int, at: datetime) -> list[SourceHealth]:
    """Each source of a site that had polled by `at`: its latest outcome and freshness,
    from its link snapshots, and apart from its referring-domains snapshots if any."""
    rows = conn.execute(
        """WITH snap AS (
               SELECT sn.id, sn.source, sn.status, sn.note, sn.taken_at, sn.created_at,
                      coalesce(se.coverage = 'domains', 0) AS domains
               FROM snapshots sn LEFT JOIN series se ON se.id = sn.series_id
               WHERE sn.site_id = :site AND sn.created_at <= :at),
           src AS (SELECT DISTINCT source, domains FROM snap)
        SELECT src.source, src.domains,
               (SELECT status FROM snap WHERE source = src.source
                  AND domains = src.domains ORDER BY created_at DESC, id DESC LIMIT 1),
               (SELECT note FROM snap WHERE source = src.source
                  AND domains = src.domains ORDER BY created_at DESC, id DESC LIMIT 1),
               (SELECT max(taken_at) FROM snap WHERE source = src.source
                  AND domains = src.domains AND status IN ('baseline', 'complete')),
               EXISTS (SELECT 1 FROM snap WHERE source = src.source AND domains = 0)
        FROM src
        ORDER BY src.source, src.domains""",
        {"site": site_id, "at": to_db(at)},
    ).fetchall()
    return [
        SourceHealth(
            source,
            status,
            note,
            from_db(accepted) if accepted else None,
            domains=bool(domains),
            has_links=bool(has_links),
        )
        for source, domains, status, note, accepted, has_links in rows
    ]
