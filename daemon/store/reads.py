"""Read queries: status, link listings and the window counts metrics are built from."""

from __future__ import annotations

import contextlib
import itertools
import json
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from daemon.store import dialect
from daemon.store.dialect import JSON_EACH, temp
from daemon.timefmt import from_db, to_db
from sources.urls import host_name, normalize_target, split_url


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


# How a link filter's domains treat a referring domain's links (`LinkFilter.refdomain_match`).
NO_LINKS, ALL_LINKS, LINKS_BY_HOST = 0, 1, 2


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

    def condition(self, alias: str, prefix: str = "lf_") -> tuple[str, dict[str, object]]:
        """` AND …` over the `links` row `alias` (empty for no filter), and its named
        parameters (all starting with `prefix`, so they never clash with a query's own nor,
        given distinct prefixes, with another filter's). Domain and target tests call the
        SQL functions `register_functions` adds."""
        row, params = self.row_condition(alias, prefix, with_target=False)
        domain, dparams = self.domain_condition(alias, prefix)
        # The target test last: it runs Python per row, the others narrow the rows first.
        target, tparams = self._target_condition(alias, prefix)
        return row + domain + target, params | dparams | tparams

    def row_condition(
        self, alias: str, prefix: str = "lf_", with_target: bool = True
    ) -> tuple[str, dict[str, object]]:
        """` AND …`: the tests other than the referring domains', and their parameters."""
        parts: list[str] = []
        params: dict[str, object] = {}
        a, p = alias, prefix
        if self.dofollow_only:
            # No flag set to a non-zero value (a NULL flag, unknown, counts as followed),
            # tested without a function call per flag: this runs for every link of a site.
            parts.append(f"({a}.nofollow <> 0 OR {a}.ugc <> 0 OR {a}.sponsored <> 0) IS NOT TRUE")
        if self.min_domain_rating is not None:
            parts.append(f"{a}.domain_rating >= :{p}dr")
            params[f"{p}dr"] = self.min_domain_rating
        row = "".join(f" AND ({part})" for part in parts)
        if with_target:
            target, tparams = self._target_condition(alias, prefix)
            return row + target, params | tparams
        return row, params

    def _target_condition(self, alias: str, prefix: str) -> tuple[str, dict[str, object]]:
        if self.target_prefix is None:
            return "", {}
        return (
            f" AND (linkwatch_target_starts({alias}.url_to, :{prefix}to))",
            {f"{prefix}to": self.target_prefix},
        )

    def domain_condition(self, alias: str, prefix: str = "lf_") -> tuple[str, dict[str, object]]:
        """` AND …`: the referring-domain test (empty without domains), and its parameters.

        A link's stored refdomain is its host's registrable domain: a domain matches its
        own refdomain, a public suffix (`org`, `co.uk`) every refdomain under it, and a
        domain below a refdomain (`blog.alpha.com` under `alpha.com`) the links of that
        refdomain whose canonical host is under it. No Public Suffix List is needed to
        tell which case a domain is."""
        if not self.domains:
            return "", {}
        a, p = alias, prefix
        cheap, narrowed = [], []
        params: dict[str, object] = {}
        for i, domain in enumerate(self.domains):
            d = f":{p}d{i}"
            params[f"{p}d{i}"] = domain
            cheap.append(
                f"{a}.refdomain = {d} OR substr({a}.refdomain, -length({d}) - 1) = '.' || {d}"
            )
            narrowed.append(
                f"(substr({d}, -length({a}.refdomain) - 1) = '.' || {a}.refdomain"
                f" AND linkwatch_host_under({a}.url_from, {d}))"
            )
        # Plain comparisons first: SQLite stops at the first term that holds.
        return f" AND ({' OR '.join(cheap + narrowed)})", params

    def host_condition(self, alias: str, prefix: str = "lf_") -> tuple[str, dict[str, object]]:
        """` AND …`: the link's canonical host is under one of the domains (for the links of
        a refdomain some domain is below, see `split_refdomains`)."""
        tests = [
            f"linkwatch_host_under({alias}.url_from, :{prefix}d{i})"
            for i in range(len(self.domains))
        ]
        params: dict[str, object] = {f"{prefix}d{i}": d for i, d in enumerate(self.domains)}
        return f" AND ({' OR '.join(tests)})", params

    def split_refdomains(self, refdomains: Iterable[str]) -> tuple[list[str], list[str]]:
        """Which refdomains the domains let links through: (those whose links all pass,
        those whose links pass when their host is under a domain below the refdomain:
        `host_condition`); the links of the rest never pass."""
        through, hosts = [], []
        for d in refdomains:
            match = self.refdomain_match(d)
            if match == ALL_LINKS:
                through.append(d)
            elif match == LINKS_BY_HOST:
                hosts.append(d)
        return through, hosts

    def refdomain_match(self, refdomain: str) -> int:
        """Which links of `refdomain` the domains let through: `ALL_LINKS`, `LINKS_BY_HOST`
        (those whose host is under a domain below it: `host_condition`) or `NO_LINKS`."""
        exact, under, above = self._domain_sets
        if refdomain in exact or refdomain.endswith(under):
            return ALL_LINKS
        return LINKS_BY_HOST if refdomain in above else NO_LINKS

    @cached_property
    def _domain_sets(self) -> tuple[frozenset[str], tuple[str, ...], frozenset[str]]:
        # The domains, their `.`-prefixed forms (a refdomain under one) and every proper
        # suffix of theirs at a label (a refdomain one of them is below): one evaluation
        # tests tens of thousands of refdomains against them.
        above = {d.split(".", n)[-1] for d in self.domains for n in range(1, d.count(".") + 1)}
        return frozenset(self.domains), tuple("." + d for d in self.domains), frozenset(above)


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


