"""One evaluation pass (docs/evidence.md, "One evaluation pass"): the windows of every rule
of a site computed together equal each window computed alone from the definition.

The reference model here reads a ledger's links and events as plain rows and applies the
table of "Metrics over a window" literally: every link's state at a window's start and end
replayed from all of its events, the filter applied to the links first (as if the other
links did not exist). Hypothesis writes random link histories into a real SQLite ledger
and asks one pass for random windows, ends and filters at once.
"""

from __future__ import annotations

import itertools
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from alerts.engine import MemoryAlertBook, evaluate
from alerts.metrics import metrics_of
from alerts.rules.context import EvaluationContext
from alerts.rules.threshold import ThresholdRule
from daemon.store import Store
from daemon.store.reads import (
    RANK_ORDER,
    STATE_AFTER,
    LinkFilter,
    LostDomain,
    LostLink,
    LostRating,
    MovedLinks,
    WindowCounts,
    WindowSpec,
    lost_domains,
    lost_links_in,
    lost_ratings,
    rank_lost_domains,
    rank_lost_domains_head,
    register_functions,
    window_counts,
    window_counts_batch,
    window_counts_kept,
)
from daemon.timefmt import to_db

SITE = "example.com"
T0 = datetime(2026, 4, 1, tzinfo=UTC)
DAY = timedelta(days=1)
ALIVE = ("live", "missing")
# Events that change a link's state, and "changed", which does not.
KINDS = ("new", "appeared", "restored", "missing", "lost", "unconfirmed", "changed")
DOMAINS = ("alpha.com", "beta.org", "gamma.co.uk", "delta.net")
FILTERS = (
    None,
    LinkFilter(dofollow_only=True),
    LinkFilter(min_domain_rating=50),
    LinkFilter(domains=("alpha.com", "co.uk")),
    LinkFilter(domains=("blog.alpha.com",)),
    LinkFilter(target_prefix="/p1"),
    LinkFilter(target_prefix="/p2"),
    LinkFilter(dofollow_only=True, domains=("beta.org",)),
)


def at(hours: int) -> datetime:
    return T0 + timedelta(hours=hours)


@dataclass(frozen=True)
class LinkHistory:
    """One generated link: where it is from and to, its attributes, and its events."""

    domain: int
    sub: bool
    page: int
    target: int
    nofollow: bool
    rating: float | None
    added: int | None
    # (hours after T0, kind, reason), in the order they happened.
    events: tuple[tuple[int, str, str | None], ...]


@st.composite
def histories(draw: st.DrawFn) -> LinkHistory:
    added = draw(st.one_of(st.none(), st.integers(0, 24 * 12)))
    # As the ledger dates them: a link added at a time arrives with an event then (new, or
    # appeared), and nothing happens to it before.
    first = 0 if added is None else added
    times = sorted(draw(st.lists(st.integers(first, 24 * 12), max_size=5)))
    events = tuple(
        (
            t,
            kind := draw(st.sampled_from(KINDS)),
            "lost" if kind == "restored" and draw(st.booleans()) else None,
        )
        for t in times
    )
    if added is not None:
        events = ((added, draw(st.sampled_from(["new", "appeared"])), None), *events)
    return LinkHistory(
        domain=draw(st.integers(0, len(DOMAINS) - 1)),
        sub=draw(st.booleans()),
        page=draw(st.integers(0, 3)),
        target=draw(st.integers(0, 2)),
        nofollow=draw(st.booleans()),
        rating=draw(st.sampled_from([None, 10.0, 50.0, 90.0])),
        added=added,
        events=events,
    )


def write_ledger(store: Store, links: Sequence[LinkHistory]) -> int:
    """The links and their events as ledger rows of one site; its id. Each link's state is
    the one its last state event left (live without one), as the ledger keeps it."""
    site_id = store.ensure_site(SITE, "own")
    conn = store.conn
    for n, h in enumerate(links):
        host = ("blog." if h.sub else "www.") + DOMAINS[h.domain]
        state = "live"
        for _, kind, _ in h.events:
            state = STATE_AFTER.get(kind, state)
        cur = conn.execute(
            """INSERT INTO links (site_id, link_key, url_from, url_to, nofollow, refdomain,
                   domain_rating, added_at, state, seen_by)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)""",
            (
                site_id,
                n,
                f"https://{host}/page{h.page}-{n}",
                f"https://{SITE}/p{h.target}",
                int(h.nofollow),
                DOMAINS[h.domain],
                h.rating,
                to_db(at(h.added)) if h.added is not None else None,
                state,
            ),
        )
        for t, kind, reason in h.events:
            conn.execute(
                """INSERT INTO link_events (snapshot_id, site_id, link_id, kind, reason, at)
                VALUES (0, ?, ?, ?, ?, ?)""",
                (site_id, cur.lastrowid, kind, reason, to_db(at(t))),
            )
    return site_id


@dataclass(frozen=True)
class Row:
    """A link as the reference model reads it."""

    domain: str
    added_at: str | None
    events: tuple[tuple[str, str, str | None], ...]


def reference_rows(store: Store, site_id: int, link_filter: LinkFilter | None) -> list[Row]:
    """The site's links that pass the filter (the filter's own SQL test decides), with all
    their events in the order they happened."""
    cond, params = ("", {}) if link_filter is None else link_filter.condition("l")
    if cond:
        register_functions(store.conn)
    rows = []
    for lid, domain, added in store.conn.execute(
        f"SELECT l.id, l.refdomain, l.added_at FROM links l WHERE l.site_id = :site{cond}",
        {"site": site_id, **params},
    ).fetchall():
        events = store.conn.execute(
            "SELECT at, kind, reason FROM link_events WHERE link_id = ? ORDER BY at, id", (lid,)
        ).fetchall()
        rows.append(Row(domain, added, tuple(events)))
    return rows


def reference_lost_list(
    store: Store, site_id: int, spec: WindowSpec, wholly: frozenset[str]
) -> list[tuple[str, bool, float | None, str]]:
    """docs/evidence.md, "The lost-domain list", literally: every (matching) link lost in
    the window; per domain its strongest (then first page); wholly lost domains first."""
    cond, params = ("", {}) if spec.link_filter is None else spec.link_filter.condition("l")
    if cond:
        register_functions(store.conn)
    best: dict[str, tuple[float | None, str]] = {}
    for domain, rating, url_from, when in store.conn.execute(
        f"""SELECT l.refdomain, l.domain_rating, l.url_from, e.at FROM links l
        JOIN link_events e ON e.link_id = l.id
        WHERE l.site_id = :site AND e.kind = 'lost'{cond}""",
        {"site": site_id, **params},
    ).fetchall():
        if not to_db(spec.start) < when <= to_db(spec.end):
            continue
        rank = (rating is None, -(rating or 0), url_from)
        held = best.get(domain)
        if held is None or rank < (held[0] is None, -(held[0] or 0), held[1]):
            best[domain] = (rating, url_from)
    listed = [(d, d in wholly, rating, url) for d, (rating, url) in best.items()]
    return sorted(listed, key=lambda x: (not x[1], x[2] is None, -(x[2] or 0), x[0]))


def reference_state(row: Row, t: str) -> str | None:
    """docs/evidence.md, "Link states": not there before it was added; else the state its
    latest state event up to `t` left; live without one."""
    if row.added_at is not None and row.added_at > t:
        return None
    state = "live"
    for when, kind, _ in row.events:
        if when <= t and kind in STATE_AFTER:
            state = STATE_AFTER[kind]
    return state


