"""The link ledger: baseline, missing → lost, restored, provider-lost, guards, atomic ingest."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from daemon.store import FutureSnapshotError, GuardSettings, IngestOutcome, OutOfOrderError, Store
from daemon.timefmt import to_db
from sources.exports import ExportFile
from sources.model import Backlink, SnapshotResult

EXPORTS = Path(__file__).parent / "fixtures" / "exports"
SITE = "example.com"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
GUARDS = GuardSettings(confirm_after=2, suspect_below=0.5)
ALL = range(1, 11)  # the ten links of a typical profile


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def url(n: int) -> str:
    """The referring page of link n; each link has its own registrable domain."""
    return f"https://blog.refsite{n}.com/post-{n}"


def bl(
    n: int,
    *,
    anchor: str | None = None,
    nofollow: bool | None = False,
    lost: bool = False,
    lost_reason: str | None = None,
) -> Backlink:
    return Backlink(
        url_from=url(n),
        url_to="https://example.com/",
        anchor=f"anchor {n}" if anchor is None else anchor,
        nofollow=nofollow,
        domain_rating=float(n),
        lost=lost,
        lost_reason=lost_reason,
    )


def snap(when: float, links: Iterable[Backlink], **kw: Any) -> SnapshotResult:
    return SnapshotResult(
        taken_at=day(when), records=iter(list(links)), origin=f"day-{when}.csv", format="test", **kw
    )


def ingest(
    store: Store,
    when: float,
    links: Iterable[Backlink | int],
    *,
    source: str = "ahrefs",
    guards: GuardSettings = GUARDS,
) -> IngestOutcome:
    records = [bl(x) if isinstance(x, int) else x for x in links]
    return store.ingest(SITE, source, snap(when, records), guards, day(when) + timedelta(minutes=1))


def states(store: Store) -> dict[str, str]:
    return {row["url_from"]: row["state"] for row in store.links(SITE)}


def events(store: Store) -> list[tuple[str, str, str | None, str]]:
    """(url_from, kind, reason, at) of every link event, in order."""
    rows = store.conn.execute(
        "SELECT l.url_from, e.kind, e.reason, e.at FROM link_events e"
        " JOIN links l ON l.id = e.link_id ORDER BY e.id"
    )
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def kinds_for(store: Store, n: int) -> list[str]:
    return [kind for u, kind, _, _ in events(store) if u == url(n)]


def dump(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the ledger tables, to compare before and after."""
    tables = ("links", "snapshots", "link_events", "series", "sites")
    return {t: store.conn.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in tables}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "linkwatch.db")
    s.ensure_site(SITE, "own")
    yield s
    s.close()


# --- baseline ------------------------------------------------------------------------------


def test_first_snapshot_is_a_silent_baseline(store: Store) -> None:
    outcome = ingest(store, 0, ALL)
    assert outcome.status == "baseline"
    assert (outcome.seen, outcome.new, outcome.missing, outcome.lost) == (10, 0, 0, 0)
    assert events(store) == []
    assert states(store) == {url(n): "live" for n in ALL}
    [row] = store.snapshots(SITE)
    assert (row["status"], row["seen"], row["new"]) == ("baseline", 10, 0)

    outcome = ingest(store, 1, [*ALL, 11])
    assert outcome.status == "complete"
    assert (outcome.new, outcome.missing) == (1, 0)
    assert events(store) == [(url(11), "new", None, to_db(day(1)))]


def test_provider_lost_row_in_the_baseline_is_not_stored(store: Store) -> None:
    ingest(store, 0, [*ALL, bl(11, lost=True, lost_reason="removed")])
    assert url(11) not in states(store)
    assert len(states(store)) == 10


# --- presence timelines: missing, lost, restored -------------------------------------------


@dataclass(frozen=True)
class Timeline:
    """Whether link 3 is in each snapshot (the other nine always are), and what follows."""

    name: str
    present: tuple[bool, ...]
    confirm_after: int
    state: str | None
    kinds: tuple[str, ...]
    lost_reason: str | None = None


TIMELINES = [
    Timeline("baseline only", (True,), 2, "live", ()),
    Timeline("appears later", (False, True), 2, "live", ("new",)),
    Timeline("absent once c2", (True, False), 2, "missing", ("missing",)),
    Timeline("absent twice c2", (True, False, False), 2, "lost", ("missing", "lost"), "dropped"),
    Timeline("absent once c1", (True, False), 1, "lost", ("missing", "lost"), "dropped"),
    Timeline("absent twice c3", (True, False, False), 3, "missing", ("missing",)),
    Timeline(
        "absent thrice c3", (True, False, False, False), 3, "lost", ("missing", "lost"), "dropped"
    ),
    Timeline("returns", (True, False, True), 2, "live", ("missing", "restored")),
    Timeline(
        "returns then goes again",
        (True, False, True, False),
        2,
        "missing",
        ("missing", "restored", "missing"),
    ),
    Timeline(
        "flaps and is never lost",
        (True, False, True, False, True, False, True),
        2,
        "live",
        ("missing", "restored", "missing", "restored", "missing", "restored"),
    ),
    Timeline(
        "lost then back",
        (True, False, False, True),
        2,
        "live",
        ("missing", "lost", "restored"),
    ),
    Timeline("never there", (False, False), 2, None, ()),
]


@pytest.mark.parametrize("case", TIMELINES, ids=[t.name for t in TIMELINES])
def test_presence_timeline(store: Store, case: Timeline) -> None:
    guards = GuardSettings(confirm_after=case.confirm_after, suspect_below=0.5)
    outcomes = []
    for i, present in enumerate(case.present):
        links = [n for n in ALL if n != 3 or present]
        outcomes.append(ingest(store, i, links, guards=guards))
    assert outcomes[0].status == "baseline"
    assert all(o.status == "complete" for o in outcomes[1:])
    rows = {r["url_from"]: r for r in store.links(SITE)}
    row = rows.get(url(3))
    assert (row["state"] if row else None) == case.state
    assert tuple(kinds_for(store, 3)) == case.kinds
    if row is not None:
        assert row["lost_reason"] == case.lost_reason
        if case.state == "lost":
            assert row["lost_at"] == to_db(day(len(case.present) - 1))
        else:
            assert row["lost_at"] is None
    # The other links never moved.
    assert all(rows[url(n)]["state"] == "live" for n in ALL if n != 3)
    # Counts on the snapshots add up to the events.
    kinds = ("new", "missing", "restored", "lost")
    totals = {k: sum(getattr(o, k) for o in outcomes) for k in kinds}
    assert totals == {k: case.kinds.count(k) for k in totals}


def test_missing_link_carries_last_seen_time(store: Store) -> None:
    ingest(store, 0, ALL)
    ingest(store, 1, ALL)
    ingest(store, 2, [n for n in ALL if n != 5])
    row = next(r for r in store.links(SITE) if r["url_from"] == url(5))
    assert row["state"] == "missing"
    assert row["last_seen_at"] == to_db(day(1))


# --- provider says lost --------------------------------------------------------------------