@dataclass(frozen=True)
class WindowSpec:
    """One window (start, end] of a site's links, all or those matching `link_filter`."""

    start: datetime
    end: datetime
    link_filter: LinkFilter | None = None


def window_counts(
    conn: sqlite3.Connection,
    site_id: int,
    start: datetime,
    end: datetime,
    link_filter: LinkFilter | None = None,
) -> WindowCounts:
    """Counts over (start, end] by the definitions of docs/evidence.md; with a filter, of
    the matching links alone, as if no other link existed."""
    spec = WindowSpec(start, end, link_filter)
    return window_counts_batch(conn, site_id, [spec])[spec]


# Two counts in one SQL sum, so a filter's test is evaluated once per row (a target or
# sub-domain filter runs Python per row): alive links in the low 32 bits, live ones above;
# or a window's gains below and losses above. A site never has 2**32 alive links (so a
# domain's pairs, and their sum over the site, keep their halves apart), nor 2**31 losses
# at one instant or 2**32 gains in a window, so neither half overflows.
_PAIR = 1 << 32
_LOW = _PAIR - 1


@dataclass
class _Moved:
    """A link with state events after the earliest window start, as the replay needs it."""

    domain: str
    now: str
    added_at: str | None
    mask: int
    # Its state at the earliest window start, before `added_at` is taken into account.
    base: str
    # (at, kind, reason) of its state events after the earliest start, in order.
    events: list[tuple[str, str, str | None]] = field(default_factory=list)

    def state_at(self, t: str) -> str | None:
        """Its state at `t` (no earlier than the earliest start); None: not yet known."""
        if self.added_at is not None and self.added_at > t:
            return None
        state = self.base
        for at, kind, _ in self.events:
            if at > t:
                break
            state = STATE_AFTER[kind]
        return state

    def moved_in(self, t0: str, t1: str) -> tuple[bool, bool]:
        """(gained, lost): whether it has a counted gain, a loss, in (t0, t1]."""
        gained = lost = False
        for at, kind, reason in self.events:
            if t0 < at <= t1:
                gained = gained or kind == "new" or (kind == "restored" and reason == "lost")
                lost = lost or kind == "lost"
        return gained, lost


def window_counts_batch(
    conn: sqlite3.Connection, site_id: int, specs: Sequence[WindowSpec]
) -> dict[WindowSpec, WindowCounts]:
    """The counts of every window in `specs` for one site, in one pass (docs/evidence.md,
    "One evaluation pass"): each count as `window_counts` defines it."""
    return _window_counts(conn, site_id, specs, keep=False)[0]


def window_counts_kept(
    conn: sqlite3.Connection, site_id: int, specs: Sequence[WindowSpec]
) -> tuple[dict[WindowSpec, WindowCounts], MovedLinks | None]:
    """`window_counts_batch`, and the pass's moved links kept for the lost-domain lists of
    its windows (`MovedLinks`; None when there was nothing to count) until the next kept
    pass of the site on this connection."""
    return _window_counts(conn, site_id, specs, keep=True)


def _window_counts(
    conn: sqlite3.Connection, site_id: int, specs: Sequence[WindowSpec], *, keep: bool
) -> tuple[dict[WindowSpec, WindowCounts], MovedLinks | None]:
    """`_pass`, every statement of it reading the same ledger (`_one_state`)."""
    with _one_state(conn):
        return _pass(conn, site_id, specs, keep=keep)


@contextlib.contextmanager
def _one_state(conn: sqlite3.Connection) -> Iterator[None]:
    """Its statements read one state of the database, also while another process's ingest
    commits: in a read transaction of their own, unless the caller has one open."""
    if conn.in_transaction:
        yield
        return
    conn.execute(dialect.BEGIN_SNAPSHOT)
    try:
        yield
    except BaseException:
        # Ended by a commit, also here: only temp tables were written, and a rollback would
        # abort any statement the caller still has open on the connection.
        with contextlib.suppress(sqlite3.Error):
            if conn.in_transaction:
                conn.execute("COMMIT")
        raise
    conn.execute("COMMIT")


