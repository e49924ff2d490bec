"""Ingest: one snapshot streamed into a staging table, diffed against the ledger in SQL."""

from __future__ import annotations

import sqlite3
import time
import zlib
from dataclasses import dataclass
from datetime import datetime

from daemon.timefmt import from_db, to_db
from sources.model import SnapshotResult
from sources.urls import (
    host_name,
    join_normalized,
    link_key,
    normalize_target,
    registrable_domain,
    split_url,
)

_BATCH = 10_000
ACCEPTED = ("baseline", "complete")


class OutOfOrderError(ValueError):
    """A snapshot older than the latest accepted one of its (site, source)."""


@dataclass(frozen=True)
class GuardSettings:
    """The false-alarm guards of one source."""

    confirm_after: int = 2
    suspect_below: float = 0.5
    # A small snapshot is believed once this many in a row (itself included) agree on
    # the size within `agree_within`: a real collapse is not suspect forever, while two
    # truncated exports in a row still change nothing.
    suspect_accept_after: int = 3
    agree_within: float = 0.1


@dataclass(frozen=True)
class IngestOutcome:
    """What one ingest did: the snapshot's status and its counts."""

    snapshot_id: int
    site: str
    source: str
    origin: str
    taken_at: datetime
    status: str
    seen: int = 0
    new: int = 0
    missing: int = 0
    restored: int = 0
    lost: int = 0
    changed: int = 0
    malformed: int = 0
    note: str | None = None
    examples: tuple[str, ...] = ()


# Rows an export lists as live go to `staging`, rows it marks lost to `staging_lost`.
_STAGING = (
    """CREATE TEMP TABLE staging (
        link_key INTEGER NOT NULL,
        url_from TEXT, url_to TEXT, anchor TEXT,
        nofollow INTEGER, ugc INTEGER, sponsored INTEGER,
        refdomain TEXT, domain_rating REAL, first_seen REAL, attrs INTEGER
    )""",
    "CREATE TEMP TABLE staging_lost (link_key INTEGER NOT NULL, reason TEXT)",
)
_STAGE_ROW = "INSERT INTO staging VALUES (?,?,?,?,?,?,?,?,?,?,?)"
_STAGE_LOST = "INSERT INTO staging_lost VALUES (?,?)"
# Appending and indexing afterwards is several times faster than inserting into a keyed
# table at random positions. Duplicate keys are rare; a key listed twice keeps its first row.
_INDEX_AND_DEDUPE = (
    "CREATE INDEX temp.staging_key ON staging(link_key, attrs)",
    """DELETE FROM staging WHERE rowid IN (
        SELECT s.rowid FROM staging s
        JOIN (SELECT link_key FROM staging GROUP BY link_key HAVING count(*) > 1) d
          ON d.link_key = s.link_key
        WHERE s.rowid != (SELECT min(s2.rowid) FROM staging s2 WHERE s2.link_key = s.link_key))""",
)
_DROP_STAGING = ("DROP TABLE IF EXISTS temp.staging", "DROP TABLE IF EXISTS temp.staging_lost")
# Exact attribute comparison; a source that does not give a field (NULL) changes nothing.
_CHANGED = """(
    (s.anchor IS NOT NULL AND s.anchor IS NOT l.anchor)
    OR (s.nofollow IS NOT NULL AND s.nofollow IS NOT l.nofollow)
    OR (s.ugc IS NOT NULL AND s.ugc IS NOT l.ugc)
    OR (s.sponsored IS NOT NULL AND s.sponsored IS NOT l.sponsored)
)"""


def attributes_digest(
    anchor: str | None, nofollow: bool | None, ugc: bool | None, sponsored: bool | None
) -> int:
    """A cheap fingerprint of a link's attributes: equal digests need no closer look."""
    return zlib.crc32(f"{anchor}\x1f{nofollow}\x1f{ugc}\x1f{sponsored}".encode())