def rewrite(src: Path, dst: Path, changes: dict[str, str]) -> Path:
    """A UTF-8 comma copy of an export with some columns overwritten on every row."""
    raw = src.read_bytes()
    text = raw.decode("utf-16") if raw[:2] == b"\xff\xfe" else raw.decode("utf-8-sig")
    delimiter = "\t" if "\t" in text.splitlines()[0] else ","
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    header = rows[0]
    for name, value in changes.items():
        i = header.index(name)
        for row in rows[1:]:
            row[i] = value
    out = io.StringIO(newline="")
    csv.writer(out).writerows(rows)
    dst.write_text(out.getvalue(), encoding="utf-8")
    return dst


@pytest.mark.parametrize(
    ("sample", "all_live", "reason"),
    [
        ("ahrefs_backlinks_utf16.csv", {"Lost": "", "Lost status": ""}, "removed"),
        ("ahrefs_backlinks_utf8.csv", {"Lost": "", "Lost status": ""}, "removed"),
        ("semrush_backlinks.csv", {"Lost link": "false"}, "unknown"),
    ],
)
def test_export_row_marked_lost_makes_a_known_link_lost_at_once(
    store: Store, tmp_path: Path, sample: str, all_live: dict[str, str], reason: str
) -> None:
    guards = GuardSettings(confirm_after=3, suspect_below=0.5)
    baseline = rewrite(EXPORTS / sample, tmp_path / "all-live.csv", all_live)
    first = ExportFile(baseline, SITE).snapshot(day(0))
    assert store.ingest(SITE, "export", first, guards, day(0)).status == "baseline"
    assert set(states(store).values()) == {"live"} and len(states(store)) == 5

    second = ExportFile(EXPORTS / sample, SITE).snapshot(day(1))
    outcome = store.ingest(SITE, "export", second, guards, day(1))
    assert outcome.status == "complete"
    assert (outcome.lost, outcome.missing, outcome.seen) == (1, 0, 4)
    lost = list(store.links(SITE, state="lost"))
    assert [(r["url_from"], r["lost_reason"], r["lost_at"]) for r in lost] == [
        ("https://directory.example.info/widgets/page-2", reason, to_db(day(1)))
    ]
    assert events(store) == [
        ("https://directory.example.info/widgets/page-2", "lost", reason, to_db(day(1)))
    ]
    assert len(list(store.links(SITE, state="live"))) == 4


@pytest.mark.parametrize("reason", ["not_found", "redirected", None])
def test_provider_lost_applies_to_a_missing_link_too(store: Store, reason: str | None) -> None:
    ingest(store, 0, ALL)
    ingest(store, 1, [n for n in ALL if n != 4])
    assert states(store)[url(4)] == "missing"
    outcome = ingest(store, 2, [*(n for n in ALL if n != 4), bl(4, lost=True, lost_reason=reason)])
    assert outcome.lost == 1
    row = next(r for r in store.links(SITE) if r["url_from"] == url(4))
    assert (row["state"], row["lost_reason"]) == ("lost", reason or "unknown")
    assert kinds_for(store, 4) == ["missing", "lost"]


# --- changed attributes --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("anchor", "nofollow", "reason"),
    [
        ("new words", False, "anchor"),
        (None, True, "rel"),
        ("new words", True, "anchor rel"),
    ],
)
def test_anchor_or_rel_change_is_a_changed_event(
    store: Store, anchor: str | None, nofollow: bool, reason: str
) -> None:
    ingest(store, 0, ALL)
    changed = bl(6, anchor=anchor, nofollow=nofollow)
    outcome = ingest(store, 1, [*(n for n in ALL if n != 6), changed])
    assert outcome.status == "complete"
    assert (outcome.changed, outcome.new, outcome.missing) == (1, 0, 0)
    assert events(store) == [(url(6), "changed", reason, to_db(day(1)))]
    row = next(r for r in store.links(SITE) if r["url_from"] == url(6))
    assert row["state"] == "live"
    assert row["anchor"] == changed.anchor
    assert row["nofollow"] == int(nofollow)


@pytest.mark.parametrize(
    "same",
    [bl(6), bl(6, anchor="anchor 6", nofollow=None), Backlink(url(6), "https://example.com/")],
    ids=["identical", "rel unknown", "source without anchors"],
)
def test_unchanged_or_unknown_attributes_are_no_change(store: Store, same: Backlink) -> None:
    ingest(store, 0, ALL)
    outcome = ingest(store, 1, [*(n for n in ALL if n != 6), same])
    assert outcome.changed == 0
    assert events(store) == []
    row = next(r for r in store.links(SITE) if r["url_from"] == url(6))
    assert (row["anchor"], row["nofollow"]) == ("anchor 6", 0)


# --- suspect and partial snapshots ---------------------------------------------------------


@pytest.mark.parametrize(
    ("kept", "suspect_below", "status"),
    [(4, 0.5, "suspect"), (5, 0.5, "complete"), (8, 0.9, "suspect"), (9, 0.9, "complete")],
)
def test_suspect_threshold(store: Store, kept: int, suspect_below: float, status: str) -> None:
    guards = GuardSettings(confirm_after=2, suspect_below=suspect_below)
    ingest(store, 0, ALL, guards=guards)
    outcome = ingest(store, 1, range(1, kept + 1), guards=guards)
    assert outcome.status == status
    assert outcome.missing == (0 if status == "suspect" else 10 - kept)


def test_truncated_exports_change_nothing_and_a_full_one_proceeds(store: Store) -> None:
    ingest(store, 0, ALL)
    before = dump(store)["links"]
    for when in (1, 2):
        outcome = ingest(store, when, [1, 2, 3, 4])
        assert outcome.status == "suspect"
        assert (outcome.seen, outcome.new, outcome.missing, outcome.lost) == (4, 0, 0, 0)
        assert outcome.note and "previous snapshot's 10" in outcome.note
    assert dump(store)["links"] == before
    assert events(store) == []
    assert [r["status"] for r in store.snapshots(SITE)] == ["baseline", "suspect", "suspect"]

    # The next full export: link 10 is gone for the first time, so it is missing, not lost.
    outcome = ingest(store, 3, range(1, 10))
    assert outcome.status == "complete"
    assert (outcome.missing, outcome.lost) == (1, 0)
    assert states(store)[url(10)] == "missing"
    assert sum(s == "live" for s in states(store).values()) == 9
    assert [k for _, k, _, _ in events(store)] == ["missing"]

    outcome = ingest(store, 4, range(1, 10))
    assert (outcome.status, outcome.lost) == ("complete", 1)


def test_suspect_compares_with_the_previous_accepted_snapshot_of_its_source(store: Store) -> None:
    ingest(store, 0, ALL)
    ingest(store, 1, range(1, 7))  # 6 of 10: accepted
    assert states(store)[url(10)] == "missing"
    # 4 is under half of 10, but not of 6: accepted, and the links it lacks go missing.
    outcome = ingest(store, 2, range(1, 5))
    assert outcome.status == "complete"
    assert outcome.missing == 2