def _pass(
    conn: sqlite3.Connection, site_id: int, specs: Sequence[WindowSpec], *, keep: bool
) -> tuple[dict[WindowSpec, WindowCounts], MovedLinks | None]:
    """The one pass of `window_counts_batch`.

    The current state is read once (one grouped read of the site's live and missing
    links, every filter tested in it); the links with state events after the earliest
    window start are read once, with the filters each passes, into a temp table every
    later step takes a moved link's filters from; only domains whose matching live
    links all moved can change standing, and only their links are replayed, once, for
    every window; the new and lost links of every window come from one read of the events
    after the earliest start.
    """
    if not specs:
        return {}, None
    filters: list[LinkFilter | None] = list(dict.fromkeys(_key(s) for s in specs))
    if len(filters) > _MAX_FILTERS:
        # A link's mask holds one bit a filter in a signed 64-bit integer: more filters
        # take a pass per group of them (the counts are the same; none is kept).
        counts: dict[WindowSpec, WindowCounts] = {}
        for c in range(0, len(filters), _MAX_FILTERS):
            group = set(filters[c : c + _MAX_FILTERS])
            part = [spec for spec in specs if _key(spec) in group]
            counts |= _pass(conn, site_id, part, keep=False)[0]
        return counts, None
    if any(f is not None for f in filters):
        register_functions(conn)
    # The earliest instant any window reads (a window could end before it starts).
    t_min = to_db(min(min(s.start, s.end) for s in specs))
    base_params: dict[str, object] = {"site": site_id, "tmin": t_min}
    moved_ids = (
        f"SELECT link_id FROM link_events WHERE site_id = :site AND at > :tmin"
        f" AND kind IN ({_STATE_KINDS})"
    )

    # The current state: per domain and filter, its live-or-missing and live links; and
    # which refdomains each filter's domains let through, decided once per refdomain of the
    # site (every state: the moved links' refdomains are among them).
    now_counts, matches = _pairs_by_domain(conn, base_params, filters)
    # The links with state events after the earliest start, read once: the filters each
    # passes go to a temp table that every later step takes them from, never testing the
    # links again. Named for this call: a statement the caller still has open on the
    # connection keeps a table it read from locked, undroppable until it ends.
    # A kept table is named for its site, so the next kept pass of the site drops it.
    prefix = f"moved_kept_{site_id}_" if keep else "moved_links_"
    table = f"{prefix}{next(_CALLS)}"
    kept = None
    try:
        _stage_moved(conn, table, moved_ids, base_params, filters, matches)
        counts = _counts_from(conn, table, base_params, specs, filters, now_counts)
        if keep:
            for older in dialect.temp_table_names(conn, prefix):
                if older != table:
                    _drop_quietly(conn, older)
            kept = MovedLinks(
                conn, table, site_id, t_min, tuple(filters), dialect.ledger_version(conn)
            )
        return counts, kept
    finally:
        if kept is None:
            _drop_quietly(conn, table)


def _drop_quietly(conn: sqlite3.Connection, table: str) -> None:
    """Drop a temp table of moved links; one a statement the caller still has open keeps
    locked goes with the connection instead (the counts stand)."""
    with contextlib.suppress(sqlite3.OperationalError):
        conn.execute(f"DROP TABLE IF EXISTS {temp(table)}")


@dataclass(frozen=True)
class MovedLinks:
    """The moved links of a site's evaluation pass, kept after it (a temp table): every
    loss after the pass's earliest instant is one of theirs, and each carries the filters
    it passes, so a lost-domain list reads its losses without reading the links again."""

    conn: sqlite3.Connection
    table: str
    site_id: int
    # The pass's earliest instant (stored form): its table holds every link with a state
    # event after it.
    since: str
    filters: tuple[LinkFilter | None, ...]
    # The database as the pass read it (`dialect.ledger_version`): a write since, by this
    # connection or another process, makes the table stale.
    version: tuple[int, int]

    def lost_ratings(
        self,
        start: datetime,
        end: datetime,
        link_filter: LinkFilter | None,
        limit: int | None = None,
    ) -> list[LostRating] | None:
        """`lost_ratings` of the site, one per loss, from the kept table (the first `limit`
        rows if given); None when it cannot say (a filter or a start the pass did not
        cover, a write to the database since the pass, or its table dropped by a later
        pass)."""
        key = None if link_filter is None or link_filter.empty else link_filter
        if key not in self.filters or to_db(start) < self.since:
            return None
        # The version checked and the losses read in one state: a write between the two
        # would be read.
        with _one_state(self.conn):
            if dialect.ledger_version(self.conn) != self.version:
                return None  # the ledger changed since the pass: its links may have moved
            return self._read_lost_ratings(start, end, key, limit)

    def _read_lost_ratings(
        self, start: datetime, end: datetime, key: LinkFilter | None, limit: int | None
    ) -> list[LostRating] | None:
        try:
            # One row per loss, not grouped by domain and instant: nearly every loss is
            # its domain's only one at its instant, and grouping would sort them twice.
            return self.conn.execute(
                f"""SELECT m.refdomain, e.at, m.rating
                FROM link_events e JOIN {self.table} m ON m.id = e.link_id
                WHERE e.site_id = :site AND e.kind = 'lost' AND e.at > :t0 AND e.at <= :t1
                  AND m.mask & :bit
                ORDER BY {RANK_ORDER.format(rating="m.rating", refdomain="m.refdomain")}
                {"" if limit is None else "LIMIT :limit"}""",
                {
                    "site": self.site_id,
                    "t0": to_db(start),
                    "t1": to_db(end),
                    "bit": 1 << self.filters.index(key),
                    "limit": limit,
                },
            ).fetchall()
        except sqlite3.OperationalError:
            return None  # dropped by a later pass of the site