def reference_window(rows: Sequence[Row], start: datetime, end: datetime) -> WindowCounts:
    """docs/evidence.md, "Metrics over a window (start, end]", literally."""
    t0, t1 = to_db(start), to_db(end)
    gains = losses = 0
    gained: set[str] = set()
    lost: set[str] = set()
    alive0: set[str] = set()
    alive1: set[str] = set()
    live1: set[str] = set()
    live_links = 0
    for row in rows:
        for when, kind, reason in row.events:
            if t0 < when <= t1:
                if kind == "new" or (kind == "restored" and reason == "lost"):
                    gains += 1
                    gained.add(row.domain)
                if kind == "lost":
                    losses += 1
                    lost.add(row.domain)
        s0, s1 = reference_state(row, t0), reference_state(row, t1)
        if s0 in ALIVE:
            alive0.add(row.domain)
        if s1 in ALIVE:
            alive1.add(row.domain)
        if s1 == "live":
            live1.add(row.domain)
            live_links += 1
    domains = {row.domain for row in rows}
    new_rd = {d for d in domains if d not in alive0 and d in alive1 and d in gained}
    lost_rd = {d for d in domains if d in alive0 and d not in alive1 and d in lost}
    return WindowCounts(
        new_links=gains,
        lost_links=losses,
        new_refdomains=len(new_rd),
        lost_refdomains=len(lost_rd),
        refdomains_at_start=len(alive0),
        live_links=live_links,
        live_refdomains=len(live1),
        domains_lost=frozenset(lost_rd),
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "linkwatch.db")
    yield s
    s.close()


