"""Every statement of the ingest path is bound to the site (or series) it works on.

A site's poll must cost in proportion to that site and its change, never to every link
the database holds (issue 9): each statement the ledger runs while ingesting a timeline of
every kind of snapshot is explained with `EXPLAIN QUERY PLAN`, and none may scan a stored
table whole — with the planner's default guesses and with statistics from `ANALYZE`.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from daemon.store import GuardSettings, Store
from daemon.store.ledger import ingest
from daemon.store.reads import LinkFilter, WindowSpec, lost_ratings, window_counts_kept
from sources.model import KNOWN_ROW, Backlink, RefDomain, SnapshotResult, pack_known

T0 = datetime(2026, 5, 1, tzinfo=UTC)
GUARDS = GuardSettings(confirm_after=2)

# A table name or alias after the words that introduce one.
_NAMED = re.compile(
    r"\b(?:FROM|JOIN|UPDATE|INTO)\s+(?:temp\.|main\.)?(\w+)"
    r"(?:\s+(?:AS\s+)?(?!(?:ON|WHERE|JOIN|LEFT|INNER|INDEXED|SET|GROUP|ORDER|USING|VALUES"
    r"|SELECT|NOT|AND|OR|LIMIT|UNION|EXCEPT|WHEN|THEN|END)\b)(\w+))?",
    re.IGNORECASE,
)


@dataclass
class Explained:
    """One statement the ledger ran and the steps of its plan."""

    sql: str
    steps: list[str] = field(default_factory=list)


class PlanConnection(sqlite3.Connection):
    """A connection that explains every statement before running it."""

    explained: list[Explained]

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        if not hasattr(self, "explained"):
            self.explained = []
        head = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
        if head in {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "CREATE"}:
            steps = [
                row[3]
                for row in super().execute(f"EXPLAIN QUERY PLAN {sql}", parameters).fetchall()
            ]
            self.explained.append(Explained(sql, steps))
        return super().execute(sql, parameters)


def aliases(sql: str) -> dict[str, str]:
    """Each name a table goes by in `sql` (its own name and any alias) -> the table."""
    named: dict[str, str] = {}
    for table, alias in _NAMED.findall(sql):
        named[table.lower()] = table.lower()
        if alias:
            named[alias.lower()] = table.lower()
    return named


def whole_scans(explained: Explained, stored: set[str]) -> list[str]:
    """The plan steps that read a stored table (or all of one of its indexes) whole: a
    scan, or a Bloom filter (SQLite builds one by scanning the table it filters)."""
    named = aliases(explained.sql)
    bad = []
    for step in explained.steps:
        match = re.match(r"(?:SCAN|BLOOM FILTER ON) (\w+)", step)
        if match is None:
            continue
        if named.get(match.group(1).lower(), match.group(1).lower()) in stored:
            bad.append(step)
    return bad


def _link(site: str, i: int, anchor: str = "a", lost: bool = False) -> Backlink:
    return Backlink(
        f"https://ref{i % 40}.example.org/p{i}",
        f"https://{site}/t{i % 7}",
        anchor,
        nofollow=bool(i % 3 == 0),
        domain_rating=float(i % 90),
        rating_metric="Ahrefs DR",
        lost=lost,
        lost_reason="removed" if lost else None,
    )


def _result(
    at: datetime, links: list[Backlink], fmt: str, *, sample: bool = False
) -> SnapshotResult:
    return SnapshotResult(
        taken_at=at,
        records=iter(links),
        origin=f"{fmt}-{at:%Y%m%d}.csv",
        format=fmt,
        digest=f"{fmt}{at.isoformat()}{len(links)}{sum(len(x.anchor or '') for x in links)}",
        sample=sample,
        # As an export's: the series' row fingerprints are read before the rows.
        fingerprints=not sample,
    )


def _domains(at: datetime, names: list[str]) -> SnapshotResult:
    result = _result(at, [], "ahrefs_domains")
    result.domain_records = iter(RefDomain(n, links=3, domain_rating=40.0) for n in names)
    return result


def _timeline(site: str) -> Iterator[tuple[str, SnapshotResult]]:
    """(source, snapshot) of every kind for one site: a baseline, churn with new, missing,
    changed, restored and provider-lost rows, samples, a domain series, a duplicate."""
    yield "ahrefs", _result(T0, [_link(site, i) for i in range(300)], "ahrefs")
    day = T0
    for n in range(1, 5):
        day = T0 + timedelta(days=n)
        anchor = "b" if n == 3 else "a"
        live = [_link(site, i, anchor if i < 40 else "a") for i in range(30 * n, 300 + n)]
        marked = [_link(site, i, lost=True) for i in range(10)] if n == 2 else []
        restored = [_link(site, i) for i in range(10, 20)] if n == 4 else []
        yield "ahrefs", _result(day, live + marked + restored, "ahrefs")
        sampled = [_link(site, i) for i in range(0, 60, 3)]
        yield "gsc", _result(day, sampled, "gsc", sample=True)
        page_only = Backlink(f"https://ref{n}.example.org/p{n}", "")
        yield "gsc", _result(day + timedelta(hours=1), [page_only], "gsc", sample=True)
        names = [f"d{i}.example.net" for i in range(n, 50)]
        yield "ahrefs_domains", _domains(day, names)
    # The same export again: a duplicate.
    yield "ahrefs", _result(day, [_link(site, i) for i in range(120, 304)], "ahrefs")


def _recognised_before_a_change(
    conn: sqlite3.Connection, site: str, site_id: int, at: datetime
) -> SnapshotResult:
    """Links 0-39 recognised by their fingerprints against values the series has since
    changed (as when another process stores a snapshot meanwhile): they are read back from
    the sightings that had them. The other links are listed as they are."""
    result = _result(at, [], "ahrefs")

    def records() -> Iterator[Backlink]:
        yield from (_link(site, i) for i in range(40, 304))
        # Read when the snapshot is (after the timeline before it), and not explained.
        older = sqlite3.Connection.execute(
            conn,
            """SELECT link_key, digest FROM sightings WHERE site_id = ? AND digest IS NOT NULL
            AND ended_snapshot_id IS NOT NULL AND series_id = (SELECT id FROM series
                WHERE site_id = ? AND format = 'ahrefs')
            GROUP BY link_key""",
            (site_id, site_id),
        ).fetchall()
        assert older
        for key, digest in older:
            result.known = pack_known(key, digest)
            yield KNOWN_ROW

    result.records = records()
    return result


def _ingest_site(store: Store, conn: sqlite3.Connection, site: str) -> None:
    site_id = store.ensure_site(site, "own")
    # A key retention forgot: the ingest then looks for forgotten links coming back.
    conn.execute("INSERT INTO forgotten_links (site_id, link_key) VALUES (?, 12345)", (site_id,))
    timeline = list(_timeline(site))
    timeline.append(
        ("ahrefs", _recognised_before_a_change(conn, site, site_id, T0 + timedelta(days=6)))
    )
    for n, (source, result) in enumerate(timeline):
        ingest(
            conn,
            site_id=site_id,
            site=site,
            source=source,
            result=result,
            guards=GUARDS,
            now=T0 + timedelta(days=10, seconds=n),
        )


def _as_if_large(conn: sqlite3.Connection) -> None:
    """Statistics as an agency's database would give them: every stored table and index
    ten thousand times larger, each key as selective as here."""
    for name, index, stat in conn.execute("SELECT tbl, idx, stat FROM sqlite_stat1").fetchall():
        rows, *rest = stat.split(" ")
        conn.execute(
            "UPDATE sqlite_stat1 SET stat = ? WHERE tbl = ? AND idx IS ?",
            (" ".join([str(int(rows) * 10_000), *rest]), name, index),
        )
    conn.execute("ANALYZE sqlite_schema")  # load the statistics just written


@contextmanager
def _planned(
    tmp_path: Path, analyzed: str, sites: tuple[str, ...]
) -> Iterator[tuple[Store, PlanConnection]]:
    """A database holding the timelines of `sites`, with statistics as `analyzed` says
    (none, measured, or as if large); its connection explains what runs from then on."""
    path = tmp_path / "plans.db"
    store = Store(path)
    conn = sqlite3.connect(path, isolation_level=None, factory=PlanConnection)
    try:
        for site in sites:
            _ingest_site(store, conn, site)
        if analyzed != "no":
            conn.execute("ANALYZE")
        if analyzed == "large":
            _as_if_large(conn)
        conn.explained = []
        yield store, conn
    finally:
        conn.close()
        store.close()


def assert_no_whole_scans(conn: PlanConnection, explained: list[Explained]) -> None:
    """None of the statements read a stored table whole."""
    stored = {
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    }
    scans = {e.sql.strip(): bad for e in explained if (bad := whole_scans(e, stored))}
    assert not scans, "\n\n".join(f"{sql}\n  -> {bad}" for sql, bad in scans.items())


@pytest.mark.parametrize("analyzed", ["no", "yes", "large"])
def test_no_ingest_statement_reads_a_stored_table_whole(tmp_path: Path, analyzed: str) -> None:
    # Other sites' links fill the tables the ingest must never walk.
    with _planned(tmp_path, analyzed, ("a.test", "b.test")) as (store, conn):
        _ingest_site(store, conn, "site.test")
        explained = conn.explained
        assert len(explained) > 100  # the statements were seen (and explained)
        # Rows recognised against older values were read back from their sightings.
        assert any(e.sql.lstrip().startswith("UPDATE staging SET url_from") for e in explained)
        assert any(e.sql.lstrip().startswith("SELECT raw, link_key, digest") for e in explained)
        assert_no_whole_scans(conn, explained)


def test_the_plan_check_sees_a_whole_scan(tmp_path: Path) -> None:
    store = Store(tmp_path / "plans.db")
    conn = sqlite3.connect(tmp_path / "plans.db", isolation_level=None, factory=PlanConnection)
    try:
        conn.execute("SELECT count(*) FROM links l WHERE l.anchor = 'x'")
        conn.execute("SELECT count(*) FROM links l WHERE l.site_id = 1 AND l.anchor = 'x'")
        scans = [whole_scans(e, {"links"}) for e in conn.explained]
    finally:
        conn.close()
        store.close()
    assert scans[0] and not scans[1]


@pytest.mark.parametrize("analyzed", ["no", "yes", "large"])
def test_the_evaluation_pass_reads_a_windows_losses_from_their_index_alone(
    tmp_path: Path, analyzed: str
) -> None:
    """A lost-domain list reads a window's losses in the index of lost events alone (never
    a table row per event, nor the other events); no statement of an evaluation pass, nor
    that read, reads a stored table whole."""
    with _planned(tmp_path, analyzed, ("a.test", "site.test")) as (store, conn):
        site_id = store.site_id("site.test")
        start, end = T0, T0 + timedelta(days=10)
        watched = LinkFilter(dofollow_only=True, domains=("ref1.example.org",))
        specs = [WindowSpec(start, end), WindowSpec(start, end, watched)]
        counts, moved = window_counts_kept(conn, site_id, specs)
        assert moved is not None and counts[specs[0]].lost_links > 0
        assert moved.lost_ratings(start, end, None, limit=5)
        assert lost_ratings(conn, site_id, start, end, watched, limit=5) is not None
        explained = conn.explained
        losses = [e for e in explained if "e.kind = 'lost'" in e.sql]
        assert len(losses) == 2
        for e in losses:
            assert any(
                "COVERING INDEX link_events_lost (site_id=? AND at>? AND at<?)" in step
                for step in e.steps
            ), e.steps
        assert_no_whole_scans(conn, explained)