def _counts_from(
    conn: sqlite3.Connection,
    table: str,
    base_params: dict[str, object],
    specs: Sequence[WindowSpec],
    filters: list[LinkFilter | None],
    now_counts: dict[str, list[int]],
) -> dict[WindowSpec, WindowCounts]:
    """The rest of `window_counts_batch` (`base_params`: its site and earliest instant),
    once the moved links are in the temp table `table`."""
    x = conn.execute
    nf = len(filters)
    index = {f: i for i, f in enumerate(filters)}
    live_links_now = [0] * nf
    live_domains_now = [0] * nf
    alive_domains_now = [0] * nf
    # Each filter's pairs, one per domain, summed and counted a column at a time.
    for i, column in enumerate(zip(*now_counts.values(), strict=True)):
        live_links_now[i] = sum(column) >> 32
        # A domain with a link counted has an alive one (a live link is alive).
        alive_domains_now[i] = len(column) - column.count(0)
        live_domains_now[i] = sum(map(_LOW.__lt__, column))

    # Domains with moved links: only those whose every matching live link moved (none is
    # left to keep them live throughout) can read differently at a window's ends.
    fragile: set[str] = set()
    no_pair = [0] * nf
    pair_sums = ", ".join(
        _sum_matching(f"1 + (m.state = 'live') * {_PAIR}", filters, i) for i in range(nf)
    )
    for domain, *values in x(
        f"SELECT m.refdomain, {pair_sums} FROM {table} m GROUP BY m.refdomain"
    ):
        current = now_counts.get(domain, no_pair)
        for i, v in enumerate(values):
            if v & _LOW and current[i] >> 32 == v >> 32:
                fragile.add(domain)
                break

    # The links of those domains that moved, with their states and events: replayed once.
    links: dict[int, _Moved] = {}
    domains = sorted(fragile)
    for c in range(0, len(domains), 500):
        names = {f"rd{n}": d for n, d in enumerate(domains[c : c + 500])}
        marks = ",".join(f":{name}" for name in names)
        for lid, domain, now, added_at, lmask, base, at, kind, reason in x(
            f"""SELECT l.id, l.refdomain, l.state, l.added_at, {_MOVED_MASK.format(table)},
                   coalesce((SELECT CASE b.kind {_STATE_CASE} END FROM link_events b
                             WHERE b.link_id = l.id AND b.kind IN ({_STATE_KINDS})
                               AND b.at <= :tmin
                             ORDER BY b.at DESC, b.id DESC LIMIT 1), 'live'),
                   e.at, e.kind, e.reason
            FROM links l JOIN link_events e ON e.link_id = l.id
            WHERE l.site_id = :site AND l.refdomain IN ({marks})
              AND e.at > :tmin AND e.kind IN ({_STATE_KINDS})
            ORDER BY l.id, e.at, e.id""",
            {**base_params, **names},
        ):
            link = links.get(lid)
            if link is None:
                link = links[lid] = _Moved(domain, now, added_at, lmask, base)
            link.events.append((at, kind, reason))
    by_domain: dict[str, list[_Moved]] = defaultdict(list)
    for link in links.values():
        by_domain[link.domain].append(link)

    # New and lost links of every window: one read of the events after the earliest start,
    # counted per instant (a snapshot dates all its events at one), each filter's gains and
    # losses packed in one sum as `_PAIR` says. Grouped by instant alone, the order the
    # events are read in: grouping by mask too cost a sort of every event. Every such
    # event's link moved: the filters it passes are in `table`.
    joined = filters != [None]
    # `_GAIN` as one CASE over the three kinds read, tested once each: a restore is a gain
    # after a loss only (its reason can be NULL: then not one).
    move = (
        f"CASE e.kind WHEN 'new' THEN 1 WHEN 'lost' THEN {_PAIR}"
        " ELSE coalesce(e.reason = 'lost', 0) END"
    )
    moves_at: list[tuple[Any, ...]] = x(
        f"""SELECT e.at, {
            ", ".join(_sum_matching(move, filters, i) for i in range(nf))
            if joined
            else f"sum({move})"
        }
        FROM link_events e{f" JOIN {table} m ON m.id = e.link_id" if joined else ""}
        WHERE e.site_id = :site AND e.at > :tmin AND e.kind IN ('new', 'restored', 'lost')
        GROUP BY e.at""",
        base_params,
    ).fetchall()

    # Live links at each window end: only links with state events after it differ from now.
    live_delta: dict[str, list[int]] = {}
    for end in dict.fromkeys(to_db(s.end) for s in specs):
        delta = [0] * nf
        for lmask, now, then in x(
            f"""SELECT {_MOVED_MASK.format(table)}, l.state, {_state_at(":t1")} FROM links l
            WHERE l.id IN (SELECT link_id FROM link_events WHERE site_id = :site AND at > :t1
                           AND kind IN ({_STATE_KINDS}))""",
            {**base_params, "t1": end},
        ):
            change = (then == "live") - (now == "live")
            for i in range(nf):
                if lmask >> i & 1:
                    delta[i] += change
        live_delta[end] = delta

    out: dict[WindowSpec, WindowCounts] = {}
    for s in specs:
        i = index[_key(s)]
        bit = 1 << i
        t0, t1 = to_db(s.start), to_db(s.end)
        live_refdomains = live_domains_now[i]
        refdomains_at_start = alive_domains_now[i]
        new_refdomains = 0
        domains_lost: set[str] = set()
        for domain, moved in by_domain.items():
            matching = [m for m in moved if m.mask & bit]
            if not matching:
                continue
            pair = now_counts.get(domain, no_pair)[i]
            alive_now, live_now = pair & _LOW, pair >> 32
            # Links alive now that did not move are alive at both ends; none is live (the
            # domain is fragile), or it would not be replayed.
            steady = alive_now - sum(m.now in _ALIVE for m in matching)
            states0 = [m.state_at(t0) for m in matching]
            states1 = [m.state_at(t1) for m in matching]
            alive0 = steady > 0 or any(st in _ALIVE for st in states0)
            alive1 = steady > 0 or any(st in _ALIVE for st in states1)
            live1 = (live_now - sum(m.now == "live" for m in matching)) > 0 or any(
                st == "live" for st in states1
            )
            live_refdomains += live1 - (live_now > 0)
            refdomains_at_start += alive0 - (alive_now > 0)
            if alive0 != alive1:
                moves = [m.moved_in(t0, t1) for m in matching]
                if not alive0 and any(g for g, _ in moves):
                    new_refdomains += 1
                if alive0 and any(lost for _, lost in moves):
                    domains_lost.add(domain)
        moved_in = sum(row[1 + i] for row in moves_at if t0 < row[0] <= t1)
        out[s] = WindowCounts(
            new_links=moved_in & _LOW,
            lost_links=moved_in >> 32,
            new_refdomains=new_refdomains,
            lost_refdomains=len(domains_lost),
            refdomains_at_start=refdomains_at_start,
            live_links=live_links_now[i] + live_delta[t1][i],
            live_refdomains=live_refdomains,
            domains_lost=frozenset(domains_lost),
        )
    return out