specs = st.lists(
    st.tuples(
        st.integers(1, 24 * 10),  # window length, hours
        st.integers(0, 24 * 14),  # end, hours after T0
        st.sampled_from(FILTERS),
    ),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(links=st.lists(histories(), max_size=14), wanted=specs)
def test_one_pass_equals_each_window_by_the_definition(
    links: list[LinkHistory], wanted: list[tuple[int, int, LinkFilter | None]]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "linkwatch.db")
        try:
            site_id = write_ledger(store, links)
            asked = [WindowSpec(at(end - length), at(end), f) for length, end, f in wanted]
            together = window_counts_batch(store.conn, site_id, asked)
            assert set(together) == set(asked)
            # A kept pass counts the same, and its moved links give each window's losses
            # as reading the links does.
            kept_counts, moved = window_counts_kept(store.conn, site_id, asked)
            assert kept_counts == together and moved is not None
            for spec in asked:
                args = (spec.start, spec.end, spec.link_filter)
                from_links = lost_ratings(store.conn, site_id, *args)
                from_pass = moved.lost_ratings(*args)
                assert from_pass is not None, spec
                # One row per loss: the best of each domain and instant is the links' row.
                assert best_per_instant(from_pass) == best_per_instant(from_links), spec
                assert len(from_pass) >= len(from_links), spec
                # Both in the order the ranking reads.
                assert from_pass == sorted(from_pass, key=rank_key), spec
                assert from_links == sorted(from_links, key=rank_key), spec
                lost = together[spec].domains_lost
                t0, t1 = to_db(spec.start), to_db(spec.end)
                for limit in (0, 1, 3, 200):
                    ranking = reference_rank(from_links, t0, t1, lost, limit)
                    for read in (from_pass, from_links):
                        assert (
                            rank_lost_domains(read, spec.start, spec.end, lost, limit) == ranking
                        ), spec
            for spec in asked:
                rows = reference_rows(store, site_id, spec.link_filter)
                want = reference_window(rows, spec.start, spec.end)
                assert together[spec] == want, spec
                # Alone, the same numbers: a window does not depend on its company.
                alone = window_counts(store.conn, site_id, spec.start, spec.end, spec.link_filter)
                assert alone == want, spec
                # The message's list marks wholly lost exactly what the metric counts.
                listed = lost_domains(
                    store.conn,
                    site_id,
                    spec.start,
                    spec.end,
                    together[spec].domains_lost,
                    100,
                    spec.link_filter,
                )
                assert {d.refdomain for d in listed if d.domain_lost} == want.domains_lost
                with_losses = {
                    r.domain
                    for r in rows
                    for when, kind, _ in r.events
                    if kind == "lost" and to_db(spec.start) < when <= to_db(spec.end)
                }
                assert {d.refdomain for d in listed} == with_losses
                # Each domain shown by its strongest lost link, then its first page; the
                # wholly lost first, then strongest first, then by name.
                assert [
                    (d.refdomain, d.domain_lost, d.domain_rating, d.url_from) for d in listed
                ] == reference_lost_list(store, site_id, spec, want.domains_lost)[:100]
                # A short list is the head of the long one (the read stops early).
                short = lost_domains(
                    store.conn,
                    site_id,
                    spec.start,
                    spec.end,
                    together[spec].domains_lost,
                    1,
                    spec.link_filter,
                )
                assert short == listed[:1]
        finally:
            store.close()


def test_a_window_ending_before_it_starts_reads_as_the_definition_says(store: Store) -> None:
    """The library takes any two instants: links that moved between the end and a later
    start are known to the pass too."""
    history = LinkHistory(0, False, 0, 0, True, 50.0, None, ((30, "missing", None),))
    site_id = write_ledger(store, [history])
    for f in (None, FILTERS[1]):
        spec = WindowSpec(at(48), at(10), f)
        got = window_counts_batch(store.conn, site_id, [spec, WindowSpec(at(40), at(48), f)])
        assert got[spec] == reference_window(reference_rows(store, site_id, f), at(48), at(10))
        assert got[spec].live_links == (1 if f is None else 0)  # the link is nofollow


def test_counts_stand_while_the_caller_reads_the_same_tables(store: Store) -> None:
    """A statement the caller still has open keeps the pass's own table from being
    dropped; the counts are not lost for it, and the next pass works."""
    history = LinkHistory(0, False, 0, 0, False, 50.0, None, ((30, "missing", None),))
    site_id = write_ledger(store, [history, history])
    # Unfiltered: a filter's SQL functions cannot be registered while a statement is open.
    spec = WindowSpec(at(0), at(48))
    want = reference_window(reference_rows(store, site_id, spec.link_filter), at(0), at(48))
    open_read = store.conn.execute("SELECT id FROM links")
    open_read.fetchone()
    assert window_counts_batch(store.conn, site_id, [spec])[spec] == want
    assert window_counts_batch(store.conn, site_id, [spec])[spec] == want
    open_read.fetchall()
    assert window_counts_batch(store.conn, site_id, [spec])[spec] == want


def test_a_failed_pass_leaves_the_callers_open_read_going(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass that fails ends its read transaction without aborting a statement the caller
    still has open on the connection; the next pass works."""
    history = LinkHistory(0, False, 0, 0, False, 50.0, None, ((30, "missing", None),))
    site_id = write_ledger(store, [history] * 4)
    spec = WindowSpec(at(0), at(48))
    want = reference_window(reference_rows(store, site_id, None), at(0), at(48))
    open_read = store.conn.execute("SELECT id FROM links ORDER BY id")
    first = open_read.fetchone()

    def failing(*args: Any) -> None:
        raise RuntimeError("counts failed")

    with monkeypatch.context() as patched:
        patched.setattr("daemon.store.reads._counts_from", failing)
        with pytest.raises(RuntimeError):
            window_counts_batch(store.conn, site_id, [spec])
    assert not store.conn.in_transaction
    assert [first, *open_read.fetchall()] == store.conn.execute(
        "SELECT id FROM links ORDER BY id"
    ).fetchall()
    assert window_counts_batch(store.conn, site_id, [spec])[spec] == want


def best_per_instant(
    ratings: list[tuple[str, str, float | None]],
) -> dict[tuple[str, str], float | None]:
    """The best rating of each (domain, instant) of lost-rating rows (unrated lowest)."""
    best: dict[tuple[str, str], float | None] = {}
    for domain, instant, rating in ratings:
        known = best.get((domain, instant))
        if (domain, instant) not in best or (
            rating is not None and (known is None or rating > known)
        ):
            best[(domain, instant)] = rating
    return best


def test_a_kept_pass_gives_one_row_per_loss() -> None:
    """Two links of a domain lost at one instant: two rows from the pass, one (the best)
    from the links; the list ranks the domain by the same best rating."""
    lost = ((24, "missing", None), (48, "lost", None))
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "linkwatch.db")
        try:
            site_id = write_ledger(
                store,
                [
                    LinkHistory(0, False, 0, 0, False, 40.0, None, lost),
                    LinkHistory(0, False, 1, 0, False, 60.0, None, lost),
                    LinkHistory(1, False, 0, 0, False, None, None, lost),
                ],
            )
            spec = WindowSpec(at(10), at(72))
            counts, moved = window_counts_kept(store.conn, site_id, [spec])
            assert moved is not None
            from_pass = moved.lost_ratings(spec.start, spec.end, None)
            t = to_db(at(48))
            assert from_pass is not None
            assert sorted(from_pass, key=str) == sorted(
                [(DOMAINS[0], t, 40.0), (DOMAINS[0], t, 60.0), (DOMAINS[1], t, None)], key=str
            )
            assert sorted(lost_ratings(store.conn, site_id, spec.start, spec.end), key=str) == (
                sorted([(DOMAINS[0], t, 60.0), (DOMAINS[1], t, None)], key=str)
            )
            ranked = rank_lost_domains(
                from_pass, spec.start, spec.end, counts[spec].domains_lost, 10
            )
            assert ranked == [(DOMAINS[0], 60.0), (DOMAINS[1], None)]
        finally:
            store.close()


def test_a_kept_pass_answers_only_what_it_covered(store: Store) -> None:
    """Another filter, an earlier start, or a later kept pass of the site: the losses are
    read from the links instead (None)."""
    lost = ((24, "missing", None), (48, "lost", None))
    site_id = write_ledger(store, [LinkHistory(0, False, 0, 0, False, 50.0, None, lost)])
    spec = WindowSpec(at(10), at(72))
    _, moved = window_counts_kept(store.conn, site_id, [spec])
    assert moved is not None
    assert moved.lost_ratings(at(10), at(72), None) == [(DOMAINS[0], to_db(at(48)), 50.0)]
    assert moved.lost_ratings(at(10), at(72), LinkFilter()) is not None  # empty: unfiltered
    assert moved.lost_ratings(at(9), at(72), None) is None
    assert moved.lost_ratings(at(10), at(72), FILTERS[1]) is None
    _, later = window_counts_kept(store.conn, site_id, [spec])
    assert later is not None and later.lost_ratings(at(10), at(72), None) is not None
    assert moved.lost_ratings(at(10), at(72), None) is None  # its table was dropped
    # One kept table per site: the earlier ones are gone, another site's stays, and a
    # pass that keeps nothing leaves nothing.
    window_counts_batch(store.conn, site_id, [spec])
    _, elsewhere = window_counts_kept(store.conn, site_id + 1, [spec])
    assert elsewhere is not None
    tables = store.conn.execute(
        "SELECT count(*) FROM sqlite_temp_master WHERE type = 'table' AND name LIKE 'moved%'"
    ).fetchone()[0]
    assert tables == 2
    assert later.lost_ratings(at(10), at(72), None) is not None


def test_a_kept_pass_is_not_read_after_the_database_changed(store: Store, tmp_path: Path) -> None:
    """A write since the pass, by another process or this connection, and the losses are
    read from the links (None): the pass's moved links may be out of date."""
    lost = ((24, "missing", None), (48, "lost", None))
    site_id = write_ledger(store, [LinkHistory(0, False, 0, 0, False, 50.0, None, lost)])
    spec = WindowSpec(at(10), at(72))
    _, moved = window_counts_kept(store.conn, site_id, [spec])
    assert moved is not None and moved.lost_ratings(at(10), at(72), None)
    other = sqlite3.connect(tmp_path / "linkwatch.db")
    with other:
        other.execute("UPDATE links SET domain_rating = 90")
    other.close()
    assert moved.lost_ratings(at(10), at(72), None) is None
    _, moved = window_counts_kept(store.conn, site_id, [spec])
    assert moved is not None and moved.lost_ratings(at(10), at(72), None)
    with store.conn:
        store.conn.execute("UPDATE links SET domain_rating = 80")
    assert moved.lost_ratings(at(10), at(72), None) is None


def test_more_filters_than_a_mask_holds_are_counted_in_groups(store: Store) -> None:
    """A link's filters are bits of a 64-bit integer: 70 filters take two passes, with
    the counts of the definition, and no pass is kept."""
    lost = ((24, "missing", None), (48, "lost", None))
    links = [
        LinkHistory(i % 4, False, 0, 0, i % 2 == 0, float(10 * (i % 10)), None, lost)
        for i in range(12)
    ]
    site_id = write_ledger(store, links)
    specs_ = [WindowSpec(at(10), at(72), LinkFilter(min_domain_rating=i)) for i in range(69)]
    specs_.append(WindowSpec(at(10), at(72), LinkFilter(dofollow_only=True)))
    counts, moved = window_counts_kept(store.conn, site_id, specs_)
    assert moved is None
    for spec in specs_:
        rows = reference_rows(store, site_id, spec.link_filter)
        assert counts[spec] == reference_window(rows, spec.start, spec.end), spec


def test_domains_with_no_live_link_are_tested_for_each_filter_apart(store: Store) -> None:
    """A refdomain whose links are all lost (none live or missing now) is matched too: each
    filter with its own domains, none taking another's; and the pass ends its read
    transaction."""
    lost = ((24, "missing", None), (48, "lost", None))
    links = [
        LinkHistory(d, False, 0, t, False, 50.0, None, lost) for d in range(4) for t in (0, 1, 1)
    ]
    site_id = write_ledger(store, links)
    wanted = [
        LinkFilter(domains=(DOMAINS[0],)),
        LinkFilter(domains=(DOMAINS[1],)),
        LinkFilter(target_prefix="/p1"),
        LinkFilter(target_prefix="/p2"),
    ]
    specs_ = [WindowSpec(at(10), at(72), f) for f in wanted]
    counts = window_counts_batch(store.conn, site_id, specs_)
    for spec in specs_:
        rows = reference_rows(store, site_id, spec.link_filter)
        assert counts[spec] == reference_window(rows, spec.start, spec.end), spec
    # Targets /p0 and /p1 only: the two target filters differ.
    assert [counts[s].lost_links for s in specs_] == [3, 3, 8, 0]
    assert not store.conn.in_transaction


def test_a_pass_in_the_callers_transaction_reads_its_state_and_leaves_it_open(
    store: Store, tmp_path: Path
) -> None:
    """Inside a transaction the caller has open, the pass reads the caller's state of the
    ledger (not a commit made since by another connection) and leaves the transaction to
    the caller."""
    lost = ((24, "missing", None), (48, "lost", None))
    site_id = write_ledger(
        store, [LinkHistory(d, False, 0, 0, False, 50.0, None, lost) for d in range(3)]
    )
    specs_ = [WindowSpec(at(10), at(72)), WindowSpec(at(10), at(72), FILTERS[3])]
    before = window_counts_batch(store.conn, site_id, specs_)
    store.conn.execute("BEGIN")
    assert store.conn.execute("SELECT count(*) FROM links").fetchone() == (3,)
    other = sqlite3.connect(tmp_path / "linkwatch.db")
    with other:
        other.execute("UPDATE link_events SET at = ? WHERE kind = 'lost'", (to_db(at(80)),))
    other.close()
    assert window_counts_batch(store.conn, site_id, specs_) == before
    assert store.conn.in_transaction
    store.conn.execute("COMMIT")
    after = window_counts_batch(store.conn, site_id, specs_)
    assert [after[s].lost_links for s in specs_] == [0, 0]
    assert [before[s].lost_links for s in specs_] == [3, 2]


def test_a_kept_pass_checks_its_version_and_reads_its_losses_in_one_state(
    store: Store, tmp_path: Path
) -> None:
    """A loss another connection commits as a kept pass's losses are read is in neither
    the check that the ledger is unchanged nor the read: the list is the pass's, as its
    counts are; the next read sees the write and declines."""
    lost = ((24, "missing", None), (48, "lost", None))
    site_id = write_ledger(
        store, [LinkHistory(d, False, 0, 0, False, 50.0, None, lost) for d in range(3)]
    )
    spec = WindowSpec(at(10), at(72))
    _, moved = window_counts_kept(store.conn, site_id, [spec])
    assert moved is not None
    before = moved.lost_ratings(at(10), at(72), None)
    assert before is not None and len(before) == 3
    (link_id,) = store.conn.execute(f"SELECT id FROM {moved.table} LIMIT 1").fetchone()
    other = sqlite3.connect(tmp_path / "linkwatch.db")
    written: list[str] = []

    def write_as_the_losses_are_read(sql: str) -> None:
        if "e.kind = 'lost'" in sql and not written:
            with other:
                other.execute(
                    """INSERT INTO link_events (snapshot_id, site_id, link_id, kind, at)
                    VALUES (0, ?, ?, 'lost', ?)""",
                    (site_id, link_id, to_db(at(60))),
                )
            written.append(sql)

    store.conn.set_trace_callback(write_as_the_losses_are_read)
    try:
        during = moved.lost_ratings(at(10), at(72), None)
    finally:
        store.conn.set_trace_callback(None)
        other.close()
    assert written
    assert during == before
    assert moved.lost_ratings(at(10), at(72), None) is None


def test_links_in_other_states_do_not_cut_the_current_state_read_short(store: Store) -> None:
    """With a domain filter the current state is read in every state, a refdomain's lost
    links between its live and missing ones: the domains after them are still counted."""
    lost = ((24, "missing", None), (48, "lost", None))
    links = [
        LinkHistory(d, False, i, 0, i == 2, 50.0, None, lost if d == 0 and i == 0 else ())
        for d in range(4)
        for i in range(3)
    ]
    links.append(LinkHistory(0, False, 3, 0, False, 50.0, None, ((24, "missing", None),)))
    site_id = write_ledger(store, links)
    specs_ = [WindowSpec(at(10), at(72), f) for f in (None, FILTERS[1], FILTERS[3])]
    counts = window_counts_batch(store.conn, site_id, specs_)
    for spec in specs_:
        rows = reference_rows(store, site_id, spec.link_filter)
        assert counts[spec] == reference_window(rows, spec.start, spec.end), spec
    assert [counts[s].live_links for s in specs_] == [11, 7, 5]


def test_dofollow_counts_links_with_no_flag_set_unknown_flags_as_followed(store: Store) -> None:
    """Every mix of nofollow, ugc and sponsored, each unknown (NULL), 0 or 1: a dofollow
    filter keeps exactly the links with no flag set, in the current state, among the moved
    links and in a lost-domain list alike (stated here without the filter's SQL)."""
    combos = list(itertools.product((None, 0, 1), repeat=3))
    # Each mix twice on its own refdomain: one link stays, one is lost in the window.
    links = [
        LinkHistory(0, False, 0, 0, False, 50.0, None, ((24, "lost", None),) if gone else ())
        for _ in combos
        for gone in (False, True)
    ]
    site_id = write_ledger(store, links)
    ids = [r[0] for r in store.conn.execute("SELECT id FROM links ORDER BY link_key")]
    followed = set()
    for n, flags in enumerate(combos):
        for lid in ids[2 * n : 2 * n + 2]:
            store.conn.execute(
                "UPDATE links SET refdomain = ?, nofollow = ?, ugc = ?, sponsored = ? WHERE id = ?",
                (f"d{n}.com", *flags, lid),
            )
        if 1 not in flags:
            followed.add(f"d{n}.com")
    assert len(followed) == 8
    follow = LinkFilter(dofollow_only=True)
    spec = WindowSpec(at(10), at(72), follow)
    counts, moved = window_counts_kept(store.conn, site_id, [spec])
    assert (counts[spec].live_links, counts[spec].lost_links) == (8, 8)
    assert counts[spec].live_refdomains == 8
    assert moved is not None
    kept = moved.lost_ratings(spec.start, spec.end, follow)
    assert kept is not None and {d for d, _, _ in kept} == followed
    read = lost_ratings(store.conn, site_id, spec.start, spec.end, follow)
    assert {d for d, _, _ in read} == followed


def test_domains_below_several_refdomains_have_their_hosts_tested_in_one_read(
    store: Store,
) -> None:
    """A filter's domains below two refdomains (blog.alpha.com, blog.gamma.co.uk): the live
    links of both are read again together, their hosts tested, as the definition counts."""
    lost = ((24, "missing", None), (48, "lost", None))
    links = [
        LinkHistory(d, sub, i, 0, False, 50.0, None, lost if i == 0 else ())
        for d in (0, 1, 2)
        for sub in (False, True)
        for i in range(2)
    ]
    site_id = write_ledger(store, links)
    below = LinkFilter(domains=("blog.alpha.com", "blog.gamma.co.uk"))
    specs_ = [WindowSpec(at(10), at(72), below)]
    counts = window_counts_batch(store.conn, site_id, specs_)
    want = reference_window(reference_rows(store, site_id, below), at(10), at(72))
    assert counts[specs_[0]] == want
    assert (want.live_links, want.lost_links) == (2, 2)


def test_filters_letting_refdomains_through_whole_and_by_host_share_one_pass(
    store: Store,
) -> None:
    """Two filters each with a refdomain taken whole and one taken by host (each with its
    own domains to test hosts against), and one testing rel and rating together: one
    pass counts every window as the definition does."""
    lost = ((24, "missing", None), (48, "lost", None))
    links = [
        LinkHistory(d, sub, i, 0, i == 1, [10.0, 50.0, 90.0][(d + i) % 3], None,
                    lost if i != 2 else ())
        for d in range(4)
        for sub in (False, True)
        for i in range(3)
    ]  # fmt: skip
    site_id = write_ledger(store, links)
    filters = [
        LinkFilter(domains=("alpha.com", "blog.gamma.co.uk")),
        LinkFilter(domains=("blog.alpha.com", "delta.net")),
        LinkFilter(dofollow_only=True, min_domain_rating=50),
    ]
    specs_ = [WindowSpec(at(10), at(72), f) for f in filters]
    counts = window_counts_batch(store.conn, site_id, specs_)
    for spec in specs_:
        want = reference_window(reference_rows(store, site_id, spec.link_filter), at(10), at(72))
        assert counts[spec] == want, spec
    # alpha.com's 4 losses and the 2 on blog.gamma.co.uk; blog.alpha.com's 2, delta.net's 4.
    assert [counts[s].lost_links for s in specs_[:2]] == [6, 6]


def test_a_pass_reads_one_state_of_the_ledger_while_another_process_writes(
    store: Store, tmp_path: Path
) -> None:
    """The pass's statements read in one transaction: a link and its event committed by
    another connection after the pass's first read are in none of its counts, and in the
    next pass's."""
    lost = ((24, "missing", None), (48, "lost", None))
    site_id = write_ledger(
        store, [LinkHistory(d, False, 0, 0, False, 50.0, None, lost) for d in range(3)]
    )
    specs_ = [
        WindowSpec(at(10), at(72)),
        WindowSpec(at(10), at(72), LinkFilter(domains=(DOMAINS[3],))),
    ]
    before = window_counts_batch(store.conn, site_id, specs_)
    other = sqlite3.connect(tmp_path / "linkwatch.db")
    written: list[str] = []

    def write_during_the_pass(sql: str) -> None:
        if "CREATE TEMP TABLE" in sql and not written:
            with other:
                cur = other.execute(
                    """INSERT INTO links (site_id, link_key, url_from, url_to, refdomain,
                           added_at, state, seen_by)
                    VALUES (?, 'late', ?, ?, ?, ?, 'live', 0)""",
                    (
                        site_id,
                        f"https://www.{DOMAINS[3]}/late",
                        f"https://{SITE}/p0",
                        DOMAINS[3],
                        to_db(at(60)),
                    ),
                )
                other.execute(
                    """INSERT INTO link_events (snapshot_id, site_id, link_id, kind, at)
                    VALUES (0, ?, ?, 'new', ?)""",
                    (site_id, cur.lastrowid, to_db(at(60))),
                )
            written.append(sql)

    store.conn.set_trace_callback(write_during_the_pass)
    try:
        during = window_counts_batch(store.conn, site_id, specs_)
    finally:
        store.conn.set_trace_callback(None)
        other.close()
    assert written
    assert during == before
    after = window_counts_batch(store.conn, site_id, specs_)
    assert [after[s].new_links for s in specs_] == [before[s].new_links + 1 for s in specs_]
    for spec in specs_:
        assert after[spec] == reference_window(
            reference_rows(store, site_id, spec.link_filter), spec.start, spec.end
        )


def test_an_empty_filter_is_the_unfiltered_window(store: Store) -> None:
    history = LinkHistory(0, False, 0, 0, False, 50.0, None, ((30, "missing", None),))
    site_id = write_ledger(store, [history])
    plain = WindowSpec(at(0), at(48))
    empty = WindowSpec(at(0), at(48), LinkFilter())
    counts = window_counts_batch(store.conn, site_id, [plain, empty])
    assert counts[plain] == counts[empty]
    assert counts[plain].live_links == 0 and counts[plain].refdomains_at_start == 1


def test_a_weak_wholly_lost_domain_heads_a_short_list(store: Store) -> None:
    lost = ((24, "missing", None), (48, "lost", None))
    links = [
        # alpha.com and beta.org keep a link and lose a stronger one; gamma.co.uk, rated
        # lowest, loses its only link.
        LinkHistory(0, False, 0, 0, False, 90.0, None, lost),
        LinkHistory(0, False, 1, 0, False, 10.0, None, ()),
        LinkHistory(1, False, 0, 0, False, 80.0, None, lost),
        LinkHistory(1, False, 1, 0, False, 10.0, None, ()),
        LinkHistory(2, False, 0, 0, False, 10.0, None, lost),
    ]
    site_id = write_ledger(store, links)
    spec = WindowSpec(at(0), at(72))
    counts = window_counts_batch(store.conn, site_id, [spec])[spec]
    assert counts.domains_lost == {"gamma.co.uk"}
    listed = lost_domains(store.conn, site_id, at(0), at(72), counts.domains_lost, 1)
    assert [(d.refdomain, d.domain_lost) for d in listed] == [("gamma.co.uk", True)]
    listed = lost_domains(store.conn, site_id, at(0), at(72), counts.domains_lost, 2)
    assert [d.refdomain for d in listed] == ["gamma.co.uk", "alpha.com"]


def test_a_filtered_list_ranks_domains_by_their_matching_losses_alone(store: Store) -> None:
    lost = ((24, "missing", None), (48, "lost", None))
    links = [
        # alpha.com loses only a nofollow link, rated highest; beta.org a followed one.
        LinkHistory(0, False, 0, 0, True, 90.0, None, lost),
        LinkHistory(1, False, 0, 0, False, 20.0, None, lost),
        LinkHistory(1, False, 1, 0, False, 10.0, None, ()),
        # beta.org's nofollow loss, rated higher, is not the one its line shows.
        LinkHistory(1, False, 2, 0, True, 70.0, None, lost),
    ]
    site_id = write_ledger(store, links)
    follow = LinkFilter(dofollow_only=True)
    spec = WindowSpec(at(0), at(72), follow)
    counts = window_counts_batch(store.conn, site_id, [spec])[spec]
    listed = lost_domains(store.conn, site_id, at(0), at(72), counts.domains_lost, 1, follow)
    assert [(d.refdomain, d.domain_rating) for d in listed] == [("beta.org", 20.0)]


def test_a_domain_ranks_by_its_best_loss_inside_the_window() -> None:
    # (refdomain, instant, best rating then), as read once for the longest window.
    ratings = [
        ("a.com", to_db(at(10)), 90.0),
        ("a.com", to_db(at(20)), 10.0),
        ("b.com", to_db(at(20)), 50.0),
        ("c.com", to_db(at(5)), 99.0),
        ("c.com", to_db(at(30)), None),
        ("d.com", to_db(at(30)), 95.0),
        ("d.com", to_db(at(20)), 40.0),
        ("e.com", to_db(at(0)), 97.0),
        ("f.com", to_db(at(24)), 60.0),
        ("g.com", to_db(at(3)), None),
        ("g.com", to_db(at(4)), 30.0),
        ("h.com", to_db(at(3)), 20.0),
        ("h.com", to_db(at(4)), None),
        ("i.com", to_db(at(5)), None),
    ]
    ratings.sort(key=rank_key)
    # The window (0, 24]: e.com's loss is at its start (outside), f.com's at its end
    # (inside); d.com's 95 is after it. d.com is wholly lost: first, however rated.
    ranked = rank_lost_domains(ratings, at(0), at(24), frozenset({"d.com"}), 10)
    assert ranked == [
        ("d.com", 40.0),
        ("c.com", 99.0),
        ("a.com", 90.0),
        ("f.com", 60.0),
        ("b.com", 50.0),
        ("g.com", 30.0),
        ("h.com", 20.0),
        ("i.com", None),
    ]
    assert rank_lost_domains(ratings, at(0), at(24), frozenset({"d.com"}), 3) == ranked[:3]


def rank_key(rating: LostRating) -> tuple[bool, float, str]:
    """The order `rank_lost_domains` reads ratings in: strongest first, unrated last."""
    return (rating[2] is None, -(rating[2] or 0.0), rating[0])


def reference_rank(
    ratings: Sequence[LostRating], t0: str, t1: str, lost: frozenset[str], limit: int
) -> list[tuple[str, float | None]]:
    """The lost-domain ranking by its definition: each domain's best rating inside the
    window (unrated below any rating), the wholly lost first, then strongest, then name."""
    best: dict[str, float | None] = {}
    for refdomain, instant, rating in ratings:
        if t0 < instant <= t1:
            known = best.get(refdomain)
            if refdomain not in best or (rating is not None and (known is None or rating > known)):
                best[refdomain] = rating
    ordered = sorted(
        best.items(), key=lambda d: (d[0] not in lost, d[1] is None, -(d[1] or 0.0), d[0])
    )
    return ordered[: max(limit, 0)]


# Referring domains as they may be stored: any case, any script (SQLite and Python must
# sort them alike), a few of them so that domains repeat.
_NAMES = st.sampled_from(("a.com", "B.com", "b.com", "ålpha.com", "中国.cn", "e\u0301.fr", "z.com"))
# Losses as `lost_ratings` reads them (ratings of any kind), window ends, the domains a
# window's counts call wholly lost (one may have no loss), and list lengths.
_LOSSES = st.lists(
    st.tuples(
        _NAMES,
        st.integers(0, 30).map(lambda h: to_db(at(h))),
        st.one_of(st.none(), st.integers(-3, 100), st.sampled_from((0.0, -0.0, 50.0, 99.5))),
    ),
    max_size=40,
)
_HOURS = st.integers(0, 30)
_WHOLLY_LOST = st.frozensets(st.one_of(_NAMES, st.just("none.com")))
_LIMITS = st.integers(-1, 7)


@given(_LOSSES, _HOURS, _HOURS, _WHOLLY_LOST, _LIMITS)
def test_ranking_a_list_in_rank_order_follows_the_definition(
    ratings: list[LostRating], start: int, end: int, lost: frozenset[str], limit: int
) -> None:
    """Walking rows in RANK_ORDER, as SQLite sorts them, gives each domain's best rating
    inside the window, the wholly lost first, whatever the rows outside the window, the
    names' scripts and case, and however many are asked."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE r (refdomain TEXT NOT NULL, at TEXT NOT NULL, rating REAL)")
    conn.executemany("INSERT INTO r VALUES (?, ?, ?)", ratings)
    ordered = conn.execute(
        "SELECT refdomain, at, rating FROM r"
        f" ORDER BY {RANK_ORDER.format(rating='rating', refdomain='refdomain')}"
    ).fetchall()
    conn.close()
    assert ordered == sorted(ordered, key=rank_key)
    t0, t1 = to_db(at(start)), to_db(at(end))
    assert rank_lost_domains(ordered, at(start), at(end), lost, limit) == reference_rank(
        ordered, t0, t1, lost, limit
    )


@given(_LOSSES, _HOURS, _HOURS, _WHOLLY_LOST, _LIMITS, st.integers(0, 40))
# Wholly lost domains in the head and past it; a head with exactly the others needed, and
# one short of them.
@example(
    [("a.com", to_db(at(5)), 90.0), ("z.com", to_db(at(5)), 80.0), ("b.com", to_db(at(5)), 9.0)],
    0, 10, frozenset({"a.com", "b.com"}), 3, 2,
)  # fmt: skip
@example(
    [("a.com", to_db(at(5)), 90.0), ("z.com", to_db(at(5)), 80.0), ("y.com", to_db(at(5)), 9.0)],
    0, 10, frozenset({"a.com"}), 3, 3,
)  # fmt: skip
@example(
    [("a.com", to_db(at(5)), 90.0), ("z.com", to_db(at(5)), 80.0), ("y.com", to_db(at(5)), 9.0)],
    0, 10, frozenset({"a.com"}), 3, 2,
)  # fmt: skip
def test_a_list_from_the_head_of_the_losses_is_the_list_from_all_of_them(
    ratings: list[LostRating],
    start: int,
    end: int,
    lost: frozenset[str],
    limit: int,
    cut: int,
) -> None:
    """Ranked from the first `cut` rows only, with the wholly lost domains past them ranked
    from their own rows, a list is the one all the rows give; the head says when it is too
    short, and only then."""
    ordered = sorted(ratings, key=rank_key)
    head = ordered[:cut]
    t0, t1 = to_db(at(start)), to_db(at(end))
    want = reference_rank(ordered, t0, t1, lost, limit)
    asked: list[list[str]] = []

    def rank_apart(domains: list[str]) -> list[tuple[str, float | None]]:
        asked.append(domains)
        theirs = [r for r in ordered if r[0] in domains]
        return rank_lost_domains(theirs, at(start), at(end), frozenset(domains), limit)

    got = rank_lost_domains_head(head, at(start), at(end), lost, limit, rank_apart)
    # Only wholly lost domains the head did not reach are ranked apart.
    assert all(set(domains) <= lost for domains in asked)
    assert all(r[0] not in domains for domains in asked for r in head if t0 < r[1] <= t1)
    in_window = {r[0] for r in ordered if t0 < r[1] <= t1}
    others_in_head = {r[0] for r in head if t0 < r[1] <= t1} - lost
    if lost <= in_window and limit - len(lost) <= len(others_in_head):
        # The head holds enough other domains to fill the list after every wholly lost one.
        assert got == want
    elif got is not None:
        assert got == want
    else:
        # Too short only when rows lie past the head (they could name more domains), when
        # the list holds fewer domains than asked for (the head cannot know it is all), or
        # when a domain called wholly lost has no loss in the window (counts never say so).
        assert cut < len(ordered) or len(want) < limit or not lost <= in_window


def test_wholly_lost_domains_past_the_head_fill_the_list_without_reading_the_rest() -> None:
    head: list[LostRating] = [("x.com", to_db(at(5)), 90.0), ("y.com", to_db(at(5)), 80.0)]
    theirs: list[LostRating] = [
        ("a.com", to_db(at(5)), 10.0),
        ("b.com", to_db(at(5)), 9.0),
        ("c.com", to_db(at(5)), 8.0),
    ]
    asked: list[list[str]] = []

    def rank_apart(domains: list[str]) -> list[tuple[str, float | None]]:
        asked.append(domains)
        return rank_lost_domains(theirs, at(0), at(10), frozenset(domains), 2)

    lost = frozenset({"a.com", "b.com", "c.com"})
    got = rank_lost_domains_head(head, at(0), at(10), lost, 2, rank_apart)
    assert got == [("a.com", 10.0), ("b.com", 9.0)]
    assert asked == [["a.com", "b.com", "c.com"]]


def _rules(n: int) -> list[ThresholdRule]:
    """n threshold rules over four windows and four filters, every one firing."""
    filters: list[dict[str, object]] = [
        {},
        {"dofollow_only": True},
        {"min_domain_rating": 50},
        {"watch_domains": ["alpha.com"]},
    ]
    return [
        ThresholdRule.from_file(
            f"rule-{i}",
            {
                "kind": "threshold",
                "metric": "lost_links",
                "window": ["1d", "3d", "7d", "10d"][i % 4],
                "op": ">=",
                "value": 0,
                "notify": ["console"],
                **filters[(i // 4) % 4],
            },
        )
        for i in range(n)
    ]


def write_baselined_ledger(store: Store, links: list[LinkHistory]) -> int:
    """`write_ledger`, with the baseline snapshot a rule's window needs to have data."""
    site_id = write_ledger(store, links)
    store.conn.execute(
        """INSERT INTO snapshots (site_id, source, taken_at, status, created_at)
        VALUES (?, 'exports', ?, 'baseline', ?)""",
        (site_id, to_db(T0), to_db(T0)),
    )
    return site_id


def record_moved_reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int | None, int | None]]:
    """(rows asked, rows got; None: could not say) of each read of a pass's kept losses."""
    reads_of: list[tuple[int | None, int | None]] = []
    original = MovedLinks.lost_ratings

    def recording(
        self: MovedLinks,
        start: datetime,
        end: datetime,
        link_filter: LinkFilter | None,
        rows: int | None = None,
    ) -> list[LostRating] | None:
        got = original(self, start, end, link_filter, rows)
        reads_of.append((rows, None if got is None else len(got)))
        return got

    monkeypatch.setattr(MovedLinks, "lost_ratings", recording)
    return reads_of