def _stage(conn: sqlite3.Connection, result: SnapshotResult) -> None:
    """Stream the snapshot's records into the staging tables in batches."""
    report = result.report
    batch: list[tuple[object, ...]] = []
    lost_batch: list[tuple[int, str | None]] = []
    for rec in result.records:
        url_from, url_to, anchor, nofollow, ugc, sponsored, rating, first, lost, reason = rec
        parts_from = split_url(url_from)
        if parts_from is None:
            report.add(result.line, f"referring page is not a URL: {url_from[:200]!r}")
            continue
        norm_to = normalize_target(url_to)
        if norm_to is None:
            report.add(result.line, f"target is not a URL: {url_to[:200]!r}")
            continue
        key = link_key(join_normalized(*parts_from), norm_to)
        if lost:
            lost_batch.append((key, reason))
            continue
        batch.append(
            (
                key,
                url_from,
                url_to,
                anchor,
                nofollow,
                ugc,
                sponsored,
                registrable_domain(host_name(parts_from[0])),
                rating,
                # Epoch seconds: converting only the few new links' dates in SQL is far
                # cheaper than formatting a million of them here.
                first.timestamp() if first is not None else None,
                attributes_digest(anchor, nofollow, ugc, sponsored),
            )
        )
        if len(batch) >= _BATCH:
            conn.executemany(_STAGE_ROW, batch)
            batch.clear()
    if batch:
        conn.executemany(_STAGE_ROW, batch)
    if lost_batch:
        conn.executemany(_STAGE_LOST, lost_batch)
    for statement in _INDEX_AND_DEDUPE:
        conn.execute(statement)


def source_bit(conn: sqlite3.Connection, site_id: int, source: str) -> int:
    """The seen_by bit of a (site, source), assigned on first use."""
    row = conn.execute(
        "SELECT bit FROM site_sources WHERE site_id = ? AND source = ?", (site_id, source)
    ).fetchone()
    if row is not None:
        return int(row[0])
    used = conn.execute(
        "SELECT coalesce(max(bit), 0) FROM site_sources WHERE site_id = ?", (site_id,)
    ).fetchone()[0]
    bit = 1 if used == 0 else int(used) << 1
    if bit >= 1 << 62:
        raise ValueError(f"site {site_id} has more than 62 sources")
    conn.execute(
        "INSERT INTO site_sources (site_id, source, bit) VALUES (?, ?, ?)", (site_id, source, bit)
    )
    return bit


@dataclass(frozen=True)
class _Previous:
    seen: int
    taken_at: str
    digest: str | None


def latest_accepted(conn: sqlite3.Connection, site_id: int, source: str) -> _Previous | None:
    """The latest baseline or complete snapshot of a (site, source)."""
    row = conn.execute(
        "SELECT seen, taken_at, digest FROM snapshots WHERE site_id = ? AND source = ?"
        " AND status IN ('baseline', 'complete') ORDER BY taken_at DESC, id DESC LIMIT 1",
        (site_id, source),
    ).fetchone()
    return None if row is None else _Previous(int(row[0]), str(row[1]), row[2])


def _agreeing_suspects(
    conn: sqlite3.Connection, site_id: int, source: str, seen: int, guards: GuardSettings
) -> bool:
    """True when the snapshots just before this one were suspect and of about its size."""
    wanted = guards.suspect_accept_after - 1
    rows = conn.execute(
        "SELECT status, seen FROM snapshots WHERE site_id = ? AND source = ?"
        " AND status NOT IN ('error', 'duplicate') ORDER BY taken_at DESC, id DESC LIMIT ?",
        (site_id, source, wanted),
    ).fetchall()
    return len(rows) == wanted and all(
        status == "suspect" and abs(n - seen) <= guards.agree_within * max(seen, 1)
        for status, n in rows
    )


