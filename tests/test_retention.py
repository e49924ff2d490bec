"""Retention ([storage] keep): what a rule reads from the horizon on never changes.

Histories are built through the real ingest path into real SQLite files, then pruned;
every window count, lost-domain list, live count, source-health answer and known export
from the horizon on must read the same, a second pass must delete nothing, and a later
snapshot must do to the ledger what it does without retention (a link lost before the
horizon, forgotten, comes back as a new link: a counted gain either way).
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from daemon.cli import main
from daemon.scheduler import MAINTENANCE_JOB, build_scheduler
from daemon.service import Linkwatch
from daemon.settings import ConfigError, load_settings
from daemon.store import DeleteRefusedError, GuardSettings, Store
from daemon.store.reads import LinkFilter
from daemon.store.retention import (
    apply_retention,
    horizon_for,
    pruned_before,
    reach_of,
)
from daemon.timefmt import to_db
from sources.model import Backlink, RefDomain, SnapshotResult
from tests.helpers import queue_alert, write_rule, write_settings

SITE = "example.com"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
GUARDS = GuardSettings(confirm_after=2, suspect_below=0.5)
# Eight referring pages over five registrable domains, two targets each.
PAGES = (
    "https://alpha.com/p1",
    "https://blog.alpha.com/p2",
    "https://beta.org/links",
    "https://news.beta.org/x",
    "https://gamma.net/a",
    "https://delta.io/b",
    "https://eps.dev/c",
    "https://eps.dev/d",
)
TARGETS = ("https://example.com/", "https://example.com/pricing")
LINKS = [(p, t) for p in PAGES for t in TARGETS]
SERIES = (
    ("ahrefs", "ahrefs"),
    ("semrush", "semrush"),
    ("ahrefs", "ahrefs_refdomains"),
    # Search Console's sample of the links: it can add or restore links, never miss them.
    ("gsc", "gsc"),
)


def day(n: float) -> datetime:
    return T0 + n * DAY


@dataclass(frozen=True)
class Snap:
    """One poll of a series in a generated history."""

    series: int
    links: frozenset[int]
    marked_lost: frozenset[int] = frozenset()
    # A poll that failed (an error snapshot) or read a truncated export (suspect).
    failed: bool = False
    repeat: bool = False
    anchor: str = "a"
    # The rel the poll reports (None: not given), and what it adds to each link's rating
    # (None: it rates no link).
    nofollow: bool | None = False
    rating: float | None = 0.0


snaps = st.builds(
    Snap,
    series=st.sampled_from([0, 0, 0, 1, 2, 3]),
    links=st.frozensets(st.integers(0, len(LINKS) - 1), min_size=1),
    marked_lost=st.frozensets(st.integers(0, len(LINKS) - 1), max_size=3),
    failed=st.sampled_from([False] * 8 + [True]),
    repeat=st.sampled_from([False] * 6 + [True]),
    anchor=st.sampled_from(["a", "a", "b"]),
    nofollow=st.sampled_from([False, False, True, None]),
    rating=st.sampled_from([0.0, 0.0, 10.0, None]),
)


def result(s: Snap, when: datetime, n: int) -> SnapshotResult:
    """The export of a generated poll: every link listed, the marked ones as lost rows."""
    source, fmt = SERIES[s.series]
    records = [
        Backlink(
            LINKS[i][0],
            LINKS[i][1],
            anchor=s.anchor,
            nofollow=s.nofollow,
            domain_rating=None if s.rating is None else float(i) + s.rating,
        )
        for i in sorted(s.links)
    ] + [
        Backlink(LINKS[i][0], LINKS[i][1], lost=True, lost_reason="removed")
        for i in sorted(s.marked_lost - s.links)
    ]
    digest = f"{sorted(s.links)}{sorted(s.marked_lost)}{s.anchor}" if s.repeat else f"{n}"
    out = SnapshotResult(
        taken_at=when,
        records=iter(records),
        origin=f"{source}-{n}.csv",
        format=fmt,
        digest=digest,
        origin_stamp=f"stamp-{n}",
    )
    out.sample = fmt == "gsc"
    if fmt == "ahrefs_refdomains":
        # A referring-domains export: the hosts of the listed pages, with their counts.
        hosts: dict[str, int] = {}
        for i in sorted(s.links):
            host = LINKS[i][0].split("/")[2]
            hosts[host] = hosts.get(host, 0) + 1
        out.records = iter(())
        out.domain_records = iter(
            [RefDomain(h, n, float(len(s.anchor)), "Test DR") for h, n in hosts.items()]
        )
    return out


def ingest_all(store: Store, history: list[tuple[float, Snap]], first: int = 0) -> None:
    for n, (when, s) in enumerate(history, start=first):
        source = SERIES[s.series][0]
        at = day(when)
        if s.failed:
            store.record_failure(SITE, source, at, f"{source} API", "HTTP 503", at)
            continue
        store.ingest(SITE, source, result(s, at, n), GUARDS, at + timedelta(minutes=1))


def timeline(spec: list[Snap]) -> list[tuple[float, Snap]]:
    """Polls half a day apart, in order."""
    return [(i * 0.5, s) for i, s in enumerate(spec)]


def open_store(path: Path) -> Store:
    store = Store(path)
    store.ensure_site(SITE, "own")
    return store


def copy_store(store: Store, path: Path) -> Store:
    """A second database file with the same content."""
    target = sqlite3.connect(path)
    store.conn.backup(target)
    target.close()
    return Store(path)


def instants(horizon: datetime, now: datetime) -> list[datetime]:
    """Instants from the horizon to now, a third of a day apart (polls are half a day
    apart: some fall on a poll, some between), and now."""
    out, at = [], horizon
    while at < now:
        out.append(at)
        at += DAY / 3
    return [*out, now]


# Link filters read the links' rel and rating: a link that comes back must keep them.
FILTERS = (LinkFilter(dofollow_only=True), LinkFilter(min_domain_rating=5.0))


def rule_view(store: Store, horizon: datetime, now: datetime) -> dict[str, Any]:
    """Every number a rule or an alert message reads, over windows from the horizon on."""
    view: dict[str, Any] = {}
    for start in instants(horizon, now):
        view[f"has_data {start}"] = store.has_data(SITE, start)
        view[f"health {start}"] = store.source_health(SITE, start)
        for length in (DAY / 2, DAY, 3 * DAY, now - start):
            end = start + length
            if start < end <= now:
                view[f"counts {start} {end}"] = store.window_counts(SITE, start, end)
                view[f"lost {start} {end}"] = store.lost_domains(SITE, start, end, 100)
                for f in FILTERS:
                    view[f"counts {start} {end} {f}"] = store.window_counts(SITE, start, end, f)
                    view[f"lost {start} {end} {f}"] = store.lost_domains(SITE, start, end, 100, f)
    view["status"] = [(s.live_links, s.live_refdomains, s.missing_links) for s in store.status()]
    view["known"] = {src: store.known_exports(SITE, src) for src, _ in SERIES}
    view["domains"] = store.domain_listing(SITE)
    view["last poll"] = {src: store.last_poll_at(SITE, src) for src, _ in SERIES}
    return view


def alive_links(store: Store) -> dict[tuple[str, str], tuple[Any, ...]]:
    """Links not lost: their state, what a listing shows of them, and their sightings."""
    return {
        (r["url_from"], r["url_to"]): (
            r["state"],
            r["anchor"],
            r["first_seen"],
            r["last_seen"],
            tuple(sorted(str(s) for s in r["sightings"])),
        )
        for r in store.link_listing(SITE)
        if r["state"] != "lost"
    }


def later_events(store: Store, after_id: int) -> list[tuple[str, str, str, str | None, str]]:
    rows = store.conn.execute(
        "SELECT l.url_from, l.url_to, e.kind, e.reason, e.at FROM link_events e"
        " JOIN links l ON l.id = e.link_id WHERE e.snapshot_id > ? ORDER BY 1, 2, 3, 5",
        (after_id,),
    )
    return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]


def later_snapshots(store: Store, after_id: int) -> list[tuple[Any, ...]]:
    rows = store.conn.execute(
        "SELECT id, status, note, seen, listed, new + restored, missing, lost, unconfirmed"
        " FROM snapshots WHERE id > ? ORDER BY id",
        (after_id,),
    )
    return [tuple(r) for r in rows]


def states(store: Store) -> dict[tuple[str, str], str]:
    return {(r["url_from"], r["url_to"]): r["state"] for r in store.links(SITE)}


def dump(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    tables = [
        str(r[0])
        for r in store.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    return {t: store.conn.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in tables}


def _snap(series: int, links: set[int]) -> Snap:
    return Snap(series, frozenset(links), frozenset(), failed=False, repeat=False, anchor="a")


@given(
    history=st.lists(snaps, min_size=2, max_size=24),
    later=st.lists(snaps, min_size=1, max_size=3),
    keep_days=st.integers(1, 12),
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# A link lost and forgotten, then listed again by a new series' baseline or by a sample:
# a gain, as its restore would have been (found by Hypothesis).
@example(history=[_snap(0, {0, 1}), *[_snap(0, {0})] * 4], later=[_snap(1, {0, 1})], keep_days=1)
@example(history=[_snap(0, {0, 1}), *[_snap(0, {0})] * 4], later=[_snap(3, {0, 1})], keep_days=1)
# ... with the rel and rating it had where the listing does not replace them.
@example(
    history=[_snap(0, {0, 1}), *[_snap(0, {0})] * 4],
    later=[Snap(1, frozenset({0, 1}), nofollow=True)],
    keep_days=1,
)
@example(
    history=[_snap(0, {0, 1}), *[_snap(0, {0})] * 4],
    later=[Snap(3, frozenset({0, 1}), rating=None), Snap(0, frozenset({0, 1}), rating=None)],
    keep_days=1,
)
# ... and one that came back may be lost again (marked lost by the provider).
@example(
    history=[_snap(0, {0, 1}), *[_snap(0, {0})] * 4],
    later=[_snap(0, {0, 1}), Snap(0, frozenset({0}), marked_lost=frozenset({1}))],
    keep_days=1,
)
# ... with a changed anchor in a later snapshot (a changed event, the new anchor), and a
# sample's other rel (which a sample never changes).
@example(
    history=[_snap(0, {0, 1}), *[_snap(0, {0})] * 4],
    later=[Snap(0, frozenset({0, 1}), anchor="b")],
    keep_days=1,
)
@example(
    history=[_snap(0, {0, 1}), *[_snap(0, {0})] * 4],
    later=[_snap(3, {0}), Snap(3, frozenset({0, 1}), nofollow=True)],
    keep_days=1,
)
# ... and another rating: a complete series' replaces it, a sample's never does.
@example(
    history=[_snap(0, {0, 1}), *[_snap(0, {0})] * 4],
    later=[Snap(0, frozenset({0, 1}), rating=10.0)],
    keep_days=1,
)
@example(
    history=[_snap(0, {0, 1}), *[_snap(0, {0})] * 4],
    later=[_snap(3, {0}), Snap(3, frozenset({0, 1}), rating=10.0)],
    keep_days=1,
)
def test_retention_changes_nothing_a_rule_reads_and_nothing_an_ingest_does(
    history: list[Snap], later: list[Snap], keep_days: int
) -> None:
    past = timeline(history)
    now = day(past[-1][0]) + timedelta(hours=1)
    keep = keep_days * DAY
    horizon = now - keep
    with tempfile.TemporaryDirectory() as folder:
        kept = open_store(Path(folder) / "kept.db")
        ingest_all(kept, past)
        pruned = copy_store(kept, Path(folder) / "pruned.db")
        try:
            before = rule_view(kept, horizon, now)
            lost_early = {
                key
                for key, state in states(kept).items()
                if state == "lost"
                and kept.conn.execute(
                    "SELECT lost_at < ? FROM links WHERE url_from = ? AND url_to = ?",
                    (to_db(horizon), *key),
                ).fetchone()[0]
            }
            report = apply_retention(pruned.conn, keep, now)
            assert report.horizon == horizon
            assert rule_view(pruned, horizon, now) == before
            alive = alive_links(kept)
            assert alive_links(pruned) == alive
            # Only links lost before the horizon are forgotten.
            assert set(states(kept)) - set(states(pruned)) == lost_early
            # A second pass finds nothing more to delete.
            again = dump(pruned)
            assert apply_retention(pruned.conn, keep, now).total == 0
            assert dump(pruned) == again

            # Later snapshots do the same to both ledgers.
            last_id = int(kept.conn.execute("SELECT max(id) FROM snapshots").fetchone()[0])
            future = [(past[-1][0] + 1 + i, s) for i, s in enumerate(later)]
            ingest_all(kept, future, first=len(past))
            ingest_all(pruned, future, first=len(past))
            end = day(future[-1][0]) + timedelta(hours=1)
            assert rule_view(pruned, horizon, end) == rule_view(kept, horizon, end)
            # A forgotten link that comes back is restored, as a kept one would be, with
            # the anchor, rel and rating it had where the listing does not replace them.
            assert later_events(pruned, last_id) == later_events(kept, last_id)
            assert later_snapshots(pruned, last_id) == later_snapshots(kept, last_id)
            # The forgotten links that never came back are the only ones it no longer lists
            # (one that came back may be lost again since).
            returned = lost_early & {(f, t) for f, t, *_ in later_events(kept, last_id)}
            assert states(pruned) == {
                k: v for k, v in states(kept).items() if k not in lost_early - returned
            }
            # Its sightings start afresh (the older ones went with it); all else is alike.
            shown = {k: v[:2] for k, v in alive_links(kept).items()}
            assert {k: v[:2] for k, v in alive_links(pruned).items()} == shown
            assert {k: v for k, v in alive_links(pruned).items() if k not in returned} == {
                k: v for k, v in alive_links(kept).items() if k not in returned
            }
        finally:
            kept.close()
            pruned.close()


@pytest.mark.parametrize("taken", [0.25, 1.0], ids=["taken before the drop", "expired"])
def test_a_sample_that_could_not_restore_a_link_leaves_it_forgotten(
    tmp_path: Path, taken: float
) -> None:
    # Link 1 is dropped at day 0.5 and lost; keep = 1 day forgets it. A Search Console
    # sample then lists it: taken before the drop, or no longer vouching by the time it
    # is read (a one-day sample_ttl), it restores nothing in the kept ledger.
    guards = GuardSettings(confirm_after=2, sample_ttl=DAY)
    past = timeline([_snap(0, {0, 1}), *[_snap(0, {0})] * 10])
    now = day(past[-1][0]) + timedelta(hours=1)
    kept = open_store(tmp_path / "kept.db")
    for n, (when, snap) in enumerate(past):
        kept.ingest(SITE, "ahrefs", result(snap, day(when), n), guards, day(when))
    pruned = copy_store(kept, tmp_path / "pruned.db")
    try:
        apply_retention(pruned.conn, DAY, now)
        assert pruned.conn.execute("SELECT count(*) FROM forgotten_links").fetchone()[0] == 1
        last_id = int(kept.conn.execute("SELECT max(id) FROM snapshots").fetchone()[0])
        for store in (kept, pruned):
            sample = result(_snap(3, {0, 1}), day(taken), len(past))
            store.ingest(SITE, "gsc", sample, guards, now + timedelta(minutes=1))
        assert later_events(kept, last_id) == later_events(pruned, last_id) == []
        assert later_snapshots(pruned, last_id) == later_snapshots(kept, last_id)
        assert [s.live_links for s in pruned.status()] == [s.live_links for s in kept.status()]
        assert pruned.conn.execute("SELECT count(*) FROM forgotten_links").fetchone()[0] == 1
    finally:
        kept.close()
        pruned.close()


def test_a_forgotten_link_comes_back_under_the_urls_it_was_first_seen_with(
    tmp_path: Path,
) -> None:
    first = ("https://alpha.com/p1", "https://example.com/")
    # The same link (the same key) as another export spells it.
    again = ("https://ALPHA.com:443/p1#x", "https://example.com/")
    other = ("https://beta.org/links", "https://example.com/")

    def export(n: int, links: list[tuple[str, str]]) -> SnapshotResult:
        rows = [Backlink(f, t, anchor="a") for f, t in links]
        at = day(n * 0.5)
        return SnapshotResult(
            taken_at=at,
            records=iter(rows),
            origin=f"ahrefs-{n}.csv",
            format="ahrefs",
            digest=f"d{n}",
            origin_stamp=f"s{n}",
        )

    kept = open_store(tmp_path / "kept.db")
    for n, links in enumerate([[first, other], *[[other]] * 10]):
        snap = export(n, links)
        kept.ingest(SITE, "ahrefs", snap, GUARDS, snap.taken_at + timedelta(minutes=1))
    pruned = copy_store(kept, tmp_path / "pruned.db")
    try:
        apply_retention(pruned.conn, DAY, day(5.5))
        assert pruned.conn.execute("SELECT count(*) FROM forgotten_links").fetchone()[0] == 1
        for store in (kept, pruned):
            snap = export(13, [again, other])
            store.ingest(SITE, "ahrefs", snap, GUARDS, snap.taken_at + timedelta(minutes=1))
        urls = {(r["url_from"], r["url_to"]): r["state"] for r in pruned.link_listing(SITE)}
        assert urls == {first: "live", other: "live"}
        assert later_events(pruned, 11) == later_events(kept, 11) != []
    finally:
        kept.close()
        pruned.close()


def _event_order(e: tuple[str, str, str, str | None, str]) -> tuple[str, str, str, str]:
    return (e[0], e[1], e[2], e[4])


# --- concrete histories ------------------------------------------------------------------


def long_history(store: Store, days: int = 40) -> None:
    """A month and more of daily polls: churn, losses, a failed poll now and then."""
    spec = []
    for d in range(days):
        links = frozenset(i for i in range(len(LINKS)) if (i * 7 + d) % 11 != 0)
        lost = frozenset({d % len(LINKS)}) if d % 5 == 0 else frozenset()
        spec.append(Snap(0, links, lost, failed=d % 9 == 4, anchor="ab"[d // 10 % 2]))
    ingest_all(store, [(float(d), s) for d, s in enumerate(spec)])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "linkwatch.db")
    yield s
    s.close()


def test_keep_all_deletes_nothing(store: Store) -> None:
    long_history(store)
    before = dump(store)
    report = store.maintain(None, day(40), dry_run=False)
    assert report.retention.horizon is None and report.retention.total == 0
    after = dump(store)
    assert after == before


def test_a_long_history_shrinks_and_a_dry_run_changes_nothing(store: Store) -> None:
    long_history(store, days=60)
    before = dump(store)
    dry = store.maintain(10 * DAY, day(60), dry_run=True)
    assert dry.retention.total > 0 and dry.retention.dry_run
    assert dump(store) == before
    # A dry run reports the file as it is: not analyzed, not vacuumed, the same size.
    assert (dry.vacuumed, dry.analyzed, dry.size_after) == (False, False, dry.size_before)
    done = store.maintain(10 * DAY, day(60), vacuum_now=True)
    assert done.retention.deleted == dry.retention.deleted
    assert done.vacuumed and done.size_after < done.size_before
    events_left = store.conn.execute(
        "SELECT count(*) FROM link_events WHERE at < ?", (to_db(day(50)),)
    ).fetchone()[0]
    assert events_left < len(before["link_events"]) / 2
    assert pruned_before(store.conn, store.site_id(SITE)) == day(50)


def test_maintenance_keeps_what_the_rules_read_further_back_than_keep(store: Store) -> None:
    long_history(store, days=60)
    done = store.maintain(10 * DAY, day(60), reach=30 * DAY)
    assert done.retention.horizon == day(30)
    assert pruned_before(store.conn, store.site_id(SITE)) == day(30)


def test_the_daily_run_vacuums_only_when_asked_or_worth_it(store: Store) -> None:
    long_history(store, days=60)

    def free_pages() -> int:
        return int(store.conn.execute("PRAGMA freelist_count").fetchone()[0])

    kept = store.maintain(10 * DAY, day(60), vacuum_now=False)
    pages = int(store.conn.execute("PRAGMA page_count").fetchone()[0])
    # The free pages retention left are there, and measured as the share they are.
    assert free_pages() > 0 and not kept.vacuumed
    assert (
        abs(store.maintain(None, day(60), vacuum_now=False).free_before - free_pages() / pages)
        < 1e-9
    )
    done = store.maintain(None, day(60), vacuum_now=True)
    assert done.vacuumed and free_pages() == 0


def test_a_rule_that_reads_further_back_moves_the_horizon(tmp_path: Path) -> None:
    class Spike:
        window = 7 * DAY
        baseline_windows = 4

    class Threshold:
        window = 30 * DAY

    assert reach_of([Spike(), Threshold(), object()]) == 35 * DAY
    now = day(100)
    assert horizon_for(10 * DAY, now, reach_of([Spike()])) == now - 35 * DAY
    assert horizon_for(60 * DAY, now, reach_of([Spike()])) == now - 60 * DAY
    assert horizon_for(None, now, 35 * DAY) is None


def test_deleting_a_snapshot_that_needs_pruned_history_is_refused(store: Store) -> None:
    long_history(store, days=30)
    store.maintain(10 * DAY, day(30))
    horizon = day(20)
    rows = store.conn.execute("SELECT id, taken_at, status FROM snapshots ORDER BY id").fetchall()
    early = next(r[0] for r in rows if r[1] < to_db(horizon))
    accepted = next(r[0] for r in rows if r[1] > to_db(horizon) and r[2] == "complete")
    failed = next(r[0] for r in rows if r[1] > to_db(horizon) and r[2] == "error")
    before = dump(store)
    with pytest.raises(DeleteRefusedError, match=r"taken before .*\[storage\] keep"):
        store.delete_snapshot(early, day(30))
    with pytest.raises(DeleteRefusedError, match=r"rebuilding .*\[storage\] keep pruned"):
        store.delete_snapshot(accepted, day(30))
    assert dump(store) == before
    # A failed poll after the horizon changed nothing: it can still go.
    assert not store.delete_snapshot(failed, day(30)).rebuilt


def test_alert_state_and_undelivered_messages_are_never_pruned(store: Store) -> None:
    long_history(store, days=30)
    old, recent = day(2), day(28)
    message = {"rule": "loss", "site": SITE, "transition": "firing"}
    assert queue_alert(store, "fp-old", SITE, ["slack", "mail"], {**message, "at": to_db(old)}, old)
    assert queue_alert(store, "fp-new", SITE, ["slack"], {**message, "at": to_db(recent)}, recent)
    ids = [r[0] for r in store.conn.execute("SELECT id FROM outbox ORDER BY id")]
    store.mark_sent(ids[0], old)  # fp-old to slack: delivered long ago
    # fp-old to mail is still pending: owed, whatever its age.
    store.save_thread("slack", "fp-old", to_db(old), "ts-1")
    report = store.maintain(10 * DAY, day(30))
    assert report.retention.deleted["outbox"] == 1
    left = [r[0] for r in store.conn.execute("SELECT id FROM outbox ORDER BY id")]
    assert left == ids[1:]
    # Both alerts keep their state and their latest transition.
    assert {a.fingerprint for a in store.alert_states()} == {"fp-old", "fp-new"}
    assert {h[5] for h in store.alert_history("fp-old")} == {old}
    # The firing alert's thread stays: its resolution replies in it.
    assert store.threads("slack", [("fp-old", to_db(old))])


def test_pruned_files_stay_known_to_a_csv_dir_source(store: Store) -> None:
    long_history(store, days=30)
    known = store.known_exports(SITE, "ahrefs")
    assert store.maintain(10 * DAY, day(30)).retention.deleted["snapshots"] > 0
    assert store.known_exports(SITE, "ahrefs") == known


# --- settings, the daemon's job, the command ----------------------------------------------


def _settings_with(tmp_path: Path, storage: str) -> Path:
    path = write_settings(tmp_path)
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace(
            '[storage]\npath = "linkwatch.db"\n', f'[storage]\npath = "linkwatch.db"\n{storage}'
        ),
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("written", "problem"),
    [
        ('keep = "3d"', "between 7d and 10y"),
        ('keep = "11y"', "between 7d and 10y"),
        ('keep = "forever"', "expected `all` or a duration"),
        ("keep = true", "got true"),
        ('keep = "-2y"', "expected `all` or a duration"),
        ('maintenance_at = "25:00"', "time of day"),
        ('maintenance_at = "3pm"', "time of day"),
    ],
)
def test_bad_storage_values_exit_2_naming_the_key(
    tmp_path: Path, written: str, problem: str
) -> None:
    path = _settings_with(tmp_path, written + "\n")
    key = "storage." + written.split(" ")[0]
    with pytest.raises(ConfigError, match=rf"{path}: {key}: .*{problem}"):
        load_settings(path)
    res = CliRunner().invoke(main, ["-c", str(path), "compact", "--dry-run"])
    assert res.exit_code == 2
    assert f"{key}: " in res.output and "Traceback" not in res.output


@pytest.mark.parametrize(
    ("written", "keep"),
    [
        ("", None),
        ('keep = "all"', None),
        ('keep = "2y"', 730 * DAY),
        ('keep = "400d"', 400 * DAY),
        ('keep = "1.5y"', 547.5 * DAY),
        ('keep = "26w"', 182 * DAY),
    ],
)
def test_keep_values(tmp_path: Path, written: str, keep: timedelta | None) -> None:
    storage = load_settings(_settings_with(tmp_path, written + "\n")).storage
    assert storage.keep == keep
    assert storage.maintenance_at == time(3, 30)


def test_the_daemon_runs_maintenance_daily_at_the_quiet_time(tmp_path: Path) -> None:
    path = _settings_with(tmp_path, 'keep = "10d"\nmaintenance_at = "04:15"\n')
    write_rule(
        tmp_path,
        "loss",
        'kind = "threshold"\nmetric = "lost_links"\nwindow = "3d"\nop = ">="\nvalue = 1\n'
        'notify = ["console"]\n',
    )
    app = Linkwatch.open(load_settings(path))
    try:
        long_history(app.store, days=30)
        sched = build_scheduler(app, day(30))
        job = sched.get_job(MAINTENANCE_JOB)
        assert job.next_run_time == day(30) + timedelta(hours=4, minutes=15)
        assert job.trigger.get_next_fire_time(None, job.next_run_time + DAY / 2) == day(
            31
        ) + timedelta(hours=4, minutes=15)
        report = app.maintain(day(30))
        assert report.retention.horizon == day(20)
        assert report.retention.total > 0 and report.retention.pruned_sites == [SITE]
        assert app.maintain(day(30)).retention.total == 0
    finally:
        app.close()


def test_compact_command_reports_what_it_deletes(tmp_path: Path) -> None:
    path = _settings_with(tmp_path, 'keep = "10d"\n')
    store = open_store(tmp_path / "linkwatch.db")
    long_history(store, days=30)
    store.close()
    res = CliRunner().invoke(main, ["-c", str(path), "compact", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "would delete" in res.output and "dry run: nothing changed" in res.output
    res = CliRunner().invoke(main, ["-c", str(path), "compact", "--keep", "all"])
    assert res.exit_code == 0, res.output
    assert "no history is pruned" in res.output
    res = CliRunner().invoke(main, ["-c", str(path), "compact"])
    assert res.exit_code == 0, res.output
    assert "rows deleted" in res.output and "MiB ->" in res.output
    res = CliRunner().invoke(main, ["-c", str(path), "compact", "--keep", "3d"])
    assert res.exit_code == 2 and "--keep: " in res.output


def test_closing_a_read_only_store_does_not_fail(tmp_path: Path) -> None:
    store = open_store(tmp_path / "linkwatch.db")
    long_history(store, days=3)
    store.close()
    reader = Store.read_only(tmp_path / "linkwatch.db")
    assert reader.window_counts(SITE, day(0), day(3)).live_links > 0
    reader.close()


def test_the_daily_run_vacuums_only_when_a_quarter_of_the_file_is_free(store: Store) -> None:
    long_history(store, days=120)
    first = store.maintain(5 * DAY, day(120))
    # Most of the history went (the keys of forgotten links stay): the pages it held are
    # free, and given back.
    assert first.free_before >= 0.25 and first.vacuumed and first.analyzed
    assert first.size_after < first.size_before
    second = store.maintain(5 * DAY, day(120))
    assert second.free_before < 0.25 and not second.vacuumed and second.analyzed


def test_an_old_export_read_again_after_pruning_is_still_a_duplicate(store: Store) -> None:
    def export(day_n: float, links: range, name: str, stamp: str) -> SnapshotResult:
        return SnapshotResult(
            taken_at=day(day_n),
            records=iter([Backlink(LINKS[i][0], LINKS[i][1], anchor="a") for i in links]),
            origin=name,
            format="ahrefs",
            digest=f"content of {name}",
            origin_stamp=stamp,
        )

    for n, (when, links, name) in enumerate(
        [(0, range(4), "first.csv"), (1, range(6), "old.csv"), (30, range(12), "new.csv")]
    ):
        store.ingest(SITE, "ahrefs", export(when, links, name, f"s{n}"), GUARDS, day(when))
    assert store.maintain(10 * DAY, day(60)).retention.deleted["snapshots"] == 1  # old.csv
    # The old file, touched since (a new stamp, dated by its new time), is read again.
    again = store.ingest(SITE, "ahrefs", export(61, range(6), "old.csv", "s9"), GUARDS, day(61))
    assert again.status == "duplicate"
    assert (again.missing, again.lost) == (0, 0)


def test_a_vacuum_while_another_process_reads_says_the_space_comes_back_later(
    store: Store,
) -> None:
    long_history(store, days=20)
    reader = sqlite3.connect(store.path)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM links").fetchone()  # a read in progress
    held = store.maintain(5 * DAY, day(20), vacuum_now=True)
    assert held.vacuumed and not held.log_emptied
    reader.execute("COMMIT")
    reader.close()
    assert store.maintain(5 * DAY, day(20), vacuum_now=True).log_emptied


def test_closing_after_writes_refreshes_statistics_and_after_reads_writes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "linkwatch.db"
    store = open_store(path)
    long_history(store, days=5)
    store.close()
    reader = sqlite3.connect(path)
    # PRAGMA optimize on close analysed the tables the ingests used.
    assert reader.execute("SELECT count(*) FROM sqlite_stat1").fetchone()[0] > 0
    reader.close()
    before = path.read_bytes()
    store = Store(path)
    assert store.window_counts(SITE, day(0), day(5)).live_links > 0
    store.close()
    assert path.read_bytes() == before


def test_a_store_can_be_closed_twice(tmp_path: Path) -> None:
    store = open_store(tmp_path / "linkwatch.db")
    long_history(store, days=2)
    store.close()
    store.close()
