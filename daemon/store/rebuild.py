"""Deleting a snapshot: the site's history is replayed without it, through the ingest rules.

Each accepted snapshot's input is kept as changes: the sightings intervals give the rows
each series listed (with the values it reported), the lost-mark intervals the rows it
marked lost, and the snapshot row the guards it was judged and applied with. Deleting a
snapshot re-judges the later snapshots of its series, then rebuilds the site's links,
events and sightings by applying every remaining accepted snapshot again, in the order
they were ingested — the ledger ends exactly as if the snapshot had never been ingested.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from daemon.store import dialect
from daemon.store.dialect import temp
from daemon.store.ledger import (
    ACCEPTED,
    COUNTED,
    DOMAIN_INDEX_AND_DEDUPE,
    DOMAIN_STAGING,
    DOMAINS,
    DROP_STAGING,
    INDEX_AND_DEDUPE,
    STAGING,
    GuardSettings,
    Judged,
    Series,
    apply_snapshot,
    is_duplicate,
    join_notes,
    judge,
    latest_accepted,
    load_series,
    record_counts,
)
from daemon.store.retention import pruned_before
from daemon.store.schema import OF_LINK_SERIES
from daemon.timefmt import from_db, to_db


class UnknownSnapshotError(KeyError):
    """No snapshot has this id."""


class DeleteRefusedError(ValueError):
    """Deleting this snapshot would need what linkwatch never kept; nothing was changed."""


@dataclass(frozen=True)
class Rejudged:
    """A later snapshot of the series whose verdict changes once the deleted one is gone."""

    snapshot_id: int
    before: str
    after: str


@dataclass(frozen=True)
class DeleteOutcome:
    """What deleting one snapshot did."""

    snapshot_id: int
    site: str
    series: str
    taken_at: datetime
    status: str
    # True when the site's links (or the series' domains) were rebuilt from the rest.
    rebuilt: bool
    # Accepted snapshots applied again by the rebuild.
    replayed: int
    rejudged: tuple[Rejudged, ...]
    # The coverage of its series ("" for a failed poll).
    coverage: str = ""


def delete_snapshot(
    conn: sqlite3.Connection, snapshot_id: int, now: datetime, site: str | None = None
) -> DeleteOutcome:
    """Delete one snapshot and rebuild what it changed, all in one transaction; `site`:
    refuse (DeleteRefusedError, nothing changed) a snapshot of another site."""
    conn.execute(dialect.BEGIN_WRITE)
    try:
        outcome = _delete(conn, snapshot_id, now, site)
        _drop_temp(conn)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        _drop_temp(conn)
        raise
    return outcome


_TEMP = (
    "staging",
    "staging_lost",
    "staging_read",
    "staging_domains",
    "staging_domains_lost",
    "old_links",
    "old_sightings",
    "old_marks",
    "old_domains",
    "delta",
    "gone",
    "changes",
    "sighted",
    "plost",
    "marks",
    "ddelta",
)


def _drop_temp(conn: sqlite3.Connection) -> None:
    for name in _TEMP:
        conn.execute(f"DROP TABLE IF EXISTS {temp(name)}")


def _row(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> dict[str, Any] | None:
    cur = conn.execute(sql, args)
    row = cur.fetchone()
    if row is None:
        return None
    return dict(zip([d[0] for d in cur.description], row, strict=True))


def _delete(
    conn: sqlite3.Connection, snapshot_id: int, now: datetime, site: str | None = None
) -> DeleteOutcome:
    """Remove the snapshot (its file stays known), judge the later ones of its series
    again, and rebuild what it changed."""
    snap = _row(
        conn,
        "SELECT s.*, si.domain AS site FROM snapshots s JOIN sites si ON si.id = s.site_id"
        " WHERE s.id = ?",
        (snapshot_id,),
    )
    if snap is None:
        raise UnknownSnapshotError(snapshot_id)
    if site is not None and str(snap["site"]).lower() != site.lower():
        raise DeleteRefusedError(f"it is a snapshot of {snap['site']}, not of {site}")
    pruned = pruned_before(conn, int(snap["site_id"]))
    if pruned is not None and str(snap["taken_at"]) < to_db(pruned):
        raise DeleteRefusedError(
            f"it was taken before {to_db(pruned)}, where [storage] keep pruned {snap['site']}'s"
            " history (docs/storage.md): what it changed is no longer kept"
        )
    name = f"{snap['source']}/{snap['format']}" if snap["format"] else str(snap["source"])
    conn.execute(
        "INSERT INTO deleted_snapshots (site_id, source, origin, origin_stamp, taken_at, status,"
        " deleted_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            snap["site_id"],
            snap["source"],
            snap["origin"],
            snap["origin_stamp"],
            snap["taken_at"],
            snap["status"],
            to_db(now),
        ),
    )
    conn.execute("DELETE FROM snapshots WHERE id = ?", (snapshot_id,))
    outcome = DeleteOutcome(
        snapshot_id,
        str(snap["site"]),
        name,
        from_db(snap["taken_at"]),
        str(snap["status"]),
        rebuilt=False,
        replayed=0,
        rejudged=(),
    )
    if snap["series_id"] is None:
        return outcome  # a failed poll: it never was evidence
    series = load_series(conn, int(snap["series_id"]))
    rejudged = _rejudge_after(conn, series, snapshot_id)
    # Only an accepted snapshot's verdict can change (one not believed that would now be
    # is refused), and each such change moves links.
    rebuilt = snap["status"] in ACCEPTED or bool(rejudged)
    replayed = 0
    if rebuilt:
        _check_not_pruned(conn, series.site_id, pruned)
    if rebuilt and series.coverage == DOMAINS:
        replayed = _replay_domains(conn, series)
    elif rebuilt:
        _check_replayable(conn, series.site_id)
        replayed = _replay_links(conn, series.site_id)
    # A series with nothing left was only ever the deleted snapshot's.
    conn.execute(
        "DELETE FROM series WHERE id = ? AND NOT EXISTS"
        " (SELECT 1 FROM snapshots WHERE series_id = ?)",
        (series.id, series.id),
    )
    return replace(
        outcome,
        rebuilt=rebuilt,
        replayed=replayed,
        rejudged=tuple(rejudged),
        coverage=series.coverage,
    )


def _describe(row: dict[str, Any]) -> str:
    return f"snapshot {row['id']} ({row['origin'] or row['source']}, taken {row['taken_at']})"


def _rejudge_after(conn: sqlite3.Connection, series: Series, deleted_id: int) -> list[Rejudged]:
    """Judge again, in order, the snapshots of the series stored after the deleted one, as
    if it had never been: a size guard, an agreement of suspect snapshots or a duplicate
    may have depended on it. A snapshot that was not believed and would now be cannot be
    applied (its rows were never kept): then the deletion is refused."""
    changed: list[Rejudged] = []
    cur = conn.execute(
        "SELECT * FROM snapshots WHERE series_id = ? AND id > ? ORDER BY id",
        (series.id, deleted_id),
    )
    names = [d[0] for d in cur.description]
    for values in cur.fetchall():
        row = dict(zip(names, values, strict=True))
        status = str(row["status"])
        if status in ("partial", "error"):
            continue  # decided by the snapshot alone
        if is_duplicate(
            conn, series.id, row["digest"], row["taken_at"], row["origin"], before_id=row["id"]
        ):
            if status == "duplicate":
                continue
            raise AssertionError(f"snapshot {row['id']} became a duplicate")  # pragma: no cover
        if status == "duplicate":
            raise DeleteRefusedError(
                f"{_describe(row)} has the same content as this one and was never read; "
                f"without this one it would have been. Delete snapshot {row['id']} first, "
                "then this one"
            )
        if row["guards"] is None:
            raise DeleteRefusedError(
                f"{_describe(row)} was stored before linkwatch recorded the guards each "
                "snapshot was judged with (schema m005): it cannot be judged again"
            )
        guards = GuardSettings.from_json(str(row["guards"]))
        prev = latest_accepted(conn, series.id, before_id=int(row["id"]))
        listed = int(row["seen"] if row["listed"] is None else row["listed"])
        judged = Judged(None, int(row["malformed"]), int(row["seen"]), listed, row["digest"])
        after, note = judge(conn, series, judged, prev, guards, before_id=int(row["id"]))
        if after in ACCEPTED and status not in ACCEPTED:
            raise DeleteRefusedError(
                f"{_describe(row)} was judged {status} next to this one; without this one "
                "it would have been believed, but linkwatch keeps no copy of a snapshot it "
                f"did not believe. Delete snapshot {row['id']} first (and import its file "
                "again if you still have it), then this one"
            )
        full_note = join_notes(note, row["fetch_note"])
        if after != status or full_note != row["note"]:
            conn.execute(
                "UPDATE snapshots SET status = ?, note = ? WHERE id = ?",
                (after, full_note, row["id"]),
            )
        if after != status:
            changed.append(Rejudged(int(row["id"]), status, after))
    return changed


def _check_not_pruned(conn: sqlite3.Connection, site_id: int, pruned: datetime | None) -> None:
    """A rebuild applies the site's whole history again: refused once retention pruned it."""
    if pruned is not None:
        raise DeleteRefusedError(
            f"deleting it means rebuilding the site's history from its first snapshot, but"
            f" [storage] keep pruned what came before {to_db(pruned)} (docs/storage.md); only"
            " a snapshot that changed no link and no later verdict (suspect, partial,"
            " duplicate, error) can be deleted"
        )


def _check_replayable(conn: sqlite3.Connection, site_id: int) -> None:
    """Every accepted snapshot left must have been stored with what a replay needs."""
    row = _row(
        conn,
        "SELECT * FROM snapshots WHERE site_id = ? AND status IN ('baseline', 'complete')"
        f" AND guards IS NULL AND {OF_LINK_SERIES} ORDER BY id LIMIT 1",
        (site_id,),
    )
    if row is not None:
        raise DeleteRefusedError(
            f"the site's history includes {_describe(row)}, stored before linkwatch kept what "
            "each snapshot listed (schema m005); its links cannot be rebuilt without it, so "
            "only a snapshot that changed no link (suspect, partial, duplicate, error) can be "
            "deleted"
        )


def _accepted(conn: sqlite3.Connection, where: str, args: tuple[Any, ...]) -> list[Any]:
    return conn.execute(
        "SELECT id, series_id, taken_at, status, guards FROM snapshots"
        f" WHERE status IN ('baseline', 'complete') AND {where} ORDER BY id",
        args,
    ).fetchall()


def _zero_counts(conn: sqlite3.Connection, where: str, args: tuple[Any, ...]) -> None:
    conn.execute(
        f"UPDATE snapshots SET {', '.join(f'{k} = 0' for k in COUNTED)} WHERE {where}", args
    )


