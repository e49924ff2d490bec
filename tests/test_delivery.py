"""Outbox delivery against real loopback servers: retries, Retry-After, dead letters, TLS."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from pydantic import SecretStr

from alerts.message import AlertMessage, DeliveryError, Notification
from alerts.notifiers.email import EmailNotifier, EmailSettings
from alerts.notifiers.slack import SlackNotifier, SlackSettings
from alerts.outbox import backoff, deliver_due
from daemon.store import UNSURE_SINCE, OutboxRow, Store
from daemon.timefmt import to_db
from tests.conftest import SLACK_TOKEN, SlackStandIn, SmtpServer, start_smtp
from tests.helpers import queue_alert

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(hours=24)


def _message() -> AlertMessage:
    return AlertMessage(
        transition="firing",
        rule="refdomain-loss",
        site="example.com",
        severity="critical",
        metric="lost_refdomains",
        value=12,
        op=">=",
        threshold=10,
        window="7d",
        summary="example.com lost 12 referring domains in 7d",
        at=T0.isoformat(),
    )


def _note(message: AlertMessage | None = None) -> Notification:
    """One alert's notification, as a notifier is handed it."""
    message = message or _message()
    return Notification(message.site, (message,))


def _slack(slack: SlackStandIn, token: str = SLACK_TOKEN) -> SlackNotifier:
    return SlackNotifier(
        "seo-slack",
        SlackSettings(
            kind="slack",
            token=SecretStr(token),
            channel="#seo-alerts",
            base_url=slack.base_url,
        ),
    )


def _email(server: SmtpServer, **kw: object) -> EmailNotifier:
    settings = {
        "kind": "email",
        "host": server.host,
        "port": server.port,
        "security": "none",
        "sender": "lw@example.com",
        "recipients": ["seo@example.com"],
        "timeout": 5,
        **kw,
    }
    return EmailNotifier("team-email", EmailSettings.model_validate(settings))


def _queue(store: Store, notifiers: list[str]) -> None:
    assert queue_alert(store, "fp1", "example.com", notifiers, _message().to_payload(), T0)


def test_rate_limited_slack_waits_retry_after_and_email_is_not_repeated(
    tmp_path: Path, slack: SlackStandIn, smtp: SmtpServer
) -> None:
    store = Store(tmp_path / "lw.db")
    _queue(store, ["seo-slack", "team-email"])
    notifiers = {"seo-slack": _slack(slack), "team-email": _email(smtp)}
    slack.fail_next(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "120"})

    first = deliver_due(store, notifiers, T0, TTL)
    assert (first.sent, first.retrying, first.dead) == (1, 1, 0)
    assert len(smtp.messages) == 1 and slack.messages == []

    # Not due before Retry-After has passed.
    early = deliver_due(store, notifiers, T0 + timedelta(seconds=119), TTL)
    assert (early.sent, early.retrying) == (0, 0)
    later = deliver_due(store, notifiers, T0 + timedelta(seconds=120), TTL)
    assert (later.sent, later.retrying) == (1, 0)
    assert len(slack.messages) == 1
    assert len(smtp.messages) == 1  # the e-mail that succeeded was never sent again
    assert deliver_due(store, notifiers, T0 + timedelta(hours=1), TTL).sent == 0
    rows = {r["notifier"]: r for r in store.outbox()}
    assert rows["seo-slack"]["status"] == "sent" and rows["seo-slack"]["attempts"] == 2
    assert rows["team-email"]["attempts"] == 1


def test_bad_token_is_dead_lettered_at_once(tmp_path: Path, slack: SlackStandIn) -> None:
    store = Store(tmp_path / "lw.db")
    _queue(store, ["seo-slack"])
    report = deliver_due(store, {"seo-slack": _slack(slack, "xoxb-wrong")}, T0, TTL)
    assert (report.sent, report.dead) == (0, 1)
    [row] = store.outbox()
    assert row["status"] == "dead" and "invalid_auth" in row["last_error"]


def test_an_unknown_channel_is_dead_lettered_at_once(tmp_path: Path, slack: SlackStandIn) -> None:
    store = Store(tmp_path / "lw.db")
    _queue(store, ["seo-slack"])
    notifier = SlackNotifier(
        "seo-slack",
        SlackSettings(
            kind="slack", token=SecretStr(SLACK_TOKEN), channel="#nope", base_url=slack.base_url
        ),
    )
    report = deliver_due(store, {"seo-slack": notifier}, T0, TTL)
    assert (report.sent, report.retrying, report.dead) == (0, 0, 1)
    [row] = store.outbox()
    assert row["status"] == "dead" and "channel_not_found" in row["last_error"]
    assert slack.calls == 1


