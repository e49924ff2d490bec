"""Delivering the outbox: each due notification sent once per notifier, retried with backoff."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import ParamSpec, Protocol, runtime_checkable

from alerts.message import DeliveryError, Notification
from alerts.notifiers import Notifier
from daemon.store import UNSURE_SINCE, OutboxRow, Store, is_busy
from daemon.timefmt import from_db, to_db

log = logging.getLogger(__name__)
P = ParamSpec("P")

BACKOFF_FIRST = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=1)
# Searched before the moment a copy may have gone out: clocks differ a little.
LOOKUP_MARGIN = timedelta(minutes=5)
# An outcome that cannot be written (a long write lock: busy timeout 30 s each) is tried
# again rather than lost: a lost "sent" would send the message twice.
WRITE_TRIES = 3


@runtime_checkable
class Searchable(Protocol):
    """A notifier that can tell whether a message already reached its destination."""

    def find_sent(self, message: Notification, since: datetime) -> str | None:
        """The thread reference of the message (by its key) if it was delivered since
        `since`, else None."""


@dataclass(frozen=True)
class DeliveryReport:
    """What one delivery pass did."""

    sent: int = 0
    retrying: int = 0
    dead: int = 0


def backoff(attempts: int) -> timedelta:
    """Exponential backoff after `attempts` failed tries, capped at an hour."""
    delay: timedelta = BACKOFF_FIRST * (2 ** min(max(attempts, 0), 20))
    return min(delay, BACKOFF_MAX)


def _retry_delay(retry_after: float) -> timedelta:
    """A server's Retry-After within [1 s, BACKOFF_MAX]: a huge, negative or NaN value can
    neither overflow nor park the row for years."""
    return timedelta(
        seconds=min(retry_after, BACKOFF_MAX.total_seconds()) if retry_after >= 1 else 1
    )


def deliver_due(
    store: Store,
    notifiers: Mapping[str, Notifier],
    now: datetime,
    ttl: timedelta,
    *,
    notifier: str | None = None,
    limit: int = 100,
    clock: Callable[[], datetime] | None = None,
) -> DeliveryReport:
    """Send every due notification (only `notifier`'s, if given); a notifier's failure
    never holds back another's. `clock` (the real one) dates a retry from the answer."""
    sent = retrying = dead = 0
    for row in store.due_notifications(now, limit, notifier=notifier):
        target = notifiers.get(row.notifier)
        if target is None:
            _write(store.mark_failed, row.id, _unconfigured(row), None)
            dead += 1
            continue
        claimed = store.claim_notification(row.id, now)
        if claimed is None:
            continue  # another process is delivering it
        outcome = _deliver(store, target, claimed, now, ttl, clock)
        sent += outcome == "sent"
        retrying += outcome == "retrying"
        dead += outcome == "dead"
    return DeliveryReport(sent, retrying, dead)


def dead_letter_unconfigured(store: Store, configured: Collection[str], now: datetime) -> int:
    """Dead-letter due notifications owed to notifiers no longer configured; how many."""
    rows = store.due_notifications(now, exclude=configured)
    for row in rows:
        _write(store.mark_failed, row.id, _unconfigured(row), None)
    return len(rows)


def _unconfigured(row: OutboxRow) -> str:
    return f"notifier {row.notifier!r} is not configured"


def _write(outcome: Callable[P, None], *args: P.args, **kwargs: P.kwargs) -> None:
    """Record an outcome, trying again while another writer holds the database."""
    for attempt in range(WRITE_TRIES):
        try:
            outcome(*args, **kwargs)
            return
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            if attempt == WRITE_TRIES - 1:
                raise
            log.warning("database busy, recording a delivery outcome again: %s", exc)


def _deliver(
    store: Store,
    notifier: Notifier,
    row: OutboxRow,
    now: datetime,
    ttl: timedelta,
    clock: Callable[[], datetime] | None = None,
) -> str:
    """Deliver one claimed row and record the outcome: sent, retrying or dead."""
    message = Notification.from_payload(row.payload, row.key)
    # Follow-ups of an alert (reminder, update, resolved) go in the thread of the message
    # that told it fired.
    fired = [(a.fingerprint, a.since) for a in message.alerts if a.since and a.fingerprint]
    message = replace(message, threads=store.threads(row.notifier, fired))
    unsure = row.payload.get(UNSURE_SINCE)
    note: str | None = None
    found = False
    ref: str | None = None
    try:
        try:
            if unsure is not None and isinstance(notifier, Searchable):
                try:
                    ref = notifier.find_sent(message, from_db(unsure) - LOOKUP_MARGIN)
                    # The post found carries the thread later messages of its alerts use.
                    found = ref is not None
                except DeliveryError as exc:
                    if exc.retryable:
                        raise
                    # It cannot be checked until a person acts: a possible duplicate is
                    # better than silence.
                    note = f"could not check for an earlier copy, sent again: {exc}"
                    log.warning("notification %d to %s: %s", row.id, row.notifier, note)
            if not found:
                ref = notifier.send(message)
        except DeliveryError:
            raise
        except Exception as exc:
            # An unexpected failure is retried like a transient one, so it can
            # neither block the rows behind it nor escape the TTL.
            log.exception("notification %d to %s failed unexpectedly", row.id, row.notifier)
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
    except DeliveryError as exc:
        expired = now - row.created_at >= ttl
        if not exc.retryable or expired:
            why = "gave up after TTL: " if exc.retryable else ""
            log.error("notification %d to %s dead: %s%s", row.id, row.notifier, why, exc)
            final = f"{why}{exc}"
            _write(store.mark_failed, row.id, final, None)
            return "dead"
        delay = (
            _retry_delay(exc.retry_after) if exc.retry_after is not None else backoff(row.attempts)
        )
        log.warning(
            "notification %d to %s failed, retry in %s: %s", row.id, row.notifier, delay, exc
        )
        payload = None
        if exc.retry_recipients or (exc.unsure and unsure is None):
            payload = dict(row.payload)
            if exc.retry_recipients:
                payload["recipients"] = list(exc.retry_recipients)
            if exc.unsure and unsure is None:
                payload[UNSURE_SINCE] = to_db(now)
        error = str(exc)
        # A wait (Retry-After above all) counts from the answer, not from when the request
        # left: a slow server would otherwise be asked again too soon.
        answered = max(now, clock()) if clock is not None else now
        _write(store.mark_failed, row.id, error, answered + delay, payload)
        return "retrying"
    if found:
        log.info(
            "notification %d to %s is already there (an earlier attempt got no answer);"
            " not sent again",
            row.id,
            row.notifier,
        )
        note = "found already delivered; not sent again"
    if ref:
        for a in message.alerts:
            if a.transition == "firing" and a.since and a.fingerprint:
                _write(store.save_thread, row.notifier, a.fingerprint, a.since, ref)
    _write(store.mark_sent, row.id, now, note)
    return "sent"