def assert_lists_are_the_lists_alone(
    store: Store, site_id: int, rules: list[ThresholdRule], book: MemoryAlertBook, limit: int
) -> None:
    """Each rule's told list, wholly lost flags included, is its window's list read alone."""
    now = at(24 * 10)
    for rule, told in zip(rules, book.told, strict=True):
        want = reference_window(
            reference_rows(store, site_id, rule.link_filter), now - rule.window, now
        )
        alone = lost_domains(
            store.conn, site_id, now - rule.window, now, want.domains_lost, limit, rule.link_filter
        )
        # The same domains in the same order, each shown by the same (matching) link.
        assert [LostDomain(**d) for d in told.message["lost_domains"]] == alone, rule.name


def test_twenty_rules_are_one_pass_per_site_and_their_lists_follow_their_counts(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    links = [
        LinkHistory(i % 4, i % 3 == 0, i % 4, i % 3, i % 5 == 0, [None, 50.0, 90.0][i % 3], None,
                    ((24 * (i % 9), "missing", None), (24 * (i % 9) + 24, "lost", None)))
        for i in range(40)
    ]  # fmt: skip
    site_id = write_baselined_ledger(store, links)
    conn = store.conn
    passes: list[int] = []
    read_from_links: list[object] = []

    def counting(
        c: sqlite3.Connection, site: int, asked: Sequence[WindowSpec]
    ) -> tuple[dict[WindowSpec, WindowCounts], MovedLinks | None]:
        passes.append(len(asked))
        return window_counts_kept(c, site, asked)

    def from_links(*args: Any) -> list[LostRating]:
        read_from_links.append(args)
        return lost_ratings(*args)

    shown_reads: list[tuple[LinkFilter | None, tuple[str, ...]]] = []

    def showing(*args: Any) -> list[LostLink]:
        shown_reads.append((args[5], tuple(args[4])))
        return lost_links_in(*args)

    monkeypatch.setattr("alerts.metrics.window_counts_kept", counting)
    monkeypatch.setattr("alerts.rules.context.lost_ratings", from_links)
    monkeypatch.setattr("alerts.rules.context.lost_links_in", showing)
    now = at(24 * 10)
    rules = _rules(20)
    ctx = EvaluationContext(store, now, now, [SITE], [SITE])
    book = MemoryAlertBook()
    fired = evaluate(store, rules, ctx, book)
    # One pass for the site: 16 distinct (window, filter) pairs, the rest shared; the
    # lost-domain lists read their losses from its moved links, not the links again.
    assert passes == [16]
    assert read_from_links == []
    # The lists of one filter share their domains' links, each domain's read once over the
    # longest window: fewer reads than lists, and every list still the window's own.
    filters = {r.link_filter or None for r in rules}
    assert len(shown_reads) < len(rules)
    for f in filters:
        read = [d for g, domains in shown_reads if g == f for d in domains]
        assert read and len(read) == len(set(read)), f
    assert_lists_are_the_lists_alone(store, site_id, rules, book, 10)
    assert [t.state for t in fired] == ["firing"] * 20
    for rule, told in zip(rules, book.told, strict=True):
        rows = reference_rows(store, site_id, rule.link_filter)
        want = reference_window(rows, now - rule.window, now)
        assert told.message["value"] == want.lost_links
        listed = told.message["lost_domains"]
        assert {d["refdomain"] for d in listed if d["domain_lost"]} == set(want.domains_lost)
        # The engine's list is the window's own, as read alone.
        alone = lost_domains(
            conn, site_id, now - rule.window, now, want.domains_lost, 10, rule.link_filter
        )
        assert [d["refdomain"] for d in listed] == [d.refdomain for d in alone]
        m = ctx.metrics(SITE, rule.window, link_filter=rule.link_filter)
        assert m == metrics_of(SITE, rule.window, now, want)


def test_a_line_shows_the_strongest_link_lost_in_the_window_as_its_latest_loss_there(
    store: Store,
) -> None:
    """A domain's line: its strongest link lost in (start, end] (a loss at the end itself
    counts, one at the start does not), with that link's target and anchor and the reason
    of its latest loss there; the same from a list asked outside a prepared pass, and
    from lists of a shorter and a longer window asked after it."""
    strong = (
        (24, "lost", "at the start"),
        (30, "restored", "lost"),
        (40, "lost", "removed"),
        (50, "restored", "lost"),
        (72, "lost", "dropped"),
    )
    links = [
        LinkHistory(0, False, 0, 2, False, 90.0, None, strong),
        LinkHistory(0, False, 1, 1, False, 50.0, None, ((48, "lost", "removed"),)),
        LinkHistory(1, False, 0, 0, False, 10.0, None, ((60, "lost", "noindex"),)),
    ]
    site_id = write_baselined_ledger(store, links)
    store.conn.execute("UPDATE links SET anchor = 'anchor ' || link_key")
    now = at(72)
    want = {
        "alpha.com": ("https://www.alpha.com/page0-0", f"https://{SITE}/p2", "anchor 0", "dropped"),
        "beta.org": ("https://www.beta.org/page0-2", f"https://{SITE}/p0", "anchor 2", "noindex"),
    }

    def lines(listed: Sequence[LostDomain]) -> dict[str, tuple[str, str, str | None, str | None]]:
        return {d.refdomain: (d.url_from, d.url_to, d.anchor, d.reason) for d in listed}

    assert lines(lost_domains(store.conn, site_id, at(24), now, frozenset(), 10)) == want
    ctx = EvaluationContext(store, now, now, [SITE], [SITE])
    assert lines(ctx.lost_domains(SITE, timedelta(hours=48), None, 10)) == want
    # A shorter window, from the links already read: alpha.com's loss at the end alone.
    shorter = lines(ctx.lost_domains(SITE, timedelta(hours=20), None, 10))
    assert shorter == {"alpha.com": want["alpha.com"], "beta.org": want["beta.org"]}
    # A longer one reads again: alpha.com's loss at 24 hours is inside it now.
    longer = lines(ctx.lost_domains(SITE, timedelta(hours=60), None, 10))
    assert longer == want
    only_end = lines(ctx.lost_domains(SITE, timedelta(hours=1), None, 10))
    assert only_end == {"alpha.com": want["alpha.com"]}


def test_a_longer_list_after_a_shorter_one_reads_the_losses_before_it(store: Store) -> None:
    """Outside a prepared pass, a list of a window longer than the links read for an
    earlier, shorter one reads them again: alpha.com's stronger link, lost before the
    shorter window, is the longer list's line (found by the reviewer of this change)."""
    links = [
        LinkHistory(0, False, 0, 0, False, 50.0, None, ((60, "lost", "gone"),)),
        LinkHistory(0, False, 1, 0, False, 95.0, None, ((30, "lost", "earlier"),)),
    ]
    site_id = write_baselined_ledger(store, links)
    now = at(72)
    ctx = EvaluationContext(store, now, now, [SITE], [SITE])
    short = ctx.lost_domains(SITE, timedelta(hours=20), None, 10)
    assert [d.reason for d in short] == ["gone"]
    longer = ctx.lost_domains(SITE, timedelta(hours=60), None, 10)
    counts = ctx.window_counts(SITE, timedelta(hours=60))
    assert counts is not None
    alone = lost_domains(store.conn, site_id, at(12), now, counts.domains_lost, 10)
    assert [d.reason for d in alone] == ["earlier"]
    assert longer == alone


def test_a_line_of_links_from_one_page_is_its_first_target_at_its_latest_loss(
    store: Store,
) -> None:
    """Two links of alpha.com from one page, rated alike: the line is the first target's
    in order (/a, though /b was stored first), with the reason of its latest loss in the
    window."""
    conn = store.conn
    site_id = store.ensure_site(SITE, "own")

    def link(key: int, url_to: str, losses: list[tuple[int, str, str | None]]) -> None:
        lid = conn.execute(
            """INSERT INTO links (site_id, link_key, url_from, url_to, refdomain,
                   domain_rating, state, seen_by, anchor)
            VALUES (?, ?, 'https://www.alpha.com/p', ?, 'alpha.com', 50.0, 'lost', 0, ?)""",
            (site_id, key, url_to, url_to),
        ).lastrowid
        for t, kind, reason in losses:
            conn.execute(
                """INSERT INTO link_events (snapshot_id, site_id, link_id, kind, reason, at)
                VALUES (0, ?, ?, ?, ?, ?)""",
                (site_id, lid, kind, reason, to_db(at(t))),
            )

    link(0, f"https://{SITE}/b", [(5, "lost", "gone")])
    link(
        1,
        f"https://{SITE}/a",
        [(10, "lost", "gone"), (20, "restored", "lost"), (30, "lost", "404")],
    )
    (line,) = lost_domains(conn, site_id, at(0), at(40), frozenset(), 10)
    assert (line.url_to, line.reason) == (f"https://{SITE}/a", "404")


@pytest.mark.parametrize("stale", [False, True])
@pytest.mark.parametrize("limit", [1, 2, 3])
def test_short_lists_read_the_strongest_losses_first_and_are_the_lists_alone(
    store: Store, monkeypatch: pytest.MonkeyPatch, limit: int, stale: bool
) -> None:
    """A list of a few domains reads only the strongest losses of the site (more when a
    short window needs them, all when that is not enough), and is the window's own list;
    also read from the links, when the pass's moved links cannot say (the database was
    written since, say)."""
    rating = [None, 50.0, 90.0, 20.0]
    # alpha.com keeps its nofollow links and beta.org its weak ones; the others lose all:
    # each filter has its own wholly lost domains.
    kept = {i for i in range(90) if i % 4 == 0 and i % 5 == 0} | {
        i for i in range(90) if i % 4 == 1 and rating[i // 4 % 4] in (None, 20.0)
    }

    # gamma.co.uk's nofollow links rate highest, its followed ones lowest: it heads the
    # lists of all links and trails those of followed links.
    def rated(i: int) -> float | None:
        if i % 4 == 2:
            return 95.0 if i % 5 == 0 else 10.0
        return rating[i // 4 % 4]

    links = [
        LinkHistory(i % 4, i % 3 == 0, i % 7, i % 3, i % 5 == 0, rated(i), None,
                    () if i in kept else
                    ((24 * (i % 10), "missing", None), (24 * (i % 10) + 24, "lost", None)))
        for i in range(90)
    ]  # fmt: skip
    site_id = write_baselined_ledger(store, links)
    heads: list[tuple[int | None, int | None]] = []
    if stale:

        def from_links(*args: Any, **kwargs: Any) -> list[LostRating]:
            got = lost_ratings(*args, **kwargs)
            heads.append((kwargs.get("limit"), len(got)))
            return got

        monkeypatch.setattr(MovedLinks, "lost_ratings", lambda *args: None)
        monkeypatch.setattr("alerts.rules.context.lost_ratings", from_links)
    else:
        heads = record_moved_reads(monkeypatch)
    monkeypatch.setattr("alerts.engine.EVIDENCE_LIMIT", limit)
    now = at(24 * 10)
    rules = _rules(20)
    book = MemoryAlertBook()
    fired = evaluate(store, rules, EvaluationContext(store, now, now, [SITE], [SITE]), book)
    assert [t.state for t in fired] == ["firing"] * 20
    # Some list was made from a head cut short of all the losses (from the links, a loss
    # row is a domain's best at an instant: fewer rows, a longer list needs them all).
    assert any(rows is not None and n == rows for rows, n in heads) or stale
    assert_lists_are_the_lists_alone(store, site_id, rules, book, limit)


def test_lists_from_a_head_rank_weak_wholly_lost_domains_apart_and_read_on_when_short(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gamma.co.uk and delta.net, rated lowest, lose every link: past the head, they are
    ranked from their own (matching) losses; a list the head cannot fill reads every loss;
    both as the lists alone."""

    def lost_on(day: int) -> tuple[tuple[int, str, str | None], ...]:
        return ((24 * day, "missing", None), (24 * day + 24, "lost", None))

    # gamma.co.uk's nofollow links rate above delta.net's, its followed ones below: the two
    # rank one way among all links and the other way among followed links.
    def rating(i: int) -> float:
        if i % 4 == 2:
            return 6.0 if i % 8 == 2 else 4.0
        return 5.0 if i % 4 == 3 else [90.0, 80.0, 70.0][i % 3]

    links = [
        LinkHistory(i % 4, i % 2 == 0, i % 7, i % 3, i % 8 in (1, 2), rating(i), None,
                    () if i % 4 < 2 and i < 12 else lost_on(i // 4 % 10))
        for i in range(120)
    ]  # fmt: skip
    site_id = write_baselined_ledger(store, links)
    by_domain: list[Sequence[str]] = []
    reads_of = record_moved_reads(monkeypatch)

    def from_links(*args: Any, **kwargs: Any) -> list[LostRating]:
        if kwargs.get("domains") is not None:
            by_domain.append(kwargs["domains"])
        return lost_ratings(*args, **kwargs)

    monkeypatch.setattr("alerts.rules.context.lost_ratings", from_links)
    monkeypatch.setattr("alerts.engine.EVIDENCE_LIMIT", 3)
    now = at(24 * 10)
    rules = _rules(20)
    book = MemoryAlertBook()
    evaluate(store, rules, EvaluationContext(store, now, now, [SITE], [SITE]), book)
    assert ["delta.net", "gamma.co.uk"] in by_domain
    # Heads were read; two filters' short lists then read every loss of their reach (the
    # weak domains, ranked apart, fill the others' lists without that).
    asked = [rows for rows, _ in reads_of]
    assert any(r is not None for r in asked) and asked.count(None) == 2
    assert_lists_are_the_lists_alone(store, site_id, rules, book, 3)


def test_a_filtered_list_the_head_cannot_fill_reads_every_matching_loss_alone(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """alpha.com's ten followed losses fill the head; the dofollow list needs two domains
    past it, so it reads every loss again, over its filter: beta.org, rated highest but
    nofollow, is in no read and not in the list."""
    lost = ((24 * 4, "missing", None), (24 * 5, "lost", None))
    links = [
        *(LinkHistory(0, False, i, 0, False, 90.0, None, lost) for i in range(10)),
        *(LinkHistory(1, False, i, 0, True, 95.0, None, lost) for i in range(10, 13)),
        LinkHistory(2, False, 13, 0, False, 50.0, None, lost),
        LinkHistory(3, False, 14, 0, False, 40.0, None, lost),
        # A link kept by each domain: none is wholly lost.
        *(LinkHistory(d, False, 20 + d, 0, False, 60.0, None, ()) for d in range(4)),
    ]
    site_id = write_baselined_ledger(store, links)
    reads_of = record_moved_reads(monkeypatch)
    monkeypatch.setattr("alerts.engine.EVIDENCE_LIMIT", 3)
    now = at(24 * 10)
    rules = [_rules(8)[7]]  # lost_links over 10d, followed links only
    assert rules[0].link_filter == LinkFilter(dofollow_only=True)
    book = MemoryAlertBook()
    evaluate(store, rules, EvaluationContext(store, now, now, [SITE], [SITE]), book)
    # A head of 2 x 3 + 3 rows, then every loss.
    assert [asked for asked, _ in reads_of] == [9, None]
    (told,) = book.told
    listed = [d["refdomain"] for d in told.message["lost_domains"]]
    assert listed == ["alpha.com", "gamma.co.uk", "delta.net"]
    assert_lists_are_the_lists_alone(store, site_id, rules, book, 3)