def test_snapshot_with_malformed_rows_is_partial_and_changes_nothing(
    store: Store, tmp_path: Path
) -> None:
    ingest(store, 0, ALL)
    before = dump(store)["links"]
    path = tmp_path / "half.csv"
    path.write_text(
        "url_from,url_to,anchor,nofollow\n"
        + "".join(f"{url(n)},https://example.com/,anchor {n},false\n" for n in range(1, 6))
        + f"{url(11)},https://example.com/,new one,perhaps\n"
        + "https://brand-new.example.net/,https://example.com/,fresh,false\n",
        encoding="utf-8",
    )
    outcome = store.ingest(SITE, "ahrefs", ExportFile(path, SITE).snapshot(day(1)), GUARDS, day(1))
    assert outcome.status == "partial"
    assert outcome.malformed == 1
    assert outcome.examples == ("line 7: expected true/false, got 'perhaps'",)
    assert (outcome.new, outcome.missing, outcome.lost) == (0, 0, 0)
    assert dump(store)["links"] == before
    assert events(store) == []

    # The partial snapshot is not the reference for the next one.
    outcome = ingest(store, 2, range(1, 10))
    assert (outcome.status, outcome.missing) == ("complete", 1)


def test_snapshot_with_a_read_error_is_partial(store: Store) -> None:
    ingest(store, 0, ALL)
    result = snap(1, [bl(1), bl(99)], error="read failed near line 3")
    outcome = store.ingest(SITE, "ahrefs", result, GUARDS, day(1))
    assert outcome.status == "partial"
    assert outcome.note == "read failed near line 3"
    assert states(store) == {url(n): "live" for n in ALL}


def test_partial_first_snapshot_leaves_the_next_one_the_baseline(store: Store) -> None:
    outcome = store.ingest(SITE, "ahrefs", snap(0, [bl(1)], error="boom"), GUARDS, day(0))
    assert outcome.status == "partial"
    assert list(store.links(SITE)) == []
    assert ingest(store, 1, ALL).status == "baseline"
    assert events(store) == []


# --- ordering and atomicity ----------------------------------------------------------------


def test_out_of_order_snapshot_is_refused_and_stores_nothing(store: Store) -> None:
    ingest(store, 5, ALL)
    ingest(store, 6, [n for n in ALL if n != 2])
    before = dump(store)
    with pytest.raises(OutOfOrderError):
        ingest(store, 3, [1])
    assert dump(store) == before
    # Another source has its own clock; the same source can go on.
    assert ingest(store, 3, [1], source="semrush").status == "baseline"
    assert ingest(store, 7, [n for n in ALL if n != 2]).lost == 1


def explode_after(count: int) -> Iterator[Backlink]:
    for i in range(count):
        yield Backlink(f"https://host{i}.example.net/p", "https://example.com/", "x", False)
    raise RuntimeError("connection reset midway")


@pytest.mark.parametrize("rows_before_error", [0, 3, 12_000])
def test_ingest_is_atomic_when_the_records_fail_midway(
    store: Store, rows_before_error: int
) -> None:
    ingest(store, 0, ALL)
    ingest(store, 1, [n for n in ALL if n != 7])
    before = dump(store)
    result = SnapshotResult(taken_at=day(2), records=explode_after(rows_before_error))
    with pytest.raises(RuntimeError, match="connection reset midway"):
        store.ingest(SITE, "ahrefs", result, GUARDS, day(2))
    assert dump(store) == before
    # The store is usable afterwards and the failed snapshot counted for nothing.
    outcome = ingest(store, 3, [n for n in ALL if n != 7])
    assert (outcome.status, outcome.lost) == ("complete", 1)


def test_failing_first_ingest_stores_nothing(store: Store) -> None:
    before = dump(store)
    result = SnapshotResult(taken_at=day(0), records=explode_after(5))
    with pytest.raises(RuntimeError):
        store.ingest(SITE, "ahrefs", result, GUARDS, day(0))
    assert dump(store) == before
    assert ingest(store, 1, ALL).status == "baseline"


def test_failure_after_the_snapshot_row_is_written_rolls_it_back(store: Store) -> None:
    """The 63rd source of a site has no seen_by bit left: that error comes mid-transaction."""
    for i in range(62):
        assert ingest(store, i, [1, 2], source=f"src{i}").status == "baseline"
    before = dump(store)
    with pytest.raises(ValueError, match="more than 62 observation series"):
        ingest(store, 100, [1, 2, 3], source="one-too-many")
    assert dump(store) == before
    assert ingest(store, 101, [1, 2, 3], source="src0").new == 1


# --- several sources -----------------------------------------------------------------------


def test_link_stays_live_while_any_source_sees_it(store: Store) -> None:
    ingest(store, 0, ALL, source="ahrefs")
    assert ingest(store, 0.5, ALL, source="semrush").status == "baseline"

    outcome = ingest(store, 1, [n for n in ALL if n != 3], source="ahrefs")
    assert (outcome.missing, outcome.lost) == (0, 0)
    assert states(store)[url(3)] == "live"

    outcome = ingest(store, 1.5, [n for n in ALL if n != 3], source="semrush")
    assert outcome.missing == 1
    assert states(store)[url(3)] == "missing"

    outcome = ingest(store, 2, ALL, source="ahrefs")
    assert outcome.restored == 1
    assert states(store)[url(3)] == "live"
    assert kinds_for(store, 3) == ["missing", "restored"]


def test_a_source_that_never_saw_a_link_does_not_confirm_its_loss(store: Store) -> None:
    """GSC exports a sample; its snapshots say nothing about links only Ahrefs reports."""
    ingest(store, 0, ALL, source="ahrefs")
    ingest(store, 0.1, range(1, 6), source="gsc")
    assert ingest(store, 1, [n for n in ALL if n != 8], source="ahrefs").missing == 1
    outcome = ingest(store, 1.1, range(1, 6), source="gsc")
    assert (outcome.status, outcome.lost) == ("complete", 0)
    assert states(store)[url(8)] == "missing"
    # A second Ahrefs snapshot without it confirms the loss.
    assert ingest(store, 2, [n for n in ALL if n != 8], source="ahrefs").lost == 1
    assert states(store)[url(8)] == "lost"


def test_second_source_baseline_adds_its_links_silently(store: Store) -> None:
    ingest(store, 0, ALL, source="ahrefs")
    outcome = ingest(store, 1, [*ALL, 11, 12], source="gsc")
    assert (outcome.status, outcome.new) == ("baseline", 0)
    # No `new` events: the links it reveals are dated from its snapshot as `appeared`,
    # which no metric counts as a gain.
    assert [(u, kind) for u, kind, _, _ in events(store)] == [
        (url(11), "appeared"),
        (url(12), "appeared"),
    ]
    assert len(list(store.links(SITE, state="live"))) == 12
    # ahrefs never saw 11 and 12: its own snapshots do not make them missing.
    assert ingest(store, 2, ALL, source="ahrefs").missing == 0


# --- status and persistence ----------------------------------------------------------------


