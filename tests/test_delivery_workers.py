"""Delivery that neither stalls nor repeats: per-notifier workers, bounded shutdown, and
Slack posts found again by their metadata key instead of being posted twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from dataclasses import replace as replace_fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from alerts.delivery import DeliveryWorkers
from alerts.message import AlertMessage, Notification
from alerts.notifiers.email import EmailNotifier, EmailSettings
from alerts.notifiers.slack import SlackNotifier, SlackSettings
from alerts.outbox import LOOKUP_MARGIN, backoff, dead_letter_unconfigured, deliver_due
from daemon.store import UNSURE_SINCE, Store
from tests.conftest import SLACK_CHANNELS, SLACK_TOKEN, SlackStandIn, SmtpServer
from tests.helpers import queue_alert, write_settings

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(hours=24)
LEASE = timedelta(minutes=5)


@dataclass
class SlackWithHistory(SlackStandIn):
    """The Slack stand-in, threaded, with conversations.history and conversations.list.

    Posts are stamped with `now` (Slack's clock), history answers the way Slack does
    (newest first, after `oldest`, metadata only with include_all_metadata), and posts
    can be made to hang, after storing the message or before.
    """

    now: datetime = T0
    posted: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    hang: bool = False
    post_before_hang: bool = False
    hung: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    history_calls: list[dict[str, str]] = field(default_factory=list)
    history_failures: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    list_calls: int = 0
    list_error: str | None = None
    # Store the post, then answer with this (status, body): a server error after the fact.
    fail_after_post: tuple[int, dict[str, Any]] | None = None

    def post(self, request: Request) -> Response:
        if self.fail_after_post is not None:
            self._post(request)
            status, body = self.fail_after_post
            return Response(json.dumps(body), status=status, content_type="application/json")
        if self.hang:
            self.hung += 1
            stored = self._post(request) if self.post_before_hang else None
            self.release.wait(60)
            return stored or Response("gone", status=503)
        return self._post(request)

    def _post(self, request: Request) -> Response:
        response = self.handle(request)
        body = json.loads(response.get_data())
        if not body.get("ok"):
            return response
        # Slack stamps a post with its own clock; history filters on that stamp.
        ts = f"{int(self.now.timestamp())}.{len(self.messages):06d}"
        self.posted.append((ts, self.messages[-1]))
        body["ts"] = body["message"]["ts"] = ts
        return _answer(body)

    def history(self, request: Request) -> Response:
        # Slack takes the arguments as a query or a form body (slack_sdk posts a form).
        args = request.values.to_dict()
        self.history_calls.append(args)
        if request.headers.get("Authorization") != f"Bearer {SLACK_TOKEN}":
            return _answer({"ok": False, "error": "invalid_auth"})
        if self.history_failures:
            status, body = self.history_failures.pop(0)
            return Response(json.dumps(body), status=status, content_type="application/json")
        # conversations.history takes an id only; a name is not found.
        if args.get("channel") not in SLACK_CHANNELS.values():
            return _answer({"ok": False, "error": "channel_not_found"})
        oldest = float(args.get("oldest", "0"))
        newer = [(ts, m) for ts, m in reversed(self.posted) if float(ts) > oldest]
        start = int(args.get("cursor") or 0)
        limit = int(args.get("limit", "100"))
        page = newer[start : start + limit]
        messages = []
        for ts, m in page:
            shown = {"type": "message", "ts": ts, "text": m.get("text", ""), "bot_id": "B0LW"}
            if args.get("include_all_metadata") in ("1", "true") and "metadata" in m:
                shown["metadata"] = m["metadata"]
            messages.append(shown)
        more = start + limit < len(newer)
        return _answer(
            {
                "ok": True,
                "messages": messages,
                "has_more": more,
                "response_metadata": {"next_cursor": str(start + limit) if more else ""},
            }
        )

    def channels(self, request: Request) -> Response:
        self.list_calls += 1
        if self.list_error is not None:
            return _answer({"ok": False, "error": self.list_error})
        listed = [{"id": "C0OTHER01", "name": "random"}] + [
            {"id": cid, "name": name.removeprefix("#")} for name, cid in SLACK_CHANNELS.items()
        ]
        return _answer({"ok": True, "channels": listed, "response_metadata": {"next_cursor": ""}})


def _answer(body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status=200, content_type="application/json")


@pytest.fixture
def slack_api() -> Iterator[SlackWithHistory]:
    """A threaded loopback Slack: one hung request does not block the others."""
    server = HTTPServer(host="127.0.0.1", threaded=True)
    server.start()
    api = SlackWithHistory(server)
    server.expect_request("/api/chat.postMessage", method="POST").respond_with_handler(api.post)
    server.expect_request("/api/conversations.history").respond_with_handler(api.history)
    server.expect_request("/api/conversations.list").respond_with_handler(api.channels)
    try:
        yield api
    finally:
        api.release.set()
        server.clear()
        server.stop()


def _message(n: int = 1) -> AlertMessage:
    return AlertMessage(
        transition="firing",
        rule="refdomain-loss",
        site=f"site{n}.example",
        severity="critical",
        metric="lost_refdomains",
        value=12,
        op=">=",
        threshold=10,
        window="7d",
        summary=f"site{n}.example lost 12 referring domains in 7d",
        at=T0.isoformat(),
    )


def _queue(store: Store, notifier: str, n: int = 1, now: datetime = T0) -> None:
    assert queue_alert(
        store, f"fp{n}", f"site{n}.example", [notifier], _message(n).to_payload(), now
    )


def _slack(api: SlackStandIn, channel: str = "#seo-alerts", timeout: float = 5) -> SlackNotifier:
    return SlackNotifier(
        "seo-slack",
        SlackSettings(
            kind="slack",
            token=SecretStr(SLACK_TOKEN),
            channel=channel,
            base_url=api.base_url,
            timeout=timeout,
        ),
    )


def _email(server: SmtpServer) -> EmailNotifier:
    return EmailNotifier(
        "team-email",
        EmailSettings(
            kind="email",
            host=server.host,
            port=server.port,
            security="none",
            sender="lw@example.com",
            recipients=["seo@example.com"],
            timeout=5,
        ),
    )


def _die_mid_post(path: Path, notifier: SlackNotifier, at: datetime, post: bool) -> None:
    """A deliverer claims the row, (maybe) gets it posted, and is killed before marking it."""
    dying = Store(path)
    [row] = dying.due_notifications(at)
    claimed = dying.claim_notification(row.id, at)
    assert claimed is not None
    if post:
        notifier.send(Notification.from_payload(claimed.payload, claimed.key))
    dying.close()


def _statuses(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM outbox GROUP BY status"))


@pytest.mark.parametrize(("channel", "list_calls"), [("#seo-alerts", 1), ("C0SEOALERTS", 0)])
def test_a_post_made_before_the_deliverer_died_is_found_not_repeated(
    tmp_path: Path, slack_api: SlackWithHistory, channel: str, list_calls: int
) -> None:
    store = Store(tmp_path / "lw.db")
    _queue(store, "seo-slack")
    notifier = _slack(slack_api, channel)
    slack_api.now = T0 + timedelta(seconds=1)
    _die_mid_post(store.path, _slack(slack_api, channel), T0, post=True)
    assert len(slack_api.posted) == 1

    # Claimed and not yet expired: nobody touches it.
    early = deliver_due(store, {"seo-slack": notifier}, T0 + LEASE - timedelta(seconds=1), TTL)
    assert (early.sent, early.retrying, early.dead) == (0, 0, 0)
    report = deliver_due(store, {"seo-slack": notifier}, T0 + LEASE, TTL)
    assert (report.sent, report.retrying, report.dead) == (1, 0, 0)
    assert len(slack_api.posted) == 1  # no second post
    [call] = slack_api.history_calls
    assert call["channel"] == "C0SEOALERTS" and call["include_all_metadata"] == "1"
    assert float(call["oldest"]) == (T0 - LOOKUP_MARGIN).timestamp()
    assert slack_api.list_calls == list_calls
    [row] = store.outbox()
    assert (row["status"], row["last_error"]) == (
        "sent",
        "found already delivered; not sent again",
    )


def test_an_in_flight_row_not_in_history_is_posted_once(
    tmp_path: Path, slack_api: SlackWithHistory
) -> None:
    store = Store(tmp_path / "lw.db")
    _queue(store, "seo-slack", 1)
    _queue(store, "seo-slack", 2)
    notifier = _slack(slack_api)
    # Another alert's post is in the channel: only the key can tell them apart.
    slack_api.now = T0 + timedelta(seconds=1)
    notifier.send(replace_key(_message(2), "fp2:firing:seo-slack"))
    store.mark_sent(2, T0)
    _die_mid_post(store.path, notifier, T0, post=False)
    report = deliver_due(store, {"seo-slack": notifier}, T0 + LEASE, TTL)
    assert (report.sent, report.retrying, report.dead) == (1, 0, 0)
    assert len(slack_api.history_calls) == 1
    keys = [m["metadata"]["event_payload"]["key"] for _, m in slack_api.posted]
    assert keys == ["fp2:firing:seo-slack", f"fp1:firing:{T0.isoformat()}:seo-slack"]
    assert [r["last_error"] for r in store.outbox()] == [None, None]


def replace_key(message: AlertMessage, key: str) -> Notification:
    return Notification.from_payload(message.to_payload(), key)


def test_a_second_crash_keeps_the_first_claim_time(
    tmp_path: Path, slack_api: SlackWithHistory
) -> None:
    store = Store(tmp_path / "lw.db")
    _queue(store, "seo-slack")
    notifier = _slack(slack_api)
    slack_api.now = T0 + timedelta(seconds=1)
    _die_mid_post(store.path, notifier, T0, post=True)
    # The next deliverer takes the row over long after, and dies before it could look.
    later = T0 + timedelta(minutes=30)
    _die_mid_post(store.path, notifier, later, post=False)
    [row] = store.due_notifications(later + LEASE)
    assert row.payload[UNSURE_SINCE] == "2026-03-01T12:00:00.000000Z"
    report = deliver_due(store, {"seo-slack": notifier}, later + LEASE, TTL)
    assert report.sent == 1
    assert len(slack_api.posted) == 1
    assert float(slack_api.history_calls[0]["oldest"]) == (T0 - LOOKUP_MARGIN).timestamp()


def test_a_post_whose_answer_never_came_is_found_on_retry(
    tmp_path: Path, slack_api: SlackWithHistory
) -> None:
    store = Store(tmp_path / "lw.db")
    _queue(store, "seo-slack")
    notifier = _slack(slack_api, timeout=1)
    # Slack posts the message, then the answer never comes.
    slack_api.hang = slack_api.post_before_hang = True
    started = time.monotonic()
    report = deliver_due(store, {"seo-slack": notifier}, T0, TTL)
    assert time.monotonic() - started < 5  # the notifier's own timeout, 1 s
    assert report.retrying == 1
    [row] = store.outbox()
    assert "timed out" in row["last_error"]
    slack_api.hang = False
    slack_api.release.set()
    report = deliver_due(store, {"seo-slack": notifier}, T0 + backoff(0), TTL)
    assert report.sent == 1
    assert len(slack_api.posted) == 1 and len(slack_api.history_calls) == 1


@pytest.mark.parametrize(
    "answer",
    [(500, {"ok": False, "error": "internal_error"}), (200, {"ok": False, "error": "fatal_error"})],
)
def test_a_server_error_after_the_post_was_stored_is_looked_up_not_repeated(
    tmp_path: Path, slack_api: SlackWithHistory, answer: tuple[int, dict[str, Any]]
) -> None:
    store = Store(tmp_path / "lw.db")
    _queue(store, "seo-slack")
    notifier = _slack(slack_api, timeout=1)
    slack_api.fail_after_post = answer
    assert deliver_due(store, {"seo-slack": notifier}, T0, TTL).retrying == 1
    slack_api.fail_after_post = None
    report = deliver_due(store, {"seo-slack": notifier}, T0 + backoff(0), TTL)
    assert report.sent == 1
    assert len(slack_api.posted) == 1 and len(slack_api.history_calls) == 1


def test_history_that_cannot_be_read_falls_back_to_sending_and_says_so(
    tmp_path: Path, slack_api: SlackWithHistory
) -> None:
    store = Store(tmp_path / "lw.db")
    _queue(store, "seo-slack")
    notifier = _slack(slack_api, "C0SEOALERTS")
    _die_mid_post(store.path, notifier, T0, post=False)
    slack_api.history_failures.append((200, {"ok": False, "error": "missing_scope"}))
    report = deliver_due(store, {"seo-slack": notifier}, T0 + LEASE, TTL)
    assert (report.sent, report.retrying, report.dead) == (1, 0, 0)
    assert len(slack_api.posted) == 1
    [row] = store.outbox()
    assert row["status"] == "sent"
    assert row["last_error"] == (
        "could not check for an earlier copy, sent again: "
        "slack C0SEOALERTS: conversations.history: missing_scope"
    )


def test_a_failing_history_lookup_is_retried_not_skipped(
    tmp_path: Path, slack_api: SlackWithHistory
) -> None:
    store = Store(tmp_path / "lw.db")
    _queue(store, "seo-slack")
    notifier = _slack(slack_api, "C0SEOALERTS")
    slack_api.now = T0 + timedelta(seconds=1)
    _die_mid_post(store.path, notifier, T0, post=True)
    slack_api.history_failures.append((500, {"ok": False, "error": "internal_error"}))
    report = deliver_due(store, {"seo-slack": notifier}, T0 + LEASE, TTL)
    assert (report.sent, report.retrying, report.dead) == (0, 1, 0)
    assert len(slack_api.posted) == 1
    # Pending again, and still known to be possibly out: the next try looks first.
    report = deliver_due(store, {"seo-slack": notifier}, T0 + LEASE + backoff(0), TTL)
    assert report.sent == 1
    assert len(slack_api.posted) == 1 and len(slack_api.history_calls) == 2


def test_a_hung_slack_delays_no_other_notifier(
    tmp_path: Path, slack_api: SlackWithHistory, smtp: SmtpServer
) -> None:
    store = Store(tmp_path / "lw.db")
    for n in range(1, 4):
        _queue(store, "seo-slack", n)
    _queue(store, "team-email", 4)
    slack_api.hang = True
    workers = DeliveryWorkers(store.path, clock=lambda: T0)
    workers.configure({"seo-slack": _slack(slack_api, timeout=30), "team-email": _email(smtp)}, TTL)
    started = time.monotonic()
    workers.wake()

    def email_done() -> bool:
        # The server has the message a moment before the worker records it as sent.
        statuses = {r["id"]: r["status"] for r in store.outbox()}
        return bool(smtp.messages) and statuses[4] == "sent"

    while not email_done() and time.monotonic() - started < 10:
        time.sleep(0.02)
    assert time.monotonic() - started < 3
    assert slack_api.hung == 1  # the Slack worker is stuck in its first post meanwhile
    rows = {r["id"]: r["status"] for r in store.outbox()}
    assert rows == {1: "sending", 2: "pending", 3: "pending", 4: "sent"}
    stopping = time.monotonic()
    workers.stop(grace=0.5)
    assert workers.join() == ["seo-slack"]
    assert time.monotonic() - stopping < 2
    assert slack_api.posted == [] and len(smtp.messages) == 1


def _daemon(settings: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "daemon.cli", "-c", str(settings), "run"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _until(condition: Any, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def test_sigterm_with_100_due_rows_and_a_hung_slack_stops_within_15_s(
    tmp_path: Path, slack_api: SlackWithHistory
) -> None:
    settings = write_settings(
        tmp_path,
        notifiers=(
            f'[notifiers.seo-slack]\nkind = "slack"\ntoken = "{SLACK_TOKEN}"\n'
            f'channel = "#seo-alerts"\nbase_url = "{slack_api.base_url}"\ntimeout = 60\n'
        ),
    )
    (tmp_path / "exports" / "example.com").mkdir(parents=True)
    store = Store(tmp_path / "linkwatch.db")
    queued = datetime.now(UTC) - timedelta(minutes=1)
    for n in range(100):
        _queue(store, "seo-slack", n, queued)
    store.close()
    slack_api.hang = True
    first = _daemon(settings, tmp_path / "first.err")
    _until(lambda: slack_api.hung == 1, 20, first, tmp_path / "first.err")
    started = time.monotonic()
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0
    assert time.monotonic() - started < 15
    assert "abandoned mid-send" in (tmp_path / "first.err").read_text()
    # Nothing was lost: the one in flight stays claimed, the rest wait for the next start.
    assert _statuses(tmp_path / "linkwatch.db") == {"sending": 1, "pending": 99}

    slack_api.hang = False
    second = _daemon(settings, tmp_path / "second.err")
    _until(lambda: len(slack_api.posted) == 99, 20, second, tmp_path / "second.err")
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 0
    keys = {m["metadata"]["event_payload"]["key"] for _, m in slack_api.posted}
    assert len(keys) == 99 and "fp0:firing:seo-slack" not in keys
    assert _statuses(tmp_path / "linkwatch.db") == {"sending": 1, "sent": 99}


def test_a_reload_replaces_the_workers_and_rows_of_removed_notifiers_go_dead(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    store = Store(tmp_path / "lw.db")
    _queue(store, "team-email", 1)
    _queue(store, "old-email", 2)
    workers = DeliveryWorkers(store.path, clock=lambda: T0)
    workers.configure({"old-email": _email(smtp)}, TTL)
    [old] = workers.workers
    # The reload's new notifiers: the old worker stops, a new one delivers.
    assert dead_letter_unconfigured(store, ["team-email"], T0) == 1
    workers.configure({"team-email": _email(smtp)}, TTL)
    assert old.join(2)
    workers.wake()
    deadline = time.monotonic() + 5
    while store.outbox()[-1]["status"] != "sent" and time.monotonic() < deadline:
        time.sleep(0.02)
    rows = {r["notifier"]: (r["status"], r["last_error"]) for r in store.outbox()}
    assert rows == {
        "team-email": ("sent", None),
        "old-email": ("dead", "notifier 'old-email' is not configured"),
    }
    workers.stop()
    assert workers.join() == []
    assert len(smtp.messages) == 1


@pytest.mark.parametrize("unsure", [False, True], ids=["answered", "found-in-history"])
def test_a_firing_post_found_in_history_still_threads_its_follow_ups(
    tmp_path: Path, slack_api: SlackWithHistory, unsure: bool
) -> None:
    from alerts.message import Notification
    from alerts.notifiers.slack import thread_of

    store = Store(tmp_path / "lw.db")
    msg = replace_fields(_message(), fingerprint="fp1", since=T0.isoformat())
    assert queue_alert(store, "fp1", "site1.example", ["seo-slack"], msg.to_payload(), T0)
    notifier = _slack(slack_api, timeout=1)
    if unsure:
        # Slack stores the post, then answers 500: the retry finds it instead of posting.
        slack_api.fail_after_post = (500, {"ok": False, "error": "internal_error"})
        assert deliver_due(store, {"seo-slack": notifier}, T0, TTL).retrying == 1
        slack_api.fail_after_post = None
    assert deliver_due(store, {"seo-slack": notifier}, T0 + backoff(0), TTL).sent == 1
    assert len(slack_api.posted) == 1
    threads = store.threads("seo-slack", [("fp1", T0.isoformat())])
    resolved = Notification(
        "site1.example", (replace_fields(msg, transition="resolved"),), threads=threads
    )
    # The resolution replies under the firing post and marks it, however it was found.
    assert thread_of(resolved) is not None
