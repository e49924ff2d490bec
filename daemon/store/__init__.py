"""The SQLite store: the only place that writes SQL."""

from __future__ import annotations

import importlib
import json
import logging
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from daemon.store import alerts as alerts_db
from daemon.store import dialect, reads
from daemon.store.alerts import AlertState, Silence, Tell
from daemon.store.dialect import JSON_AGG, JSON_ARRAY
from daemon.store.migrate import exclusive, upgrade_lock
from daemon.store.reads import LostDomain, SourceHealth, WindowCounts
from daemon.store.schema import MIGRATIONS, OF_LINK_SERIES
from daemon.timefmt import from_db, to_db
from sources.model import SnapshotResult

# The ledger, the rebuild of a deleted snapshot and retention are loaded by what uses
# them: reading commands never do, and start faster (issue 9).
if TYPE_CHECKING:
    from daemon.store.ledger import (
        ChangedMeanwhileError,
        FutureSnapshotError,
        GuardSettings,
        IngestOutcome,
        OtherSiteError,
        OutOfOrderError,
    )
    from daemon.store.rebuild import (
        DeleteOutcome,
        DeleteRefusedError,
        Rejudged,
        UnknownSnapshotError,
    )
    from daemon.store.retention import MaintenanceReport, RetentionReport

_LAZY = {
    "ChangedMeanwhileError": "ledger",
    "FutureSnapshotError": "ledger",
    "GuardSettings": "ledger",
    "IngestOutcome": "ledger",
    "OtherSiteError": "ledger",
    "OutOfOrderError": "ledger",
    "DeleteOutcome": "rebuild",
    "DeleteRefusedError": "rebuild",
    "Rejudged": "rebuild",
    "UnknownSnapshotError": "rebuild",
    "MaintenanceReport": "retention",
    "RetentionReport": "retention",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


log = logging.getLogger(__name__)

__all__ = [
    "CLAIM_LEASE",
    "UNSURE_SINCE",
    "AlertState",
    "ChangedMeanwhileError",
    "DeleteOutcome",
    "DeleteRefusedError",
    "FutureSnapshotError",
    "GuardSettings",
    "IngestOutcome",
    "LostDomain",
    "MaintenanceReport",
    "OtherSiteError",
    "OutOfOrderError",
    "OutboxRow",
    "PollBusyError",
    "Rejudged",
    "RetentionReport",
    "Silence",
    "SiteStatus",
    "SnapshotRow",
    "SourceHealth",
    "Store",
    "StoreError",
    "Tell",
    "UnknownSnapshotError",
    "WindowCounts",
    "database_problem",
    "is_busy",
]


def _dicts(cur: sqlite3.Cursor) -> Iterator[dict[str, Any]]:
    """Rows of a query as dicts keyed by column name."""
    names = [d[0] for d in cur.description]
    for row in cur:
        yield dict(zip(names, row, strict=True))


@dataclass(frozen=True)
class SnapshotRow:
    """One stored snapshot as `linkwatch snapshots` lists it."""

    COUNTS: ClassVar[tuple[str, ...]] = (
        "listed", "seen", "new", "missing", "restored", "lost", "changed", "unconfirmed",
        "malformed",
    )  # fmt: skip

    id: int
    series: str
    coverage: str
    taken_at: datetime
    ingested_at: datetime
    status: str
    listed: int
    seen: int
    new: int
    missing: int
    restored: int
    lost: int
    changed: int
    unconfirmed: int
    malformed: int
    origin: str
    note: str | None


@dataclass(frozen=True)
class SiteStatus:
    """One site's current profile and its latest snapshot."""

    site: str
    role: str
    live_links: int
    live_refdomains: int
    missing_links: int
    lost_links: int
    unconfirmed_links: int
    # The snapshot ingested last: when it was taken, its status, when it was ingested.
    last_snapshot_at: datetime | None
    last_snapshot_status: str | None
    last_ingested_at: datetime | None


# Delivery bookkeeping kept in an outbox row's payload, beside the message: since when a
# copy may already be out (its deliverer died or gave up mid-send, or got no answer), so
# a notifier that can search its posts looks first.
UNSURE_SINCE = "_unsure_since"
CLAIM_LEASE = timedelta(minutes=5)


@dataclass(frozen=True)
class OutboxRow:
    """One notification owed to one notifier."""

    id: int
    notifier: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime
    key: str = ""


class StoreError(Exception):
    """The database file cannot be opened as a linkwatch database; the message names it."""


class PollBusyError(Exception):
    """Another poll of the same (site, source) is running, in this process or another."""


def open_problem(path: Path, exc: sqlite3.Error | OSError) -> str:
    """A one-line explanation of why `path` could not be opened, naming the file."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code == sqlite3.SQLITE_NOTADB:
        return f"{path}: not a linkwatch database ({exc}); the file was left as it is"
    if code == sqlite3.SQLITE_CORRUPT:
        return (
            f"{path}: the database is damaged ({exc}); restore a backup or move the file "
            "away to start afresh"
        )
    return f"{path}: cannot open the database: {database_problem(exc)}"


def is_busy(exc: BaseException) -> bool:
    """True when another connection's lock made a statement give up (busy timeout)."""
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def database_problem(exc: sqlite3.Error | OSError) -> str:
    """What a database error means for the user, in one line."""
    code = getattr(exc, "sqlite_errorcode", None)
    if is_busy(exc):
        return (
            f"the database is busy ({exc}): another linkwatch process held its write lock "
            "past the busy timeout (storage.busy_timeout); try again"
        )
    if code == sqlite3.SQLITE_FULL:
        return f"the disk is full ({exc}): nothing was changed; free some space and try again"
    return str(exc)


class Store:
    """A linkwatch database file: ledger, snapshots, alerts and outbox."""

    def __init__(self, path: Path, busy_timeout: float = 30.0) -> None:
        self.path = path
        conn: sqlite3.Connection | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                path, isolation_level=None, timeout=busy_timeout, check_same_thread=False
            )
            dialect.tune(conn)
            MIGRATIONS.upgrade(conn, upgrade_lock(path), busy_timeout)
        except (sqlite3.Error, OSError) as exc:
            # A wrong or damaged file is the user's to fix: say which and why, not a traceback.
            if conn is not None:
                conn.close()
            raise StoreError(open_problem(path, exc)) from exc
        self.conn = conn
        # What this connection had changed once open: close() optimizes only after writes.
        self.changes_at_open: int | None = conn.total_changes

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once so readers never block it halfway."""
        self.conn.execute(dialect.BEGIN_WRITE)
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        """Close the database; after writes, refresh the planner's statistics where stale."""
        opened = getattr(self, "changes_at_open", None)
        try:
            wrote = opened is not None and self.conn.total_changes > opened
        except sqlite3.ProgrammingError:
            return  # closed already: closing twice is allowed
        # A command that only read leaves the file as it was: no statistics written.
        if wrote:
            try:
                # Never wait for another process's lock to do it: the next close will.
                dialect.never_wait(self.conn)
                dialect.optimize(self.conn)
            except sqlite3.Error:
                pass  # busy or mid-transaction: nothing is lost by skipping it
        self.conn.close()

    def maintain(
        self,
        keep: timedelta | None,
        now: datetime,
        *,
        reach: timedelta = timedelta(0),
        dry_run: bool = False,
        vacuum_now: bool | None = None,
    ) -> MaintenanceReport:
        """Prune history past `keep` (never what `reach` of rules reads), ANALYZE, and
        VACUUM when worth it (see daemon.store.retention and docs/storage.md)."""
        from daemon.store import retention

        return retention.maintain(
            self.conn, self.path, keep, now, reach=reach, dry_run=dry_run, vacuum_now=vacuum_now
        )

    # --- sites -------------------------------------------------------------------------

    def register_sites(self, sites: Iterable[tuple[str, str, Sequence[str]]]) -> None:
        """Record the configured sites (domain, role, source names); warn about a source
        no longer configured whose links nothing else sees."""
        for domain, role, sources in sites:
            self.ensure_site(domain, role)
            for gone, count in self.links_held_only_by(domain, list(sources)).items():
                # Their links stay live until a configured source reports them gone.
                log.warning(
                    "%s: source %r is no longer configured; %d live links were seen only by it",
                    domain,
                    gone,
                    count,
                )

    def ensure_site(self, domain: str, role: str) -> int:
        """The id of a site, created (or its role updated) as the settings say."""
        row = self.conn.execute("SELECT id, role FROM sites WHERE domain = ?", (domain,)).fetchone()
        if row is not None and row[1] == role:
            return int(row[0])  # nothing to write: a reading command takes no write lock
        with self._write():
            self.conn.execute(
                "INSERT INTO sites (domain, role) VALUES (?, ?)"
                " ON CONFLICT(domain) DO UPDATE SET role = excluded.role",
                (domain, role),
            )
        return self.site_id(domain)

    def site_id(self, domain: str) -> int:
        """The id of a known site."""
        row = self.conn.execute("SELECT id FROM sites WHERE domain = ?", (domain,)).fetchone()
        if row is None:
            raise KeyError(domain)
        return int(row[0])

    # --- ledger ------------------------------------------------------------------------

    def ingest(
        self,
        site: str,
        source: str,
        result: SnapshotResult,
        guards: GuardSettings,
        now: datetime,
    ) -> IngestOutcome:
        """Store one snapshot and apply it to the link ledger (see daemon.store.ledger)."""
        from daemon.store.ledger import ingest

        return ingest(
            self.conn,
            site_id=self.site_id(site),
            site=site,
            source=source,
            result=result,
            guards=guards,
            now=now,
        )

    def ingest_problems(
        self,
        site: str,
        source: str,
        results: Sequence[SnapshotResult],
        now: datetime,
    ) -> list[ValueError]:
        """Why each snapshot of a batch, ingested in the order given, would be refused;
        checked before any is stored (see daemon.store.ledger.ingest_problems)."""
        from daemon.store.ledger import ingest_problems

        return ingest_problems(
            self.conn,
            site_id=self.site_id(site),
            site=site,
            source=source,
            results=results,
            now=now,
        )

    def record_failure(
        self,
        site: str,
        source: str,
        taken_at: datetime,
        origin: str,
        error: str,
        now: datetime,
        origin_stamp: str | None = None,
    ) -> int:
        """Record a failed poll: it changes no link and feeds source health."""
        from daemon.store.ledger import record_failure

        return record_failure(
            self.conn,
            site_id=self.site_id(site),
            source=source,
            taken_at=taken_at,
            origin=origin,
            error=error,
            now=now,
            origin_stamp=origin_stamp,
        )

    def links_held_only_by(self, site: str, sources: list[str]) -> dict[str, int]:
        """Per stored source of a site not in `sources`: live links no listed source sees."""
        site_id = self.site_id(site)
        rows = self.conn.execute(
            "SELECT source, bit FROM series WHERE site_id = ?", (site_id,)
        ).fetchall()
        active = sum(bit for source, bit in rows if source in sources)
        retired: dict[str, int] = {}
        for source, bit in rows:
            if source not in sources:
                retired[source] = retired.get(source, 0) | bit
        return {
            source: int(
                self.conn.execute(
                    "SELECT count(*) FROM links WHERE site_id = ? AND state = 'live'"
                    " AND (seen_by & ?) != 0 AND (seen_by & ?) = 0",
                    (site_id, bits, active),
                ).fetchone()[0]
            )
            for source, bits in retired.items()
        }

    def known_exports(self, site: str, source: str) -> set[tuple[str, str | None]]:
        """(file name, size:mtime stamp) of every export already stored for a (site, source),
        deleted ones included: a mistaken export deleted is not read again unless it changes."""
        rows = self.conn.execute(
            "SELECT origin, origin_stamp FROM snapshots WHERE site_id = :site AND source = :src"
            " UNION SELECT origin, origin_stamp FROM deleted_snapshots"
            " WHERE site_id = :site AND source = :src",
            {"site": self.site_id(site), "src": source},
        )
        return {(str(r[0]), r[1]) for r in rows}

    @contextmanager
    def poll_lock(self, site: str, source: str) -> Iterator[None]:
        """Hold the lock of one (site, source)'s polls; PollBusyError at once if another
        poll holds it."""
        # A file lock, not a transaction: a poll's fetch takes minutes outside any
        # transaction.
        from urllib.parse import quote

        folder = self.path.with_name(self.path.name + "-polls")
        path = folder / f"{quote(site, safe='')}@{quote(source, safe='')}.lock"
        with ExitStack() as held:
            try:
                folder.mkdir(exist_ok=True)
                held.enter_context(exclusive(path, 0.0))
            except TimeoutError:
                raise PollBusyError(
                    "another poll of this source is running; this one is skipped:"
                    " nothing fetched, nothing stored"
                ) from None
            except OSError as exc:
                # A folder this process cannot write (another user made it): polling
                # matters more than serialising it; the ledger still refuses a snapshot
                # out of order.
                log.warning("%s/%s: polls are not serialised: %s", site, source, exc)
            yield

    def latest_accepted_at(self, site: str, source: str, fmt: str) -> datetime | None:
        """When the latest baseline or complete snapshot of a series was taken (None: none)."""
        from daemon.store.ledger import find_series, latest_accepted

        series_id = find_series(self.conn, self.site_id(site), source, fmt)
        prev = None if series_id is None else latest_accepted(self.conn, series_id)
        return None if prev is None else from_db(prev.taken_at)

    def last_poll_at(self, site: str, source: str) -> datetime | None:
        """When a (site, source) was last polled, whatever the outcome."""
        row = self.conn.execute(
            "SELECT max(created_at) FROM snapshots WHERE site_id = ? AND source = ?",
            (self.site_id(site), source),
        ).fetchone()
        return from_db(row[0]) if row and row[0] else None

    def snapshots(self, site: str) -> list[dict[str, Any]]:
        """Every snapshot of a site, oldest first."""
        return list(
            _dicts(
                self.conn.execute(
                    "SELECT * FROM snapshots WHERE site_id = ? ORDER BY taken_at, id",
                    (self.site_id(site),),
                )
            )
        )

    def links(self, site: str, state: str | None = None) -> Iterator[dict[str, Any]]:
        """The ledger's links of a site, optionally in one state."""
        sql = "SELECT * FROM links WHERE site_id = ?"
        args: list[Any] = [self.site_id(site)]
        if state is not None:
            sql += " AND state = ?"
            args.append(state)
        yield from _dicts(self.conn.execute(sql + " ORDER BY refdomain, url_from", args))

    def link_listing(self, site: str, state: str | None = None) -> Iterator[dict[str, Any]]:
        """`links` rows plus first_seen, last_seen (by linkwatch), the sources seeing each,
        and its sightings: per series that listed it, first and last seen and the values
        (rating, its metric, toxicity) the series last reported."""
        site_id = self.site_id(site)
        accepted = "('baseline', 'complete')"
        # A series still seeing a link listed it in its latest accepted snapshot.
        series = self.conn.execute(
            f"""SELECT se.id, se.source, se.format, se.coverage, se.bit, max(sn.taken_at)
            FROM series se
            LEFT JOIN snapshots sn ON sn.series_id = se.id AND sn.status IN {accepted}
            WHERE se.site_id = ? GROUP BY se.id""",
            (site_id,),
        ).fetchall()
        latest = {int(r[0]): r[5] for r in series}
        names = {int(r[0]): (f"{r[1]}/{r[2]}" if r[2] else str(r[1]), str(r[3])) for r in series}
        # Links there before history began have no added_at: the first accepted snapshot.
        start = self.conn.execute(
            f"SELECT taken_at FROM snapshots WHERE site_id = ? AND status IN {accepted}"
            f" AND {OF_LINK_SERIES} ORDER BY id LIMIT 1",
            (site_id,),
        ).fetchone()
        sql = f"""SELECT l.*, (
                SELECT {JSON_AGG}({JSON_ARRAY}(g.series_id, g.first_at, g.last_at, g.open,
                           li.domain_rating, li.rating_metric, li.toxicity))
                FROM (SELECT series_id, min(first_at) AS first_at, max(last_at) AS last_at,
                             max(ended_snapshot_id IS NULL) AS open, max(id) AS latest
                      FROM sightings WHERE site_id = l.site_id AND link_key = l.link_key
                      GROUP BY series_id) g
                JOIN sightings li ON li.id = g.latest) AS sightings_json
            FROM links l WHERE l.site_id = ?{" AND l.state = ?" if state else ""}
            ORDER BY l.refdomain, l.url_from"""
        args: list[Any] = [site_id, *([state] if state else [])]
        for row in _dicts(self.conn.execute(sql, args)):
            seeing = [(source, t) for _, source, _, _, bit, t in series if row["seen_by"] & bit]
            first = row["added_at"] or (start[0] if start else None)
            last = (
                max((t for _, t in seeing if t), default=None)
                if row["state"] == "live"
                else row["last_seen_at"]
            )
            row["first_seen"] = from_db(first) if first else None
            row["last_seen"] = from_db(last) if last else None
            row["sources"] = sorted({source for source, _ in seeing})
            sightings = []
            for series_id, first_at, last_at, is_open, rating, metric, tox in json.loads(
                row.pop("sightings_json") or "[]"
            ):
                name, coverage = names.get(int(series_id), ("?", "?"))
                # An open sighting was listed by the series' latest accepted snapshot.
                seen_last = latest.get(int(series_id)) if is_open else last_at
                sightings.append(
                    {
                        "series": name,
                        "coverage": coverage,
                        "first_seen": from_db(first_at) if first_at else None,
                        "last_seen": from_db(seen_last) if seen_last else None,
                        "seeing": bool(is_open),
                        "domain_rating": rating,
                        "rating_metric": metric,
                        "toxicity": tox,
                    }
                )
            row["sightings"] = sorted(sightings, key=lambda s: (s["series"], s["first_seen"]))
            yield row

    def stopped_series(self, site: str) -> list[tuple[str, str, datetime, int]]:
        """Complete series of a site that stopped while a later one of the same source goes
        on, still holding live links no other series sees (see reads.stopped_series)."""
        return reads.stopped_series(self.conn, self.site_id(site))

    def snapshot_listing(self, site: str) -> list[SnapshotRow]:
        """Every snapshot of a site in the order it was stored, with its series and counts."""
        rows = self.conn.execute(
            """SELECT sn.id, sn.source, sn.format, coalesce(se.coverage, ''), sn.taken_at,
                   sn.created_at, sn.status, coalesce(sn.listed, sn.seen), sn.seen, sn.new,
                   sn.missing, sn.restored, sn.lost, sn.changed, sn.unconfirmed, sn.malformed,
                   sn.origin, sn.note
            FROM snapshots sn LEFT JOIN series se ON se.id = sn.series_id
            WHERE sn.site_id = ? ORDER BY sn.id""",
            (self.site_id(site),),
        ).fetchall()
        return [
            SnapshotRow(
                id=int(r[0]),
                series=f"{r[1]}/{r[2]}" if r[2] else str(r[1]),
                coverage=str(r[3]),
                taken_at=from_db(r[4]),
                ingested_at=from_db(r[5]),
                status=str(r[6]),
                **dict(zip(SnapshotRow.COUNTS, (int(v or 0) for v in r[7:16]), strict=True)),
                origin=str(r[16]),
                note=r[17],
            )
            for r in rows
        ]

    def delete_snapshot(
        self, snapshot_id: int, now: datetime, site: str | None = None
    ) -> DeleteOutcome:
        """Delete a snapshot and rebuild what it changed from the rest of the history, in one
        transaction (see daemon.store.rebuild); UnknownSnapshotError or DeleteRefusedError
        (nothing changed) when it cannot be done, or when `site` is given and the snapshot
        is another site's."""
        from daemon.store.rebuild import delete_snapshot

        return delete_snapshot(self.conn, snapshot_id, now, site)

    def domain_listing(self, site: str) -> list[dict[str, Any]]:
        """Referring domains each domain-level series of a site listed: one row per domain
        and series, with first and last seen and the values it last reported."""
        rows = self.conn.execute(
            """SELECT se.source || '/' || se.format, g.domain, g.first_at, g.last_at, g.open,
                   li.links, li.domain_rating, li.rating_metric,
                   (SELECT max(taken_at) FROM snapshots sn WHERE sn.series_id = se.id
                    AND sn.status IN ('baseline', 'complete'))
            FROM (SELECT series_id, domain, min(first_at) AS first_at, max(last_at) AS last_at,
                         max(ended_snapshot_id IS NULL) AS open, max(id) AS latest
                  FROM domain_sightings WHERE site_id = ? GROUP BY series_id, domain) g
            JOIN domain_sightings li ON li.id = g.latest JOIN series se ON se.id = g.series_id
            ORDER BY g.domain, 1""",
            (self.site_id(site),),
        ).fetchall()
        return [
            {
                "series": r[0],
                "domain": r[1],
                "first_seen": from_db(r[2]),
                "last_seen": from_db(r[8] if r[4] else r[3]),
                "seeing": bool(r[4]),
                "links": r[5],
                "domain_rating": r[6],
                "rating_metric": r[7],
            }
            for r in rows
        ]

    def status(self) -> list[SiteStatus]:
        """Each site's live links and referring domains, and its latest snapshot by ingest."""
        rows = self.conn.execute(
            """SELECT s.domain, s.role,
                (SELECT count(*) FROM links WHERE site_id = s.id AND state = 'live'),
                (SELECT count(DISTINCT refdomain) FROM links
                 WHERE site_id = s.id AND state = 'live'),
                (SELECT count(*) FROM links WHERE site_id = s.id AND state = 'missing'),
                (SELECT count(*) FROM links WHERE site_id = s.id AND state = 'lost'),
                (SELECT count(*) FROM links WHERE site_id = s.id AND state = 'unconfirmed'),
                latest.taken_at, latest.status, latest.created_at
            FROM sites s LEFT JOIN snapshots latest ON latest.id = (
                SELECT id FROM snapshots WHERE site_id = s.id ORDER BY id DESC LIMIT 1)
            ORDER BY s.domain"""
        ).fetchall()
        return [
            SiteStatus(
                site=r[0],
                role=r[1],
                live_links=r[2],
                live_refdomains=r[3],
                missing_links=r[4],
                lost_links=r[5],
                unconfirmed_links=r[6],
                last_snapshot_at=from_db(r[7]) if r[7] else None,
                last_snapshot_status=r[8],
                last_ingested_at=from_db(r[9]) if r[9] else None,
            )
            for r in rows
        ]

    # --- metrics -----------------------------------------------------------------------

    def has_data(self, site: str, at: datetime) -> bool:
        """True when the site has an accepted snapshot at or before `at`."""
        return reads.has_data(self.conn, self.site_id(site), at)

    def window_counts(
        self,
        site: str,
        start: datetime,
        end: datetime,
        link_filter: reads.LinkFilter | None = None,
    ) -> WindowCounts:
        """Link and referring-domain movement over (start, end], of the links matching
        `link_filter` alone when one is given."""
        return reads.window_counts(self.conn, self.site_id(site), start, end, link_filter)

    def source_health(self, site: str, at: datetime) -> list[SourceHealth]:
        """Each source's latest poll outcome and last accepted snapshot, as of `at`."""
        return reads.source_health(self.conn, self.site_id(site), at)

    def lost_domains(
        self,
        site: str,
        start: datetime,
        end: datetime,
        limit: int,
        link_filter: reads.LinkFilter | None = None,
    ) -> list[LostDomain]:
        """The strongest referring domains with links lost in (start, end]; those counted
        in the window's lost_refdomains are marked wholly lost and come first. With
        `link_filter`, only matching links count, as for window_counts."""
        site_id = self.site_id(site)
        counts = reads.window_counts(self.conn, site_id, start, end, link_filter)
        return reads.lost_domains(
            self.conn, site_id, start, end, counts.domains_lost, limit, link_filter
        )

    # --- alerts and outbox -------------------------------------------------------------

    def alert_state(self, fingerprint: str) -> AlertState | None:
        """One alert's persisted state, if it was ever evaluated into one."""
        return alerts_db.get_alert(self.conn, fingerprint)

    def alert_states(
        self, states: tuple[str, ...] = alerts_db.STATES, site: str | None = None
    ) -> list[AlertState]:
        """Persisted alerts in any of `states`, of one site if given."""
        return alerts_db.list_alerts(self.conn, states, site)

    def alert_history(
        self, fingerprint: str | None = None
    ) -> list[tuple[str, str, str, float | None, str | None, datetime]]:
        """(rule, site, state, value, reason, at) of recorded transitions, oldest first."""
        return alerts_db.history(self.conn, fingerprint)

    def apply_alert(
        self,
        expected: AlertState | None,
        new: AlertState,
        transitions: list[tuple[str, str | None]],
        tells: list[Tell],
        now: datetime,
        group_wait: timedelta = timedelta(0),
    ) -> bool:
        """Persist an alert's new state, its transitions (state, reason) and, in the same
        transaction, the messages it owes each notifier.

        Nothing is written, and False returned, when the stored alert is no longer
        `expected` (another evaluator got there first): no transition is told twice.
        """
        with self._write():
            current = alerts_db.get_alert(self.conn, new.fingerprint)
            if not alerts_db.same_version(current, expected):
                return False
            alerts_db.write_alert(self.conn, new)
            for state, reason in transitions:
                alerts_db.write_history(self.conn, new, state, new.evaluated_at or now, reason)
            for tell in tells:
                alerts_db.queue(self.conn, new.fingerprint, new.site, tell, now, group_wait)
        return True

    def last_evaluation(self) -> datetime | None:
        """The instant of the last committed evaluation."""
        value = alerts_db.meta(self.conn, alerts_db.META_LAST_EVALUATION)
        return from_db(value) if value else None

    def mark_evaluated(self, at: datetime) -> None:
        """Record a committed evaluation at `at` (never moving the mark back)."""
        with self._write():
            last = alerts_db.meta(self.conn, alerts_db.META_LAST_EVALUATION)
            if last is None or to_db(at) > last:
                alerts_db.set_meta(self.conn, alerts_db.META_LAST_EVALUATION, to_db(at))

    def silences(self, at: datetime | None = None) -> list[Silence]:
        """Silences in force at `at`, or every silence ever made."""
        return alerts_db.silences(self.conn, at)

    def add_silence(
        self, rule: str | None, site: str | None, start: datetime, end: datetime, comment: str
    ) -> int:
        """Mute a rule, a site or both until `end`; the silence's id."""
        with self._write():
            return alerts_db.add_silence(self.conn, rule, site, start, end, comment)

    def expire_silence(self, silence_id: int, at: datetime) -> bool:
        """End a silence at `at`; False when no such silence is in force."""
        with self._write():
            return alerts_db.expire_silence(self.conn, silence_id, at)

    def save_thread(self, notifier: str, fingerprint: str, fired_at: str, ref: str) -> None:
        """Remember a notifier's reference to the message that told an alert fired."""
        with self._write():
            alerts_db.save_thread(self.conn, notifier, fingerprint, fired_at, ref)

    def threads(self, notifier: str, alerts: list[tuple[str, str]]) -> dict[str, str]:
        """Thread references of (fingerprint, fired_at) firings told through `notifier`."""
        return alerts_db.threads(self.conn, notifier, alerts)

    def live_at(
        self, site: str, links: list[tuple[str, str, str]], at: datetime
    ) -> list[tuple[str, str, str]]:
        """Which (refdomain, url_from, url_to) links of a site were live at `at` (an empty
        url_from: any link of that referring domain)."""
        return reads.live_at(self.conn, self.site_id(site), links, at)

    def due_notifications(
        self,
        now: datetime,
        limit: int = 100,
        *,
        notifier: str | None = None,
        exclude: Collection[str] = (),
    ) -> list[OutboxRow]:
        """Notifications due now, oldest first: pending ones, and claimed ones whose
        deliverer died before finishing (their claim expired); only `notifier`'s if given,
        none of the `exclude`d notifiers'."""
        sql = (
            "SELECT id, notifier, payload, attempts, created_at, idempotency_key FROM outbox"
            " WHERE status IN ('pending', 'sending') AND next_attempt_at <= ?"
        )
        args: list[Any] = [to_db(now)]
        if notifier is not None:
            sql += " AND notifier = ?"
            args.append(notifier)
        if exclude:
            sql += f" AND notifier NOT IN ({', '.join('?' * len(exclude))})"
            args.extend(exclude)
        rows = self.conn.execute(sql + " ORDER BY id LIMIT ?", [*args, limit]).fetchall()
        return [OutboxRow(r[0], r[1], json.loads(r[2]), r[3], from_db(r[4]), r[5]) for r in rows]

    def claim_notification(
        self, outbox_id: int, now: datetime, lease: timedelta = CLAIM_LEASE
    ) -> OutboxRow | None:
        """Take a due notification for delivery: the row as claimed, or None if another
        process took it first.

        Taking over a row whose claim expired records, in the same transaction, since when
        a copy may be out (the earlier claim), so a second crash cannot lose that fact.
        """
        with self._write():
            r = self.conn.execute(
                "SELECT id, notifier, payload, attempts, created_at, idempotency_key, status,"
                " next_attempt_at FROM outbox"
                " WHERE id = ? AND status IN ('pending', 'sending') AND next_attempt_at <= ?",
                (outbox_id, to_db(now)),
            ).fetchone()
            if r is None:
                return None
            payload = json.loads(r[2])
            if r[6] == "sending":
                # The expired claim was taken a lease before it ran out.
                payload.setdefault(UNSURE_SINCE, to_db(from_db(r[7]) - lease))
            self.conn.execute(
                "UPDATE outbox SET status = 'sending', next_attempt_at = ?, payload = ?"
                " WHERE id = ?",
                (to_db(now + lease), json.dumps(payload, sort_keys=True), outbox_id),
            )
        return OutboxRow(r[0], r[1], payload, r[3], from_db(r[4]), r[5])

    def mark_sent(self, outbox_id: int, at: datetime, note: str | None = None) -> None:
        """A notification was delivered; `note` (kept as last_error) says how, if unusually."""
        with self._write():
            self.conn.execute(
                "UPDATE outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1,"
                " last_error = ? WHERE id = ?",
                (to_db(at), note, outbox_id),
            )

    def mark_failed(
        self,
        outbox_id: int,
        error: str,
        next_attempt_at: datetime | None,
        payload: dict[str, Any] | None = None,
    ) -> None:
        """A delivery attempt failed: retry at `next_attempt_at` (with `payload` instead, if
        given: what is left to deliver), or dead-letter when None."""
        with self._write():
            if payload is not None:
                self.conn.execute(
                    "UPDATE outbox SET payload = ? WHERE id = ?",
                    (json.dumps(payload, sort_keys=True), outbox_id),
                )
            if next_attempt_at is None:
                self.conn.execute(
                    "UPDATE outbox SET status = 'dead', attempts = attempts + 1, last_error = ?"
                    " WHERE id = ?",
                    (error, outbox_id),
                )
            else:
                self.conn.execute(
                    "UPDATE outbox SET status = 'pending', attempts = attempts + 1,"
                    " last_error = ?, next_attempt_at = ? WHERE id = ?",
                    (error, to_db(next_attempt_at), outbox_id),
                )

    def outbox(self) -> list[dict[str, Any]]:
        """Every outbox row, newest first."""
        return list(
            _dicts(
                self.conn.execute(
                    "SELECT id, notifier, transition, status, attempts, created_at, sent_at,"
                    " next_attempt_at, last_error, fingerprint FROM outbox ORDER BY id DESC"
                )
            )
        )

    # --- outbox administration ---------------------------------------------------------

    def outbox_entries(self, status: str | None = None) -> list[OutboxEntry]:
        """Outbox rows as `linkwatch outbox` shows them, newest first (only `status`'s)."""
        sql = (
            "SELECT id, notifier, site, transition, payload, status, attempts, created_at,"
            " next_attempt_at, sent_at, last_error FROM outbox"
        )
        args: list[Any] = []
        if status is not None:
            sql += " WHERE status = ?"
            args.append(status)
        return [_entry(r) for r in self.conn.execute(sql + " ORDER BY id DESC", args)]

    def retry_dead(self, ids: Collection[int] | None, now: datetime) -> list[int]:
        """Put dead rows back to pending, due at `now`, their attempts kept; `ids` None:
        every dead row. All or nothing: OutboxRetryError names each id that is not dead."""
        with self._write():
            if ids is None:
                wanted = [
                    int(r[0])
                    for r in self.conn.execute(
                        "SELECT id FROM outbox WHERE status = 'dead' ORDER BY id"
                    )
                ]
            else:
                wanted = sorted(set(ids))
                problems = [p for p in (self._not_retryable(i) for i in wanted) if p]
                if problems:
                    raise OutboxRetryError(problems)
            for outbox_id in wanted:
                self.conn.execute(
                    "UPDATE outbox SET status = 'pending', next_attempt_at = ? WHERE id = ?",
                    (to_db(now), outbox_id),
                )
        return wanted

    def _not_retryable(self, outbox_id: int) -> str | None:
        """Why one outbox row cannot be retried, or None when it is dead."""
        r = self.conn.execute(
            "SELECT status, sent_at, next_attempt_at FROM outbox WHERE id = ?", (outbox_id,)
        ).fetchone()
        if r is None:
            return f"outbox row {outbox_id} does not exist"
        status = str(r[0])
        if status == "dead":
            return None
        if status == "sent":
            return f"outbox row {outbox_id} was already sent (at {r[1]}): nothing to retry"
        if status == "silenced":
            return f"outbox row {outbox_id} was silenced: it is never sent"
        return (
            f"outbox row {outbox_id} is {status}, not dead: it is retried on its own "
            f"(next attempt at {r[2]})"
        )

    # --- read-only access (backtest) ---------------------------------------------------

    @classmethod
    def read_only(cls, path: Path, busy_timeout: float = 30.0) -> Store:
        """An existing, up-to-date database opened so that SQLite refuses every write."""
        if not path.is_file():
            raise StoreError(f"{path}: no database yet: nothing has been stored")
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro",
                uri=True,
                isolation_level=None,
                timeout=busy_timeout,
                check_same_thread=False,
            )
            if MIGRATIONS.up_to_date(conn):
                # The common case, answered without loading sqlite-utils.
                applied, pending = list(MIGRATIONS.names), []
            else:
                from sqlite_utils import Database

                db = Database(conn)
                applied = MIGRATIONS.applied(db)
                pending = MIGRATIONS.pending(db)
        except (sqlite3.Error, OSError) as exc:
            if conn is not None:
                conn.close()
            raise StoreError(open_problem(path, exc)) from exc
        if not applied or pending:
            conn.close()
            raise StoreError(
                f"{path}: not a linkwatch database of this version ({len(pending)} schema "
                "upgrade(s) pending): start the daemon, or run `linkwatch status`, once to "
                "upgrade it"
            )
        store = cls.__new__(cls)
        store.path = path
        store.conn = conn
        return store


