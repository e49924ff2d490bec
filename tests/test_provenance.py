"""Provenance (sightings, provider metrics, lost marks), referring-domain series, and
deleting a snapshot: the ledger ends exactly as if it had never been ingested.

The property test generates timelines as tests/test_evidence_model.py does, ingests them
all into one real store and deletes one snapshot, ingests all but that snapshot into
another, and compares every row of the two ledgers that later ingests or metrics read.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from daemon.store import (
    DeleteRefusedError,
    GuardSettings,
    IngestOutcome,
    Store,
    UnknownSnapshotError,
)
from daemon.timefmt import to_db
from sources.model import Backlink, RefDomain, SnapshotResult
from tests.test_evidence_model import (
    SITES,
    Snapshot,
    Snapshots,
    Step,
    series_choices,
    steps,
)

SITE = "example.com"
T0 = datetime(2026, 3, 1, tzinfo=UTC)
GUARDS = GuardSettings()
ACCEPTED = ("baseline", "complete")


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def page(n: int) -> str:
    return f"https://ref{n}.example.org/p"


def link(n: int, **values: Any) -> Backlink:
    return Backlink(page(n), f"https://{SITE}/", **values)


def ingest(
    store: Store,
    when: float,
    records: list[Backlink],
    *,
    fmt: str = "ahrefs",
    source: str = "exports",
    origin: str | None = None,
    **kw: Any,
) -> IngestOutcome:
    result = SnapshotResult(
        taken_at=day(when),
        records=iter(records),
        origin=origin or f"{fmt}-{when}.csv",
        format=fmt,
        **kw,
    )
    return store.ingest(SITE, source, result, GUARDS, day(when))


def domains(
    store: Store, when: float, rows: list[RefDomain], site: str = SITE, **kw: Any
) -> IngestOutcome:
    result = SnapshotResult(
        taken_at=day(when),
        records=iter(()),
        domain_records=iter(rows),
        origin=f"domains-{when}.csv",
        format="ahrefs_refdomains",
        **kw,
    )
    return store.ingest(site, "exports", result, GUARDS, day(when))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "linkwatch.db")
    s.ensure_site(SITE, "own")
    yield s
    s.close()


def rows(store: Store, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in store.conn.execute(sql, args).fetchall()]


def writes_during(store: Store, action: Any) -> dict[str, int]:
    """How many rows of links and sightings `action` inserted or updated."""
    x = store.conn.execute
    x("CREATE TEMP TABLE IF NOT EXISTS writes (tbl TEXT)")
    x("DELETE FROM temp.writes")
    for table in ("links", "sightings", "lost_marks"):
        for op in ("INSERT", "UPDATE"):
            x(
                f"CREATE TEMP TRIGGER IF NOT EXISTS count_{table}_{op} AFTER {op} ON main.{table}"
                f" BEGIN INSERT INTO writes VALUES ('{table}'); END"
            )
    action()
    counted = dict(rows(store, "SELECT tbl, count(*) FROM temp.writes GROUP BY tbl"))
    return {str(k): int(v) for k, v in counted.items()}


# --- provider metrics ----------------------------------------------------------------------


def test_provider_metrics_are_kept_and_a_new_report_updates_them(store: Store) -> None:
    ingest(store, 0, [link(1, domain_rating=40.0, rating_metric="Ahrefs DR", toxicity=3.0)])
    [row] = store.links(SITE)
    assert (row["domain_rating"], row["rating_metric"], row["toxicity"]) == (40.0, "Ahrefs DR", 3.0)
    # The provider reports a new rating: kept, and it is no `changed` link event.
    out = ingest(store, 1, [link(1, domain_rating=42.0, rating_metric="Ahrefs DR", toxicity=3.0)])
    assert (out.status, out.changed) == ("complete", 0)
    [row] = store.links(SITE)
    assert (row["domain_rating"], row["toxicity"]) == (42.0, 3.0)
    assert rows(store, "SELECT kind FROM link_events") == []
    # A source that gives no metric never erases one.
    ingest(store, 2, [link(1)])
    [row] = store.links(SITE)
    assert (row["domain_rating"], row["rating_metric"], row["toxicity"]) == (42.0, "Ahrefs DR", 3.0)
    # A rating without a metric name is a rating of unknown kind, not an Ahrefs DR.
    ingest(store, 3, [link(1, domain_rating=7.0)])
    [row] = store.links(SITE)
    assert (row["domain_rating"], row["rating_metric"], row["toxicity"]) == (7.0, None, 3.0)


def test_an_unchanged_snapshot_writes_no_link_and_no_sighting(store: Store) -> None:
    profile = [
        link(n, anchor=f"a{n}", domain_rating=float(n), rating_metric="Moz DA") for n in range(50)
    ]
    ingest(store, 0, profile)
    assert writes_during(store, lambda: ingest(store, 1, profile)) == {}
    # One changed rating is one link and one sighting written (the old sighting ended).
    changed = [*profile[:49], link(49, anchor="a49", domain_rating=50.0, rating_metric="Moz DA")]
    assert writes_during(store, lambda: ingest(store, 2, changed)) == {"links": 1, "sightings": 2}


def test_rows_marked_lost_are_kept_as_intervals(store: Store) -> None:
    ingest(store, 0, [link(n) for n in range(5)])
    gone = link(4, lost=True, lost_reason="not_found")
    for when in (1, 2, 3):
        ingest(store, when, [*(link(n) for n in range(4)), gone])
    ingest(store, 4, [link(n) for n in range(4)])
    # One mark, from the first snapshot that listed it lost to the first that did not.
    assert rows(
        store,
        "SELECT m.reason, f.taken_at, e.taken_at FROM lost_marks m"
        " JOIN snapshots f ON f.id = m.first_snapshot_id"
        " JOIN snapshots e ON e.id = m.ended_snapshot_id",
    ) == [("not_found", to_db(day(1)), to_db(day(4)))]


# --- sightings -----------------------------------------------------------------------------


def test_sightings_record_which_series_saw_a_link_and_when(store: Store) -> None:
    ingest(store, 0, [link(1, domain_rating=30.0, rating_metric="Ahrefs DR"), link(2)])
    ingest(store, 1, [link(1, domain_rating=30.0, rating_metric="Ahrefs DR")])
    semrush = [link(2, toxicity=60.0), link(3)]
    ingest(store, 1.5, semrush, fmt="semrush")
    ingest(store, 2, [link(1, domain_rating=30.0, rating_metric="Ahrefs DR")])
    ingest(store, 3, semrush, fmt="semrush")
    listing = {r["url_from"]: r for r in store.link_listing(SITE)}
    one = listing[page(1)]["sightings"]
    assert one == [
        {
            "series": "exports/ahrefs",
            "coverage": "complete",
            "first_seen": day(0),
            "last_seen": day(2),  # the series' latest snapshot: it still lists the link
            "seeing": True,
            "domain_rating": 30.0,
            "rating_metric": "Ahrefs DR",
            "toxicity": None,
        }
    ]
    two = listing[page(2)]["sightings"]
    assert [(s["series"], s["first_seen"], s["last_seen"], s["seeing"]) for s in two] == [
        ("exports/ahrefs", day(0), day(0), False),  # Ahrefs dropped it on day 1
        ("exports/semrush", day(1.5), day(3), True),
    ]
    assert two[1]["toxicity"] == 60.0
    assert listing[page(2)]["state"] == "live" and listing[page(2)]["sources"] == ["exports"]
    # A sighting row is written only when a series starts or stops listing a link.
    assert rows(store, "SELECT count(*) FROM sightings") == [(4,)]


def test_a_sample_series_sightings_are_kept_too(store: Store) -> None:
    ingest(store, 0, [link(1)])
    gsc = SnapshotResult(
        taken_at=day(1),
        records=iter([Backlink(page(1), f"https://{SITE}/"), Backlink(page(7), "")]),
        origin="gsc.csv",
        format="gsc",
        sample=True,
    )
    store.ingest(SITE, "exports", gsc, GUARDS, day(1))
    listing = {(r["url_from"], r["url_to"]): r for r in store.link_listing(SITE)}
    seen = [s["series"] for s in listing[(page(1), f"https://{SITE}/")]["sightings"]]
    assert seen == ["exports/ahrefs", "exports/gsc"]
    # The page-only row is the sighting of the page's placeholder link.
    placeholder = listing[(page(7), "")]["sightings"]
    assert [(s["series"], s["coverage"]) for s in placeholder] == [("exports/gsc", "sample")]


# --- referring-domain series ---------------------------------------------------------------


def test_a_domain_snapshot_records_domains_and_never_touches_a_link(store: Store) -> None:
    ingest(store, 0, [link(1), link(2)])
    before = rows(store, "SELECT * FROM links ORDER BY id")
    first = domains(
        store,
        1,
        [
            RefDomain("WWW.Alpha.com", 3, 55.0, "Ahrefs DR"),
            RefDomain("beta.org", 1),
            RefDomain("alpha.com", 9),  # the same domain again: the first row counts
            RefDomain("gamma.net", lost=True),
        ],
    )
    assert (first.status, first.coverage, first.seen, first.listed) == ("baseline", "domains", 2, 3)
    later = domains(store, 2, [RefDomain("alpha.com", 4, 55.0, "Ahrefs DR"), RefDomain("delta.io")])
    assert (later.status, later.new, later.missing, later.restored) == ("complete", 1, 1, 0)
    assert rows(store, "SELECT * FROM links ORDER BY id") == before
    assert rows(store, "SELECT count(*) FROM link_events") == [(0,)]
    listing = {d["domain"]: d for d in store.domain_listing(SITE)}
    assert listing["alpha.com"] | {"series": "-"} == {
        "series": "-",
        "domain": "alpha.com",
        "first_seen": day(1),
        "last_seen": day(2),
        "seeing": True,
        "links": 4,
        "domain_rating": 55.0,
        "rating_metric": "Ahrefs DR",
    }
    assert (listing["beta.org"]["seeing"], listing["beta.org"]["last_seen"]) == (False, day(1))
    assert listing["delta.io"]["first_seen"] == day(2)
    # Referring domains are no link history: a site with only those has no link data.
    store.ensure_site("other.example", "competitor")
    assert domains(store, 3, [RefDomain("alpha.com")], site="other.example").status == "baseline"
    assert not store.has_data("other.example", day(9))


def test_domain_snapshots_are_judged_by_the_same_guards(store: Store) -> None:
    ten = [RefDomain(f"d{n}.example.net", 1) for n in range(10)]
    assert domains(store, 0, ten).status == "baseline"
    assert domains(store, 1, []).status == "suspect"
    assert domains(store, 2, ten[:3]).status == "suspect"
    assert domains(store, 3, ten, digest="same").status == "complete"
    assert domains(store, 3, ten, digest="same").status == "duplicate"
    bad = domains(store, 4, [*ten, RefDomain("not a host/path")])
    assert (bad.status, bad.malformed) == ("partial", 1)
    assert "not a host name" in bad.examples[0]
    with pytest.raises(ValueError, match="in time order"):
        domains(store, 1, ten)
    # The partial and suspect ones changed no sighting.
    assert rows(store, "SELECT count(*) FROM domain_sightings") == [(10,)]


def test_a_format_delivers_one_kind_of_snapshot(store: Store) -> None:
    ingest(store, 0, [link(1)], fmt="mixed")
    with pytest.raises(ValueError, match="is a complete series; this snapshot is domains"):
        domains_result = SnapshotResult(
            taken_at=day(1),
            records=iter(()),
            domain_records=iter([RefDomain("a.com")]),
            format="mixed",
        )
        store.ingest(SITE, "exports", domains_result, GUARDS, day(1))


def test_what_the_fetch_tells_is_kept_in_the_note(store: Store) -> None:
    out = ingest(store, 0, [link(1)], notes=["3 pages read", "cost 30 units"])
    assert out.note == "3 pages read; cost 30 units"
    [row] = store.snapshot_listing(SITE)
    assert row.note == "3 pages read; cost 30 units"
    small = ingest(store, 1, [], notes=["1 page read"])
    assert small.note == (
        "no rows: an empty export never confirms a loss; no link state changed; 1 page read"
    )


# --- deleting a snapshot -------------------------------------------------------------------


def dump(store: Store) -> dict[str, Any]:
    """Everything later ingests, metrics and listings read, with store-specific ids
    (snapshot, link, series bits) replaced by what they name."""
    x = store.conn.execute
    origin = {int(i): str(o) for i, o in x("SELECT id, origin FROM snapshots")}
    origin[0] = "-"
    series = {
        int(i): (str(s), str(f), int(b), int(site))
        for i, s, f, b, site in x("SELECT id, source, format, bit, site_id FROM series")
    }

    def names(site: int, bits: int) -> tuple[str, ...]:
        seeing = [f"{s}/{f}" for s, f, b, si in series.values() if si == site and bits & b]
        return tuple(sorted(seeing))

    def snap(i: int | None) -> str | None:
        return None if i is None else origin[i]

    def named(i: int) -> str:
        return f"{series[i][0]}/{series[i][1]}"

    links = {}
    keys = {}
    cur = x("SELECT * FROM links")
    columns = [c[0] for c in cur.description]
    for r in cur.fetchall():
        d = dict(zip(columns, r, strict=True))
        keys[d["id"]] = (d["url_from"], d["url_to"])
        d["seen_by"] = names(d["site_id"], d["seen_by"])
        d["dropped_by"] = names(d["site_id"], d["dropped_by"])
        links[(d.pop("site_id"), d["link_key"])] = {k: v for k, v in d.items() if k != "id"}
    events = sorted(
        (keys[link_id], kind, reason or "", at, snap(snapshot_id))
        for snapshot_id, link_id, kind, reason, at in x(
            "SELECT snapshot_id, link_id, kind, reason, at FROM link_events"
        )
    )
    sightings = sorted(
        (named(s), k, f, snap(fs), snap(ls), la or "", snap(es), d, str(v))
        for s, k, f, fs, ls, la, es, d, *v in x(
            "SELECT series_id, link_key, first_at, first_snapshot_id, last_snapshot_id, last_at,"
            " ended_snapshot_id, digest, anchor, nofollow, ugc, sponsored, domain_rating,"
            " rating_metric, toxicity, first_seen FROM sightings"
        )
    )
    marks = sorted(
        (named(s), k, r or "", snap(f), snap(e))
        for s, k, r, f, e in x(
            "SELECT series_id, link_key, reason, first_snapshot_id, ended_snapshot_id"
            " FROM lost_marks"
        )
    )
    domain_sightings = sorted(
        (named(s), d, f, snap(fs), snap(ls), la or "", snap(es), g, str(v))
        for s, d, f, fs, ls, la, es, g, *v in x(
            "SELECT series_id, domain, first_at, first_snapshot_id, last_snapshot_id, last_at,"
            " ended_snapshot_id, digest, links, domain_rating, rating_metric, first_seen"
            " FROM domain_sightings"
        )
    )
    snapshots = [
        (origin[int(r[0])], *r[1:])
        for r in x(
            "SELECT id, status, listed, seen, new, missing, restored, lost, changed,"
            " unconfirmed, malformed, note, taken_at FROM snapshots ORDER BY id"
        )
    ]
    used = sorted(
        named(int(i)) + f"@{site}"
        for (i, site) in x(
            "SELECT id, site_id FROM series WHERE id IN (SELECT series_id FROM snapshots)"
        )
    )
    return {
        "links": links,
        "events": events,
        "sightings": sightings,
        "lost_marks": marks,
        "domain_sightings": domain_sightings,
        "snapshots": snapshots,
        "series": used,
    }


def _open(folder: str, name: str) -> Store:
    store = Store(Path(folder) / name)
    for site in SITES:
        store.ensure_site(site, "own")
    return store


def _status_by_origin(store: Store) -> dict[str, str]:
    return {str(o): str(s) for o, s in store.conn.execute("SELECT origin, status FROM snapshots")}


def check_delete(
    snapshots: list[Snapshot], pick: int, accepted_first: bool, guards: GuardSettings
) -> None:
    """Ingest all and delete one ≡ ingest all but that one (or the refusal was needed)."""
    with tempfile.TemporaryDirectory() as folder:
        whole, without = _open(folder, "whole.db"), _open(folder, "without.db")
        try:
            stored = [s for s in snapshots if s.ingest(whole, guards) != "out of order"]
            if not stored:
                return
            status_of = _status_by_origin(whole)
            # Most often an accepted snapshot with history after it: the hard case.
            hard = [s for s in stored[1:-1] if status_of[s.origin] == "complete"]
            choices = hard if hard and accepted_first else stored
            gone = choices[pick % len(choices)]
            [(snapshot_id, status)] = whole.conn.execute(
                "SELECT id, status FROM snapshots WHERE origin = ?", (gone.origin,)
            ).fetchall()
            event(f"delete a {gone.coverage} snapshot: {status}")
            before = dump(whole)
            kept = [s for s in stored if s is not gone]
            statuses = [s.ingest(without, guards) for s in kept]
            try:
                outcome = whole.delete_snapshot(snapshot_id, T0)
            except DeleteRefusedError:
                event("delete refused")
                assert dump(whole) == before  # nothing changed
                # The refusal was needed: without it, a later snapshot of its series that
                # was not read or not believed would have been applied.
                then, now = (
                    _status_by_origin(whole),
                    defaultdict(lambda: "out of order", _status_by_origin(without)),
                )
                later = [s.origin for s in kept if s.name == gone.name and s.site == gone.site]
                assert any(
                    (then[o] not in ACCEPTED and now[o] in ACCEPTED)
                    or (then[o] == "duplicate") != (now[o] == "duplicate")
                    for o in later
                )
                return
            event(f"rebuilt from {min(outcome.replayed, 5)}+ snapshots")
            # Without a snapshot that was applied, no stored one comes too late.
            assert "out of order" not in statuses
            assert dump(whole) == dump(without)
        finally:
            whole.close()
            without.close()


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    chosen=series_choices,
    timeline=st.lists(steps, min_size=1, max_size=16),
    pick=st.integers(0, 1000),
    accepted_first=st.sampled_from([True, True, False]),
    confirm_after=st.integers(1, 3),
    ttl_days=st.sampled_from([4, 90]),
)
def test_deleting_a_snapshot_is_as_if_it_was_never_ingested(
    chosen: list[int],
    timeline: list[Step],
    pick: int,
    accepted_first: bool,
    confirm_after: int,
    ttl_days: int,
) -> None:
    make = Snapshots(chosen)
    snapshots = [make.make(number, step) for number, step in enumerate(timeline)]
    guards = GuardSettings(confirm_after=confirm_after, sample_ttl=timedelta(days=ttl_days))
    check_delete(snapshots, pick, accepted_first, guards)


def test_deleting_an_unknown_snapshot_says_so(store: Store) -> None:
    with pytest.raises(UnknownSnapshotError):
        store.delete_snapshot(99, T0)


def test_a_deleted_export_stays_known_and_a_failed_poll_just_goes(store: Store) -> None:
    out = ingest(store, 0, [link(1)], origin="mistake.csv")
    failed = store.record_failure(SITE, "exports", day(1), "broken.csv", "unreadable", day(1))
    for snapshot_id in (out.snapshot_id, failed):
        deleted = store.delete_snapshot(snapshot_id, day(2))
        assert deleted.snapshot_id == snapshot_id
    assert store.snapshot_listing(SITE) == []
    assert list(store.links(SITE)) == []
    assert rows(store, "SELECT count(*) FROM series") == [(0,)]
    # csv_dir does not read the mistaken file again unless it changes.
    assert store.known_exports(SITE, "exports") == {("mistake.csv", None), ("broken.csv", None)}


def test_deleting_a_mistaken_import_restores_the_ledger(store: Store) -> None:
    ten = [link(n, anchor="x") for n in range(10)]
    ingest(store, 0, ten)
    ingest(store, 1, ten[:8])  # 8 and 9 go missing
    before = dump(store)
    wrong = ingest(store, 2, [link(n, anchor="wrong") for n in (*range(20, 30), *range(6))])
    assert (wrong.status, wrong.new, wrong.missing, wrong.lost, wrong.changed) == (
        "complete", 10, 2, 2, 6,
    )  # fmt: skip
    deleted = store.delete_snapshot(wrong.snapshot_id, day(3))
    assert (deleted.rebuilt, deleted.replayed, deleted.status) == (True, 2, "complete")
    assert dump(store) == before
    # History goes on as if it had never been: 8 and 9 are confirmed lost now.
    assert ingest(store, 3, ten[:8]).lost == 2


def test_a_delete_that_would_need_an_unbelieved_snapshot_is_refused(store: Store) -> None:
    ingest(store, 0, [link(n) for n in range(10)])
    big = ingest(store, 1, [link(n) for n in range(20)])
    small = ingest(store, 2, [link(n) for n in range(6)])
    assert small.status == "suspect"  # 6 rows against 20
    before = dump(store)
    with pytest.raises(DeleteRefusedError, match=rf"Delete snapshot {small.snapshot_id} first"):
        store.delete_snapshot(big.snapshot_id, day(3))
    assert dump(store) == before
    # Deleting the unbelieved one first, then the other, works.
    assert not store.delete_snapshot(small.snapshot_id, day(3)).rebuilt
    assert store.delete_snapshot(big.snapshot_id, day(3)).rebuilt
    assert {r["url_from"] for r in store.links(SITE)} == {page(n) for n in range(10)}


def test_deleting_a_snapshot_can_change_a_later_verdict(store: Store) -> None:
    ingest(store, 0, [link(n) for n in range(10)])
    bigger = ingest(store, 1, [link(n) for n in range(30)])
    ok = ingest(store, 2, [link(n) for n in range(16)])  # over half of 30: believed
    assert ok.status == "complete"
    deleted = store.delete_snapshot(bigger.snapshot_id, day(3))
    assert [(r.snapshot_id, r.before, r.after) for r in deleted.rejudged] == []
    assert {r["state"] for r in store.links(SITE)} == {"live"}
    # And a verdict that depended on it: the baseline deleted, the next one is the baseline.
    first = store.snapshot_listing(SITE)[0]
    deleted = store.delete_snapshot(first.id, day(3))
    assert [(r.before, r.after) for r in deleted.rejudged] == [("complete", "baseline")]
    assert rows(store, "SELECT count(*) FROM link_events") == [(0,)]


def test_history_from_before_provenance_cannot_be_rebuilt(tmp_path: Path) -> None:
    from tests.test_migrations import _old_database

    path = tmp_path / "old.db"
    _old_database(path, last_format="ahrefs")
    store = Store(path)
    try:
        # The links the old series sees got open sightings from the upgrade.
        assert rows(store, "SELECT count(*), count(first_snapshot_id) FROM sightings") == rows(
            store, "SELECT count(*), 0 FROM links WHERE seen_by != 0"
        )
        [first, *_] = store.snapshot_listing("example.com")
        before = dump(store)
        with pytest.raises(DeleteRefusedError, match=r"schema m005"):
            store.delete_snapshot(first.id, T0)
        assert dump(store) == before
    finally:
        store.close()


def test_a_refused_delete_rolls_back_even_midway(store: Store) -> None:
    ingest(store, 0, [link(n) for n in range(4)])
    second = ingest(store, 1, [link(n) for n in range(3)])
    ingest(store, 2, [link(n) for n in range(2)])
    before = dump(store)
    store.conn.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON link_events"
        " BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
    )
    with pytest.raises(sqlite3.IntegrityError, match="disk on fire"):
        store.delete_snapshot(second.snapshot_id, day(2))
    store.conn.execute("DROP TRIGGER boom")
    assert dump(store) == before