def test_status_counts_only_live_links(store: Store) -> None:
    store.ensure_site("rival.example.net", "competitor")
    ingest(store, 0, [*ALL, bl(11)])
    ingest(store, 1, [n for n in ALL if n not in (1, 2)])  # 1, 2, 11 missing
    ingest(store, 2, [*(n for n in ALL if n != 1), 11])  # 1 lost; 2 and 11 restored
    by_site = {s.site: s for s in store.status()}
    me = by_site[SITE]
    assert states(store)[url(1)] == "lost"
    assert states(store)[url(2)] == "live"
    assert states(store)[url(11)] == "live"
    assert (me.live_links, me.missing_links, me.lost_links) == (10, 0, 1)
    assert me.live_refdomains == 10
    assert me.role == "own"
    assert (me.last_snapshot_at, me.last_snapshot_status) == (day(2), "complete")

    ingest(store, 3, [n for n in ALL if n not in (1, 5)])  # 5 and 11 missing
    me = {s.site: s for s in store.status()}[SITE]
    assert (me.live_links, me.missing_links, me.lost_links, me.live_refdomains) == (8, 2, 1, 8)

    rival = by_site["rival.example.net"]
    assert (rival.live_links, rival.last_snapshot_at, rival.role) == (0, None, "competitor")


def test_status_counts_registrable_domains_once(store: Store) -> None:
    links = [
        Backlink("https://blog.example.org/a", "https://example.com/"),
        Backlink("https://www.example.org/b", "https://example.com/"),
        Backlink("https://example.org/c", "https://example.com/x"),
        Backlink("https://news.example.io/d", "https://example.com/"),
    ]
    ingest(store, 0, links)
    me = store.status()[0]
    assert (me.live_links, me.live_refdomains) == (4, 2)
    assert {r["refdomain"] for r in store.links(SITE)} == {"example.org", "example.io"}


def test_reopening_the_store_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "linkwatch.db"
    store = Store(path)
    store.ensure_site(SITE, "own")
    ingest(store, 0, ALL)
    ingest(store, 1, [n for n in ALL if n != 8])
    ingest(store, 1.5, ALL, source="semrush")
    before = dump(store)
    links_before = list(store.links(SITE))
    store.close()

    store = Store(path)
    try:
        assert dump(store) == before
        assert list(store.links(SITE)) == links_before
        # The ledger goes on where it was: ahrefs is not re-baselined, 8 is still missing
        # as far as ahrefs knows, but semrush's baseline made it live again.
        assert states(store)[url(8)] == "live"
        outcome = ingest(store, 2, [n for n in ALL if n != 9])
        assert outcome.status == "complete"
        assert states(store)[url(9)] == "live"  # semrush still sees it
        outcome = ingest(store, 2.5, [n for n in ALL if n != 9], source="semrush")
        assert (outcome.status, outcome.missing) == ("complete", 1)
    finally:
        store.close()


def test_reopened_store_confirms_a_loss_started_before(tmp_path: Path) -> None:
    path = tmp_path / "linkwatch.db"
    store = Store(path)
    store.ensure_site(SITE, "own")
    ingest(store, 0, ALL)
    ingest(store, 1, [n for n in ALL if n != 8])
    store.close()
    store = Store(path)
    try:
        outcome = ingest(store, 2, [n for n in ALL if n != 8])
        assert (outcome.status, outcome.lost) == ("complete", 1)
        assert states(store)[url(8)] == "lost"
    finally:
        store.close()


# --- guards added after review ---------------------------------------------------------------


def test_a_real_collapse_is_believed_once_three_small_snapshots_agree(store: Store) -> None:
    ingest(store, 0, ALL)
    small = [1, 2, 3, 4]
    assert ingest(store, 1, small).status == "suspect"
    assert ingest(store, 2, small).status == "suspect"  # two in a row: still nothing
    assert states(store)[url(9)] == "live"
    third = ingest(store, 3, small)
    assert (third.status, third.missing) == ("complete", 6)
    assert third.note is not None and "3 snapshots in a row agree" in third.note
    assert ingest(store, 4, small).lost == 6


@pytest.mark.parametrize(("before", "status"), [(44, "complete"), (45, "suspect")])
def test_agreement_is_within_ten_percent_of_the_latest_size(
    store: Store, before: int, status: str
) -> None:
    ingest(store, 0, range(1, 101))
    for when in (1, 2):
        assert ingest(store, when, range(1, before + 1)).status == "suspect"
    # |44 - 40| = 4 is within 10 % of 40; |45 - 40| is not.
    assert ingest(store, 3, range(1, 41)).status == status


def test_small_snapshots_that_disagree_stay_suspect(store: Store) -> None:
    ingest(store, 0, ALL)
    for when, links in enumerate(([1, 2, 3, 4], [1, 2], [1, 2, 3, 4]), start=1):
        assert ingest(store, when, links).status == "suspect"
    assert set(states(store).values()) == {"live"}


def test_the_same_export_ingested_twice_confirms_nothing(store: Store) -> None:
    ingest(store, 0, ALL)
    first = store.ingest(
        SITE, "ahrefs", snap(1, [bl(n) for n in range(1, 10)], digest="d1"), GUARDS, day(1)
    )
    assert first.missing == 1
    again = store.ingest(
        SITE,
        "ahrefs",
        snap(1, [bl(n) for n in range(1, 10)], digest="d1"),
        GUARDS,
        day(
            1,
        )
        + timedelta(hours=1),
    )
    assert (again.status, again.lost) == ("duplicate", 0)
    assert states(store)[url(10)] == "missing"
    # The same content exported later is a new observation and confirms the loss.
    later = store.ingest(
        SITE, "ahrefs", snap(2, [bl(n) for n in range(1, 10)], digest="d1"), GUARDS, day(2)
    )
    assert (later.status, later.lost) == ("complete", 1)


def test_a_sample_export_never_makes_links_missing(store: Store) -> None:
    ingest(store, 0, ALL)

    def sample(when: float, links: list[Backlink]) -> IngestOutcome:
        result = SnapshotResult(
            taken_at=day(when), records=iter(links), origin="gsc.csv", format="gsc", sample=True
        )
        return store.ingest(SITE, "ahrefs", result, GUARDS, day(when))

    first = sample(1, [bl(1), bl(2), bl(11)])
    # Its own series' baseline: link 11 appears silently, nothing is missing.
    assert (first.status, first.new, first.missing, first.series) == (
        "baseline",
        0,
        0,
        "ahrefs/gsc",
    )
    later = sample(2, [bl(3)])
    assert (later.status, later.new, later.missing, later.lost) == ("complete", 0, 0, 0)
    assert set(states(store).values()) == {"live"}
    assert [k for u, k, _, _ in events(store) if u == url(11)] == ["appeared"]


def test_an_older_export_of_another_source_cannot_reorder_history(store: Store) -> None:
    ingest(store, 0, ALL, source="ahrefs")
    ingest(store, 2, [n for n in ALL if n != 5], source="ahrefs")
    ingest(store, 3, [n for n in ALL if n != 5], source="ahrefs")
    assert states(store)[url(5)] == "lost"
    # A second source's export dated between them sees link 5: restored, dated day 3.
    restored = ingest(store, 2.5, ALL, source="semrush")
    assert restored.restored == 1
    assert [(k, at) for u, k, _, at in events(store) if u == url(5)] == [
        ("missing", to_db(day(2))),
        ("lost", to_db(day(3))),
        ("restored", to_db(day(3))),
    ]


