"""Alert states, their history, silences, notifier threads and grouped outbox rows."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from daemon.store.dialect import REPLACE_INTO
from daemon.timefmt import from_db, to_db

ACTIVE = ("pending", "firing")
STATES = ("pending", "firing", "resolved", "inactive")


@dataclass(frozen=True)
class AlertState:
    """One alert (rule, site, labels) as persisted: its state and lifecycle times."""

    fingerprint: str
    rule: str
    kind: str
    site: str
    labels: tuple[tuple[str, str], ...]
    state: str  # one of STATES
    value: float | None
    # When the state last changed; when the condition began to hold (pending since);
    # when it last fired and resolved; the last evaluation that saw it hold.
    since_at: datetime
    active_at: datetime | None = None
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    held_at: datetime | None = None
    # The last firing or reminder told, and the last state told (None: nothing yet).
    notified_at: datetime | None = None
    told: str | None = None
    definition: str = ""
    evidence: dict[str, Any] = field(default_factory=dict, compare=False)
    reason: str | None = None
    evaluated_at: datetime | None = None


@dataclass(frozen=True)
class Tell:
    """One notifier owed one alert's message (a JSON-ready AlertMessage payload)."""

    notifier: str
    message: dict[str, Any]
    silenced: bool = False


@dataclass(frozen=True)
class Silence:
    """A mute of a rule, a site or both, from `starts_at` until `ends_at`."""

    id: int
    rule: str | None
    site: str | None
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_at: datetime

    def matches(self, rule: str, site: str, at: datetime) -> bool:
        """True when this silence mutes `rule` on `site` at `at`."""
        return (
            self.starts_at <= at < self.ends_at
            and (self.rule is None or self.rule == rule)
            and (self.site is None or self.site == site)
        )


_COLUMNS = (
    "fingerprint, rule, kind, site, labels, state, value, since_at, active_at, fired_at,"
    " resolved_at, held_at, notified_at, told, definition, evidence, reason, evaluated_at"
)


def _at(text: str | None) -> datetime | None:
    return from_db(text) if text else None


def _db(at: datetime | None) -> str | None:
    return to_db(at) if at is not None else None


def _state(r: tuple[Any, ...]) -> AlertState:
    return AlertState(
        fingerprint=r[0],
        rule=r[1],
        kind=r[2],
        site=r[3],
        labels=tuple(sorted((str(k), str(v)) for k, v in json.loads(r[4] or "{}").items())),
        state=r[5],
        value=r[6],
        since_at=from_db(r[7]),
        active_at=_at(r[8]),
        fired_at=_at(r[9]),
        resolved_at=_at(r[10]),
        held_at=_at(r[11]),
        notified_at=_at(r[12]),
        told=r[13],
        definition=r[14] or "",
        evidence=json.loads(r[15] or "{}"),
        reason=r[16],
        evaluated_at=_at(r[17]),
    )


def get_alert(conn: sqlite3.Connection, fingerprint: str) -> AlertState | None:
    """One alert by fingerprint."""
    r = conn.execute(
        f"SELECT {_COLUMNS} FROM alerts WHERE fingerprint = ?", (fingerprint,)
    ).fetchone()
    return _state(r) if r is not None else None


def list_alerts(
    conn: sqlite3.Connection, states: tuple[str, ...] = STATES, site: str | None = None
) -> list[AlertState]:
    """Alerts in any of `states` (of one site, if given), by site, rule and labels."""
    sql = f"SELECT {_COLUMNS} FROM alerts WHERE state IN ({', '.join('?' * len(states))})"
    args: list[Any] = list(states)
    if site is not None:
        sql += " AND site = ?"
        args.append(site)
    return [_state(r) for r in conn.execute(sql + " ORDER BY site, rule, labels", args)]


def same_version(current: AlertState | None, expected: AlertState | None) -> bool:
    """True when the stored alert is still the one an evaluator decided from: another
    evaluator that changed it meanwhile wins, so no transition is told twice."""
    if current is None or expected is None:
        return current is None and expected is None
    return (current.state, current.told, current.notified_at, current.since_at) == (
        expected.state,
        expected.told,
        expected.notified_at,
        expected.since_at,
    )


def write_alert(conn: sqlite3.Connection, a: AlertState) -> None:
    """Insert or replace one alert row."""
    conn.execute(
        f"{REPLACE_INTO} alerts ({_COLUMNS}) VALUES ({', '.join('?' * 18)})",
        (
            a.fingerprint,
            a.rule,
            a.kind,
            a.site,
            json.dumps(dict(a.labels), sort_keys=True),
            a.state,
            a.value,
            to_db(a.since_at),
            _db(a.active_at),
            _db(a.fired_at),
            _db(a.resolved_at),
            _db(a.held_at),
            _db(a.notified_at),
            a.told,
            a.definition,
            json.dumps(a.evidence, sort_keys=True),
            a.reason,
            _db(a.evaluated_at),
        ),
    )


def write_history(
    conn: sqlite3.Connection, a: AlertState, state: str, at: datetime, reason: str | None
) -> None:
    """Record one transition of an alert."""
    conn.execute(
        "INSERT INTO alert_history (fingerprint, rule, site, state, value, reason, at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (a.fingerprint, a.rule, a.site, state, a.value, reason, to_db(at)),
    )


