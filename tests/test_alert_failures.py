"""Alert delivery and the alert lifecycle under failure, on the real daemon process.

The real `linkwatch run` (tests.test_daemon.Daemon), a real SQLite file, a threaded loopback
Slack Web API (conftest's SlackStandIn, here made slow, hanging or failing) and aiosmtpd.
What is already covered elsewhere is not repeated here:
- a hung Slack post abandoned at SIGTERM and its 99 queued rows delivered after a restart:
  test_delivery_workers.test_sigterm_with_100_due_rows_and_a_hung_slack_stops_within_15_s;
- Retry-After and the other delivery rules against a fake clock: test_delivery.py;
- the state machine against a reference model over random timelines: test_lifecycle.py;
- a removed rule and a what-if through one-shot commands: test_alerting.py.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from daemon.cli import main
from daemon.store import CLAIM_LEASE
from daemon.timefmt import from_db, to_db
from tests.conftest import SLACK_CHANNELS, SLACK_TOKEN, SlackStandIn, SmtpServer
from tests.helpers import write_ahrefs, write_rule, write_settings
from tests.test_daemon import Daemon

ROOT = Path(__file__).resolve().parent.parent
# Evaluate and wake delivery every second; a message goes out as soon as it is queued.
FAST = 'evaluate_every = "1s"\ndeliver_every = "1s"\ngroup_wait = "0s"\n'
# Inside [sources.exports]: a link missing from one complete export is lost at once.
AT_ONCE = "confirm_after = 1\n"
CONSOLE = '[notifiers.console]\nkind = "console"\n'
LOSS = (
    'kind = "threshold"\nmetric = "lost_refdomains"\nwindow = "{window}"\nop = ">="\n'
    'value = 3\nnotify = {notify}\nfor = "{for_}"\nkeep_firing_for = "{keep}"\n'
    'repeat_interval = "{repeat}"\nsummary = "{{site}} lost {{value}} referring domains"\n'
)


def _loss(
    notify: str = '["seo-slack"]',
    window: str = "7d",
    for_: str = "0s",
    keep: str = "0s",
    repeat: str = "1h",
) -> str:
    return LOSS.format(notify=notify, window=window, for_=for_, keep=keep, repeat=repeat)


def _rows(site: str, n: int = 10) -> list[tuple[str, str, str, int]]:
    """n links from n referring domains (distinct registrable domains)."""
    return [(f"https://www.ref{i}.org/p", f"https://{site}/", f"a{i}", 10 + i) for i in range(n)]


def _sites(*domains: str) -> str:
    return "".join(
        f'[[sites]]\ndomain = "{d}"\nrole = "own"\nsources = ["exports"]\n' for d in domains
    )


def _lost_four(tmp_path: Path, site: str) -> None:
    """Exports dated before today: 10 referring domains two days ago, 6 of them yesterday,
    so a daemon starting now finds 4 lost in the last 7 days."""
    folder = tmp_path / "exports" / site
    folder.mkdir(parents=True)
    today = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    for days_ago, kept in ((2, 10), (1, 6)):
        stamp = (today - timedelta(days=days_ago)).strftime("%Y-%m-%d_%H-%M-%S")
        write_ahrefs(folder / f"{site}-backlinks_{stamp}.csv", _rows(site)[:kept])


def _slack_notifier(api: SlackStandIn, channel: str = "#seo-alerts") -> str:
    return (
        f'[notifiers.seo-slack]\nkind = "slack"\ntoken = "{SLACK_TOKEN}"\n'
        f'channel = "{channel}"\nbase_url = "{api.base_url}"\ntimeout = 10\n'
    )


def _email_notifier(smtp: SmtpServer) -> str:
    return (
        f'[notifiers.team-email]\nkind = "email"\nhost = "{smtp.host}"\nport = {smtp.port}\n'
        'security = "none"\nsender = "lw@example.com"\nrecipients = ["seo@example.com"]\n'
        "timeout = 5\n"
    )


@dataclass
class SlowSlack(SlackStandIn):
    """The Slack stand-in on a threaded server, whose chat.postMessage can be slowed, or
    made to hang before or after storing the post; it also answers conversations.list."""

    delay: float = 0.0
    # Delays of the next posts, one each, before `delay` applies again.
    delays: list[float] = field(default_factory=list)
    hang: str | None = None  # "before" or "after" storing the post
    hung: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    # time.monotonic() of each chat.postMessage as it arrives, and as it is answered.
    arrived: list[float] = field(default_factory=list)
    answered: list[float] = field(default_factory=list)
    history_calls: list[dict[str, str]] = field(default_factory=list)

    def handle(self, request: Request) -> Response:
        self.arrived.append(time.monotonic())
        delay = self.delays.pop(0) if self.delays else self.delay
        if delay:
            time.sleep(delay)
        if self.hang == "before":
            self.hung.set()
            self.release.wait(30)
            return Response("gone", status=503)
        response = super().handle(request)
        if self.hang == "after":
            self.hung.set()
            self.release.wait(30)
        self.answered.append(time.monotonic())
        return response

    def history(self, request: Request) -> Response:
        self.history_calls.append(request.values.to_dict())
        return super().history(request)

    def channels(self, request: Request) -> Response:
        """conversations.list: the channel name to id."""
        listed = [
            {"id": cid, "name": name.removeprefix("#")} for name, cid in SLACK_CHANNELS.items()
        ]
        body = {"ok": True, "channels": listed, "response_metadata": {"next_cursor": ""}}
        return Response(json.dumps(body), status=200, content_type="application/json")

    def keys(self) -> list[str]:
        """The idempotency key of every post, from its message metadata, in order."""
        return [str(m["metadata"]["event_payload"]["key"]) for m in self.messages]


@pytest.fixture
def slack_api() -> Iterator[SlowSlack]:
    # Threaded: a hung post must not stop conversations.history being answered.
    server = HTTPServer(host="127.0.0.1", threaded=True)
    server.start()
    # Slack stamps posts with its own clock; the duplicate lookup filters on that stamp.
    api = SlowSlack(server, now=datetime.now(UTC))
    api.register()
    server.expect_request("/api/conversations.list").respond_with_handler(api.channels)
    try:
        yield api
    finally:
        api.release.set()
        server.clear()
        server.stop()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Daemons a test starts; any still running at the end is killed."""
    started: list[Daemon] = []
    yield started
    for d in started:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(10)


