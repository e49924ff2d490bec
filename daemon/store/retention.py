"""Retention: prune history older than `[storage] keep` that no rule can read any more.

The rules are in docs/storage.md. In short, for a horizon H (now - keep, moved back to
cover the longest reach of the rules in force): every number a metric over a window
(start, end] with start >= H reads stays the same, and an ingest after the pruning makes
the same link states and events as without it. Links lost before H are forgotten but for
their key and attributes: listed again, they are restored as they would have been.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

from daemon.store import dialect
from daemon.store.dialect import greatest, temp
from daemon.timefmt import from_db, to_db

# Where the horizon a site's history was pruned at is kept (table meta, one key per site):
# `snapshots delete` refuses what would need the history before it.
PRUNED_KEY = "pruned_before:{site_id}"
# Events that set a link's state and the states they leave it in (daemon/store/reads.py):
# a link's state at t is the one its latest such event at or before t left, else live.
_STATE_KINDS = "('new', 'appeared', 'restored', 'missing', 'lost', 'unconfirmed')"
_NOT_LIVE_KINDS = "('missing', 'lost', 'unconfirmed')"
# What retention counts, in the order it reports them.
COUNTED = (
    "links",
    "link_events",
    "sightings",
    "lost_marks",
    "domain_sightings",
    "snapshots",
    "alert_history",
    "outbox",
    "alert_threads",
    "silences",
)


@dataclass
class RetentionReport:
    """What one retention pass deleted (or would delete, in a dry run), table by table."""

    horizon: datetime | None
    dry_run: bool = False
    deleted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTED, 0))
    # Sites whose history now starts at the horizon.
    pruned_sites: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Rows deleted in all."""
        return sum(self.deleted.values())


def horizon_for(keep: timedelta | None, now: datetime, reach: timedelta) -> datetime | None:
    """The instant before which history is pruned, or None to keep everything: `keep` ago,
    or earlier when a rule in force reaches further back (`reach`)."""
    if keep is None:
        return None
    return now - max(keep, reach)


def pruned_before(conn: sqlite3.Connection, site_id: int) -> datetime | None:
    """The horizon a site's history was last pruned at, or None if it never was."""
    row = conn.execute(
        "SELECT value FROM meta WHERE key = ?", (PRUNED_KEY.format(site_id=site_id),)
    ).fetchone()
    return from_db(str(row[0])) if row else None


def apply_retention(
    conn: sqlite3.Connection,
    keep: timedelta | None,
    now: datetime,
    *,
    reach: timedelta = timedelta(0),
    dry_run: bool = False,
) -> RetentionReport:
    """Delete the history older than the horizon that can no longer matter (docs/storage.md);
    one short write transaction per site, so ingests never wait long. With `dry_run`
    each transaction is rolled back: the report says what would be deleted."""
    horizon = horizon_for(keep, now, reach)
    report = RetentionReport(horizon, dry_run)
    if horizon is None:
        return report
    h = to_db(horizon)
    sites = conn.execute("SELECT id, domain FROM sites ORDER BY id").fetchall()
    for site_id, domain in sites:
        deleted = _in_transaction(conn, dry_run, partial(_prune_site, conn, int(site_id), h, now))
        for table, n in deleted.items():
            report.deleted[table] += n
        if sum(deleted.values()):
            report.pruned_sites.append(str(domain))
    deleted = _in_transaction(conn, dry_run, partial(_prune_alerts, conn, h))
    for table, n in deleted.items():
        report.deleted[table] += n
    return report


def _in_transaction(
    conn: sqlite3.Connection, dry_run: bool, work: Callable[[], dict[str, int]]
) -> dict[str, int]:
    conn.execute(dialect.BEGIN_WRITE)
    try:
        done = work()
    except BaseException:
        conn.execute("ROLLBACK")
        _drop_temp(conn)
        raise
    conn.execute("ROLLBACK" if dry_run else "COMMIT")
    _drop_temp(conn)
    return done


_TEMP = ("retired_links", "merged_sightings", "merged_domain_sightings", "kept_snapshots")


def _drop_temp(conn: sqlite3.Connection) -> None:
    for name in _TEMP:
        conn.execute(f"DROP TABLE IF EXISTS {temp(name)}")


# The columns of a forgotten link kept in forgotten_links.
_FORGOTTEN = (
    "url_from", "url_to", "anchor", "nofollow", "ugc", "sponsored", "attrs", "domain_rating",
    "rating_metric", "toxicity", "first_seen_at", "dropped_at", "sample_until", "from_key",
)  # fmt: skip