@dataclass(frozen=True)
class OutboxEntry:
    """One outbox row for `linkwatch outbox`: whom it is for, what it tells, how it went."""

    id: int
    notifier: str
    site: str | None
    # "rule transition" of each alert the row tells (a grouped row tells several).
    transitions: tuple[str, ...]
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None
    last_error: str | None


class OutboxRetryError(Exception):
    """Outbox rows that cannot be retried; `problems` holds one line per id."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _entry(r: tuple[Any, ...]) -> OutboxEntry:
    """An OutboxEntry from a row of `outbox_entries`' query."""
    try:
        payload = json.loads(r[4])
    except ValueError:
        payload = {}
    # A grouped row lists its alerts; an older row is one message with its transition.
    messages = payload.get("alerts") if isinstance(payload, dict) else None
    if not isinstance(messages, list):
        messages = [payload] if isinstance(payload, dict) else []
    told = tuple(
        f"{m.get('rule', '?')} {m.get('transition', '?')}" for m in messages if isinstance(m, dict)
    )
    return OutboxEntry(
        id=int(r[0]),
        notifier=str(r[1]),
        site=r[2] or (payload.get("site") if isinstance(payload, dict) else None),
        transitions=told or tuple(str(r[3]).split(",")),
        status=str(r[5]),
        attempts=int(r[6]),
        created_at=from_db(r[7]),
        next_attempt_at=from_db(r[8]),
        sent_at=from_db(r[9]) if r[9] else None,
        last_error=r[10],
    )