def ingest(
    conn: sqlite3.Connection,
    *,
    site_id: int,
    site: str,
    source: str,
    result: SnapshotResult,
    guards: GuardSettings,
    now: datetime,
) -> IngestOutcome:
    """Store one snapshot and apply its differences to the ledger, in one transaction.

    Only a complete snapshot of plausible size changes link state; the first accepted
    snapshot of a (site, source) is a silent baseline.
    """
    started = time.monotonic()
    taken = to_db(result.taken_at)
    conn.execute("BEGIN IMMEDIATE")
    try:
        prev = latest_accepted(conn, site_id, source)
        if prev is not None and taken < prev.taken_at:
            raise OutOfOrderError(
                f"{result.origin or source}: taken at {taken}, before the latest snapshot of "
                f"{site}/{source} ({prev.taken_at}); snapshots must be ingested in time order"
            )
        counts: dict[str, int] = {}
        note: str | None = None
        seen = 0
        if (
            prev is not None
            and result.digest is not None
            and result.digest == prev.digest
            and taken <= prev.taken_at
        ):
            # The same export again at the same time (re-imported, or saved twice): it
            # proves nothing new, so it must not confirm any loss. The same content at a
            # later time is a new observation.
            status, seen = "duplicate", prev.seen
            note = "same content as the latest snapshot; nothing changed"
        else:
            for statement in (*_DROP_STAGING, *_STAGING):
                conn.execute(statement)
            _stage(conn, result)
            seen = int(conn.execute("SELECT count(*) FROM staging").fetchone()[0])
            if result.error is not None:
                status, note = "partial", result.error
            elif result.report.malformed:
                status = "partial"
                note = f"{result.report.malformed} malformed rows; no link state changed"
            elif prev is None:
                status = "baseline"
            elif result.sample or seen >= guards.suspect_below * prev.seen:
                status = "complete"
            elif _agreeing_suspects(conn, site_id, source, seen, guards):
                status = "complete"
                note = (
                    f"{seen} links, under {guards.suspect_below:.0%} of {prev.seen}, believed:"
                    f" {guards.suspect_accept_after} snapshots in a row agree"
                )
            else:
                status = "suspect"
                note = (
                    f"{seen} links, under {guards.suspect_below:.0%} of the previous snapshot's "
                    f"{prev.seen}; no link state changed"
                )
            if result.sample and status == "complete":
                note = "a sample export: it adds and restores links, absences count for nothing"
        cur = conn.execute(
            "INSERT INTO snapshots (site_id, source, taken_at, status, origin, format, seen,"
            " malformed, note, digest, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                site_id,
                source,
                taken,
                status,
                result.origin,
                result.format,
                seen,
                result.report.malformed,
                note,
                result.digest,
                to_db(now),
            ),
        )
        snapshot_id = int(cur.lastrowid or 0)
        if status in ACCEPTED:
            # Events are dated no earlier than the site's latest accepted snapshot, so a
            # source whose export is older than another's cannot reorder history.
            site_latest = conn.execute(
                "SELECT max(taken_at) FROM snapshots WHERE site_id = ? AND id != ?"
                " AND status IN ('baseline', 'complete')",
                (site_id, snapshot_id),
            ).fetchone()[0]
            counts = _apply(
                conn,
                site_id=site_id,
                bit=source_bit(conn, site_id, source),
                snapshot_id=snapshot_id,
                taken=max(taken, site_latest or taken),
                prev_taken=prev.taken_at if prev else None,
                baseline=status == "baseline",
                site_has_history=site_latest is not None,
                sample=result.sample,
                confirm_after=guards.confirm_after,
            )
        conn.execute(
            "UPDATE snapshots SET new = ?, missing = ?, restored = ?, lost = ?, changed = ?,"
            " duration_s = ? WHERE id = ?",
            (
                counts.get("new", 0),
                counts.get("missing", 0),
                counts.get("restored", 0),
                counts.get("lost", 0),
                counts.get("changed", 0),
                time.monotonic() - started,
                snapshot_id,
            ),
        )
        if status != "duplicate":
            for statement in _DROP_STAGING:
                conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return IngestOutcome(
        snapshot_id=snapshot_id,
        site=site,
        source=source,
        origin=result.origin,
        taken_at=from_db(taken),
        status=status,
        seen=seen,
        malformed=result.report.malformed,
        note=note,
        examples=tuple(result.report.examples),
        **counts,
    )


def record_failure(
    conn: sqlite3.Connection,
    *,
    site_id: int,
    source: str,
    taken_at: datetime,
    origin: str,
    error: str,
    now: datetime,
) -> int:
    """Record a poll that produced no snapshot; it feeds source health and changes no link."""
    cur = conn.execute(
        "INSERT INTO snapshots (site_id, source, taken_at, status, origin, note, created_at)"
        " VALUES (?, ?, ?, 'error', ?, ?, ?)",
        (site_id, source, to_db(taken_at), origin, error, to_db(now)),
    )
    return int(cur.lastrowid or 0)