def _prune_site(conn: sqlite3.Connection, site_id: int, h: str, now: datetime) -> dict[str, int]:
    """One site's pruning; the counts of what went, table by table."""
    x = conn.execute
    p = {"site": site_id, "h": h}
    n: dict[str, int] = {}
    # Links lost before the horizon, with nothing since: no window from the horizon on sees
    # them (not alive at its start, no event in it), so they go with all they left behind.
    x(
        """CREATE TEMP TABLE retired_links AS
        SELECT id, link_key FROM links l
        WHERE l.site_id = :site AND l.state = 'lost' AND l.lost_at < :h AND l.seen_by = 0
          AND NOT EXISTS (SELECT 1 FROM link_events e WHERE e.link_id = l.id AND e.at >= :h)""",
        p,
    )
    x(f"CREATE INDEX {temp('retired_links_key')} ON retired_links(link_key)")
    n["link_events"] = x(
        "DELETE FROM link_events WHERE link_id IN (SELECT id FROM retired_links)"
    ).rowcount
    n["sightings"] = x(
        """DELETE FROM sightings WHERE site_id = :site
        AND link_key IN (SELECT link_key FROM retired_links)""",
        p,
    ).rowcount
    n["lost_marks"] = x(
        """DELETE FROM lost_marks WHERE site_id = :site
        AND link_key IN (SELECT link_key FROM retired_links)""",
        p,
    ).rowcount
    # What a link listed again comes back with: the attributes it had (and when a series
    # last dropped it: whether a sample may restore it), as if it had been kept.
    columns = ", ".join(_FORGOTTEN)
    x(
        f"""INSERT INTO forgotten_links (site_id, link_key, {columns})
        SELECT :site, link_key, {columns} FROM links
        WHERE id IN (SELECT id FROM retired_links)
        ON CONFLICT (site_id, link_key) DO UPDATE SET
            {", ".join(f"{c} = excluded.{c}" for c in _FORGOTTEN)}""",
        p,
    )
    n["links"] = x("DELETE FROM links WHERE id IN (SELECT id FROM retired_links)").rowcount
    # Events before the horizon: a link's state at any instant from the horizon on is its
    # latest state event up to then, else live. So of the events before the horizon only
    # each link's latest state event is kept, and only when it left the link not live.
    n["link_events"] += x(
        f"""DELETE FROM link_events WHERE site_id = :site AND at < :h AND id NOT IN (
            SELECT id FROM (
                SELECT id, kind, row_number() OVER (
                    PARTITION BY link_id ORDER BY at DESC, id DESC) AS latest
                FROM link_events
                WHERE site_id = :site AND at < :h AND kind IN {_STATE_KINDS})
            WHERE latest = 1 AND kind IN {_NOT_LIVE_KINDS})""",
        p,
    ).rowcount
    # Lost marks whose interval ended before the horizon: only a rebuild read them.
    n["lost_marks"] += x(
        """DELETE FROM lost_marks WHERE site_id = :site AND ended_snapshot_id IN (
            SELECT id FROM snapshots WHERE site_id = :site AND taken_at < :h)""",
        p,
    ).rowcount
    n["sightings"] += _merge_intervals(conn, "sightings", "link_key", p)
    n["domain_sightings"] = _merge_intervals(conn, "domain_sightings", "domain", p)
    n["snapshots"] = _prune_snapshots(conn, site_id, h, now)
    if sum(n.values()):
        x(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            f" ON CONFLICT(key) DO UPDATE SET value = {greatest('value', 'excluded.value')}",
            (PRUNED_KEY.format(site_id=site_id), h),
        )
    return n