def test_last_poll_and_failures_are_recorded_with_their_ids(store: Store) -> None:
    assert store.last_poll_at(SITE, "ahrefs") is None
    ingest(store, 0, ALL)
    assert store.last_poll_at(SITE, "ahrefs") == day(0) + timedelta(minutes=1)
    failed = store.record_failure(SITE, "ahrefs", day(1), "x.csv", "cannot read", day(2), "9:1")
    [row] = [r for r in store.snapshots(SITE) if r["status"] == "error"]
    assert (row["id"], row["origin"], row["note"], row["origin_stamp"]) == (
        failed,
        "x.csv",
        "cannot read",
        "9:1",
    )
    assert store.last_poll_at(SITE, "ahrefs") == day(2)
    assert store.known_exports(SITE, "ahrefs") == {("day-0.csv", None), ("x.csv", "9:1")}


# --- what the store records ------------------------------------------------------------------


def test_snapshot_rows_record_counts_notes_and_series(store: Store) -> None:
    base = ingest(store, 0, ALL)
    drop = ingest(store, 1, [n for n in ALL if n != 3])
    again = store.ingest(SITE, "ahrefs", snap(1, [bl(n) for n in ALL if n != 3]), GUARDS, day(2))
    rows = {r["id"]: r for r in store.snapshots(SITE)}
    assert set(rows) == {base.snapshot_id, drop.snapshot_id, again.snapshot_id}
    row = rows[drop.snapshot_id]
    assert (row["status"], row["seen"], row["listed"], row["missing"], row["new"]) == (
        "complete",
        9,
        9,
        1,
        0,
    )
    assert 0 <= row["duration_s"] < 60
    assert row["series_id"] == rows[base.snapshot_id]["series_id"] is not None
    empty = store.ingest(SITE, "ahrefs", snap(3, []), GUARDS, day(3))
    assert empty.note == ("no rows: an empty export never confirms a loss; no link state changed")
    assert rows[again.snapshot_id]["status"] == "complete"  # same links later: re-observed
    dup = store.ingest(SITE, "ahrefs", snap(3, [bl(1)], digest="d"), GUARDS, day(3))
    dup2 = store.ingest(SITE, "ahrefs", snap(3, [bl(1)], digest="d"), GUARDS, day(3))
    assert (dup2.status, dup2.seen, dup2.listed) == ("duplicate", 0, 0)
    assert dup2.note == "same content as an earlier snapshot; nothing changed"
    assert store.snapshots(SITE)[-1]["note"] == dup2.note and dup.status == "suspect"


def test_rows_that_are_not_links_are_reported_and_the_rest_are_read(store: Store) -> None:
    bad = Backlink(url(4), "not a target " + "x" * 300)
    result = snap(0, [bl(1), bl(2), bad, bl(3), Backlink("nope " + "y" * 300, "https://e.com/")])
    outcome = store.ingest(SITE, "ahrefs", result, GUARDS, day(0))
    assert (outcome.status, outcome.seen, outcome.malformed) == ("partial", 3, 2)
    # Third-party text in messages is cut at 200 characters.
    assert outcome.examples == (
        f"line 0: target is not a URL: {('not a target ' + 'x' * 300)[:200]!r}",
        f"line 0: referring page is not a URL: {('nope ' + 'y' * 300)[:200]!r}",
    )


def test_provider_dates_and_rel_changes_are_kept(store: Store) -> None:
    first_seen = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    link = bl(1)._replace(first_seen_at=first_seen)
    ingest(store, 0, [link, *range(2, 11)])
    [row] = [r for r in store.links(SITE) if r["url_from"] == url(1)]
    assert row["first_seen_at"] == to_db(first_seen)
    for n, changed in enumerate(
        (link._replace(ugc=True), link._replace(ugc=True, sponsored=True)), start=1
    ):
        outcome = ingest(store, n, [changed, *range(2, 11)])
        assert outcome.changed == 1
    assert [r for u, k, r, _ in events(store) if k == "changed"] == ["rel", "rel"]


def test_an_out_of_order_refusal_names_the_file(store: Store) -> None:
    ingest(store, 2, ALL)
    with pytest.raises(OutOfOrderError, match=r"^day-1\.csv: taken at .* in time order$"):
        ingest(store, 1, ALL)


def test_the_store_waits_for_locks_and_keeps_its_settings(tmp_path: Path) -> None:
    import threading

    store = Store(tmp_path / "deep" / "er" / "linkwatch.db")
    pragmas = {
        p: store.conn.execute(f"PRAGMA {p}").fetchone()[0]
        for p in ("journal_mode", "synchronous", "busy_timeout", "cache_size", "temp_store")
    }
    assert pragmas == {
        "journal_mode": "wal",
        "synchronous": 1,
        "busy_timeout": 30000,
        "cache_size": -65536,
        "temp_store": 1,
    }
    assert store.path == tmp_path / "deep" / "er" / "linkwatch.db"
    # The scheduler's worker thread uses the store opened by the main thread.
    failures: list[BaseException] = []

    def use() -> None:
        try:
            store.ensure_site(SITE, "own")
        except BaseException as exc:
            failures.append(exc)

    worker = threading.Thread(target=use)
    worker.start()
    worker.join()
    assert failures == [] and store.site_id(SITE) == 1
    with pytest.raises(KeyError, match=r"nope\.example"):
        store.site_id("nope.example")
    store.close()


def test_links_held_only_by_retired_sources_are_counted_per_source(store: Store) -> None:
    ingest(store, 0, [1, 2], source="old-a")
    ingest(store, 0, [2, 3], source="old-b")
    ingest(store, 0, [3, 4], source="kept")
    assert store.links_held_only_by(SITE, ["kept"]) == {"old-a": 2, "old-b": 1}


def test_one_file_read_again_later_does_not_agree_with_itself(store: Store) -> None:
    ingest(store, 0, ALL)
    outcomes = [
        store.ingest(
            SITE, "ahrefs", snap(when, [bl(n) for n in links], digest=d), GUARDS, day(when)
        )
        for when, links, d in ((1, [1, 2, 3], "x"), (2, [1, 2, 4], "y"), (3, [1, 2, 3], "x"))
    ]
    # Same size three times, but the third is the first file again: still suspect.
    assert [o.status for o in outcomes] == ["suspect", "suspect", "suspect"]
    believed = store.ingest(
        SITE, "ahrefs", snap(4, [bl(1), bl(2), bl(5)], digest="z"), GUARDS, day(4)
    )
    assert believed.status == "complete"


def test_a_retired_source_counts_the_links_of_all_its_series(store: Store) -> None:
    ingest(store, 0, [1, 2], source="old")
    other = SnapshotResult(taken_at=day(0), records=iter([bl(3)]), format="other", origin="o")
    store.ingest(SITE, "old", other, GUARDS, day(0))
    ingest(store, 0, [2], source="kept")
    assert store.links_held_only_by(SITE, ["kept"]) == {"old": 2}