def _replay_links(conn: sqlite3.Connection, site_id: int) -> int:
    """Rebuild a site's links, events, sightings and lost marks from its accepted link
    snapshots, each applied again as it was ingested (same guards, same order)."""
    x = conn.execute
    # The inputs, set aside before the ledger of the site is emptied.
    x(
        "CREATE TEMP TABLE old_links AS SELECT link_key, from_key, url_from, url_to, refdomain"
        " FROM links WHERE site_id = ?",
        (site_id,),
    )
    x(f"CREATE INDEX {temp('old_links_key')} ON old_links(link_key)")
    x(f"CREATE INDEX {temp('old_links_from')} ON old_links(from_key)")
    x(
        "CREATE TEMP TABLE old_sightings AS SELECT * FROM sightings"
        " WHERE site_id = ? AND first_snapshot_id IS NOT NULL",
        (site_id,),
    )
    x(f"CREATE INDEX {temp('old_sightings_at')} ON old_sightings(series_id, first_snapshot_id)")
    x("CREATE TEMP TABLE old_marks AS SELECT * FROM lost_marks WHERE site_id = ?", (site_id,))
    x(f"CREATE INDEX {temp('old_marks_at')} ON old_marks(series_id, first_snapshot_id)")
    for table in ("link_events", "links", "sightings", "lost_marks"):
        x(f"DELETE FROM {table} WHERE site_id = ?", (site_id,))
    link_series = f"site_id = ? AND {OF_LINK_SERIES}"
    _zero_counts(conn, link_series, (site_id,))
    snapshots = _accepted(conn, link_series, (site_id,))
    for snapshot_id, series_id, taken, status, guards in snapshots:
        _stage_links_of(conn, int(series_id), int(snapshot_id))
        _reapply(conn, load_series(conn, int(series_id)), snapshot_id, taken, status, guards)
    return len(snapshots)