def history(
    conn: sqlite3.Connection, fingerprint: str | None = None
) -> list[tuple[str, str, str, float | None, str | None, datetime]]:
    """(rule, site, state, value, reason, at) of every recorded transition, oldest first."""
    sql = "SELECT rule, site, state, value, reason, at FROM alert_history"
    args: tuple[Any, ...] = ()
    if fingerprint is not None:
        sql += " WHERE fingerprint = ?"
        args = (fingerprint,)
    return [
        (r[0], r[1], r[2], r[3], r[4], from_db(r[5]))
        for r in conn.execute(sql + " ORDER BY at, id", args)
    ]


def queue(
    conn: sqlite3.Connection,
    fingerprint: str,
    site: str,
    tell: Tell,
    now: datetime,
    group_wait: timedelta,
) -> int:
    """Queue one alert message for one notifier; the id of its outbox row.

    A message joins the notifier's row for the same site that is still gathering (queued
    within `group_wait`, never tried), so the transitions of one site go out as one
    message; a silenced message is recorded as such and never sent.
    """
    message = tell.message
    if not tell.silenced:
        row = conn.execute(
            "SELECT id, payload FROM outbox WHERE notifier = ? AND site = ?"
            " AND status = 'pending' AND attempts = 0 AND created_at >= ?"
            " ORDER BY id DESC LIMIT 1",
            (tell.notifier, site, to_db(now - group_wait)),
        ).fetchone()
        if row is not None:
            payload = json.loads(row[1])
            # Every message joins, two updates of one alert too: each names other links.
            payload["alerts"] = [*payload["alerts"], message]
            conn.execute(
                "UPDATE outbox SET payload = ?, transition = ? WHERE id = ?",
                (
                    json.dumps(payload, sort_keys=True),
                    ",".join(dict.fromkeys(a["transition"] for a in payload["alerts"])),
                    row[0],
                ),
            )
            return int(row[0])
    payload = {"site": site, "alerts": [message], "recipients": []}
    key = f"{fingerprint}:{message['transition']}:{message['at']}:{tell.notifier}"
    # The same transition at the same instant again (a replay that went back and forth at
    # one --at): a key of its own, so it is queued, not dropped.
    taken = conn.execute(
        "SELECT count(*) FROM outbox WHERE idempotency_key = ?"
        " OR (idempotency_key > ? AND idempotency_key < ?)",
        (key, key + ":", key + ";"),
    ).fetchone()[0]
    if taken:
        key = f"{key}:{taken + 1}"
    cur = conn.execute(
        "INSERT INTO outbox (idempotency_key, fingerprint, notifier, transition,"
        " payload, status, next_attempt_at, created_at, site)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            key,
            fingerprint,
            tell.notifier,
            message["transition"],
            json.dumps(payload, sort_keys=True),
            "silenced" if tell.silenced else "pending",
            to_db(now + group_wait),
            to_db(now),
            site,
        ),
    )
    return int(cur.lastrowid or 0)


def silences(
    conn: sqlite3.Connection, at: datetime | None = None, *, expired: bool = False
) -> list[Silence]:
    """Silences in force at `at` (all of them without it; with `expired`, also ended ones)."""
    sql = "SELECT id, rule, site, starts_at, ends_at, comment, created_at FROM silences"
    args: list[Any] = []
    if at is not None:
        sql += " WHERE starts_at <= ? AND ends_at > ?"
        args = [to_db(at), to_db(at)]
    rows = [
        Silence(r[0], r[1], r[2], from_db(r[3]), from_db(r[4]), r[5], from_db(r[6]))
        for r in conn.execute(sql + " ORDER BY id", args)
    ]
    return rows


def add_silence(
    conn: sqlite3.Connection,
    rule: str | None,
    site: str | None,
    starts_at: datetime,
    ends_at: datetime,
    comment: str,
) -> int:
    """Store a silence; its id."""
    cur = conn.execute(
        "INSERT INTO silences (rule, site, starts_at, ends_at, comment, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (rule, site, to_db(starts_at), to_db(ends_at), comment, to_db(starts_at)),
    )
    return int(cur.lastrowid or 0)


def expire_silence(conn: sqlite3.Connection, silence_id: int, at: datetime) -> bool:
    """End a silence now; False if there is no such silence still in force."""
    cur = conn.execute(
        "UPDATE silences SET ends_at = ? WHERE id = ? AND ends_at > ?",
        (to_db(at), silence_id, to_db(at)),
    )
    return cur.rowcount == 1


def save_thread(
    conn: sqlite3.Connection, notifier: str, fingerprint: str, fired_at: str, ref: str
) -> None:
    """Remember what a notifier answered when it told an alert fired."""
    conn.execute(
        f"{REPLACE_INTO} alert_threads (notifier, fingerprint, fired_at, ref) VALUES (?, ?, ?, ?)",
        (notifier, fingerprint, fired_at, ref),
    )


def threads(
    conn: sqlite3.Connection, notifier: str, alerts: list[tuple[str, str]]
) -> dict[str, str]:
    """Per fingerprint, the thread of the firing each (fingerprint, fired_at) belongs to."""
    found: dict[str, str] = {}
    for fingerprint, fired_at in alerts:
        row = conn.execute(
            "SELECT ref FROM alert_threads WHERE notifier = ? AND fingerprint = ? AND fired_at = ?",
            (notifier, fingerprint, fired_at),
        ).fetchone()
        if row is not None:
            found[fingerprint] = str(row[0])
    return found


META_LAST_EVALUATION = "last_committed_evaluation"


def meta(conn: sqlite3.Connection, key: str) -> str | None:
    """A value of the meta table."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return str(row[0]) if row is not None else None


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    """Set a value of the meta table."""
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?)"
        " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )
