"""Alerting through the CLI: honest resolutions, what-ifs, silences, grouping, inhibition."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from alerts.message import Notification
from daemon.cli import main
from daemon.settings import load_settings
from daemon.store import Store
from tests.helpers import write_ahrefs, write_rule, write_settings

T = datetime(2026, 6, 1, tzinfo=UTC)
LOSS = (
    'kind = "threshold"\nmetric = "lost_refdomains"\nwindow = "7d"\nop = ">="\nvalue = {value}\n'
    'notify = ["console"]\nsummary = "{{site}} lost {{value}} referring domains in {{window}}"\n'
)
ROWS = [(f"https://www.ref{i}.org/p", "https://example.com/", f"a{i}", 10 + i) for i in range(10)]


def _run(settings: Path, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["-c", str(settings), *args])
    return res.exit_code, res.output


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


# A link missing from one complete export is lost at once (the default waits for two).
AT_ONCE = 'confirm_after = 1\n[notifiers.console]\nkind = "console"\n'


def _setup(tmp_path: Path, days: list[int], value: int = 3) -> Path:
    """example.com with 10 referring domains; `days[d]` of them still linking on day d."""
    settings = write_settings(tmp_path, notifiers=AT_ONCE)
    write_rule(tmp_path, "loss", LOSS.format(value=value))
    for day, kept in enumerate(days):
        path = write_ahrefs(tmp_path / f"day{day}.csv", ROWS[:kept])
        _import(settings, path, _iso(T + timedelta(days=day)))
    return settings


def _import(settings: Path, path: Path, at: str, expect: int = 0) -> None:
    """Import one export of example.com taken at `at`; the exit code must be `expect`."""
    code, out = _run(settings, "import", "--site", "example.com", "--taken-at", at, str(path))
    assert code == expect, out


def _commit(settings: Path, at: datetime) -> str:
    code, out = _run(settings, "evaluate", "--at", _iso(at), "--commit")
    assert code == 0, out
    return out


def _messages(settings: Path) -> list[Notification]:
    store = Store(load_settings(settings).storage.path)
    try:
        rows = store.conn.execute("SELECT payload FROM outbox ORDER BY id").fetchall()
        return [Notification.from_payload(json.loads(r[0])) for r in rows]
    finally:
        store.close()


def test_a_what_if_changes_nothing_and_sends_nothing(tmp_path: Path) -> None:
    settings = _setup(tmp_path, [10, 6])
    _commit(settings, T + timedelta(days=1, hours=1))
    db = tmp_path / "linkwatch.db"
    before = db.read_bytes()
    code, out = _run(settings, "evaluate", "--at", _iso(T + timedelta(days=20)))
    assert code == 0, out
    assert "what-if" in out and "nothing is changed and nothing is sent" in out
    assert "would be resolved: loss example.com" in out
    assert "the window moved past the losses" in out
    assert db.read_bytes() == before
    # The alert still fires: a what-if never resolves anything.
    code, out = _run(settings, "alerts", "--json")
    assert [json.loads(line)["state"] for line in out.splitlines()] == ["firing"]
    # A what-if before any data says so, instead of "healthy" or "resolved".
    code, out = _run(settings, "evaluate", "--at", _iso(T - timedelta(days=30)))
    assert code == 0 and "no alert would change" in out


def test_commit_cannot_go_back_in_time(tmp_path: Path) -> None:
    settings = _setup(tmp_path, [10, 6])
    _commit(settings, T + timedelta(days=2))
    code, out = _run(settings, "evaluate", "--at", _iso(T + timedelta(days=1)), "--commit")
    assert code == 2
    assert "before the last committed evaluation" in out
    code, out = _run(settings, "evaluate", "--commit")
    assert code == 2 and "--commit needs --at" in out


def test_a_resolution_says_the_losses_stand_when_the_window_moves_on(tmp_path: Path) -> None:
    settings = _setup(tmp_path, [10, 6])
    out = _commit(settings, T + timedelta(days=1, hours=1))
    assert "firing: loss example.com (value 4)" in out
    assert "silenced" not in out
    out = _commit(settings, T + timedelta(days=9))
    assert "resolved: loss example.com" in out and "window moved past the losses" in out
    resolved = _messages(settings)[-1].alerts[0]
    assert resolved.reason == "window_passed"
    assert resolved.reason_text == (
        "the 7d window moved past the losses: the 4 lost links have not come back; the losses stand"
    )
    assert resolved.restored == () and resolved.firing_for == "7d 23h"


def test_raising_the_threshold_resolves_as_a_rule_change(tmp_path: Path) -> None:
    settings = _setup(tmp_path, [10, 6])
    _commit(settings, T + timedelta(days=1, hours=1))
    write_rule(tmp_path, "loss", LOSS.format(value=50))
    out = _commit(settings, T + timedelta(days=1, hours=2))
    assert "resolved: loss example.com" in out and "the rule was changed" in out
    resolved = _messages(settings)[-1].alerts[0]
    assert resolved.reason == "rule_changed"
    assert "threshold >= 50" in resolved.reason_text


def test_restored_links_are_named(tmp_path: Path) -> None:
    settings = _setup(tmp_path, [10, 6, 7])
    _commit(settings, T + timedelta(days=1, hours=1))
    # Three of the six lost domains come back: three still lost, still firing.
    out = _commit(settings, T + timedelta(days=2, hours=1))
    assert "resolved" not in out
    path = write_ahrefs(tmp_path / "day3.csv", ROWS)
    _import(settings, path, _iso(T + timedelta(days=3)))
    out = _commit(settings, T + timedelta(days=3, hours=1))
    assert "resolved: loss example.com" in out and "restored" in out
    resolved = _messages(settings)[-1].alerts[0]
    assert resolved.reason == "restored"
    assert sorted(link.refdomain for link in resolved.restored) == [
        f"ref{i}.org" for i in range(6, 10)
    ]
    # Each named as it was when lost: its page, anchor and rating.
    assert (resolved.restored[0].url_from, resolved.restored[0].anchor) == ("", "a9")
    assert resolved.restored[0].domain_rating == 19
    # Strongest first, each domain once, the value now against the threshold.
    assert resolved.reason_text == (
        "links were restored (4 of 4: ref9.org, ref8.org, ref7.org, ref6.org);"
        " lost_refdomains is now 0 (threshold >= 3)"
    )


def test_a_removed_rule_resolves_with_that_reason(tmp_path: Path) -> None:
    settings = _setup(tmp_path, [10, 6])
    _commit(settings, T + timedelta(days=1, hours=1))
    (tmp_path / "rules.d" / "loss.toml").unlink()
    write_rule(tmp_path, "other", LOSS.format(value=100))
    out = _commit(settings, T + timedelta(days=1, hours=2))
    assert "resolved: loss example.com" in out and "the rule was removed" in out
    resolved = _messages(settings)[-1].alerts[0]
    assert (resolved.rule, resolved.transition, resolved.reason) == (
        "loss",
        "resolved",
        "rule_removed",
    )
    assert resolved.summary == "example.com lost 4 referring domains in 7d"
    code, out = _run(settings, "alerts", "--state", "all", "--json")
    assert code == 0, out
    [alert] = [json.loads(line) for line in out.splitlines()]
    assert (alert["state"], alert["reason"]) == ("resolved", "rule_removed")


def test_alerts_and_status_list_what_fires(tmp_path: Path) -> None:
    settings = _setup(tmp_path, [10, 6])
    code, out = _run(settings, "alerts")
    assert code == 0 and "no active alerts" in out
    _commit(settings, T + timedelta(days=1, hours=1))
    code, out = _run(settings, "alerts")
    assert code == 0
    assert out.startswith("firing   loss example.com value 4 since 2026-06-02T01:00:00+00:00")
    assert "last notified 2026-06-02T01:00:00+00:00" in out
    code, out = _run(settings, "status")
    assert "1 alerts firing" in out
    code, out = _run(settings, "status", "--json")
    assert json.loads(out)[0]["alerts_firing"] == 1
    code, out = _run(settings, "alerts", "--state", "resolved")
    assert "no resolved alerts" in out
    code, out = _run(settings, "alerts", "--site", "Example.COM", "--json")
    assert code == 0 and [json.loads(line)["site"] for line in out.splitlines()] == ["example.com"]
    code, out = _run(settings, "alerts", "--site", "nope.example")
    assert code == 2 and "is not a site" in out and "example.com" in out


def test_a_silenced_alert_is_recorded_not_sent_and_told_when_the_silence_ends(
    tmp_path: Path,
) -> None:
    settings = _setup(tmp_path, [10, 6])
    code, out = _run(
        settings, "silence", "add", "--rule", "loss", "--for", "1h", "--comment", "migration"
    )
    assert code == 0 and out.startswith("silence 1: loss on every site until")
    code, out = _run(settings, "silence", "list")
    assert "loss on * until" in out and "migration" in out
    # The alert fires while silenced: recorded, not sent.
    out = _commit(settings, T + timedelta(days=1, hours=1))
    assert "[silenced: recorded, not sent]" in out and "0 notifications sent" in out
    code, out = _run(settings, "alerts", "--json")
    assert json.loads(out)["last_notified"] is None
    code, out = _run(settings, "outbox", "--json")
    assert code == 0, out
    assert [json.loads(line)["status"] for line in out.splitlines()] == ["silenced"]
    code, out = _run(settings, "silence", "expire", "1")
    assert code == 0 and "silence 1 ended" in out
    # Once the silence ends, the firing nobody was told is told.
    out = _commit(settings, T + timedelta(days=1, hours=2))
    assert "firing: loss example.com" in out and "1 notifications sent" in out
    code, out = _run(settings, "silence", "expire", "1")
    assert code == 2 and "no silence 1 in force" in out
    for bad in (
        ["--for", "1h"],
        ["--rule", "nope", "--for", "1h"],
        ["--rule", "loss", "--for", "x"],
    ):
        code, out = _run(settings, "silence", "add", *bad)
        assert code == 2, (bad, out)


def test_two_rules_on_one_site_go_out_as_one_message(tmp_path: Path) -> None:
    settings = _setup(tmp_path, [10, 6])
    write_rule(
        tmp_path,
        "velocity",
        LOSS.format(value=2).replace('metric = "lost_refdomains"', 'metric = "lost_links"'),
    )
    out = _commit(settings, T + timedelta(days=1, hours=1))
    assert "2 alert changes; 1 notifications sent" in out
    [message] = _messages(settings)
    assert [a.rule for a in message.alerts] == ["loss", "velocity"]


def test_loss_rules_hold_while_the_source_is_unhealthy(tmp_path: Path) -> None:
    # Source health reads when polls happened: this timeline is in real time.
    settings = write_settings(tmp_path, notifiers=AT_ONCE)
    write_rule(tmp_path, "loss", LOSS.format(value=3))
    write_rule(tmp_path, "sources", 'kind = "source_health"\nnotify = ["console"]\n')
    start = datetime.now(UTC) - timedelta(days=3)

    def export(day: int, kept: int, cut: bool = False) -> None:
        path = write_ahrefs(tmp_path / f"day{day}.csv", ROWS[:kept])
        if cut:
            # Cut short: partial, so the source is unhealthy.
            path.write_text(path.read_text() + '"cut')
        _import(settings, path, _iso(start + timedelta(days=day)), expect=(1 if cut else 0))

    # Four domains really lost on day 1, then a broken export on day 2: while the source
    # is unhealthy the loss rule holds its state (inactive), it does not fire on the gap.
    export(0, 10)
    export(1, 6)
    export(2, 6, cut=True)
    code, out = _run(settings, "evaluate")
    assert code == 0, out
    assert "firing: sources example.com" in out
    assert "loss" not in out
    code, out = _run(settings, "alerts", "--state", "all", "--json")
    assert [json.loads(line)["rule"] for line in out.splitlines()] == ["sources"]
    # A good export again: the source heals and the loss, still in the window, is told.
    export(3, 6)
    code, out = _run(settings, "evaluate")
    assert code == 0, out
    assert "firing: loss example.com (value 4)" in out and "resolved: sources" in out


def test_a_what_if_before_the_losses_does_not_claim_the_window_moved_on(tmp_path: Path) -> None:
    settings = _setup(tmp_path, [10, 6])
    _commit(settings, T + timedelta(days=1, hours=1))
    code, out = _run(settings, "evaluate", "--at", _iso(T + timedelta(hours=12)))
    assert code == 0, out
    assert "would be resolved: loss example.com" in out
    assert "the condition no longer holds" in out and "window moved" not in out


def test_ids_beyond_what_sqlite_stores_are_usage_errors(tmp_path: Path) -> None:
    settings = _setup(tmp_path, [10])
    for args in (("silence", "expire"), ("outbox", "retry")):
        code, out = _run(settings, *args, "9" * 25)
        assert code == 2 and "is not in the range" in out, (args, out)


def test_a_partly_lost_domain_comes_back_only_with_its_named_link(tmp_path: Path) -> None:
    pages = [
        ("https://www.ref1.org/a", "https://example.com/", "a", 50),
        ("https://www.ref1.org/b", "https://example.com/x", "b", 50),
        ("https://www.ref2.org/c", "https://example.com/", "c", 20),
    ]
    for back in (False, True):
        folder = tmp_path / ("back" if back else "gone")
        folder.mkdir()
        settings = write_settings(folder, notifiers=AT_ONCE)
        rule = LOSS.format(value=1).replace("lost_refdomains", "lost_links")
        write_rule(folder, "links", rule.replace('window = "7d"', 'window = "1d"'))
        for day, rows in enumerate([pages, pages[1:], pages if back else pages[1:]]):
            path = write_ahrefs(folder / f"day{day}.csv", rows)
            _import(settings, path, _iso(T + timedelta(days=day)))
        out = _commit(settings, T + timedelta(days=1, hours=1))
        assert "firing: links example.com (value 1)" in out
        fired = _messages(settings)[-1].alerts[0]
        assert [(d.refdomain, d.domain_lost, d.url_from) for d in fired.lost_domains] == [
            ("ref1.org", False, "https://www.ref1.org/a")
        ]
        out = _commit(settings, T + timedelta(days=2, hours=1))
        assert "resolved: links example.com" in out
        resolved = _messages(settings)[-1].alerts[0]
        if back:
            assert resolved.reason == "restored"
            assert [(r.refdomain, r.url_from, r.url_to) for r in resolved.restored] == [
                ("ref1.org", "https://www.ref1.org/a", "https://example.com/")
            ]
            assert resolved.reason_text == (
                "links were restored (1 of 1: ref1.org); lost_links is now 0 (threshold >= 1)"
            )
        else:
            # ref1.org still links (page b), but the lost link is not back: the losses stand.
            assert (resolved.reason, resolved.restored) == ("window_passed", ())


def test_two_updates_gathered_in_one_message_both_name_their_links(tmp_path: Path) -> None:
    from daemon.service import Linkwatch

    settings = write_settings(tmp_path, extra='group_wait = "30s"\n')
    write_rule(
        tmp_path,
        "fresh",
        'kind = "link_new"\nwindow = "7d"\nnotify = ["console"]\nsend_resolved = false\n',
    )
    new = [(f"https://www.new{x}.org/x", "https://example.com/", x, 40) for x in "abc"]
    now = datetime.now(UTC)
    for step in range(4):
        path = write_ahrefs(tmp_path / f"d{step}.csv", ROWS + new[:step])
        _import(settings, path, _iso(T + timedelta(hours=step)))
        if step == 0:
            continue
        app = Linkwatch.open(load_settings(settings))
        try:
            # The daemon gathers for group_wait; link b and c come 5 s apart.
            app.evaluate(T + timedelta(hours=step), now + timedelta(seconds=5 * step), group=True)
            if step == 1:
                app.store.conn.execute("UPDATE outbox SET status = 'sent', attempts = 1")
        finally:
            app.close()
    messages = _messages(settings)
    assert [[a.transition for a in m.alerts] for m in messages] == [
        ["firing"],
        ["update", "update"],
    ]
    assert [[link.refdomain for link in a.links] for a in messages[1].alerts] == [
        ["newb.org"],
        ["newc.org"],
    ]


def test_going_back_and_forth_at_one_instant_queues_every_message(tmp_path: Path) -> None:
    settings = _setup(tmp_path, [10, 6])
    at = T + timedelta(days=1, hours=1)
    assert "firing: loss" in _commit(settings, at)
    write_rule(tmp_path, "loss", LOSS.format(value=50))
    assert "resolved: loss" in _commit(settings, at)
    write_rule(tmp_path, "loss", LOSS.format(value=3))
    out = _commit(settings, at)
    assert "firing: loss" in out and "1 notifications sent" in out
    assert [m.alerts[0].transition for m in _messages(settings)] == ["firing", "resolved", "firing"]


def test_an_edit_during_keep_firing_for_still_resolves_as_a_rule_change(tmp_path: Path) -> None:
    settings = _setup(tmp_path, [10, 6])
    keep = 'keep_firing_for = "1h"\n'
    write_rule(tmp_path, "loss", LOSS.format(value=3) + keep)
    _commit(settings, T + timedelta(days=1, hours=1))
    write_rule(tmp_path, "loss", LOSS.format(value=50) + keep)
    out = _commit(settings, T + timedelta(days=1, hours=1, minutes=30))
    assert "resolved" not in out  # kept firing for the hour
    out = _commit(settings, T + timedelta(days=1, hours=2, minutes=30))
    assert "resolved: loss example.com" in out and "the rule was changed" in out


def test_a_past_resolution_is_explained_by_the_links_of_that_time(tmp_path: Path) -> None:
    settings = _setup(tmp_path, [10, 6, 6, 6, 10])
    write_rule(tmp_path, "loss", LOSS.format(value=3).replace('"7d"', '"1d"'))
    _commit(settings, T + timedelta(days=1, hours=1))
    # The domains come back on day 4; a what-if at day 2 must not say they had.
    code, out = _run(settings, "evaluate", "--at", _iso(T + timedelta(days=2, hours=1)))
    assert code == 0, out
    assert "would be resolved: loss example.com" in out
    assert "window moved past the losses" in out and "restored" not in out
    code, out = _run(settings, "evaluate", "--at", _iso(T + timedelta(days=4, hours=1)))
    assert "links were restored" in out


def test_odd_rule_files_and_commits_are_refused_with_a_message(tmp_path: Path) -> None:
    settings = _setup(tmp_path, [10])
    code, out = _run(settings, "evaluate", "--at", "2999-01-01T00:00:00Z", "--commit")
    assert code == 2 and "is in the future" in out
    write_rule(tmp_path, "config_health", LOSS.format(value=3))
    code, out = _run(settings, "rules", "check")
    assert code == 2 and "built-in alert" in out
    (tmp_path / "rules.d" / "config_health.toml").unlink()
    write_rule(tmp_path, "loss", LOSS.format(value=3) + 'send_resolved = "no"\n')
    code, out = _run(settings, "rules", "check")
    assert code == 2 and "send_resolved" in out


def test_a_silence_comment_is_listed_on_one_inert_line(tmp_path: Path) -> None:
    settings = _setup(tmp_path, [10])
    code, _ = _run(
        settings,
        "silence",
        "add",
        "--site",
        "example.com",
        "--for",
        "1h",
        "--comment",
        "a\nb\x1b[31m",
    )
    assert code == 0
    code, out = _run(settings, "silence", "list")
    assert code == 0 and out.count("\n") == 1 and "a\\nb\\x1b[31m" in out


def test_a_wholly_lost_domain_is_back_with_any_page_and_a_lost_link_by_itself(
    tmp_path: Path,
) -> None:
    settings = write_settings(tmp_path, notifiers=AT_ONCE)
    write_rule(tmp_path, "domains", LOSS.format(value=1).replace('"7d"', '"1d"'))
    write_rule(
        tmp_path,
        "strong",
        'kind = "link_lost"\nwindow = "1d"\nnotify = ["console"]\n',
    )
    old = ("https://www.ref1.org/old", "https://example.com/", "a", 60)
    new = ("https://www.ref1.org/new", "https://example.com/", "b", 60)
    keep = ("https://www.ref2.org/p", "https://example.com/", "c", 10)
    for day, rows in enumerate([[old, keep], [keep], [keep, new]]):
        path = write_ahrefs(tmp_path / f"day{day}.csv", rows)
        _import(settings, path, _iso(T + timedelta(days=day)))
    out = _commit(settings, T + timedelta(days=1, hours=1))
    assert "firing: domains example.com" in out and "firing: strong example.com" in out
    out = _commit(settings, T + timedelta(days=2, hours=1))
    [message] = _messages(settings)[-1:]
    reasons = {a.rule: (a.reason, [r.refdomain for r in a.restored]) for a in message.alerts}
    # ref1.org links again (another page): the domain is back. The lost link is not.
    assert reasons == {
        "domains": ("restored", ["ref1.org"]),
        "strong": ("window_passed", []),
    }


def _refdomains(path: Path, domains: list[str]) -> Path:
    """An Ahrefs referring-domains export (coverage `domains`)."""
    path.write_text(
        '"Domain","DR","Links to target","First seen","Lost"\n'
        + "".join(f'"{d}","50","3","2025-01-01 00:00:00",""\n' for d in domains),
        encoding="utf-8",
    )
    return path


def test_referring_domains_snapshots_neither_hold_nor_hide_nor_freshen_links(
    tmp_path: Path,
) -> None:
    # Source health reads when polls happened: this timeline is in real time.
    settings = write_settings(tmp_path, notifiers=AT_ONCE)
    write_rule(tmp_path, "loss", LOSS.format(value=3))
    write_rule(
        tmp_path, "sources", 'kind = "source_health"\nmax_age = "8d"\nnotify = ["console"]\n'
    )
    start = (datetime.now(UTC) - timedelta(days=20)).replace(microsecond=0)
    domains = [f"ref{i}.org" for i in range(10)]
    _import(settings, write_ahrefs(tmp_path / "a0.csv", ROWS), _iso(start))
    _import(settings, write_ahrefs(tmp_path / "a1.csv", ROWS[:6]), _iso(start + timedelta(1)))
    _import(settings, _refdomains(tmp_path / "d0.csv", domains), _iso(start + timedelta(18)))
    # A shrunken referring-domains export is suspect: it says nothing about links.
    _import(settings, _refdomains(tmp_path / "d1.csv", domains[:3]), _iso(start + timedelta(19)), 1)
    code, out = _run(settings, "evaluate", "--at", _iso(start + timedelta(days=5)))
    assert code == 0, out
    # The loss is told: the suspect domains snapshot holds no link rule.
    assert "firing: loss example.com (value 4)" in out, out
    code, out = _run(settings, "evaluate")
    assert code == 0, out
    # The backlinks are 19 days old: the fresh domains imports do not keep them fresh,
    # and the suspect domains snapshot is told apart.
    assert "firing: sources example.com (value 2)" in out, out
    store = Store(load_settings(settings).storage.path)
    try:
        health = store.source_health("example.com", datetime.now(UTC))
    finally:
        store.close()
    assert [(h.source, h.domains, h.latest_status, h.last_accepted_at) for h in health] == [
        ("exports", False, "complete", start + timedelta(1)),
        ("exports", True, "suspect", start + timedelta(18)),
    ]


def test_a_domains_import_does_not_hide_a_suspect_links_snapshot(tmp_path: Path) -> None:
    settings = write_settings(tmp_path, notifiers=AT_ONCE)
    write_rule(tmp_path, "sources", 'kind = "source_health"\nnotify = ["console"]\n')
    start = datetime.now(UTC) - timedelta(days=3)
    _import(settings, write_ahrefs(tmp_path / "a0.csv", ROWS), _iso(start))
    _import(settings, write_ahrefs(tmp_path / "a1.csv", ROWS[:3]), _iso(start + timedelta(1)), 1)
    domains = [f"ref{i}.org" for i in range(10)]
    _import(settings, _refdomains(tmp_path / "d0.csv", domains), _iso(start + timedelta(2)))
    code, out = _run(settings, "evaluate")
    assert code == 0, out
    assert "firing: sources example.com (value 1)" in out, out