def test_the_summary_is_escaped_in_slack_and_html(slack: SlackStandIn, smtp: SmtpServer) -> None:
    hostile = "<!channel> & <https://evil.example|click> <b>bold</b>"
    message = _note(replace(_message(), summary=hostile))
    _slack(slack).send(message)
    [posted] = slack.messages
    everything = json.dumps(posted)
    assert "<!channel>" not in everything and "&lt;!channel&gt; &amp;" in everything
    _email(smtp).send(message)
    [(_, _, mail)] = smtp.messages
    html = next(p for p in mail.walk() if p.get_content_type() == "text/html").get_payload(
        decode=True
    )
    assert b"<b>bold</b>" not in html and b"&lt;b&gt;bold&lt;/b&gt;" in html


def test_retryable_errors_back_off_then_give_up_after_ttl(
    tmp_path: Path, slack: SlackStandIn
) -> None:
    store = Store(tmp_path / "lw.db")
    _queue(store, ["seo-slack"])
    notifiers = {"seo-slack": _slack(slack)}
    # (A server error may come after the post was stored: test_delivery_workers.py.)
    for _ in range(3):
        slack.fail_next(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "30"})
    assert deliver_due(store, notifiers, T0, TTL).retrying == 1
    # A refusal before anything was posted marks nothing as possibly out.
    assert UNSURE_SINCE not in store.due_notifications(T0 + TTL)[0].payload
    assert deliver_due(store, notifiers, T0 + backoff(0) - timedelta(seconds=1), TTL).retrying == 0
    assert deliver_due(store, notifiers, T0 + backoff(0), TTL).retrying == 1
    assert deliver_due(store, notifiers, T0 + TTL, TTL).dead == 1
    assert slack.calls == 3 and slack.messages == []


def test_backoff_doubles_from_30s_and_is_capped_at_an_hour() -> None:
    assert [backoff(n).total_seconds() for n in (-1, 0, 1, 2, 6, 7, 10**6)] == [
        30,
        30,
        60,
        120,
        1920,
        3600,
        3600,
    ]


def test_restart_between_queue_and_delivery_loses_nothing(tmp_path: Path, smtp: SmtpServer) -> None:
    store = Store(tmp_path / "lw.db")
    _queue(store, ["team-email"])
    store.close()
    reopened = Store(tmp_path / "lw.db")
    assert deliver_due(reopened, {"team-email": _email(smtp)}, T0, TTL).sent == 1
    assert deliver_due(reopened, {"team-email": _email(smtp)}, T0, TTL).sent == 0
    assert len(smtp.messages) == 1


def test_starttls_verifies_the_server_certificate(tls_smtp: SmtpServer) -> None:
    trusted = _email(tls_smtp, security="starttls", ca_file=str(tls_smtp.ca_file))
    trusted.send(_note())
    assert len(tls_smtp.messages) == 1

    untrusted = _email(tls_smtp, security="starttls")
    with pytest.raises(DeliveryError) as err:
        untrusted.send(_note())
    assert not err.value.retryable
    assert len(tls_smtp.messages) == 1


def test_unreachable_smtp_is_retryable(refused_port: int) -> None:
    server = SmtpServer("127.0.0.1", refused_port, handler=None)  # type: ignore[arg-type]
    with pytest.raises(DeliveryError) as err:
        _email(server).send(_note())
    assert err.value.retryable


def test_secrets_are_not_in_reprs() -> None:
    settings = SlackSettings(kind="slack", token=SecretStr("xoxb-secret"), channel="#x")
    assert "xoxb-secret" not in repr(settings) and "xoxb-secret" not in str(settings)


def test_a_stale_evaluator_cannot_queue_a_transition_twice(tmp_path: Path) -> None:
    store = Store(tmp_path / "lw.db")
    _queue(store, ["team-email"])
    # A second process that read "inactive" before the first one saved "firing".
    assert not queue_alert(
        store,
        "fp1",
        "example.com",
        ["team-email"],
        _message().to_payload(),
        T0 + timedelta(seconds=1),
    )
    assert len(store.outbox()) == 1


