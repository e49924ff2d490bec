"""Alert state machine: told once on firing, resolution per send_resolved, no data is not zero."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerts.engine import Transition, evaluate, fingerprint
from alerts.message import AlertMessage, Notification
from alerts.rules import Rule, RulesError, load_rules
from alerts.rules.context import EvaluationContext
from daemon.settings import load_settings
from daemon.store import GuardSettings, Store
from sources.exports import ExportFile
from tests.helpers import write_ahrefs, write_rule, write_settings

T = datetime(2026, 4, 1, tzinfo=UTC)
LINKS = [(f"https://www.ref{i}.org/p", "https://example.com/", f"a{i}", 10 * i) for i in range(4)]
SITES = (
    '[[sites]]\ndomain = "example.com"\nsources = ["exports"]\n'
    '[[sites]]\ndomain = "quiet.example.net"\nsources = ["exports"]\n'
)


def _setup(tmp_path: Path, send_resolved: bool) -> tuple[Store, list[Rule], list[str]]:
    settings = load_settings(write_settings(tmp_path, sites=SITES))
    write_rule(
        tmp_path,
        "loss",
        'kind = "threshold"\nmetric = "lost_links"\nwindow = "3d"\nop = ">="\nvalue = 2\n'
        f'notify = ["console"]\nsend_resolved = {str(send_resolved).lower()}\n',
    )
    store = Store(settings.storage.path)
    for s in settings.sites:
        store.ensure_site(s.domain, s.role)
    for day, rows in ((0, LINKS), (1, LINKS[2:]), (2, LINKS[2:])):
        path = write_ahrefs(tmp_path / f"e{day}.csv", rows)
        at = T + timedelta(days=day)
        store.ingest(
            "example.com",
            "exports",
            ExportFile(path, "example.com").snapshot(at),
            GuardSettings(),
            at,
        )
    return store, load_rules(settings), settings.own_sites()


def _evaluate(store: Store, rules: list[Rule], own: list[str], at: datetime) -> list[Transition]:
    return evaluate(store, rules, EvaluationContext(store, at, at, own, own))


def _queued(store: Store) -> list[tuple[str, str]]:
    return [(r["transition"], r["notifier"]) for r in reversed(store.outbox())]


def test_fires_once_and_resolution_follows_send_resolved(tmp_path: Path) -> None:
    for send_resolved in (True, False):
        folder = tmp_path / str(send_resolved)
        folder.mkdir()
        store, rules, own = _setup(folder, send_resolved)
        fired = _evaluate(store, rules, own, T + timedelta(days=2, hours=1))
        # The quiet site has no snapshot: no data, no alert, nothing stored for it.
        assert [(t.site, t.state, t.value) for t in fired] == [("example.com", "firing", 2.0)]
        assert _evaluate(store, rules, own, T + timedelta(days=2, hours=2)) == []
        resolved = _evaluate(store, rules, own, T + timedelta(days=6))
        assert [(t.site, t.state) for t in resolved] == [("example.com", "resolved")]
        expected = [("firing", "console")] + ([("resolved", "console")] if send_resolved else [])
        assert _queued(store) == expected
        # Staying resolved tells nothing more.
        assert _evaluate(store, rules, own, T + timedelta(days=6, hours=1)) == []
        store.close()


def test_source_health_tells_failures_suspect_snapshots_and_staleness(tmp_path: Path) -> None:
    settings = load_settings(write_settings(tmp_path))
    write_rule(
        tmp_path,
        "sources",
        'kind = "source_health"\nmax_age = "3d"\nnotify = ["console"]\n',
    )
    rules = load_rules(settings)
    store = Store(settings.storage.path)
    store.ensure_site("example.com", "own")
    own = ["example.com"]

    def ingest(day: int, rows: list[tuple[str, str, str, int]]) -> str:
        path = write_ahrefs(tmp_path / f"h{day}.csv", rows)
        at = T + timedelta(days=day)
        result = ExportFile(path, "example.com").snapshot(at)
        return store.ingest("example.com", "exports", result, GuardSettings(), at).status

    def check(day: float) -> list[tuple[str, float | None]]:
        return [(t.state, t.value) for t in _evaluate(store, rules, own, T + timedelta(days=day))]

    assert check(0) == []  # nothing polled yet: no data
    assert ingest(0, LINKS) == "baseline"
    assert check(0.5) == []
    assert ingest(1, LINKS[:1]) == "suspect"
    assert check(1.5) == [("firing", 1.0)]
    assert [r["transition"] for r in store.outbox()] == ["firing"]
    assert ingest(2, LINKS) == "complete"
    assert check(2.5) == [("resolved", 0.0)]
    # No complete snapshot for more than max_age: stale.
    assert check(5.5) == [("firing", 1.0)]
    assert ingest(6, LINKS) == "complete"
    assert check(6.5) == [("resolved", 0.0)]
    store.record_failure(
        "example.com",
        "exports",
        T + timedelta(days=7),
        "x.csv",
        "cannot read",
        T + timedelta(days=7),
    )
    assert check(7.5) == [("firing", 1.0)]
    payloads = [r for r in store.outbox() if r["transition"] == "firing"]
    assert len(payloads) == 3
    # A later good poll clears the error; a partial export (a malformed row) is unhealthy.
    assert ingest(8, LINKS) == "complete"
    assert check(8.5) == [("resolved", 0.0)]
    path = write_ahrefs(tmp_path / "h9.csv", LINKS)
    path.write_text(path.read_text() + '"only","three","cells"\n')
    result = ExportFile(path, "example.com").snapshot(T + timedelta(days=9))
    partial = store.ingest("example.com", "exports", result, GuardSettings(), T + timedelta(days=9))
    assert partial.status == "partial"
    assert check(9.5) == [("firing", 1.0)]
    store.close()


def test_source_health_message_names_the_problem(tmp_path: Path) -> None:
    settings = load_settings(write_settings(tmp_path))
    write_rule(tmp_path, "sources", 'kind = "source_health"\nnotify = ["console"]\n')
    store = Store(settings.storage.path)
    store.ensure_site("example.com", "own")
    store.record_failure(
        "example.com", "exports", T, "", "exports/example.com: export folder does not exist", T
    )
    at = T + timedelta(hours=1)
    ctx = EvaluationContext(store, at, at, ["example.com"], ["example.com"])
    [rule] = load_rules(settings)
    check = rule.check(ctx, "example.com")
    assert check.holds and check.value == 1.0
    assert check.summary == (
        "example.com: 1 unhealthy source(s): exports: last poll error: "
        "exports/example.com: export folder does not exist"
    )
    store.close()


class _Exploding:
    """A rule whose evaluation fails: it must not silence the rules after it."""

    name = "exploding"
    notify = ("console",)
    labels = ()

    def sites_for(self, ctx: EvaluationContext) -> list[str]:
        return ["example.com"]

    def check(self, ctx: EvaluationContext, site: str) -> None:
        raise RuntimeError("rule bug")


def test_one_broken_rule_does_not_block_the_others(tmp_path: Path) -> None:
    store, rules, own = _setup(tmp_path, True)
    at = T + timedelta(days=2, hours=1)
    ctx = EvaluationContext(store, at, at, own, own)
    fired = evaluate(store, [_Exploding(), *rules], ctx)  # type: ignore[list-item]
    assert [(t.rule, t.state) for t in fired] == [(rules[0].name, "firing")]
    store.close()


def test_an_edited_rule_file_is_used_at_the_next_evaluation(tmp_path: Path) -> None:
    from daemon.service import Linkwatch

    _setup(tmp_path, True)[0].close()
    app = Linkwatch.open(load_settings(tmp_path / "settings.toml"))
    try:
        at = T + timedelta(days=2, hours=1)
        assert [t.state for t in app.evaluate(at)] == ["firing"]
        rule_file = next((tmp_path / "rules.d").glob("*.toml"))
        text = rule_file.read_text().replace("value = 2", "value = 50")
        assert text != rule_file.read_text()
        rule_file.write_text(text + "\n# edited\n")
        assert [t.state for t in app.evaluate(at + timedelta(minutes=1))] == ["resolved"]
    finally:
        app.close()


def _two_sites(tmp_path: Path) -> tuple[Store, list[Rule], list[str]]:
    """calm.example.net keeps its links; example.com loses 12 referring domains on day 2."""
    sites = (
        '[[sites]]\ndomain = "calm.example.net"\nsources = ["exports"]\n'
        '[[sites]]\ndomain = "example.com"\nsources = ["exports"]\n'
    )
    settings = load_settings(write_settings(tmp_path, sites=sites))
    write_rule(
        tmp_path,
        "loss",
        'kind = "threshold"\nmetric = "lost_refdomains"\nwindow = "7d"\nop = ">="\nvalue = 1\n'
        'notify = ["console"]\n',
    )
    store = Store(settings.storage.path)
    rows = {
        site: [(f"https://ref{i}.org/p", f"https://{site}/", f"a{i}", i) for i in range(20)]
        for site in ("calm.example.net", "example.com")
    }
    for day, kept in ((0, 20), (1, 8), (2, 8)):
        for site in ("calm.example.net", "example.com"):
            store.ensure_site(site, "own")
            path = write_ahrefs(
                tmp_path / f"{site}-{day}.csv",
                rows[site][: 20 if site.startswith("calm") else kept],
            )
            at = T + timedelta(days=day)
            result = ExportFile(path, site).snapshot(at)
            store.ingest(site, "exports", result, GuardSettings(suspect_below=0.3), at)
    return store, load_rules(settings), settings.own_sites()


def test_each_site_is_its_own_alert_and_a_quiet_site_stops_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    store, rules, own = _two_sites(tmp_path)
    at = T + timedelta(days=2, hours=1)
    fired = _evaluate(store, rules, own, at)
    assert [(t.site, t.state, t.value, t.notifiers) for t in fired] == [
        ("example.com", "firing", 12.0, ("console",))
    ]
    assert [r.getMessage() for r in caplog.records if r.name == "alerts.engine"] == [
        "alert loss for example.com: firing (lost_refdomains = 12.0)"
    ]
    # The calm site has data and no loss: no alert row at all.
    assert [(r.site, r.state) for r in map(store.alert_state, _fingerprints(rules, own)) if r] == [
        ("example.com", "firing")
    ]
    alert = store.alert_state(fingerprint("loss", "example.com"))
    assert alert is not None
    assert (alert.rule, alert.site, alert.state, alert.value, alert.since_at, alert.fired_at) == (
        "loss",
        "example.com",
        "firing",
        12.0,
        at,
        at,
    )
    assert fingerprint("loss", "example.com") != fingerprint("loss", "calm.example.net")
    [row] = store.outbox()
    [payload] = Notification.from_payload(
        json.loads(
            store.conn.execute("SELECT payload FROM outbox WHERE id = ?", (row["id"],)).fetchone()[
                0
            ]
        )
    ).alerts
    assert payload.at == at.isoformat(timespec="seconds")
    # Twelve domains lost: the message names the ten strongest, all wholly lost.
    assert len(payload.lost_domains) == 10
    assert [d.domain_rating for d in payload.lost_domains] == [float(i) for i in range(19, 9, -1)]
    resolved = _evaluate(store, rules, own, T + timedelta(days=10))
    assert [(t.site, t.state) for t in resolved] == [("example.com", "resolved")]
    last = store.conn.execute("SELECT payload FROM outbox ORDER BY id DESC LIMIT 1").fetchone()[0]
    assert Notification.from_payload(json.loads(last)).alerts[0].lost_domains == ()
    store.close()


def _fingerprints(rules: list[Rule], sites: list[str]) -> list[str]:
    return [fingerprint(r.name, s) for r in rules for s in sites]


class _FailsOnOneSite:
    """Wraps a rule so that its check fails for one site only."""

    def __init__(self, rule: Rule, bad_site: str) -> None:
        self.rule, self.bad_site = rule, bad_site

    def __getattr__(self, name: str) -> object:
        return getattr(self.rule, name)

    def check(self, ctx: EvaluationContext, site: str) -> object:
        if site == self.bad_site:
            raise RuntimeError("rule bug")
        return self.rule.check(ctx, site)


def test_a_failing_check_on_one_site_still_checks_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, rules, own = _two_sites(tmp_path)
    flaky = _FailsOnOneSite(rules[0], "calm.example.net")
    fired = _evaluate(store, [flaky], own, T + timedelta(days=2, hours=1))  # type: ignore[list-item]
    assert [(t.site, t.state) for t in fired] == [("example.com", "firing")]
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        "rule loss for calm.example.net could not be evaluated"
    ]
    store.close()


def test_an_alert_identity_is_stable_across_versions() -> None:
    # Stored alerts are found again by this value after an upgrade: it must never change.
    assert fingerprint("loss", "example.com") == "aebab085a63325c474aaa571"


def _site_history(
    tmp_path: Path, history: dict[str, list[int]], rules: dict[str, str]
) -> tuple[Store, list[Rule], list[str]]:
    """Sites with 20 referring domains each; `history` is how many each export kept per day
    (0: no export that day). Every site is own; order as given."""
    sites = "".join(f'[[sites]]\ndomain = "{s}"\nsources = ["exports"]\n' for s in history)
    settings = load_settings(write_settings(tmp_path, sites=sites))
    for name, body in rules.items():
        write_rule(tmp_path, name, body)
    store = Store(settings.storage.path)
    for site, kept_per_day in history.items():
        store.ensure_site(site, "own")
        rows = [(f"https://ref{i}.org/p", f"https://{site}/", f"a{i}", i) for i in range(20)]
        for day, kept in enumerate(kept_per_day):
            if kept:
                path = write_ahrefs(tmp_path / f"{site}-{day}.csv", rows[:kept])
                at = T + timedelta(days=day)
                result = ExportFile(path, site).snapshot(at)
                store.ingest(site, "exports", result, GuardSettings(suspect_below=0.3), at)
    return store, load_rules(settings), settings.own_sites()


LOSS_RULE = (
    'kind = "threshold"\nmetric = "lost_refdomains"\nwindow = "7d"\nop = ">="\nvalue = 1\n'
    'notify = ["console"]\n'
)


def _payloads(store: Store) -> list[AlertMessage]:
    rows = store.conn.execute("SELECT payload FROM outbox ORDER BY id").fetchall()
    return [a for r in rows for a in Notification.from_payload(json.loads(r[0])).alerts]


def test_sites_without_data_or_change_do_not_stop_the_rest(tmp_path: Path) -> None:
    history = {
        "empty.example.org": [],  # no snapshot at all: no data
        "calm.example.net": [20, 8, 8],  # loses 12 domains and stays firing
        "example.com": [20, 8, 8, 20],  # loses 12 domains, then all come back
    }
    store, rules, own = _site_history(tmp_path, history, {"loss": LOSS_RULE})
    fired = _evaluate(store, rules, own, T + timedelta(days=2, hours=1))
    assert [(t.site, t.state) for t in fired] == [
        ("calm.example.net", "firing"),
        ("example.com", "firing"),
    ]
    resolved = _evaluate(store, rules, own, T + timedelta(days=3, hours=1))
    # A day on, the site still losing gets its reminder (repeat_interval defaults to 24h).
    assert [(t.site, t.state, t.reason) for t in resolved] == [
        ("calm.example.net", "reminder", None),
        ("example.com", "resolved", "restored"),
    ]
    # The losses are still in the window, but a resolution lists no lost domains: it
    # names the twelve domains that came back.
    last = _payloads(store)[-1]
    assert (last.transition, last.site, last.lost_domains) == ("resolved", "example.com", ())
    assert (last.reason, len(last.restored), last.firing_for) == ("restored", 12, "1d")
    # The reminder still names the strongest lost domains; the restored ones keep their
    # rating and reason from when they were lost.
    assert [h[2] for h in store.alert_history()] == ["firing", "firing", "reminder", "resolved"]
    reminder = next(m for m in _payloads(store) if m.transition == "reminder")
    assert len(reminder.lost_domains) == 10 and reminder.more_domains == 2
    assert {(r.domain_rating, r.reason) for r in last.restored} == {
        (float(i), "dropped") for i in range(8, 20)
    }
    alert = store.alert_state(fingerprint("loss", "example.com"))
    assert alert is not None and (alert.state, alert.since_at, alert.fired_at) == (
        "resolved",
        T + timedelta(days=3, hours=1),
        T + timedelta(days=2, hours=1),
    )
    store.close()


def test_a_source_health_message_lists_no_lost_domains(tmp_path: Path) -> None:
    rules = {"sources": 'kind = "source_health"\nnotify = ["console"]\n'}
    store, loaded, own = _site_history(tmp_path, {"example.com": [20, 8, 8, 1]}, rules)
    fired = _evaluate(store, loaded, own, T + timedelta(days=3, hours=1))
    assert [(t.rule, t.state) for t in fired] == [("sources", "firing")]
    [message] = _payloads(store)
    assert message.lost_domains == ()
    store.close()


def test_source_health_quotes_at_most_the_start_of_an_error(tmp_path: Path) -> None:
    settings = load_settings(write_settings(tmp_path))
    write_rule(tmp_path, "sources", 'kind = "source_health"\nnotify = ["console"]\n')
    store = Store(settings.storage.path)
    store.ensure_site("example.com", "own")
    store.record_failure("example.com", "exports", T, "x.csv", "bad\n" + "col," * 10_000, T)
    at = T + timedelta(hours=1)
    ctx = EvaluationContext(store, at, at, ["example.com"], ["example.com"])
    [rule] = load_rules(settings)
    check = rule.check(ctx, "example.com")
    assert check.holds and len(check.summary) < 500 and "\n" not in check.summary
    assert check.summary.endswith("…")
    store.close()


def test_source_health_takes_a_summary_template(tmp_path: Path) -> None:
    settings = load_settings(write_settings(tmp_path))
    write_rule(
        tmp_path,
        "sources",
        'kind = "source_health"\nnotify = ["console"]\nseverity = "critical"\n'
        'summary = "{severity} {rule}: {value} down on {site} ({problems})"\n',
    )
    store = Store(settings.storage.path)
    store.ensure_site("example.com", "own")
    store.record_failure("example.com", "exports", T, "x.csv", "cannot read", T)
    at = T + timedelta(hours=1)
    [rule] = load_rules(settings)
    check = rule.check(
        EvaluationContext(store, at, at, ["example.com"], ["example.com"]), "example.com"
    )
    assert check.summary == (
        "critical sources: 1 down on example.com (exports: last poll error: cannot read)"
    )
    write_rule(
        tmp_path, "sources", 'kind = "source_health"\nnotify = ["console"]\nsummary = "{metric}"\n'
    )
    with pytest.raises(RulesError, match="summary"):
        load_rules(settings)
    store.close()