def _reapply(
    conn: sqlite3.Connection,
    series: Series,
    snapshot_id: int,
    taken: str,
    status: str,
    guards: str | None,
) -> None:
    """Apply a staged accepted snapshot again, as its ingest did, and store its counts."""
    prev = latest_accepted(conn, series.id, before_id=int(snapshot_id))
    counts = apply_snapshot(
        conn,
        series,
        int(snapshot_id),
        str(taken),
        prev,
        str(status),
        GuardSettings() if guards is None else GuardSettings.from_json(str(guards)),
        recognised=0,  # restaged in full from the sightings
        keyed=True,  # with their links' page keys (or their own, for a page-only row)
    )
    record_counts(conn, int(snapshot_id), counts, None)


def _stage_links_of(conn: sqlite3.Connection, series_id: int, snapshot_id: int) -> None:
    """The staging tables as the snapshot's own rows filled them: what its series listed
    then, with the values it reported, and the known links it marked lost."""
    for statement in (*DROP_STAGING, *STAGING):
        conn.execute(statement)
    during = (
        "o.series_id = :series AND o.first_snapshot_id <= :snap"
        " AND (o.ended_snapshot_id IS NULL OR o.ended_snapshot_id > :snap)"
    )
    # A page-only sample row is listed under its page's key; when no link has that key its
    # page is found through the links of the page.
    page = "(SELECT p.{} FROM old_links p WHERE p.from_key = o.link_key LIMIT 1)"
    conn.execute(
        f"""INSERT INTO staging (link_key, from_key, url_from, url_to, anchor, nofollow, ugc,
               sponsored, refdomain, domain_rating, first_seen, digest, rating_metric, toxicity,
               raw)
        SELECT o.link_key, coalesce(ol.from_key, o.link_key),
               coalesce(ol.url_from, {page.format("url_from")}), coalesce(ol.url_to, ''),
               o.anchor, o.nofollow, o.ugc, o.sponsored,
               coalesce(ol.refdomain, {page.format("refdomain")}),
               o.domain_rating, o.first_seen, o.digest, o.rating_metric, o.toxicity, o.raw
        FROM old_sightings o LEFT JOIN old_links ol ON ol.link_key = o.link_key
        WHERE {during} ORDER BY o.id""",
        {"series": series_id, "snap": snapshot_id},
    )
    conn.execute(
        f"INSERT INTO staging_lost SELECT o.link_key, o.reason FROM old_marks o WHERE {during}",
        {"series": series_id, "snap": snapshot_id},
    )
    for statement in INDEX_AND_DEDUPE:
        conn.execute(statement)


def _replay_domains(conn: sqlite3.Connection, series: Series) -> int:
    """Rebuild a domain-level series' sightings from its accepted snapshots."""
    x = conn.execute
    x(
        "CREATE TEMP TABLE old_domains AS SELECT * FROM domain_sightings WHERE series_id = ?",
        (series.id,),
    )
    x("DELETE FROM domain_sightings WHERE series_id = ?", (series.id,))
    _zero_counts(conn, "series_id = ?", (series.id,))
    snapshots = _accepted(conn, "series_id = ?", (series.id,))
    for snapshot_id, _, taken, status, guards in snapshots:
        for statement in (*DROP_STAGING, *DOMAIN_STAGING):
            x(statement)
        x(
            """INSERT INTO staging_domains (domain, links, domain_rating, rating_metric,
                   first_seen, digest)
            SELECT domain, links, domain_rating, rating_metric, first_seen, digest
            FROM old_domains WHERE first_snapshot_id <= :snap
              AND (ended_snapshot_id IS NULL OR ended_snapshot_id > :snap) ORDER BY id""",
            {"snap": snapshot_id},
        )
        for statement in DOMAIN_INDEX_AND_DEDUPE:
            x(statement)
        _reapply(conn, series, snapshot_id, taken, status, guards)
    return len(snapshots)