def _apply(
    conn: sqlite3.Connection,
    *,
    site_id: int,
    bit: int,
    snapshot_id: int,
    taken: str,
    prev_taken: str | None,
    baseline: bool,
    site_has_history: bool,
    sample: bool,
    confirm_after: int,
) -> dict[str, int]:
    """The set difference between staging and the ledger, as SQL statements.

    A baseline adds links silently. The site's first baseline dates them from before
    any history; a later source's baseline dates them from its snapshot (an `appeared`
    event), so replaying an earlier instant does not change.
    """
    p = {
        "site": site_id,
        "bit": bit,
        "snap": snapshot_id,
        "taken": taken,
        "prev": prev_taken,
        "confirm": confirm_after,
        "baseline": int(baseline),
        "undated": int(baseline and not site_has_history),
    }
    x = conn.execute
    max_before = int(x("SELECT coalesce(max(id), 0) FROM links").fetchone()[0])
    p["max_before"] = max_before

    # Staged links that need anything done: unknown, not live, not yet seen by this
    # source, or whose attributes digest differs. Only indexed columns are read here, so
    # the million unchanged links cost one index probe each.
    x("DROP TABLE IF EXISTS temp.delta")
    x(
        """CREATE TEMP TABLE delta AS
        SELECT s.rowid AS srow, l.id AS link_id, l.state AS prev_state
        FROM staging s LEFT JOIN links l INDEXED BY links_presence
          ON l.site_id = :site AND l.link_key = s.link_key
        WHERE l.id IS NULL OR l.state != 'live' OR (l.seen_by & :bit) = 0
           OR l.attrs IS NOT s.attrs""",
        p,
    )
    x(
        """INSERT INTO links (site_id, link_key, url_from, url_to, anchor, nofollow, ugc,
               sponsored, attrs, refdomain, domain_rating, first_seen_at, added_at, state,
               seen_by)
        SELECT :site, s.link_key, s.url_from, s.url_to, s.anchor, s.nofollow, s.ugc,
               s.sponsored, s.attrs, s.refdomain, s.domain_rating,
               CASE WHEN s.first_seen IS NULL THEN :taken
                    ELSE strftime('%Y-%m-%dT%H:%M:%S', s.first_seen, 'unixepoch') || '.000000Z'
               END,
               CASE WHEN :undated THEN NULL ELSE :taken END, 'live', :bit
        FROM delta d JOIN staging s ON s.rowid = d.srow
        WHERE d.link_id IS NULL""",
        p,
    )
    new = int(x("SELECT coalesce(max(id), 0) FROM links").fetchone()[0]) - max_before
    if not p["undated"]:
        x(
            """INSERT INTO link_events (snapshot_id, site_id, link_id, kind, at)
            SELECT :snap, :site, id, CASE WHEN :baseline THEN 'appeared' ELSE 'new' END, :taken
            FROM links WHERE id > :max_before""",
            p,
        )
    restored = x(
        """INSERT INTO link_events (snapshot_id, site_id, link_id, kind, reason, at)
        SELECT :snap, :site, link_id, 'restored', prev_state, :taken FROM delta
        WHERE link_id IS NOT NULL AND prev_state IN ('missing', 'lost')""",
        p,
    ).rowcount
    # The exact comparison, for the few links whose digest differs.
    x("DROP TABLE IF EXISTS temp.changes")
    x(
        f"""CREATE TEMP TABLE changes AS
        SELECT d.link_id AS link_id, d.srow AS srow, trim(
                 CASE WHEN s.anchor IS NOT NULL AND s.anchor IS NOT l.anchor
                      THEN 'anchor ' ELSE '' END ||
                 CASE WHEN (s.nofollow IS NOT NULL AND s.nofollow IS NOT l.nofollow)
                        OR (s.ugc IS NOT NULL AND s.ugc IS NOT l.ugc)
                        OR (s.sponsored IS NOT NULL AND s.sponsored IS NOT l.sponsored)
                      THEN 'rel' ELSE '' END) AS what
        FROM delta d JOIN staging s ON s.rowid = d.srow JOIN links l ON l.id = d.link_id
        WHERE NOT :baseline AND {_CHANGED}""",
        p,
    )
    changed = x(
        """INSERT INTO link_events (snapshot_id, site_id, link_id, kind, reason, at)
        SELECT :snap, :site, link_id, 'changed', what, :taken FROM changes""",
        p,
    ).rowcount
    x(
        """UPDATE links SET anchor = coalesce(s.anchor, links.anchor),
               nofollow = coalesce(s.nofollow, links.nofollow),
               ugc = coalesce(s.ugc, links.ugc),
               sponsored = coalesce(s.sponsored, links.sponsored)
        FROM changes c JOIN staging s ON s.rowid = c.srow
        WHERE links.id = c.link_id"""
    )
    x(
        """UPDATE links SET state = 'live', seen_by = links.seen_by | :bit, missing_count = 0,
               dropped_by = 0, lost_at = NULL, lost_reason = NULL, last_seen_at = NULL,
               attrs = s.attrs, domain_rating = coalesce(s.domain_rating, links.domain_rating)
        FROM delta d JOIN staging s ON s.rowid = d.srow
        WHERE links.id = d.link_id""",
        p,
    )
    x("DROP TABLE temp.changes")
    x("DROP TABLE temp.delta")
    lost = missing = 0
    if not baseline:
        lost += _provider_lost(conn, p)
        if not sample:
            missing, confirmed = _absent(conn, p)
            lost += confirmed
    return {
        "new": new if not baseline else 0,
        "restored": restored,
        "changed": changed,
        "missing": missing,
        "lost": lost,
    }