def _sum_matching(value: str, filters: Sequence[LinkFilter | None], i: int) -> str:
    """The SQL sum of `value` over the rows whose moved link (`m`) passes `filters[i]`, 0
    when none does. A FILTER, not a CASE inside the sum: a row that fails skips the
    aggregate, and every row passes no filter at all."""
    if filters[i] is None:
        return f"sum({value})"
    return f"coalesce(sum({value}) FILTER (WHERE m.mask & {1 << i}), 0)"


def _key(spec: WindowSpec) -> LinkFilter | None:
    """The spec's filter, None for one that lets every link through (the same counts)."""
    f = spec.link_filter
    return None if f is None or f.empty else f


# The filters a moved link `l` passes (bit i: the pass's filters[i]), from the temp table
# of moved links named in its place.
_MOVED_MASK = "(SELECT mm.mask FROM {} mm WHERE mm.id = l.id)"
# Numbers each call's temp table of moved links.
_CALLS = itertools.count()
# The most filters one pass tests: a link's mask is a signed 64-bit integer.
_MAX_FILTERS = 62


def _stage_moved(
    conn: sqlite3.Connection,
    table: str,
    ids: str,
    params: dict[str, object],
    filters: Sequence[LinkFilter | None],
    matches: dict[LinkFilter, RefdomainMatches],
) -> None:
    """The temp table `table`: the links the subquery `ids` selects (a few of the site's), each
    with its referring domain, state and the filters it passes (`mask`, bit i for
    `filters[i]`).

    One read of the links, each filter tested once per link; a filter's domains by the
    refdomains they let through (`matches`, decided once per refdomain of the site), and
    only a refdomain some domain is below has its links' hosts tested."""
    qparams = dict(params)
    bits = []
    for i, f in enumerate(filters):
        if f is None:
            bits.append(str(1 << i))
            continue
        p = f"f{i}_"
        row, rp = f.row_condition("l", p, with_target=False)
        target, tp = f.row_condition("l", p)
        qparams |= rp | tp
        domain = ""
        if f.domains:
            through, hosts = matches[f]
            # Each list is read once per statement, into an index every link is looked up
            # in; an empty list is not looked up at all.
            cases = ""
            listed = f"l.refdomain IN (SELECT value FROM {JSON_EACH}(:{p}{{}}))"
            if through:
                qparams[f"{p}through"] = json.dumps(through)
                cases += f" WHEN {listed.format('through')} THEN 1"
            if hosts:
                host, hp = f.host_condition("l", p)
                qparams |= hp | {f"{p}hosts": json.dumps(hosts)}
                cases += f" WHEN {listed.format('hosts')} THEN (1{host})"
            domain = f" AND CASE{cases} ELSE 0 END" if cases else " AND 0"
        # The target test last: it runs Python per row, the others narrow the rows first.
        test_all = f"1{row}{domain}{target[len(row) :]}"
        bits.append(f"(CASE WHEN ({test_all}) THEN {1 << i} ELSE 0 END)")
    # Created from its select, not filled by INSERT: a read changes no row, so closing
    # the store after one leaves the statistics alone (Store.close).
    conn.execute(
        f"""CREATE TEMP TABLE {table} AS
        SELECT l.id AS id, l.refdomain AS refdomain, l.state AS state,
               l.domain_rating AS rating,
               {" | ".join(bits)} AS mask
        FROM links l WHERE l.id IN ({ids})""",
        qparams,
    )
    conn.execute(f"CREATE INDEX {temp(table + '_id')} ON {table}(id, mask)")