def _start(daemons: list[Daemon], settings: Path, name: str) -> Daemon:
    daemon = Daemon(settings, settings.parent / name)
    daemons.append(daemon)
    return daemon


def _until(condition: Callable[[], object], timeout: float, daemon: Daemon | None = None) -> None:
    """Poll for a condition with a deadline (and the daemon still alive)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if daemon is not None:
            assert daemon.proc.poll() is None, daemon.err.read_text()
        log = daemon.err.read_text() if daemon is not None else ""
        assert time.monotonic() < deadline, f"condition not met in {timeout} s\n{log}"
        time.sleep(0.05)


def _query(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of a query; none while the daemon has not yet made the database (never made
    here) or its tables and columns."""
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError as exc:
        # The daemon is still creating or upgrading its schema (one migration at a time).
        if "no such table" in str(exc) or "no such column" in str(exc):
            return []
        raise
    finally:
        conn.close()


def _execute(db: Path, sql: str, args: tuple[Any, ...] = ()) -> None:
    conn = sqlite3.connect(db, timeout=30)
    try:
        with conn:
            conn.execute(sql, args)
    finally:
        conn.close()


def _outbox(db: Path) -> list[tuple[Any, ...]]:
    """(key, notifier, status, attempts, last_error) of every row, oldest first."""
    return _query(
        db,
        "SELECT idempotency_key, notifier, status, attempts, last_error FROM outbox ORDER BY id",
    )


def _statuses(db: Path) -> dict[str, int]:
    return dict(_query(db, "SELECT status, count(*) FROM outbox GROUP BY status"))


def _evaluated_after(db: Path, at: datetime) -> bool:
    """True once the daemon has committed an evaluation after `at`."""
    rows = _query(db, "SELECT value FROM meta WHERE key = 'last_committed_evaluation'")
    return bool(rows) and from_db(rows[0][0]) > at


# --- 1 and 2: a stop or a crash in the middle of a Slack post ------------------------