def test_notes_say_why_nothing_changed(store: Store) -> None:
    ingest(store, 0, ALL)
    only_lost = ingest(store, 1, [bl(n, lost=True, lost_reason="removed") for n in ALL])
    assert (only_lost.status, only_lost.lost) == ("suspect", 0)
    assert only_lost.note == (
        "no live rows, only rows marked lost: not a whole profile; no link state changed"
    )
    sample = SnapshotResult(
        taken_at=day(2), records=iter([bl(1)]), format="gsc", sample=True, origin="s"
    )
    store.ingest(SITE, "ahrefs", sample, GUARDS, day(2))
    again = SnapshotResult(
        taken_at=day(3), records=iter([bl(2)]), format="gsc", sample=True, origin="s2"
    )
    outcome = store.ingest(SITE, "ahrefs", again, GUARDS, day(3))
    assert (outcome.status, outcome.source, outcome.origin) == ("complete", "ahrefs", "s2")
    assert outcome.note == (
        "a sample export: it adds and restores links, absences count for nothing"
    )


def test_a_snapshot_from_the_future_is_refused_by_name(store: Store) -> None:
    ok = store.ingest(SITE, "ahrefs", snap(1, [bl(1)]), GUARDS, day(0))  # exactly a day ahead
    assert ok.status == "baseline"
    with pytest.raises(
        FutureSnapshotError,
        match=r"^day-2\.csv: taken at .* after now \(.*\); a snapshot from the future would "
        "date every later event of the site after it$",
    ):
        store.ingest(SITE, "ahrefs", snap(2, [bl(1)]), GUARDS, day(0) + timedelta(hours=23))


