"""Delivering the outbox: each due notification sent once per notifier, retried with backoff."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from alerts.message import AlertMessage, DeliveryError
from alerts.notifiers import Notifier
from daemon.store import Store

log = logging.getLogger(__name__)

BACKOFF_FIRST = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=1)


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
    store: Store, notifiers: Mapping[str, Notifier], now: datetime, ttl: timedelta
) -> DeliveryReport:
    """Send every due notification; a notifier's failure never holds back another's."""
    sent = retrying = dead = 0
    for row in store.due_notifications(now):
        notifier = notifiers.get(row.notifier)
        if notifier is None:
            store.mark_failed(row.id, f"notifier {row.notifier!r} is not configured", None)
            dead += 1
            continue
        if not store.claim_notification(row.id, now):
            continue  # another process is delivering it
        try:
            try:
                notifier.send(AlertMessage.from_payload(row.payload))
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
                store.mark_failed(row.id, f"{why}{exc}", None)
                dead += 1
            else:
                delay = (
                    _retry_delay(exc.retry_after)
                    if exc.retry_after is not None
                    else backoff(row.attempts)
                )
                log.warning(
                    "notification %d to %s failed, retry in %s: %s",
                    row.id,
                    row.notifier,
                    delay,
                    exc,
                )
                payload = None
                if exc.retry_recipients:
                    payload = {**row.payload, "recipients": list(exc.retry_recipients)}
                store.mark_failed(row.id, str(exc), now + delay, payload)
                retrying += 1
            continue
        store.mark_sent(row.id, now)
        sent += 1
    return DeliveryReport(sent, retrying, dead)