def _provider_lost(conn: sqlite3.Connection, p: dict[str, object]) -> int:
    """Links the export itself marks lost become lost at once, with its reason.

    Not while another source still sees the link: then it only leaves this source.
    """
    x = conn.execute
    x("DROP TABLE IF EXISTS temp.plost")
    x(
        """CREATE TEMP TABLE plost AS
        SELECT l.id AS link_id, coalesce(min(sl.reason), 'unknown') AS reason
        FROM staging_lost sl JOIN links l ON l.site_id = :site AND l.link_key = sl.link_key
        WHERE l.state IN ('live', 'missing') AND (l.seen_by & ~:bit) = 0
          AND NOT EXISTS (SELECT 1 FROM staging s WHERE s.link_key = sl.link_key)
        GROUP BY l.id""",
        p,
    )
    n = x(
        """INSERT INTO link_events (snapshot_id, site_id, link_id, kind, reason, at)
        SELECT :snap, :site, link_id, 'lost', reason, :taken FROM plost""",
        p,
    ).rowcount
    x(
        """UPDATE links SET state = 'lost', lost_at = :taken, lost_reason = pl.reason,
               seen_by = links.seen_by & ~:bit,
               last_seen_at = coalesce(links.last_seen_at, :prev)
        FROM plost pl WHERE links.id = pl.link_id""",
        p,
    )
    x("DROP TABLE temp.plost")
    return int(n)


def _absent(conn: sqlite3.Connection, p: dict[str, object]) -> tuple[int, int]:
    """Links this source saw before and not now: missing, then lost once confirmed."""
    x = conn.execute
    x("DROP TABLE IF EXISTS temp.gone")
    x(
        """CREATE TEMP TABLE gone AS
        SELECT l.id AS link_id FROM links l
        WHERE l.site_id = :site AND (l.seen_by & :bit) != 0 AND l.id <= :max_before
          AND l.state IN ('live', 'missing')
          AND NOT EXISTS (SELECT 1 FROM staging s WHERE s.link_key = l.link_key)""",
        p,
    )
    x(
        """UPDATE links SET seen_by = seen_by & ~:bit, dropped_by = dropped_by | :bit
        WHERE id IN (SELECT link_id FROM gone)""",
        p,
    )
    missing = x(
        """INSERT INTO link_events (snapshot_id, site_id, link_id, kind, at)
        SELECT :snap, :site, l.id, 'missing', :taken FROM links l JOIN gone g ON g.link_id = l.id
        WHERE l.seen_by = 0 AND l.state = 'live'""",
        p,
    ).rowcount
    x(
        """UPDATE links SET state = 'missing', missing_count = 0, last_seen_at = :prev
        WHERE id IN (SELECT link_id FROM gone) AND seen_by = 0 AND state = 'live'""",
        p,
    )
    x("DROP TABLE temp.gone")
    # A complete snapshot of a source that saw a now-missing link, and still does not,
    # counts towards lost; a source that never reported the link proves nothing.
    x(
        """UPDATE links SET missing_count = missing_count + 1
        WHERE site_id = :site AND state = 'missing' AND seen_by = 0
          AND (dropped_by & :bit) != 0""",
        p,
    )
    confirmed = x(
        """INSERT INTO link_events (snapshot_id, site_id, link_id, kind, reason, at)
        SELECT :snap, :site, id, 'lost', 'dropped', :taken FROM links
        WHERE site_id = :site AND state = 'missing' AND seen_by = 0
          AND missing_count >= :confirm""",
        p,
    ).rowcount
    x(
        """UPDATE links SET state = 'lost', lost_at = :taken, lost_reason = 'dropped'
        WHERE site_id = :site AND state = 'missing' AND seen_by = 0
          AND missing_count >= :confirm""",
        p,
    )
    return int(missing), int(confirmed)