def _row_part(link_filter: LinkFilter | None) -> LinkFilter | None:
    """The filter without its referring domains (None when that lets every link through)."""
    if link_filter is None:
        return None
    rest = LinkFilter(
        dofollow_only=link_filter.dofollow_only,
        min_domain_rating=link_filter.min_domain_rating,
        target_prefix=link_filter.target_prefix,
    )
    return None if rest.empty else rest


# Which refdomains a filter's domains let links through (`LinkFilter.split_refdomains`).
RefdomainMatches = tuple[list[str], list[str]]
# A site's links (`:site`), and those live or missing.
_SITE_LINKS = "l.site_id = :site"
_ALIVE_LINKS = f"{_SITE_LINKS} AND l.state IN ('live', 'missing')"
# A link's contribution to an (alive, live) pair.
_PAIR_OF_ROW = f"1 + (l.state = 'live') * {_PAIR}"


def _pairs_by_domain(
    conn: sqlite3.Connection,
    params: dict[str, object],
    filters: Sequence[LinkFilter | None],
) -> tuple[dict[str, list[int]], dict[LinkFilter, RefdomainMatches]]:
    """Per referring domain of the site's live and missing links (`params`: its `site`):
    each filter's (alive, live) pair of counts, packed as `_PAIR` says; and, for each
    filter with domains, which of the site's refdomains they let through.

    One read grouped by domain and state (the order of the links_filter index): each
    distinct set of row tests (rating, rel, target) is counted once per link; the
    referring-domain tests are made once per domain, in Python. When a filter lists
    domains, that read takes links in every state, so that every refdomain of the site is
    matched (a moved link's too). Only a refdomain that a listed domain is below
    (`blog.alpha.com` under `alpha.com`) is read again, its links' hosts tested."""
    rows_of: dict[LinkFilter | None, int] = {}
    for f in filters:
        rows_of.setdefault(_row_part(f), len(rows_of))
    cols, qparams = [], dict(params)
    for j, rest in enumerate(rows_of):
        cond, rp = ("", {}) if rest is None else rest.row_condition("l", f"r{j}_")
        qparams |= rp
        # FILTER, not a CASE inside the count: a link that fails skips the aggregate.
        cols.append(f"count(*) FILTER (WHERE 1{cond})" if cond else "count(*)")
    column = [2 + rows_of[_row_part(f)] for f in filters]
    listing = [f for f in filters if f is not None and f.domains]
    out: dict[str, list[int]] = {}
    elsewhere: set[str] = set()  # refdomains with links in other states
    for row in conn.execute(
        f"""SELECT l.refdomain, l.state, {", ".join(cols)} FROM links l
        WHERE {_SITE_LINKS if listing else _ALIVE_LINKS} GROUP BY l.refdomain, l.state""",
        qparams,
    ):
        state = row[1]
        if state == "live":
            weight = 1 + _PAIR
        elif state == "missing":
            weight = 1
        else:
            elsewhere.add(row[0])
            continue
        got = out.get(row[0])
        if got is None:
            out[row[0]] = [row[c] * weight for c in column]
        else:
            out[row[0]] = [g + row[c] * weight for g, c in zip(got, column, strict=True)]
    # A refdomain with links in other states only (all lost, say) is still one that moved
    # links can have.
    every = out.keys() | elsewhere
    matches = {f: f.split_refdomains(every) for f in listing}
    for i, f in enumerate(filters):
        if f is None or not f.domains:
            continue
        through, hosts = matches[f]
        kept = set(through)
        for domain, got in out.items():
            if domain not in kept:
                got[i] = 0
        alive = [d for d in hosts if d in out]
        cond, cp = f.row_condition("l", "n_")
        host, hp = f.host_condition("l", "n_")
        for c in range(0, len(alive), 500):
            names = {f"nd{n}": d for n, d in enumerate(alive[c : c + 500])}
            marks = ",".join(f":{name}" for name in names)
            pair = f"CASE WHEN (1{cond}{host}) THEN {_PAIR_OF_ROW} ELSE 0 END"
            for domain, value in conn.execute(
                f"""SELECT l.refdomain, sum({pair}) FROM links l
                WHERE {_ALIVE_LINKS} AND l.refdomain IN ({marks}) GROUP BY l.refdomain""",
                {**params, **cp, **hp, **names},
            ):
                out[domain][i] = value
    return out, matches