def test_sigterm_during_a_slow_post_finishes_it_and_the_restart_sends_only_the_rest(
    tmp_path: Path, slack_api: SlowSlack, daemons: list[Daemon]
) -> None:
    domains = ("one.example", "two.example", "three.example")
    settings = write_settings(
        tmp_path, sites=_sites(*domains), notifiers=AT_ONCE + _slack_notifier(slack_api), extra=FAST
    )
    write_rule(tmp_path, "loss", _loss())
    for d in domains:
        _lost_four(tmp_path, d)
    db = tmp_path / "linkwatch.db"
    slack_api.delay = 2.0  # each post takes 2 s: well inside the 10 s stop grace
    first = _start(daemons, settings, "first")
    _until(lambda: slack_api.arrived and len(_outbox(db)) == 3, 20, first)
    started = time.monotonic()
    assert first.stop() == 0
    assert time.monotonic() - started < 5
    # The post in flight was finished and recorded; no other row was taken.
    assert len(slack_api.messages) == 1
    assert "abandoned" not in first.err.read_text()
    assert _statuses(db) == {"sent": 1, "pending": 2}

    slack_api.delay = 0.0
    restarted = datetime.now(UTC)
    second = _start(daemons, settings, "second")
    _until(lambda: _statuses(db) == {"sent": 3}, 20, second)
    # Two more evaluations after the restart queue nothing new.
    _until(lambda: _evaluated_after(db, restarted + timedelta(seconds=1)), 10, second)
    assert second.stop() == 0
    rows = _outbox(db)
    assert len(rows) == 3 and all(r[2:4] == ("sent", 1) for r in rows)
    assert sorted(slack_api.keys()) == sorted(r[0] for r in rows)
    assert {m["metadata"]["event_payload"]["site"] for m in slack_api.messages} == set(domains)


@pytest.mark.parametrize("hang", ["after", "before"], ids=["post-stored", "post-not-stored"])
def test_kill_9_during_a_post_neither_loses_nor_repeats_it(
    tmp_path: Path, slack_api: SlowSlack, daemons: list[Daemon], hang: str
) -> None:
    domains = ("one.example", "two.example")
    settings = write_settings(
        tmp_path, sites=_sites(*domains), notifiers=AT_ONCE + _slack_notifier(slack_api), extra=FAST
    )
    write_rule(tmp_path, "loss", _loss())
    for d in domains:
        _lost_four(tmp_path, d)
    db = tmp_path / "linkwatch.db"
    # Slack takes the post (or not) and the answer never comes; the daemon dies meanwhile.
    slack_api.hang = hang
    first = _start(daemons, settings, "first")
    _until(lambda: slack_api.hung.is_set() and len(_outbox(db)) == 2, 20, first)
    first.proc.kill()
    first.proc.wait(10)
    slack_api.hang = None
    slack_api.release.set()
    assert len(slack_api.messages) == (1 if hang == "after" else 0)
    [(in_flight,)] = _query(db, "SELECT idempotency_key FROM outbox WHERE status = 'sending'")
    assert _statuses(db) == {"sending": 1, "pending": 1}
    # The claim's lease (5 minutes) runs out: moved back here instead of waited for.
    [(lease_end,)] = _query(db, "SELECT next_attempt_at FROM outbox WHERE status = 'sending'")
    _execute(
        db,
        "UPDATE outbox SET next_attempt_at = ? WHERE status = 'sending'",
        (to_db(from_db(lease_end) - CLAIM_LEASE),),
    )

    second = _start(daemons, settings, "second")
    _until(lambda: _statuses(db) == {"sent": 2}, 20, second)
    assert second.stop() == 0
    # Each row is in Slack exactly once; the one in flight was looked for first.
    assert sorted(slack_api.keys()) == sorted(r[0] for r in _outbox(db))
    assert len(slack_api.messages) == 2
    assert any(c.get("include_all_metadata") in ("1", "true") for c in slack_api.history_calls)
    [(note,)] = _query(db, "SELECT last_error FROM outbox WHERE idempotency_key = ?", (in_flight,))
    if hang == "after":
        assert note == "found already delivered; not sent again"
    else:
        assert note is None


# --- 3 and 4: Slack failing while the daemon runs --------------------------------------