def test_a_claimed_notification_is_not_sent_by_a_second_deliverer(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    store = Store(tmp_path / "lw.db")
    _queue(store, ["team-email"])
    other = Store(tmp_path / "lw.db")
    [row] = other.due_notifications(T0)
    assert other.claim_notification(row.id, T0)
    assert deliver_due(store, {"team-email": _email(smtp)}, T0, TTL).sent == 0
    # The other deliverer died: once its claim expires the row is delivered.
    later = T0 + timedelta(minutes=5)
    assert deliver_due(store, {"team-email": _email(smtp)}, later, TTL).sent == 1
    assert len(smtp.messages) == 1


class _Broken:
    name = "broken"

    def send(self, message: Notification) -> None:
        raise RuntimeError("renderer bug")


def test_an_unexpected_error_is_retried_and_does_not_block_other_rows(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    store = Store(tmp_path / "lw.db")
    _queue(store, ["broken", "team-email"])
    report = deliver_due(store, {"broken": _Broken(), "team-email": _email(smtp)}, T0, TTL)
    assert (report.sent, report.retrying) == (1, 1)
    rows = {r["notifier"]: r for r in store.outbox()}
    assert rows["broken"]["status"] == "pending"
    assert "RuntimeError: renderer bug" in rows["broken"]["last_error"]
    assert deliver_due(store, {"broken": _Broken()}, T0 + TTL, TTL).dead == 1


class _Failing:
    """A notifier that fails the way it is told to."""

    def __init__(self, retryable: bool) -> None:
        self.retryable = retryable

    def send(self, message: Notification) -> None:
        raise DeliveryError("server said no", retryable=self.retryable)


def test_each_row_gets_its_own_outcome_and_the_log_says_which(
    tmp_path: Path, smtp: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(tmp_path / "lw.db")
    names = ["gone-1", "gone-2", "permanent", "flaky", "team-email"]
    _queue(store, names)
    notifiers = {
        "permanent": _Failing(retryable=False),
        "flaky": _Failing(retryable=True),
        "team-email": _email(smtp),
    }
    report = deliver_due(store, notifiers, T0, TTL)  # type: ignore[arg-type]
    assert (report.sent, report.retrying, report.dead) == (1, 1, 3)
    rows = {r["notifier"]: r for r in store.outbox()}
    assert rows["gone-1"]["last_error"] == "notifier 'gone-1' is not configured"
    assert rows["gone-2"]["status"] == "dead"
    assert (rows["permanent"]["status"], rows["permanent"]["last_error"]) == (
        "dead",
        "server said no",
    )
    assert (rows["flaky"]["status"], rows["flaky"]["next_attempt_at"]) == (
        "pending",
        to_db(T0 + backoff(0)),
    )
    assert "notification 4 to flaky failed, retry in 0:00:30: server said no" in caplog.text
    assert "notification 3 to permanent dead: server said no" in caplog.text
    # Past the TTL a retryable failure is dead too, and says why.
    report = deliver_due(store, notifiers, T0 + TTL, TTL)  # type: ignore[arg-type]
    assert (report.sent, report.retrying, report.dead) == (0, 0, 1)
    flaky = next(r for r in store.outbox() if r["notifier"] == "flaky")
    assert flaky["last_error"] == "gave up after TTL: server said no"
    assert "notification 4 to flaky dead: gave up after TTL: server said no" in caplog.text
    assert len(smtp.messages) == 1


class _RacingStore(Store):
    """Another process claims the first due row between listing and claiming."""

    def due_notifications(
        self,
        now: datetime,
        limit: int = 100,
        *,
        notifier: str | None = None,
        exclude: Collection[str] = (),
    ) -> list[OutboxRow]:
        rows = super().due_notifications(now, limit, notifier=notifier, exclude=exclude)
        other = Store(self.path)
        assert other.claim_notification(rows[0].id, now)
        other.close()
        return rows


def test_a_row_another_process_claimed_is_skipped_not_the_rest(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    Store(tmp_path / "lw.db").close()
    store = _RacingStore(tmp_path / "lw.db")
    _queue(store, ["team-email", "second-email"])
    notifiers = {"team-email": _email(smtp), "second-email": _email(smtp)}
    report = deliver_due(store, notifiers, T0, TTL)
    assert (report.sent, report.retrying, report.dead) == (1, 0, 0)
    assert [r["status"] for r in reversed(store.outbox())] == ["sending", "sent"]
    assert len(smtp.messages) == 1


def test_every_failure_is_counted_and_logged_exactly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(tmp_path / "lw.db")
    _queue(store, ["flaky-1", "flaky-2", "broken"])
    notifiers = {
        "flaky-1": _Failing(retryable=True),
        "flaky-2": _Failing(retryable=True),
        "broken": _Broken(),
    }
    report = deliver_due(store, notifiers, T0, TTL)  # type: ignore[arg-type]
    assert (report.sent, report.retrying, report.dead) == (0, 3, 0)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "notification 1 to flaky-1 failed, retry in 0:00:30: server said no",
        "notification 2 to flaky-2 failed, retry in 0:00:30: server said no",
        "notification 3 to broken failed unexpectedly",
        "notification 3 to broken failed, retry in 0:00:30: RuntimeError: renderer bug",
    ]
    caplog.clear()
    report = deliver_due(store, notifiers, T0 + TTL, TTL)  # type: ignore[arg-type]
    assert report.dead == 3
    assert [r.getMessage() for r in caplog.records][:1] == [
        "notification 1 to flaky-1 dead: gave up after TTL: server said no"
    ]


def test_a_retry_after_is_honoured_within_bounds(tmp_path: Path, slack: SlackStandIn) -> None:
    store = Store(tmp_path / "lw.db")
    _queue(store, ["seo-slack"])
    notifiers = {"seo-slack": _slack(slack)}
    slack.fail_next(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "9" * 30})
    assert deliver_due(store, notifiers, T0, TTL).retrying == 1
    [row] = store.outbox()
    assert row["next_attempt_at"] == to_db(T0 + timedelta(hours=1))  # clamped, no overflow
    slack.fail_next(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "0"})
    later = T0 + timedelta(hours=1)
    assert deliver_due(store, notifiers, later, TTL).retrying == 1
    [row] = store.outbox()
    assert row["next_attempt_at"] == to_db(later + timedelta(seconds=1))
    assert deliver_due(store, notifiers, later + timedelta(seconds=1), TTL).sent == 1


class _Picky:
    """An SMTP server that greylists once and knows no `nobody`: per-recipient answers."""

    def __init__(self) -> None:
        self.greylisted: set[str] = set()
        self.messages: list[list[str]] = []

    async def handle_RCPT(
        self, server: object, session: object, envelope: Any, address: str, options: object
    ) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        if address.startswith("grey@") and address not in self.greylisted:
            self.greylisted.add(address)
            return "451 4.7.1 greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        self.messages.append(list(envelope.rcpt_tos))
        return "250 OK"


@pytest.fixture
def picky_smtp() -> Iterator[tuple[SmtpServer, _Picky]]:
    handler = _Picky()
    controller, port = start_smtp(lambda p: Controller(handler, hostname="127.0.0.1", port=p))
    try:
        yield SmtpServer("127.0.0.1", port, handler), handler  # type: ignore[arg-type]
    finally:
        controller.stop()


def test_a_greylisted_recipient_is_retried_alone(
    tmp_path: Path, picky_smtp: tuple[SmtpServer, _Picky]
) -> None:
    server, picky = picky_smtp
    store = Store(tmp_path / "lw.db")
    _queue(store, ["team-email"])
    notifiers = {"team-email": _email(server, recipients=["seo@example.com", "grey@example.com"])}
    report = deliver_due(store, notifiers, T0, TTL)
    assert (report.sent, report.retrying, report.dead) == (0, 1, 0)
    assert picky.messages == [["seo@example.com"]]
    [row] = store.outbox()
    assert "grey@example.com: 451" in row["last_error"]
    report = deliver_due(store, notifiers, T0 + backoff(0), TTL)
    assert report.sent == 1
    # The second attempt goes to the greylisted recipient only: nobody gets it twice.
    assert picky.messages == [["seo@example.com"], ["grey@example.com"]]


def test_a_refused_recipient_is_final_and_named(
    tmp_path: Path, picky_smtp: tuple[SmtpServer, _Picky]
) -> None:
    server, picky = picky_smtp
    store = Store(tmp_path / "lw.db")
    _queue(store, ["team-email"])
    notifiers = {"team-email": _email(server, recipients=["seo@example.com", "nobody@example.com"])}
    report = deliver_due(store, notifiers, T0, TTL)
    assert (report.sent, report.retrying, report.dead) == (0, 0, 1)
    assert picky.messages == [["seo@example.com"]]
    [row] = store.outbox()
    assert row["last_error"] == (
        f"smtp 127.0.0.1:{server.port}: some recipients refused: "
        "nobody@example.com: 550 5.1.1 no such user"
    )
    # Everyone refused for now (greylisting): the whole message is tried again.
    other = Store(tmp_path / "other.db")
    _queue(other, ["grey-only"])
    grey = {"grey-only": _email(server, recipients=["grey@example.com"])}
    assert deliver_due(other, grey, T0, TTL).retrying == 1


class _SaysWait:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def send(self, message: Notification) -> None:
        raise DeliveryError("busy", retry_after=self.seconds)


@pytest.mark.parametrize(
    ("retry_after", "wait"),
    [(float("nan"), 1), (-1e300, 1), (0.5, 1), (1.5, 1.5), (90, 90), (1e300, 3600)],
)
def test_any_retry_after_becomes_a_wait_of_one_second_to_an_hour(
    tmp_path: Path, retry_after: float, wait: int
) -> None:
    store = Store(tmp_path / "lw.db")
    _queue(store, ["busy"])
    report = deliver_due(store, {"busy": _SaysWait(retry_after)}, T0, TTL)  # type: ignore[dict-item]
    assert report.retrying == 1
    [row] = store.outbox()
    assert row["next_attempt_at"] == to_db(T0 + timedelta(seconds=wait))


def test_each_post_carries_its_outbox_key_as_message_metadata(
    tmp_path: Path, slack: SlackStandIn
) -> None:
    store = Store(tmp_path / "lw.db")
    _queue(store, ["seo-slack"])
    assert deliver_due(store, {"seo-slack": _slack(slack)}, T0, TTL).sent == 1
    [posted] = slack.messages
    assert posted["metadata"] == {
        "event_type": "linkwatch_alert",
        "event_payload": {
            "key": f"fp1:firing:{T0.isoformat()}:seo-slack",
            "rule": "refdomain-loss",
            "site": "example.com",
            "transition": "firing",
        },
    }
    # A message from outside the outbox (notify-test) has no key to carry.
    _slack(slack).send(_note())
    assert "metadata" not in slack.messages[1]


class _BusyOnceStore(Store):
    """Another process holds the write lock the first time a delivery is marked sent."""

    busy = 0

    def mark_sent(self, outbox_id: int, at: datetime, note: str | None = None) -> None:
        if self.busy == 0:
            self.busy += 1
            holder = sqlite3.connect(self.path, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")
            self.conn.execute("PRAGMA busy_timeout = 0")
            try:
                super().mark_sent(outbox_id, at, note)
            finally:
                holder.execute("ROLLBACK")
                holder.close()
        super().mark_sent(outbox_id, at, note)


def test_a_sent_mark_that_meets_a_busy_database_is_written_again_not_resent(
    tmp_path: Path, slack: SlackStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    store = _BusyOnceStore(tmp_path / "lw.db")
    _queue(store, ["seo-slack"])
    assert deliver_due(store, {"seo-slack": _slack(slack)}, T0, TTL).sent == 1
    assert store.busy == 1 and "recording a delivery outcome again" in caplog.text
    assert [r["status"] for r in store.outbox()] == ["sent"]
    assert len(slack.messages) == 1


class _AlwaysBusyStore(_BusyOnceStore):
    """Another process holds the write lock whenever a delivery is marked sent."""

    def mark_sent(self, outbox_id: int, at: datetime, note: str | None = None) -> None:
        self.busy += 1
        holder = sqlite3.connect(self.path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        self.conn.execute("PRAGMA busy_timeout = 0")
        try:
            Store.mark_sent(self, outbox_id, at, note)
        finally:
            holder.execute("ROLLBACK")
            holder.close()


def test_a_sent_mark_busy_every_time_is_tried_three_times_then_raised(
    tmp_path: Path, slack: SlackStandIn
) -> None:
    store = _AlwaysBusyStore(tmp_path / "lw.db")
    _queue(store, ["seo-slack"])
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        deliver_due(store, {"seo-slack": _slack(slack)}, T0, TTL)
    assert store.busy == 3
    # The row stays claimed: once the claim expires, the post is looked up, not repeated.
    assert [r["status"] for r in store.outbox()] == ["sending"]


def test_a_workers_pass_touches_only_its_own_notifiers_rows(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    store = Store(tmp_path / "lw.db")
    _queue(store, ["team-email", "seo-slack"])
    report = deliver_due(store, {"team-email": _email(smtp)}, T0, TTL, notifier="team-email")
    assert (report.sent, report.dead) == (1, 0)
    assert sorted((r["notifier"], r["status"]) for r in store.outbox()) == [
        ("seo-slack", "pending"),
        ("team-email", "sent"),
    ]