def _merge_intervals(conn: sqlite3.Connection, table: str, key: str, p: dict[str, object]) -> int:
    """Merge the intervals of `table` that ended before the horizon into one per (series,
    key): the latest of them, stretched back to the first one's start. What `linkwatch
    links` shows (first and last sighting, latest values) and whether a series ever listed
    a key (a domain listed again is restored, not new) stay as they were."""
    x = conn.execute
    closed = "site_id = :site AND ended_snapshot_id IS NOT NULL AND last_at < :h"
    x(f"DROP TABLE IF EXISTS {temp('merged_' + table)}")
    x(
        f"""CREATE TEMP TABLE merged_{table} AS
        SELECT series_id, {key} AS k, max(id) AS keep_id, min(first_at) AS first_at
        FROM {table} WHERE {closed}
        GROUP BY series_id, {key} HAVING count(*) > 1""",
        p,
    )
    x(
        f"""UPDATE {table} SET first_at = m.first_at, first_snapshot_id = (
                SELECT o.first_snapshot_id FROM {table} o
                WHERE o.series_id = m.series_id AND o.{key} = m.k
                  AND o.ended_snapshot_id IS NOT NULL AND o.last_at < :h
                ORDER BY o.first_at, o.id LIMIT 1)
        FROM merged_{table} m WHERE {table}.id = m.keep_id""",
        p,
    )
    gone = x(
        f"""DELETE FROM {table} WHERE {closed} AND id NOT IN (SELECT keep_id FROM merged_{table})
        AND EXISTS (SELECT 1 FROM merged_{table} m
                    WHERE m.series_id = {table}.series_id AND m.k = {table}.{key})""",
        p,
    ).rowcount
    x(f"DROP TABLE {temp('merged_' + table)}")
    return int(gone)


def _prune_snapshots(conn: sqlite3.Connection, site_id: int, h: str, now: datetime) -> int:
    """Snapshot rows taken and stored before the horizon, but for those an ingest, a guard,
    source health or a listing still reads (docs/storage.md); their files stay known."""
    x = conn.execute
    p = {"site": site_id, "h": h, "now": to_db(now)}
    x(f"DROP TABLE IF EXISTS {temp('kept_snapshots')}")
    x(
        """CREATE TEMP TABLE kept_snapshots AS
        WITH s AS (SELECT * FROM snapshots WHERE site_id = :site),
        accepted AS (SELECT * FROM s WHERE status IN ('baseline', 'complete')),
        latest_accepted AS (
            SELECT series_id, max(taken_at) AS taken_at FROM accepted GROUP BY series_id)
        -- The latest accepted snapshot of each series: the order and size guards.
        SELECT a.id FROM accepted a JOIN latest_accepted l
          ON l.series_id = a.series_id AND l.taken_at = a.taken_at
        -- Everything since it: a next snapshot can only be taken after it, so these are
        -- all a duplicate (same content, taken as late) or a run of agreeing suspect
        -- snapshots is found among.
        UNION SELECT s.id FROM s JOIN latest_accepted l
          ON l.series_id = s.series_id AND s.taken_at >= l.taken_at
        -- Source health as of any instant from the horizon on: each series' (and each
        -- source's failed polls') latest row stored before it, and latest accepted one.
        UNION SELECT id FROM (
            SELECT id, row_number() OVER (
                PARTITION BY source, coalesce(series_id, 0)
                ORDER BY created_at DESC, id DESC) AS n
            FROM s WHERE created_at < :h)
          WHERE n = 1
        UNION SELECT id FROM (
            SELECT id, row_number() OVER (
                PARTITION BY series_id ORDER BY taken_at DESC, id DESC) AS n
            FROM accepted WHERE created_at < :h)
          WHERE n = 1
        -- The site's first accepted link snapshot: when links there before history began
        -- were first seen (`linkwatch links`), and that the site has data at all.
        UNION SELECT min(a.id) FROM accepted a
          WHERE NOT EXISTS (SELECT 1 FROM series se
                            WHERE se.id = a.series_id AND se.coverage = 'domains')""",
        p,
    )
    doomed = "site_id = :site AND taken_at < :h AND created_at < :h" + (
        " AND id NOT IN (SELECT id FROM kept_snapshots WHERE id IS NOT NULL)"
    )
    # A csv_dir source skips the files it has read (name and stamp): a pruned snapshot's
    # file stays known the way a deleted one's does.
    x(
        f"""INSERT INTO deleted_snapshots (site_id, source, origin, origin_stamp, taken_at,
               status, deleted_at, digest)
        SELECT site_id, source, origin, origin_stamp, max(taken_at), 'pruned', :now, digest
        FROM snapshots d WHERE {doomed}
          AND NOT EXISTS (SELECT 1 FROM snapshots k WHERE k.site_id = d.site_id
                          AND k.source = d.source AND k.origin = d.origin
                          AND k.origin_stamp IS d.origin_stamp AND k.digest IS d.digest
                          AND k.id IN (SELECT id FROM kept_snapshots))
          AND NOT EXISTS (SELECT 1 FROM deleted_snapshots k WHERE k.site_id = d.site_id
                          AND k.source = d.source AND k.origin = d.origin
                          AND k.origin_stamp IS d.origin_stamp AND k.digest IS d.digest)
        -- One row per file and content: what csv_dir skips, and what is_duplicate knows.
        GROUP BY site_id, source, origin, origin_stamp, digest""",
        p,
    )
    gone = x(f"DELETE FROM snapshots WHERE {doomed}", p).rowcount
    x(f"DROP TABLE {temp('kept_snapshots')}")
    return int(gone)