@pytest.mark.parametrize("answer_after", [0.0, 1.5], ids=["quick-429", "slow-429"])
def test_a_429_with_retry_after_2_is_posted_once_no_sooner_than_2_s_later(
    tmp_path: Path, slack_api: SlowSlack, daemons: list[Daemon], answer_after: float
) -> None:
    settings = write_settings(tmp_path, notifiers=AT_ONCE + _slack_notifier(slack_api), extra=FAST)
    write_rule(tmp_path, "loss", _loss())
    _lost_four(tmp_path, "example.com")
    db = tmp_path / "linkwatch.db"
    # The 429 comes at once, or after 1.5 s (a slow Slack; the timeout is 10 s).
    slack_api.delays = [answer_after]
    slack_api.fail_next(
        429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "2"}, "chat.postMessage"
    )
    daemon = _start(daemons, settings, "daemon")
    _until(lambda: _statuses(db) == {"sent": 1}, 20, daemon)
    assert daemon.stop() == 0
    assert len(slack_api.messages) == 1
    assert len(slack_api.arrived) == 2
    # Retry-After counts from the answer that carried it; the retry may come up to the
    # worker's one-second wake-up later.
    waited = slack_api.arrived[1] - slack_api.answered[0]
    assert 2.0 <= waited < 4.0, f"retried {waited:.3f} s after the 429"
    [(key, _, status, attempts, _)] = _outbox(db)
    assert (status, attempts) == ("sent", 2)
    assert slack_api.keys() == [key]


def _failed_times(db: Path, n: int) -> bool:
    """True when the Slack row waits for a retry after its `n`th failed attempt."""
    rows = _query(db, "SELECT status, attempts FROM outbox WHERE notifier = 'seo-slack'")
    return rows == [("pending", n)]


def test_slack_failing_with_500s_is_retried_alone_and_email_goes_once(
    tmp_path: Path, slack_api: SlowSlack, smtp: SmtpServer, daemons: list[Daemon]
) -> None:
    settings = write_settings(
        tmp_path,
        notifiers=AT_ONCE + _slack_notifier(slack_api) + _email_notifier(smtp),
        extra=FAST,
    )
    write_rule(tmp_path, "loss", _loss('["seo-slack", "team-email"]'))
    _lost_four(tmp_path, "example.com")
    db = tmp_path / "linkwatch.db"
    for _ in range(2):
        slack_api.fail_next(500, {"ok": False, "error": "internal_error"}, None, "chat.postMessage")
    daemon = _start(daemons, settings, "daemon")

    def slack_row() -> tuple[str, int, datetime]:
        [(status, attempts, due)] = _query(
            db, "SELECT status, attempts, next_attempt_at FROM outbox WHERE notifier = 'seo-slack'"
        )
        return status, attempts, from_db(due)

    for failures, backoff in ((1, 30), (2, 60)):
        _until(partial(_failed_times, db, failures), 20, daemon)
        failed_at = datetime.now(UTC)
        due = slack_row()[2]
        # Backed off exponentially (30 s, then 60 s): moved forward here, not waited for.
        assert timedelta(seconds=backoff - 3) < due - failed_at <= timedelta(seconds=backoff)
        _execute(
            db,
            "UPDATE outbox SET next_attempt_at = ? WHERE notifier = 'seo-slack'",
            (to_db(datetime.now(UTC)),),
        )
    _until(lambda: slack_row()[0] == "sent", 20, daemon)
    assert daemon.stop() == 0
    assert len(slack_api.arrived) == 3 and len(slack_api.messages) == 1
    # A 500 may come after Slack stored the post: each retry looked for it first.
    assert len(slack_api.history_calls) == 2
    assert len(smtp.messages) == 1
    rows = {r[1]: r[2:4] for r in _outbox(db)}
    assert rows == {"seo-slack": ("sent", 3), "team-email": ("sent", 1)}


# --- 5: a flapping condition -----------------------------------------------------------

T = datetime(2026, 6, 1, tzinfo=UTC)


def _cli(settings: Path, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["-c", str(settings), *args])
    return res.exit_code, res.output


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


def _import(settings: Path, path: Path, at: datetime) -> None:
    code, out = _cli(settings, "import", "--site", "example.com", "--taken-at", _iso(at), str(path))
    assert code == 0, out