# A referring domain, an instant and a rating of its (matching) links lost then (None:
# unrated): the best of them ranks the domain in a window's lost-domain list. One per
# domain and instant (the best), or one per loss.
LostRating = tuple[str, str, float | None]

# The order `rank_lost_domains` reads a list of `LostRating` in: strongest first (unrated
# last), then by name. A domain's first row inside a window is its best there.
RANK_ORDER = "{rating} IS NULL, {rating} DESC, {refdomain}"


def lost_ratings(
    conn: sqlite3.Connection,
    site_id: int,
    start: datetime,
    end: datetime,
    link_filter: LinkFilter | None = None,
    *,
    limit: int | None = None,
    domains: Sequence[str] | None = None,
) -> list[LostRating]:
    """(refdomain, instant, best rating) of the (matching) links' `lost` events in (start,
    end]: one small row per domain and snapshot, whatever the number of links lost; in
    the order `rank_lost_domains` reads. Only the first `limit` rows, and only the
    refdomains `domains`, if given."""
    cond, fparams = _condition(conn, link_filter, "l")
    if domains is not None:
        # Read by domain (the links_filter index), not through every loss of the site.
        cond += f" AND l.site_id = :site AND l.refdomain IN (SELECT value FROM {JSON_EACH}(:rds))"
        fparams["rds"] = json.dumps(list(domains))
    return conn.execute(
        f"""SELECT l.refdomain, e.at, max(l.domain_rating) AS best
        FROM link_events e JOIN links l ON l.id = e.link_id
        WHERE e.site_id = :site AND e.kind = 'lost' AND e.at > :t0 AND e.at <= :t1{cond}
        GROUP BY l.refdomain, e.at
        ORDER BY {RANK_ORDER.format(rating="best", refdomain="l.refdomain")}
        {"" if limit is None else "LIMIT :limit"}""",
        {"site": site_id, "t0": to_db(start), "t1": to_db(end), "limit": limit, **fparams},
    ).fetchall()


def rank_lost_domains(
    ratings: Sequence[LostRating],
    start: datetime,
    end: datetime,
    domains_lost: frozenset[str],
    limit: int,
) -> list[tuple[str, float | None]]:
    """The `limit` first domains with losses in (start, end] among `ratings`, each with its
    best rating there: the wholly lost ones (`domains_lost`, as the window's counts name
    them) first, then strongest first (unknown last), then by name.

    `ratings` must be in `RANK_ORDER`, as `lost_ratings` gives them: rows in another order
    give a wrong list, not an error (a domain is taken at its first row in the window)."""
    wholly, others, _ = _walk_ranked(ratings, start, end, domains_lost, limit)
    return (wholly + others)[:limit]


def rank_lost_domains_head(
    head: Sequence[LostRating],
    start: datetime,
    end: datetime,
    domains_lost: frozenset[str],
    limit: int,
    rank_apart: Callable[[list[str]], list[tuple[str, float | None]]],
) -> list[tuple[str, float | None]] | None:
    """`rank_lost_domains` when `head` is only the first rows of that order (a read cut
    short); None when the list needs rows past it. The wholly lost domains the head does
    not reach come next after those it holds: `rank_apart` ranks them, from their own
    losses, as `rank_lost_domains` would."""
    wholly, others, done = _walk_ranked(head, start, end, domains_lost, limit)
    if not done:
        missing = sorted(domains_lost - {d for d, _ in wholly})
        if limit - len(wholly) - len(missing) > len(others):
            return None  # other domains past the head may fill the list
        if missing:  # (the walk stops once the wholly lost fill the list: they do not)
            wholly += rank_apart(missing)
        if limit - len(wholly) > len(others):
            return None  # one of them had no loss in the window: others past the head may
    return (wholly + others)[:limit]


def _walk_ranked(
    ratings: Iterable[LostRating],
    start: datetime,
    end: datetime,
    domains_lost: frozenset[str],
    limit: int,
) -> tuple[list[tuple[str, float | None]], list[tuple[str, float | None]], bool]:
    """(the wholly lost domains, the others, at most `limit` of them), each domain at its
    first row in (start, end], which holds its best rating there; and whether the walk
    stopped because no later row could change the list."""
    t0, t1 = to_db(start), to_db(end)
    wholly: list[tuple[str, float | None]] = []
    others: list[tuple[str, float | None]] = []
    seen: set[str] = set()

    def settled() -> bool:
        # The list is all wholly lost domains, or they are all found and the rest is full.
        return len(wholly) >= limit or (
            len(wholly) == len(domains_lost) and len(wholly) + len(others) >= limit
        )

    for refdomain, at, rating in ratings:
        if settled():
            return wholly, others, True
        if refdomain in seen or not t0 < at <= t1:
            continue
        seen.add(refdomain)
        if refdomain in domains_lost:
            wholly.append((refdomain, rating))
        elif len(others) < limit:
            others.append((refdomain, rating))
    return wholly, others, settled()


# A (matching) link lost in a window, as a lost-domain list may show it: its line, and the
# instant of the loss (stored form).
LostLink = tuple[str, float | None, str, str, str | None, str | None, str]