def test_a_duplicate_releases_its_file_unread(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("url_from,url_to\n" + "".join(f"{url(n)},https://{SITE}/\n" for n in ALL))
    first = ExportFile(path, SITE).snapshot(day(0))
    assert store.ingest(SITE, "csv", first, GUARDS, day(0)).status == "baseline"
    export = ExportFile(path, SITE)
    again = export.snapshot(day(5))  # the same file, stamped later
    assert again.closer == export.close
    closed: list[bool] = []
    again.closer = lambda: (closed.append(True), export.close())[0]
    read: list[int] = []
    again.records = (r for r in again.records if not read.append(1))
    assert store.ingest(SITE, "csv", again, GUARDS, day(5)).status == "duplicate"
    assert closed == [True]
    assert read == []  # known a duplicate before the write lock: not read at all
    late = ExportFile(path, SITE).snapshot(day(-1))
    late.digest = "another"
    late.records = (r for r in late.records if not read.append(1))
    with pytest.raises(OutOfOrderError):
        store.ingest(SITE, "csv", late, GUARDS, day(5))
    late.close()
    assert read == []  # out of order: refused before it is read


def test_page_only_sample_rows_find_links_added_by_any_snapshot(store: Store) -> None:
    ingest(store, 0, ALL)  # baseline: pages keyed while staging
    ingest(store, 1, [*ALL, 11])  # link 11 added later: keyed afterwards
    page_only = SnapshotResult(
        taken_at=day(2),
        records=iter([Backlink(url(1), ""), Backlink(url(11), "")]),
        format="gsc",
        sample=True,
        origin="gsc.csv",
    )
    store.ingest(SITE, "ahrefs", page_only, GUARDS, day(2))
    # Both pages have a live link: the sample vouches for those, no placeholder is added.
    rows = [r for r in store.links(SITE) if r["url_from"] in (url(1), url(11))]
    assert sorted((r["url_from"], r["url_to"], r["sample_until"] is not None) for r in rows) == [
        (url(1), "https://example.com/", True),
        (url(11), "https://example.com/", True),
    ]


def _page_only(taken: float, *pages: int) -> SnapshotResult:
    """A Search Console export naming only the linking pages of links `pages`."""
    return SnapshotResult(
        taken_at=day(taken),
        records=iter([Backlink(url(n), "") for n in pages]),
        format="gsc",
        sample=True,
        origin=f"gsc-{taken}.csv",
    )


def _pages(store: Store, *pages: int) -> list[tuple[str, str, str]]:
    return sorted(
        (r["url_from"], r["url_to"], r["state"])
        for r in store.links(SITE)
        if r["url_from"] in {url(n) for n in pages}
    )


def test_a_sample_taken_before_a_pages_links_were_dropped_vouches_for_no_placeholder(
    store: Store,
) -> None:
    ingest(store, 0, ALL)
    ingest(store, 2, [n for n in ALL if n > 2])  # links 1 and 2 go missing...
    ingest(store, 4, [n for n in ALL if n > 2])  # ...and are lost
    # Search Console's export of day 1, when they were still there, read on day 5: a
    # placeholder would count their domains live again (and resolve the loss alert).
    store.ingest(SITE, "gsc", _page_only(1, 1, 2), GUARDS, day(5))
    lost = [(url(n), "https://example.com/", "lost") for n in (1, 2)]
    assert _pages(store, 1, 2) == lost
    # One taken after the drop says the page links somewhere now: its placeholder is live.
    store.ingest(SITE, "gsc", _page_only(5, 1, 2), GUARDS, day(5) + timedelta(hours=1))
    assert _pages(store, 1, 2) == sorted([*lost, (url(1), "", "live"), (url(2), "", "live")])


def test_a_sample_older_than_a_forgotten_links_drop_vouches_for_no_placeholder(
    store: Store,
) -> None:
    ingest(store, 0, ALL)
    ingest(store, 2, [n for n in ALL if n > 1])  # link 1 goes missing, then is lost
    for when in range(4, 44, 2):
        ingest(store, when, [n for n in ALL if n > 1])
    assert store.maintain(timedelta(days=10), day(43)).retention.deleted["links"] == 1
    assert _pages(store, 1) == []  # forgotten
    store.ingest(SITE, "gsc", _page_only(1, 1), GUARDS, day(43))
    assert _pages(store, 1) == []


def _to(n: int, target: str) -> Backlink:
    return bl(n)._replace(url_to=target)


def test_rows_pointing_at_other_sites_are_skipped_never_stored(store: Store) -> None:
    # Two exports pasted together: rows of other.net's profile are no backlinks of the
    # site; stored, they would go missing, then lost, at the next clean export.
    mixed = [
        _to(17, "https://other.net/x")._replace(lost=True),  # set aside, and read on
        *(bl(n) for n in ALL),
        _to(11, "https://other.net/"),
        _to(12, "https://www.other.net/a"),
        _to(13, "http://blog.third.org/"),
        _to(14, "https://shop.example.com/cart"),  # a subdomain is the site
        _to(15, "https://EXAMPLE.com:443/x"),
        _to(16, "https://www.example.com/blog/2026/post"),
        bl(18, lost=True),  # a row marked lost counts as read
    ]
    outcome = ingest(store, 0, mixed)
    assert (outcome.status, outcome.seen, outcome.read) == ("baseline", 13, 14)
    assert (
        "4 rows skipped: their targets are on other sites (other.net the most), not on"
        " example.com" in (outcome.note or "")
    )
    assert sorted(states(store)) == sorted(url(n) for n in [*ALL, 14, 15, 16])
    later = ingest(store, 1, [*ALL, *mixed[-4:-1]])
    assert (later.status, later.missing, later.note) == ("complete", 0, None)


def test_the_sites_links_to_itself_are_skipped(store: Store) -> None:
    rows = [
        *(bl(n) for n in ALL),
        Backlink("https://example.com/blog/post", "https://example.com/"),
        Backlink("https://www.example.com/about", "https://example.com/pricing"),
        Backlink("https://blog.example.com:8080/x", "https://example.com/"),
        Backlink("https://notexample.com/x", "https://example.com/"),  # another domain
    ]
    outcome = ingest(store, 0, rows)
    assert outcome.seen == 11
    assert "3 rows skipped: links of example.com to itself" in (outcome.note or "")
    assert "https://notexample.com/x" in states(store)


def test_links_stored_before_rows_were_set_aside_are_followed_as_before(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An older linkwatch stored every row. Skipped now, the links it stored from other
    # sites' rows and the site's own pages would all go missing, then lost, at once.
    old = [
        *(bl(n) for n in ALL),
        _to(11, "https://other.net/"),
        Backlink("https://blog.example.com/x", "https://example.com/"),
    ]
    with monkeypatch.context() as m:
        # As if every link were stored already: every row is staged.
        m.setattr("daemon.store.ledger._stored_keys", lambda conn, site, keys: set(keys))
        assert ingest(store, 0, old).seen == 12
    new = [
        _to(12, "https://other.net/b"),
        Backlink("https://example.com/y", "https://example.com/"),
    ]
    outcome = ingest(store, 1, [*old, *new])
    assert (outcome.status, outcome.seen, outcome.new, outcome.missing) == ("complete", 12, 0, 0)
    assert outcome.read == 12  # the rows of known links, not the two skipped
    assert "1 row skipped: their targets are on other sites (other.net the most)" in (
        outcome.note or ""
    )
    assert "1 row skipped: links of example.com to itself" in (outcome.note or "")
    # Marked lost by the provider, a known one is lost as before.
    gone = ingest(
        store, 2, [*(bl(n) for n in ALL), _to(11, "https://other.net/")._replace(lost=True)]
    )
    assert gone.lost == 1 and states(store)[url(11)] == "lost"
    assert states(store)["https://blog.example.com/x"] == "missing"


def test_a_placeholder_fades_when_a_complete_series_drops_its_pages_links(store: Store) -> None:
    # Search Console named page 1 before any complete series knew its link: a placeholder.
    store.ingest(SITE, "gsc", _page_only(0, 1), GUARDS, day(0) + timedelta(hours=1))
    ingest(store, 1, ALL)  # then the page's real link is known
    assert _pages(store, 1) == [(url(1), "", "live"), (url(1), "https://example.com/", "live")]
    # The link goes: the sample of day 0 is older than that, and no longer keeps the page
    # (and its domain) live through the placeholder.
    ingest(store, 2, [n for n in ALL if n > 1])
    assert _pages(store, 1) == [
        (url(1), "", "unconfirmed"),
        (url(1), "https://example.com/", "missing"),
    ]
    # A sample taken since says the page links somewhere again.
    store.ingest(SITE, "gsc", _page_only(3, 1), GUARDS, day(3) + timedelta(hours=1))
    assert _pages(store, 1) == [(url(1), "", "live"), (url(1), "https://example.com/", "missing")]


def test_a_drop_read_after_a_later_sample_ends_its_vouching_as_for_the_link(
    store: Store,
) -> None:
    store.ingest(SITE, "gsc", _page_only(0, 1), GUARDS, day(0) + timedelta(hours=1))
    ingest(store, 1, ALL)
    # Search Console's export of day 5 is read first, the complete export of day 3 (no
    # longer listing the page's link) after it: the drop is dated at day 5, its effective
    # time, and no sample read before it is later. The link goes missing, and the
    # placeholder fades with it, even when sample_ttl was cut meanwhile (a sample read
    # before vouches past the new ttl).
    store.ingest(SITE, "gsc", _page_only(5, 1), GUARDS, day(5) + timedelta(hours=1))
    shorter = GuardSettings(confirm_after=2, suspect_below=0.5, sample_ttl=timedelta(days=1))
    ingest(store, 3, [n for n in ALL if n > 1], guards=shorter)
    assert _pages(store, 1) == [
        (url(1), "", "unconfirmed"),
        (url(1), "https://example.com/", "missing"),
    ]


@pytest.mark.parametrize("baseline", [True, False], ids=["baseline", "later snapshot"])
def test_a_link_listed_twice_is_stored_as_its_first_row(store: Store, baseline: bool) -> None:
    """A baseline's rows are sorted by key before they are stored: a key listed twice
    still keeps the row the file lists first, whichever of its rows sorts first."""
    if not baseline:
        ingest(store, 0, [1, 2])
    when = 1 if not baseline else 0
    ingest(
        store,
        when,
        [
            bl(1, anchor="zz first"),
            bl(2, anchor="aa first"),
            bl(3),
            bl(2, anchor="zz second"),
            bl(1, anchor="aa second"),
        ],
    )
    anchors = {row["url_from"]: row["anchor"] for row in store.links(SITE)}
    assert anchors[url(1)] == "zz first"
    assert anchors[url(2)] == "aa first"
    assert store.conn.execute("SELECT count(*) FROM links").fetchone()[0] == 3


# --- a site's first links ------------------------------------------------------------------


def _ledger_rows(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    tables = ("links", "sightings", "link_events", "lost_marks")
    return {t: store.conn.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in tables}


def _varied(n: int) -> list[Backlink]:
    """Rows of every kind a baseline sorts out: duplicates, lost rows, unrated, a link to
    another site, one of the site to itself, nofollow, an empty anchor."""
    rows = [bl(i, nofollow=None if i % 7 == 0 else i % 3 == 0) for i in range(n, 0, -1)]
    rows += [bl(5, anchor="second row of 5"), bl(n + 1, lost=True, lost_reason="404")]
    rows += [bl(n + 2, anchor=""), Backlink(url_from=url(n + 3), url_to="https://other.org/")]
    rows += [Backlink(url_from="https://www.example.com/blog", url_to="https://example.com/x")]
    return rows


def test_a_sites_first_links_are_stored_as_the_general_diff_stores_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing of the site stored: its first snapshot skips probing the ledger for each
    row, and stores exactly what the general diff stores; later snapshots too."""
    from daemon.store import ledger

    taken: list[bool] = []
    real = ledger._nothing_stored

    def spy(step: Any) -> bool:
        taken.append(real(step))
        return taken[-1]

    def run(folder: str, fast: bool) -> dict[str, list[tuple[Any, ...]]]:
        monkeypatch.setattr(ledger, "_nothing_stored", spy if fast else lambda step: False)
        s = Store(tmp_path / folder / "linkwatch.db")
        try:
            s.ensure_site(SITE, "own")
            first = s.ingest(SITE, "ahrefs", snap(0, _varied(40)), GUARDS, day(0))
            assert (first.status, first.seen) == ("baseline", 41)
            s.ingest(SITE, "ahrefs", snap(1, [bl(i) for i in range(3, 45)]), GUARDS, day(1))
            # A second series' baseline: the site has links, so the general diff runs.
            s.ingest(SITE, "moz", snap(2, [bl(i) for i in range(1, 50)]), GUARDS, day(2))
            assert s.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            indexes = s.conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name"
            ).fetchall()
            return _ledger_rows(s) | {"indexes": indexes}
        finally:
            s.close()

    fast = run("fast", True)
    general = run("general", False)
    assert taken == [True, False]
    assert fast == general
    assert len(fast["links"]) == 49 and len(fast["link_events"]) > 0
    assert {"links_from", "links_filter"} <= {name for name, _ in fast["indexes"]}


def test_a_first_import_larger_than_the_ledger_builds_two_indexes_again(
    store: Store,
) -> None:
    """A site's first links outnumbering every link stored: the two indexes they would
    enter at random are dropped and built again after the insert (integrity_check reads
    every entry against the rows); fewer, and the indexes are left alone."""
    store.ensure_site("other.example", "own")
    built: list[str] = []

    def watch(sql: str) -> None:
        if sql.startswith(("CREATE INDEX links_", "DROP INDEX links_")):
            built.append(sql.split(" ON ")[0])

    store.conn.set_trace_callback(watch)
    try:
        ingest(store, 0, ALL)
        assert built == [
            "DROP INDEX links_from",
            "DROP INDEX links_filter",
            "CREATE INDEX links_from",
            "CREATE INDEX links_filter",
        ]
        built.clear()
        # As many links of another site as are stored: inserted into the indexes as they are.
        records = [
            Backlink(url_from=url(n), url_to="https://other.example/", domain_rating=1.0)
            for n in range(10)
        ]
        store.ingest("other.example", "ahrefs", snap(0, records), GUARDS, day(0))
        assert built == []
    finally:
        store.conn.set_trace_callback(None)
    assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    count = store.conn.execute(
        "SELECT count(*) FROM links INDEXED BY links_filter WHERE site_id = 1"
    ).fetchone()[0]
    assert count == 10
    # Only stored indexes with a definition are set aside: none for a missing name or an
    # index SQLite made itself for a constraint.
    from daemon.store import dialect

    assert dialect.index_definition(store.conn, "no_such_index") is None
    auto = store.conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NULL LIMIT 1"
    ).fetchone()
    assert auto is not None and dialect.index_definition(store.conn, auto[0]) is None


def test_staging_is_dropped_after_the_write_transaction(store: Store) -> None:
    """The staged rows are dropped once the diff is committed: other writers never wait
    for it (dropping a million staged rows takes a second), and none is left behind."""
    from daemon.store import dialect

    writing = [False]
    drops: list[bool] = []

    def watch(sql: str) -> None:
        if sql == dialect.BEGIN_WRITE:
            writing[0] = True
        elif sql in ("COMMIT", "ROLLBACK"):
            writing[0] = False
        elif sql.startswith("DROP TABLE IF EXISTS temp.staging"):
            drops.append(writing[0])

    ingest(store, 0, ALL)
    store.conn.set_trace_callback(watch)
    try:
        ingest(store, 1, [1, 2, 3])
    finally:
        store.conn.set_trace_callback(None)
    # Dropped before staging (nothing there yet) and after the commit; never while the
    # write lock is held.
    assert len(drops) >= 2 and not any(drops)
    # Staged on 16 KB pages: the page size was set before the first temp table (after, it
    # would be ignored without a word).
    assert store.conn.execute("PRAGMA temp.page_size").fetchone()[0] == 16384
    # The first export's sort ran with a small buffer and two threads: both are back.
    assert store.conn.execute("PRAGMA cache_size").fetchone()[0] == -65536
    assert store.conn.execute("PRAGMA threads").fetchone()[0] == 0
    left = store.conn.execute(
        "SELECT count(*) FROM sqlite_temp_master WHERE name LIKE 'staging%'"
    ).fetchone()[0]
    assert left == 0


def test_a_snapshot_staged_as_a_later_one_that_becomes_the_baseline_keys_its_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Staged after an earlier snapshot (no page keys), stored after another process
    deleted that one: now the series' baseline on an empty site, its links still get
    their page keys (samples and placeholders find links by them)."""
    from daemon.store import ledger

    a = Store(tmp_path / "linkwatch.db")
    b = Store(tmp_path / "linkwatch.db")
    try:
        a.ensure_site(SITE, "own")
        first = a.ingest(SITE, "ahrefs", snap(0, [bl(i) for i in range(1, 6)]), GUARDS, day(0))
        staged = ledger._stage_any

        def stage_then_delete(*args: Any, **kwargs: Any) -> tuple[int, int, int]:
            counts = staged(*args, **kwargs)
            b.delete_snapshot(first.snapshot_id, day(1))  # `snapshots delete` meanwhile
            return counts

        monkeypatch.setattr(ledger, "_stage_any", stage_then_delete)
        later = a.ingest(SITE, "ahrefs", snap(1, [bl(i) for i in range(1, 7)]), GUARDS, day(1))
        assert later.status == "baseline"
        keyed = a.conn.execute("SELECT count(*), count(from_key) FROM links").fetchone()
        assert keyed == (6, 6)
    finally:
        a.close()
        b.close()


def test_a_stored_snapshot_stands_when_its_staging_cannot_be_dropped(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The drop after the commit fails (a full disk under the temp files): the snapshot is
    stored and reported as such, the failure only logged."""
    import sqlite3

    from daemon.store import ledger

    def fail(conn: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(ledger, "_drop_staging", fail)
    outcome = ingest(store, 0, ALL)
    assert (outcome.status, outcome.seen) == ("baseline", 10)
    assert len(states(store)) == 10
    assert "staged rows not dropped" in caplog.text


def test_rebuilt_indexes_keep_planner_statistics_when_they_had_some(store: Store) -> None:
    """An analysed database: the two indexes built again after a large first import are
    measured again (a dropped index loses its statistics); a database never analysed
    gains none."""
    from daemon.store import dialect

    ingest(store, 0, ALL)
    assert not dialect.has_table(store.conn, "sqlite_stat1")
    dialect.analyze(store.conn)
    measured = {r[0] for r in store.conn.execute("SELECT idx FROM sqlite_stat1")}
    assert {"links_from", "links_filter"} <= measured
    store.ensure_site("other.example", "own")
    records = [
        Backlink(url_from=url(n), url_to="https://other.example/", domain_rating=1.0)
        for n in range(100, 140)
    ]
    store.ingest("other.example", "ahrefs", snap(0, records), GUARDS, day(0))
    stats = dict(
        store.conn.execute(
            "SELECT idx, stat FROM sqlite_stat1 WHERE idx IN ('links_from', 'links_filter')"
        ).fetchall()
    )
    assert set(stats) == {"links_from", "links_filter"}
    assert stats["links_from"].split()[0] == "50"  # the rows now indexed