@pytest.mark.parametrize(
    ("for_", "keep", "told", "entered"),
    [
        # Pending never lasts `for`: went pending four times, never told.
        ("2h", "3h", [], ("pending", 4)),
        # keep_firing_for bridges the gaps: fired once, resolved once it stops holding.
        ("0s", "3h", ["firing", "resolved"], ("firing", 1)),
        # Neither: every flip is told (what the two settings are there to prevent).
        ("0s", "0s", ["firing", "resolved"] * 4, ("firing", 4)),
    ],
)
def test_a_flapping_loss_is_told_a_bounded_number_of_times(
    tmp_path: Path, for_: str, keep: str, told: list[str], entered: tuple[str, int]
) -> None:
    settings = write_settings(tmp_path, notifiers=AT_ONCE + CONSOLE)
    write_rule(
        tmp_path, "loss", _loss('["console"]', window="1h", for_=for_, keep=keep, repeat="24h")
    )
    # Hourly exports: all 10 domains, then 6, then 10 again... (9 exports, 8 flips).
    for hour in range(9):
        path = write_ahrefs(
            tmp_path / f"h{hour}.csv", _rows("example.com")[: 6 if hour % 2 else 10]
        )
        _import(settings, path, T + timedelta(hours=hour))
    # Evaluated half an hour after each export (the 1h window then holds that export's
    # changes alone): the loss holds, does not, holds...; after the last export it stops
    # flapping and is evaluated hourly for five more hours.
    for hour in range(1, 14):
        code, out = _cli(
            settings, "evaluate", "--at", _iso(T + timedelta(hours=hour, minutes=30)), "--commit"
        )
        assert code == 0, out
    rows = _query(tmp_path / "linkwatch.db", "SELECT transition, status FROM outbox ORDER BY id")
    assert rows == [(t, "sent") for t in told]
    # The condition really did flip: each hold (re)entered the state this often.
    history = _query(tmp_path / "linkwatch.db", "SELECT state FROM alert_history ORDER BY id")
    state, times = entered
    assert [s for (s,) in history].count(state) == times
    code, out = _cli(settings, "alerts", "--state", "all", "--json")
    [alert] = [json.loads(line) for line in out.splitlines()]
    assert alert["state"] == ("inactive" if for_ != "0s" else "resolved")


# --- 6 and 7: restarts and rule files under the running daemon -----------------------


def _alert(db: Path) -> tuple[str, datetime | None, datetime | None]:
    """(state, active_at, fired_at) of the one alert."""
    rows = _query(db, "SELECT state, active_at, fired_at FROM alerts WHERE rule = 'loss'")
    if not rows:
        return "none", None, None
    [(state, active, fired)] = rows
    return state, from_db(active) if active else None, from_db(fired) if fired else None