def lost_links_in(
    conn: sqlite3.Connection,
    site_id: int,
    start: datetime,
    end: datetime,
    domains: Sequence[str],
    link_filter: LinkFilter | None = None,
) -> list[LostLink]:
    """The (matching) links of `domains` lost in (start, end], one row per loss: each
    domain's rows together, in the order its line picks from (strongest link first, then
    by page, then the latest loss). Only those domains' links are read."""
    cond, fparams = _condition(conn, link_filter, "l")
    return conn.execute(
        f"""SELECT l.refdomain, l.domain_rating, l.url_from, l.url_to, l.anchor, e.reason, e.at
        FROM links l JOIN link_events e ON e.link_id = l.id
        WHERE l.site_id = :site AND l.refdomain IN (SELECT value FROM {JSON_EACH}(:domains))
          AND e.kind = 'lost' AND e.at > :t0 AND e.at <= :t1{cond}
        ORDER BY l.refdomain, l.domain_rating IS NULL, l.domain_rating DESC, l.url_from,
                 l.url_to, e.at DESC, e.id DESC""",
        {
            "site": site_id,
            "t0": to_db(start),
            "t1": to_db(end),
            "domains": json.dumps(list(domains)),
            **fparams,
        },
    ).fetchall()


def show_lost_links(
    links: Iterable[LostLink],
    start: datetime,
    end: datetime,
    ranked: Sequence[tuple[str, float | None]],
    domains_lost: frozenset[str],
) -> list[LostDomain]:
    """The ranked domains as a list of (start, end] shows them, each by its first link lost
    then in `links` (`lost_links_in`'s order, over that window or one holding it)."""
    t0, t1 = to_db(start), to_db(end)
    shown: dict[str, LostDomain] = {}
    for refdomain, dr, url_from, url_to, anchor, reason, lost_at in links:
        if refdomain not in shown and t0 < lost_at <= t1:
            lost = refdomain in domains_lost
            shown[refdomain] = LostDomain(refdomain, dr, lost, url_from, url_to, anchor, reason)
    return [shown[d] for d, _ in ranked if d in shown]


def lost_domains(
    conn: sqlite3.Connection,
    site_id: int,
    start: datetime,
    end: datetime,
    domains_lost: frozenset[str],
    limit: int,
    link_filter: LinkFilter | None = None,
) -> list[LostDomain]:
    """Domains with (matching) links lost in (start, end], each by its strongest lost link
    (then its first page); the wholly lost ones (`domains_lost`, as the window's counts
    name them) first, then strongest first."""
    ratings = lost_ratings(conn, site_id, start, end, link_filter)
    ranked = rank_lost_domains(ratings, start, end, domains_lost, limit)
    links = lost_links_in(conn, site_id, start, end, [d for d, _ in ranked], link_filter)
    return show_lost_links(links, start, end, ranked, domains_lost)


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


def stopped_series(conn: sqlite3.Connection, site_id: int) -> list[tuple[str, str, datetime, int]]:
    """Complete series of a site that have had no accepted snapshot since a later
    complete series of the same source began, and still hold live links no other
    series sees: (series, the later series, when it began, links held). After an
    upgrade that files a format's files under a new series (Semrush Backlink Audit:
    `semrush` -> `semrush_audit`), the old series would keep its links live forever."""
    rows = conn.execute(
        """WITH acc AS (
               SELECT se.id, se.source, se.format, se.bit, min(sn.taken_at) AS first_at,
                      max(sn.taken_at) AS last_at
               FROM series se JOIN snapshots sn ON sn.series_id = se.id
               WHERE se.site_id = :site AND se.coverage = 'complete'
                 AND sn.status IN ('baseline', 'complete')
               GROUP BY se.id)
        SELECT x.source || '/' || x.format, y.source || '/' || y.format, y.first_at,
               (SELECT count(*) FROM links l WHERE l.site_id = :site AND l.state = 'live'
                  AND l.seen_by = x.bit)
        FROM acc x JOIN acc y ON y.source = x.source AND y.id != x.id
            AND y.first_at > x.last_at
        WHERE y.first_at = (SELECT min(z.first_at) FROM acc z WHERE z.source = x.source
                            AND z.id != x.id AND z.first_at > x.last_at)
        ORDER BY x.id""",
        {"site": site_id},
    ).fetchall()
    return [(str(a), str(b), from_db(c), int(n)) for a, b, c, n in rows if n]


def stopped_series_note(
    site: str, series: str, later: str, began: datetime, held: int
) -> tuple[str, str]:
    """What to tell a user about one stopped series (`stopped_series`): what was found,
    and what to do about it."""
    fmt = series.rsplit("/", 1)[1]  # a source's name may hold a slash, a format never
    return (
        f"series {series} has had no snapshot since {later} began"
        f" ({began.isoformat(timespec='seconds')}); {held} live links only it sees stay"
        " live until it lists them again",
        f"if its exports now file under {later} (after an upgrade: docs/evidence.md), import"
        f" the latest two of them again with `linkwatch import --site {site} --format {fmt}`",
    )


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
