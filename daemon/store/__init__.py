"""The SQLite store: the only place that writes SQL."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from daemon.store import reads
from daemon.store.ledger import (
    FutureSnapshotError,
    GuardSettings,
    IngestOutcome,
    OutOfOrderError,
    ingest,
    record_failure,
)
from daemon.store.reads import LostDomain, SourceHealth, WindowCounts
from daemon.store.schema import MIGRATIONS
from daemon.timefmt import from_db, to_db
from sources.model import SnapshotResult

__all__ = [
    "CLAIM_LEASE",
    "UNSURE_SINCE",
    "AlertRow",
    "FutureSnapshotError",
    "GuardSettings",
    "IngestOutcome",
    "LostDomain",
    "OutOfOrderError",
    "OutboxRow",
    "SiteStatus",
    "SourceHealth",
    "Store",
    "StoreError",
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


@dataclass(frozen=True)
class AlertRow:
    """The persisted state of one alert (rule, site)."""

    fingerprint: str
    rule: str
    site: str
    state: str
    value: float | None
    since_at: datetime
    fired_at: datetime | None


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
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA cache_size = -65536")
            conn.execute("PRAGMA temp_store = FILE")
            conn.execute("PRAGMA temp.cache_size = -32768")
            MIGRATIONS.apply(Database(conn))
        except (sqlite3.Error, OSError) as exc:
            # A wrong or damaged file is the user's to fix: say which and why, not a traceback.
            if conn is not None:
                conn.close()
            raise StoreError(open_problem(path, exc)) from exc
        self.conn = conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once so readers never block it halfway."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        """Close the database."""
        self.conn.close()

    # --- sites -------------------------------------------------------------------------

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
        return ingest(
            self.conn,
            site_id=self.site_id(site),
            site=site,
            source=source,
            result=result,
            guards=guards,
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
        """(file name, size:mtime stamp) of every export already stored for a (site, source)."""
        rows = self.conn.execute(
            "SELECT DISTINCT origin, origin_stamp FROM snapshots WHERE site_id = ? AND source = ?",
            (self.site_id(site), source),
        )
        return {(str(r[0]), r[1]) for r in rows}

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

    def window_counts(self, site: str, start: datetime, end: datetime) -> WindowCounts:
        """Link and referring-domain movement over (start, end]."""
        return reads.window_counts(self.conn, self.site_id(site), start, end)

    def source_health(self, site: str, at: datetime) -> list[SourceHealth]:
        """Each source's latest poll outcome and last accepted snapshot, as of `at`."""
        return reads.source_health(self.conn, self.site_id(site), at)

    def lost_domains(
        self, site: str, start: datetime, end: datetime, limit: int
    ) -> list[LostDomain]:
        """The strongest referring domains with links lost in (start, end]; those counted
        in the window's lost_refdomains are marked wholly lost and come first."""
        site_id = self.site_id(site)
        counts = reads.window_counts(self.conn, site_id, start, end)
        return reads.lost_domains(self.conn, site_id, start, end, counts.domains_lost, limit)

    # --- alerts and outbox -------------------------------------------------------------

    def alert(self, fingerprint: str) -> AlertRow | None:
        """The persisted state of one alert, if it was ever active."""
        r = self.conn.execute(
            "SELECT fingerprint, rule, site, state, value, since_at, fired_at FROM alerts"
            " WHERE fingerprint = ?",
            (fingerprint,),
        ).fetchone()
        if r is None:
            return None
        return AlertRow(
            r[0], r[1], r[2], r[3], r[4], from_db(r[5]), from_db(r[6]) if r[6] else None
        )

    def save_alert(
        self,
        *,
        fingerprint: str,
        rule: str,
        site: str,
        state: str,
        value: float | None,
        at: datetime,
        now: datetime,
        expected_state: str,
        notify: list[tuple[str, str, dict[str, Any]]],
    ) -> bool:
        """Persist an alert's state and, in the same transaction, the notifications it owes.

        `notify` holds (notifier, idempotency key, payload) rows; a key already queued is
        not queued again. Nothing is written, and False returned, when the alert is no
        longer in `expected_state` (another evaluator got there first), so two evaluators
        never notify the same transition twice.
        """
        ts, queued = to_db(at), to_db(now)
        with self._write():
            prev = self.conn.execute(
                "SELECT state FROM alerts WHERE fingerprint = ?", (fingerprint,)
            ).fetchone()
            if (prev[0] if prev else "inactive") != expected_state:
                return False
            if prev is None:
                self.conn.execute(
                    "INSERT INTO alerts (fingerprint, rule, site, state, value, since_at,"
                    " fired_at, evaluated_at) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        fingerprint,
                        rule,
                        site,
                        state,
                        value,
                        ts,
                        ts if state == "firing" else None,
                        ts,
                    ),
                )
            elif prev[0] != state:
                self.conn.execute(
                    "UPDATE alerts SET state = ?, value = ?, since_at = ?, evaluated_at = ?,"
                    " fired_at = CASE WHEN ? = 'firing' THEN ? ELSE fired_at END,"
                    " resolved_at = CASE WHEN ? = 'resolved' THEN ? ELSE resolved_at END"
                    " WHERE fingerprint = ?",
                    (state, value, ts, ts, state, ts, state, ts, fingerprint),
                )
            else:
                self.conn.execute(
                    "UPDATE alerts SET value = ?, evaluated_at = ? WHERE fingerprint = ?",
                    (value, ts, fingerprint),
                )
            for notifier, key, payload in notify:
                self.conn.execute(
                    "INSERT OR IGNORE INTO outbox (idempotency_key, fingerprint, notifier,"
                    " transition, payload, status, next_attempt_at, created_at)"
                    " VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)",
                    (
                        key,
                        fingerprint,
                        notifier,
                        payload["transition"],
                        json.dumps(payload, sort_keys=True),
                        queued,
                        queued,
                    ),
                )
        return True

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