def test_restarts_keep_for_running_and_never_repeat_a_firing_message(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    settings = write_settings(tmp_path, notifiers=AT_ONCE + CONSOLE, extra=FAST)
    wait = timedelta(seconds=6)
    write_rule(tmp_path, "loss", _loss('["console"]', for_="6s"))
    _lost_four(tmp_path, "example.com")
    db = tmp_path / "linkwatch.db"
    first = _start(daemons, settings, "first")
    _until(lambda: _alert(db)[0] == "pending", 20, first)
    active_at = _alert(db)[1]
    assert active_at is not None
    # Stopped half-way through `for`, and started again.
    _until(lambda: datetime.now(UTC) >= active_at + wait / 2, 10, first)
    assert first.stop() == 0
    assert _alert(db)[0] == "pending"
    second = _start(daemons, settings, "second")
    _until(lambda: _alert(db)[0] == "firing", 20, second)
    _, active_again, fired_at = _alert(db)
    assert active_again == active_at and fired_at is not None
    # It fired `for` after it went pending (plus an evaluation interval and some slack),
    # not `for` after the restart, which came half-way through.
    assert active_at + wait <= fired_at < active_at + wait + timedelta(seconds=2), (
        fired_at - active_at
    )
    second.wait_for("[FIRING warning] example.com: loss", stream="out")
    assert second.stop() == 0

    # A restart while firing: evaluated again and again, told nothing (repeat is 1h).
    restarted = datetime.now(UTC)
    third = _start(daemons, settings, "third")
    _until(lambda: _evaluated_after(db, restarted + timedelta(seconds=1)), 15, third)
    assert third.stop() == 0
    assert first.out.read_text() == ""
    assert second.out.read_text().count("[FIRING") == 1
    assert third.out.read_text() == ""
    assert [r[2] for r in _outbox(db)] == ["sent"]
    assert _alert(db) == ("firing", active_at, fired_at)


def test_a_rule_file_removed_under_the_daemon_resolves_its_alert_saying_so(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    settings = write_settings(tmp_path, notifiers=AT_ONCE + CONSOLE, extra=FAST)
    rule = write_rule(tmp_path, "loss", _loss('["console"]'))
    # Another rule stays, so the rules folder never becomes empty.
    write_rule(tmp_path, "big-loss", _loss('["console"]').replace("value = 3", "value = 9"))
    _lost_four(tmp_path, "example.com")
    daemon = _start(daemons, settings, "daemon")
    daemon.wait_for("[FIRING warning] example.com: loss", stream="out")
    rule.unlink()
    removed = time.monotonic()
    out = daemon.wait_for("[RESOLVED", stream="out", timeout=10)
    assert time.monotonic() - removed < 10
    resolved = out[out.index("[RESOLVED") :]
    assert resolved.startswith("[RESOLVED warning] example.com: loss")
    assert "the rule was removed" in resolved
    assert daemon.stop() == 0
    out = daemon.out.read_text()
    assert out.count("[RESOLVED") == 1 and out.count("[FIRING") == 1
    assert "big-loss" not in out
    rows = _query(tmp_path / "linkwatch.db", "SELECT state, reason FROM alerts WHERE rule = 'loss'")
    assert rows == [("resolved", "rule_removed")]


# --- 8: a what-if changes nothing -------------------------------------------------------


def _files(db: Path) -> dict[str, bytes]:
    """The database's bytes: the main file and its WAL (the -shm index is scratch)."""
    return {p.name: p.read_bytes() for p in (db, db.with_name(db.name + "-wal")) if p.exists()}


def _dump(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def test_evaluate_at_writes_nothing_and_sends_nothing_even_with_a_row_due(
    tmp_path: Path, slack_api: SlowSlack
) -> None:
    settings = write_settings(tmp_path, notifiers=AT_ONCE + CONSOLE + _slack_notifier(slack_api))
    write_rule(tmp_path, "loss", _loss('["console", "seo-slack"]'))
    for day, kept in enumerate((10, 6)):
        path = write_ahrefs(tmp_path / f"day{day}.csv", _rows("example.com")[:kept])
        _import(settings, path, T + timedelta(days=day))
    # Fired, told on the console; Slack rate-limited it, so its row is due a second later.
    slack_api.fail_next(
        429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"}, "chat.postMessage"
    )
    code, out = _cli(settings, "evaluate", "--at", _iso(T + timedelta(days=1, hours=1)), "--commit")
    assert code == 1 and "[FIRING warning] example.com: loss" in out, out
    # A second rule that a what-if would fire.
    write_rule(
        tmp_path, "any-loss", _loss('["console", "seo-slack"]').replace("value = 3", "value = 1")
    )
    db = tmp_path / "linkwatch.db"
    [(due,)] = _query(db, "SELECT next_attempt_at FROM outbox WHERE status = 'pending'")
    _until(lambda: datetime.now(UTC) > from_db(due), 5)
    calls, files, dump = slack_api.calls, _files(db), _dump(db)

    for at, change in (
        (T + timedelta(days=1, hours=1, minutes=30), "would be firing: any-loss example.com"),
        (T + timedelta(days=20), "would be resolved: loss example.com"),
    ):
        what_if = subprocess.run(
            [sys.executable, "-m", "daemon.cli", "-c", str(settings), "evaluate", "--at", _iso(at)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert what_if.returncode == 0, what_if.stderr
        assert change in what_if.stdout, what_if.stdout
        # Nothing told on the console, nothing posted (not even the due row).
        assert "[FIRING" not in what_if.stdout and "[RESOLVED" not in what_if.stdout
        assert "referring domains" not in what_if.stdout
        assert slack_api.calls == calls
        assert _files(db) == files
        assert _dump(db) == dump

    # The row was due all along: acting now does deliver it.
    later = _iso(T + timedelta(days=1, hours=1, minutes=30))
    code, out = _cli(settings, "evaluate", "--at", later, "--commit")
    assert code == 0, out
    assert "[FIRING warning] example.com: any-loss" in out
    assert len(slack_api.messages) == 2
