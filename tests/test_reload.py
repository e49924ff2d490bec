"""Reloading settings and rules: a bad configuration is refused whole, config_health fires."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerts.rules import ConfigHealthRule
from alerts.rules.context import EvaluationContext
from daemon.service import Linkwatch
from daemon.settings import load_settings
from tests.helpers import write_ahrefs, write_rule, write_settings
from tests.test_daemon import Daemon

NOW = datetime(2026, 3, 1, tzinfo=UTC)
RULE = (
    'kind = "threshold"\nmetric = "lost_links"\nwindow = "7d"\nop = ">="\nvalue = 1\n'
    'notify = ["console"]\n'
)
SECOND_SITE = '[[sites]]\ndomain = "example.org"\nrole = "own"\nsources = ["exports"]\n'


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Linkwatch]:
    settings = write_settings(tmp_path)
    write_rule(tmp_path, "any-loss", RULE)
    app = Linkwatch.open(load_settings(settings))
    app.watch_config = True
    yield app
    app.close()


def _config_alert(app: Linkwatch, at: datetime) -> list[tuple[str, str]]:
    return [(t.site, t.state) for t in app.evaluate(at) if t.rule == "config_health"]


BAD_SETTINGS = {
    "not TOML": ("[daemon\n", "not valid TOML"),
    "unknown key": ("[daemon]\nbogus = 1\n", "daemon.bogus: unknown key"),
    "huge duration": ('[daemon]\nevaluate_every = "999999999999d"\n', "daemon.evaluate_every"),
    "unknown source": (
        '[[sites]]\ndomain = "example.com"\nsources = ["nope"]\n',
        "sites[0].sources: unknown source 'nope'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SETTINGS))
def test_a_bad_settings_file_is_refused_whole_and_config_health_fires(
    app: Linkwatch, tmp_path: Path, case: str
) -> None:
    body, message = BAD_SETTINGS[case]
    settings_file = tmp_path / "settings.toml"
    good = settings_file.read_text()
    before = app.settings
    settings_file.write_text(body)
    assert app.reload() is False
    assert app.settings is before
    assert any(str(settings_file) in p and message in p for p in app.config_health().problems), (
        app.config_problems
    )
    assert _config_alert(app, NOW) == [("linkwatch", "firing")]
    # Still refused: nothing new to tell.
    assert app.reload() is False
    assert _config_alert(app, NOW + timedelta(minutes=5)) == []
    queued = [r for r in app.store.outbox() if r["transition"] == "firing"]
    assert [r["notifier"] for r in queued] == ["console"]
    settings_file.write_text(good)
    assert app.reload() is True
    assert app.config_problems == []
    assert _config_alert(app, NOW + timedelta(minutes=10)) == [("linkwatch", "resolved")]


def test_bad_rule_files_on_reload_keep_the_running_rules(app: Linkwatch, tmp_path: Path) -> None:
    write_rule(tmp_path, "table-kind", "[kind]\nthreshold = 1\n")
    write_rule(tmp_path, "overflow", RULE.replace('"7d"', '"999999999999d"'))
    assert app.reload() is False
    assert [r.name for r in app.rulebook.rules] == ["any-loss"]
    problems = "\n".join(app.config_health().problems)
    assert "table-kind.toml: kind" in problems
    assert "overflow.toml: window" in problems
    assert _config_alert(app, NOW) == [("linkwatch", "firing")]
    (tmp_path / "rules.d" / "table-kind.toml").unlink()
    (tmp_path / "rules.d" / "overflow.toml").unlink()
    assert app.reload() is True
    assert _config_alert(app, NOW + timedelta(minutes=1)) == [("linkwatch", "resolved")]


def test_a_rule_file_broken_while_running_fires_config_health_until_mended(
    app: Linkwatch, tmp_path: Path
) -> None:
    rule = write_rule(tmp_path, "any-loss", RULE.replace('op = ">="', 'op = "=>"'))
    assert _config_alert(app, NOW) == [("linkwatch", "firing")]
    assert [r.name for r in app.rulebook.rules] == ["any-loss"]
    rule.write_text(RULE + "# mended\n")
    assert _config_alert(app, NOW + timedelta(minutes=1)) == [("linkwatch", "resolved")]


def test_a_good_reload_takes_new_sites_and_rules(app: Linkwatch, tmp_path: Path) -> None:
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text(settings_file.read_text() + SECOND_SITE)
    write_rule(tmp_path, "second", RULE)
    folder = tmp_path / "exports" / "example.org"
    folder.mkdir(parents=True)
    write_ahrefs(
        folder / "backlinks_2026-02-01.csv", [("https://a.net/", "https://example.org/", "x", 5)]
    )
    assert app.reload() is True
    assert [s.domain for s in app.settings.sites] == ["example.com", "example.org"]
    assert sorted(r.name for r in app.rulebook.rules) == ["any-loss", "second"]
    assert [o.status for o in app.poll(NOW, "example.org")] == ["baseline"]
    assert _config_alert(app, NOW) == []


def test_one_shot_commands_do_not_watch_the_configuration(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    write_rule(tmp_path, "any-loss", RULE)
    app = Linkwatch.open(load_settings(settings))
    app.config_problems = ["settings.toml: something"]
    assert [t.rule for t in app.evaluate(NOW)] == []
    app.watch_config = True  # as `run` sets it: the same problem now fires
    assert [t.rule for t in app.evaluate(NOW)] == ["config_health"]
    app.close()


# --- the real daemon: SIGHUP with each bad configuration, SIGTERM during a poll ---------

BAD_RELOADS = [
    ("rules.d/bad.toml", "[kind]\nthreshold = 1\n", "bad.toml: kind"),
    ("rules.d/bad.toml", RULE.replace('"7d"', '"999999999999d"'), "bad.toml: window"),
    ("rules.d/bad.toml", RULE.replace('"7d"', '"1000000w"'), "bad.toml: window"),
    ("rules.d/bad.toml", RULE.replace("value = 1", "value = inf"), "bad.toml: value"),
    ("rules.d/bad.toml", RULE.replace("value = 1", "value = nan"), "bad.toml: value"),
    (
        "rules.d/bad.toml",
        RULE + 'summary = "{site.__class__.__base__.__subclasses__}"\n',
        "bad.toml: summary",
    ),
    ("rules.d/bad.toml", RULE + 'summary = "{site:>100000000}"\n', "bad.toml: summary"),
    ("settings.toml", '[daemon]\ndeliver_every = "-5s"\n', "daemon.deliver_every"),
    ("settings.toml", "[daemon]\ndelivery_ttl = -1\n", "daemon.delivery_ttl"),
    (
        "settings.toml",
        '[[sites]]\ndomain = "../etc"\nsources = ["exports"]\n'
        '[sources.exports]\nkind = "csv_dir"\npath = "exports/{domain}"\n',
        "sites[0].domain",
    ),
    (
        "settings.toml",
        '[[sites]]\ndomain = "example.com"\nsources = ["exports"]\n'
        '[sources.exports]\nkind = "csv_dir"\npath = "exports/{0}"\ninterval = "-1h"\n',
        "sources.exports.path",
    ),
]


def _datagrams(sock: socket.socket, until: str, log: Path) -> list[str]:
    seen = []
    while True:
        try:
            message = sock.recv(4096).decode()
        except TimeoutError:
            # Say why: the daemon died, or is stuck (its log shows how far it got).
            raise AssertionError(f"no {until!r} after {seen}; log:\n{log.read_text()}") from None
        seen.append(message)
        if message.startswith(until):
            return seen


def test_sighup_with_each_bad_configuration_keeps_the_daemon_running(tmp_path: Path) -> None:
    # Delivery wakes every second (not every 10 s): the config_health messages come soon.
    settings = write_settings(tmp_path, extra='deliver_every = "1s"\ngroup_wait = "1s"\n')
    write_rule(tmp_path, "any-loss", RULE)
    good = settings.read_text()
    address = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(address))
        sock.settimeout(20)
        daemon = Daemon(settings, tmp_path / "daemon", env={"NOTIFY_SOCKET": str(address)})
        try:
            _datagrams(sock, "READY=1", daemon.err)
            for name, body, key in BAD_RELOADS:
                (tmp_path / name).write_text(body)
                daemon.proc.send_signal(signal.SIGHUP)
                got = _datagrams(sock, "READY=1", daemon.err)
                assert got[0].startswith("RELOADING=1\nMONOTONIC_USEC="), got
                assert "last reload refused" in got[-1], (name, body, got)
                log = daemon.wait_for(key)
                assert "Traceback" not in log
                assert daemon.proc.poll() is None
                settings.write_text(good)
                (tmp_path / "rules.d" / "bad.toml").unlink(missing_ok=True)
            out = daemon.wait_for("linkwatch: config_health", stream="out")
            # Told once while it stays refused, whatever the problem of the moment.
            assert out.count("[FIRING critical] linkwatch: config_health") == 1
            daemon.proc.send_signal(signal.SIGHUP)
            got = _datagrams(sock, "READY=1", daemon.err)
            assert "last reload refused" not in got[-1]
            daemon.wait_for("[RESOLVED critical] linkwatch: config_health", stream="out")
            assert daemon.stop() == 0
        finally:
            if daemon.proc.poll() is None:
                daemon.proc.kill()


def test_sigterm_during_a_poll_exits_soon_and_the_export_is_read_at_the_next_start(
    tmp_path: Path,
) -> None:
    settings = write_settings(tmp_path)
    folder = tmp_path / "exports" / "example.com"
    folder.mkdir(parents=True)
    links = [(f"https://s{i}.org/p/{i}", "https://example.com/", "a", 1) for i in range(150_000)]
    write_ahrefs(folder / "backlinks_2026-02-01.csv", links)
    daemon = Daemon(settings, tmp_path / "first")
    daemon.wait_for("linkwatch running")
    time.sleep(1.2)  # the poll is reading the export
    t0 = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - t0 < 15
    assert "not read to the end: stopping" in daemon.err.read_text()
    again = Daemon(settings, tmp_path / "second")
    again.wait_for(": baseline, 150000 rows", timeout=120)
    assert again.stop() == 0


def test_config_health_quotes_five_problems_each_on_one_clipped_line(app: Linkwatch) -> None:
    ctx = EvaluationContext(app.store, NOW, NOW, [], [])
    quiet = ConfigHealthRule((), ("console",)).check(ctx, "linkwatch")
    assert (quiet.value, quiet.holds) == (0.0, False)
    assert quiet.summary == "settings and rules reloaded without problems"
    problems = ("a.toml: kind:\n  bad", "b" * 400, "c", "d", "e", "f", "g")
    check = ConfigHealthRule(problems, ("console",)).check(ctx, "linkwatch")
    assert (check.value, check.holds) == (7.0, True)
    assert check.summary == (
        "configuration refused, the last good one keeps running: a.toml: kind: bad; "
        + "b" * 299
        + "…; c; d; e; and 2 more (see the log)"
    )
    five = ConfigHealthRule(problems[:5], ()).check(ctx, "linkwatch")
    assert not five.summary.endswith("(see the log)")
    six = ConfigHealthRule(problems[:6], ()).check(ctx, "linkwatch")
    assert six.summary.endswith("; e; and 1 more (see the log)")
    rule = ConfigHealthRule(problems, ())
    assert rule.sites_for(ctx) == ["linkwatch"]
    assert (rule.name, rule.severity, rule.metric) == (
        "config_health",
        "critical",
        "config_problems",
    )