def _prune_alerts(conn: sqlite3.Connection, h: str) -> dict[str, int]:
    """Alert history, delivered messages, threads and silences older than the horizon;
    never an alert's state, a message still owed (pending, being sent, dead-lettered: it
    may be retried), or the thread a message still owed replies in."""
    x = conn.execute
    p = {"h": h}
    return {
        # Each alert's latest transition stays, whatever its age: its history has a start.
        "alert_history": x(
            """DELETE FROM alert_history WHERE at < :h AND id NOT IN (
                SELECT max(id) FROM alert_history GROUP BY fingerprint)""",
            p,
        ).rowcount,
        "outbox": x(
            """DELETE FROM outbox WHERE status IN ('sent', 'silenced') AND created_at < :h
            AND coalesce(sent_at, created_at) < :h""",
            p,
        ).rowcount,
        "alert_threads": x(
            """DELETE FROM alert_threads WHERE fired_at < :h
            AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.fingerprint = alert_threads.fingerprint
                            AND a.state IN ('pending', 'firing'))
            AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.notifier = alert_threads.notifier
                            AND o.status NOT IN ('sent', 'silenced'))""",
            p,
        ).rowcount,
        "silences": x("DELETE FROM silences WHERE ends_at < :h", p).rowcount,
    }


def file_size(path: Path) -> int:
    """The database's size on disk in bytes: the file and its write-ahead log."""
    total = 0
    for candidate in (path, path.with_name(path.name + "-wal")):
        try:
            total += candidate.stat().st_size
        except OSError:
            continue
    return total


def vacuum(conn: sqlite3.Connection) -> bool:
    """Rewrite the file without its free pages, and give the log's space back; False when
    another connection's read kept the log (see `dialect.checkpoint`)."""
    dialect.vacuum(conn)
    # In WAL mode the rewritten pages sit in the log until a checkpoint copies them back.
    return dialect.checkpoint(conn)


def reach_of(rules: Iterable[object]) -> timedelta:
    """How far back the rules read: the longest window, times the windows a spike rule
    compares it with plus one."""
    reach = timedelta(0)
    for rule in rules:
        window = getattr(rule, "window", None)
        if not isinstance(window, timedelta):
            continue
        baseline = getattr(rule, "baseline_windows", 0)
        windows = 1 + (baseline if isinstance(baseline, int) else 0)
        reach = max(reach, window * windows)
    return reach


@dataclass
class MaintenanceReport:
    """What one maintenance run did: retention, statistics, VACUUM; sizes in bytes."""

    retention: RetentionReport
    size_before: int
    size_after: int
    # The share of the file's pages that were free before VACUUM (or would be, dry).
    free_before: float
    vacuumed: bool
    analyzed: bool
    # False when a reader kept the log: the file on disk has not shrunk yet.
    log_emptied: bool = True


# The daily maintenance rewrites the file when at least this share of it is free pages.
VACUUM_ABOVE = 0.25


def maintain(
    conn: sqlite3.Connection,
    path: Path,
    keep: timedelta | None,
    now: datetime,
    *,
    reach: timedelta = timedelta(0),
    dry_run: bool = False,
    vacuum_now: bool | None = None,
) -> MaintenanceReport:
    """Retention, then ANALYZE, then VACUUM when `VACUUM_ABOVE` of the file is free
    (`vacuum_now`: always with True, never with False); a dry run changes nothing."""
    size_before = file_size(path)
    report = apply_retention(conn, keep, now, reach=reach, dry_run=dry_run)
    free = dialect.free_fraction(conn)
    if dry_run:
        return MaintenanceReport(report, size_before, size_before, free, False, False)
    dialect.analyze(conn)
    wanted = free >= VACUUM_ABOVE if vacuum_now is None else vacuum_now
    # Pages freed by retention and not vacuumed are reused by later ingests.
    emptied = vacuum(conn) if wanted else dialect.checkpoint(conn)
    return MaintenanceReport(report, size_before, file_size(path), free, wanted, True, emptied)
