"""Rule tooling: rule file discovery, `rules check`, `rules test`, `backtest`, `outbox`."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from alerts.engine import evaluate
from alerts.notifiers.console import ConsoleNotifier, ConsoleSettings
from alerts.outbox import deliver_due
from alerts.rules import RuleBook, ignored_because, load_rules, rules_signature
from alerts.rules.context import EvaluationContext
from alerts.rules.testing import SnapshotSpec
from daemon.cli import main
from daemon.settings import load_settings
from daemon.store import GuardSettings, Store
from sources.model import Backlink, SnapshotResult
from tests.helpers import write_rule, write_settings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_TESTS = ROOT / "rules.example" / "tests"
CONSOLE = '[notifiers.console]\nkind = "console"\n'
LOSS_RULE = (
    'kind = "threshold"\nmetric = "lost_links"\nwindow = "3d"\nop = ">="\nvalue = 3\n'
    'notify = ["console"]\n'
)
# Editor, backup and package-manager leftovers beside a rule file: none is a rule.
LEFTOVERS = [
    ".#loss.toml",
    ".loss.toml.swp",
    ".hidden.toml",
    "loss.toml~",
    "#loss.toml#",
    "loss.toml.bak",
    "loss.toml.orig",
    "loss.toml.swp",
    "loss.toml.tmp",
    "loss.toml.dpkg-dist",
    "loss.toml.dpkg-old",
    "loss.toml.rpmnew",
    "loss.toml.rpmsave",
    "README.md",
]


def _cli(*args: str, settings: Path | None = None) -> Result:
    prefix = ["-c", str(settings)] if settings is not None else []
    return CliRunner().invoke(main, [*prefix, *args])


# --- rule file discovery ---------------------------------------------------------------


@pytest.mark.parametrize("name", LEFTOVERS)
def test_leftover_files_are_not_rules(name: str) -> None:
    assert ignored_because(name) is not None
    assert ignored_because("loss.toml") is None


def test_rules_check_ignores_leftovers_and_lists_them_with_verbose(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = write_settings(tmp_path)
    write_rule(tmp_path, "loss", LOSS_RULE)
    rules_dir = tmp_path / "rules.d"
    for name in LEFTOVERS:
        # Broken content: read as a rule, any of them would fail the check.
        (rules_dir / name).write_text("kind = [broken\n")
    (rules_dir / "tests").mkdir()
    (rules_dir / "tests" / "loss.toml").write_text("kind = [broken\n")
    res = _cli("rules", "check", settings=settings)
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("1 rules OK")
    # Listed at debug level (-v), not silently dropped.
    with caplog.at_level(logging.DEBUG, logger="alerts.rules"):
        verbose = _cli("rules", "check", "-v", settings=settings)
    assert verbose.exit_code == 0, verbose.output
    ignored = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    for name in [*LEFTOVERS, "tests"]:
        assert any(m.startswith(f"{rules_dir / name}: ignored") for m in ignored), name


def test_daemon_uses_the_same_discovery(tmp_path: Path) -> None:
    settings = load_settings(write_settings(tmp_path))
    write_rule(tmp_path, "loss", LOSS_RULE)
    book = RuleBook.load(settings)
    assert [r.name for r in book.rules] == ["loss"]
    # An editor's lock file appearing is no rule change: nothing is reloaded.
    (tmp_path / "rules.d" / ".#loss.toml").write_text("kind = [broken\n")
    (tmp_path / "rules.d" / "loss.toml~").write_text("kind = [broken\n")
    assert rules_signature(settings.daemon.rules_dir) == book.signature
    assert book.reload_if_changed() is False
    assert book.last_errors == []


@pytest.mark.parametrize("name", ["rule copy", "Loss", "loss.v2", "perte-ü"])
def test_a_rule_file_name_that_is_no_rule_name_is_an_error(tmp_path: Path, name: str) -> None:
    settings = write_settings(tmp_path)
    write_rule(tmp_path, "loss", LOSS_RULE)
    write_rule(tmp_path, name, LOSS_RULE)
    res = _cli("rules", "check", settings=settings)
    assert res.exit_code == 2, res.output
    bad = tmp_path / "rules.d" / f"{name}.toml"
    assert f"{bad}: file name:" in res.stderr
    assert "[a-z0-9_-]+" in res.stderr
    assert "Traceback" not in res.output
    # The daemon refuses the same rule set.
    with pytest.raises(Exception, match=r"\[a-z0-9_-\]\+"):
        load_rules(load_settings(settings))


def test_rules_check_warns_on_an_empty_folder_and_needs_no_secrets(tmp_path: Path) -> None:
    # A Slack notifier without its token: `rules check` does not need it.
    settings = write_settings(
        tmp_path,
        notifiers='[notifiers.seo-slack]\nkind = "slack"\nchannel = "#seo"\n',
    )
    res = _cli("rules", "check", settings=settings)
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("0 rules OK")
    assert "warning" in res.stderr and "no rule files" in res.stderr


# --- rules test ---------------------------------------------------------------------------


def test_shipped_rule_tests_pass() -> None:
    files = sorted(EXAMPLE_TESTS.glob("*.toml"))
    assert len(files) >= 3
    res = _cli("rules", "test", *map(str, files))
    assert res.exit_code == 0, res.output
    assert f"in {len(files)} file(s)" in res.stdout and " 0 failed" in res.stdout
    # Nothing is delivered: the console notifier of the rules printed nothing.
    assert "FIRING" not in res.output


def _example_copy(tmp_path: Path, name: str) -> Path:
    """A shipped test file copied elsewhere, its rule paths made absolute."""
    text = (EXAMPLE_TESTS / name).read_text()
    text = text.replace('"../', f'"{ROOT / "rules.example"}/')
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_wrong_expectation_fails_with_a_readable_diff(tmp_path: Path) -> None:
    path = _example_copy(tmp_path, "refdomain-loss.toml")
    good = _cli("rules", "test", str(path))
    assert good.exit_code == 0, good.output
    text = path.read_text()
    # Expect firing where it resolves, and silence where it fires.
    text = text.replace('state = "resolved"', 'state = "firing"', 1)
    text = text.replace(
        '  at = "2d"\n  alerts = [{ rule = "refdomain-loss", state = "firing" }]',
        '  at = "2d"\n  alerts = []',
    )
    path.write_text(text)
    res = _cli("rules", "test", str(path))
    assert res.exit_code == 1, res.output
    out = res.stdout
    assert (
        f"FAIL {path}: test 'six referring domains lost at once fire, and resolve once the "
        "week has passed': at 8d1h (2026-03-10T01:00:00Z):\n"
        "  wrong state: refdomain-loss example.com: expected firing, got resolved (value 0)\n"
    ) in out
    assert "at 2d (2026-03-04T00:00:00Z):\n  unexpected:  refdomain-loss example.com firing" in out
    assert "4 tests in 1 file(s): 2 passed, 2 failed" in out


def test_missing_alert_and_pending_versus_firing(tmp_path: Path) -> None:
    path = _example_copy(tmp_path, "source-health.toml")
    text = path.read_text()
    text = text.replace(
        '  at = "1d6h"\n  alerts = [{ rule = "source-health", state = "firing" }]',
        '  at = "1d6h"\n  alerts = [{ rule = "source-health", state = "pending" }]',
        1,
    )
    text = text.replace(
        '  at = "8d"\n  alerts = []',
        '  at = "8d"\n  alerts = [{ rule = "source-health", state = "firing" }]',
    )
    path.write_text(text)
    res = _cli("rules", "test", str(path))
    assert res.exit_code == 1, res.output
    assert "wrong state: source-health example.com: expected pending, got firing" in res.stdout
    assert "missing:     source-health example.com firing" in res.stdout


def test_notifiers_of_rules_under_test_need_no_settings(tmp_path: Path) -> None:
    (tmp_path / "pager.toml").write_text(LOSS_RULE.replace('"console"', '"night-pager"'))
    test = tmp_path / "pager_test.toml"
    test.write_text(
        'rules = ["pager.toml"]\n[[sites]]\ndomain = "shop.example.com"\n'
        '[[tests]]\nname = "three lost"\n'
        '[[tests.snapshots]]\nat = "0d"\nlinks = ["https://www.blog{1..9}.com/a"]\n'
        '[[tests.snapshots]]\nat = "1d"\nlost = ["https://www.blog{1..3}.com/a"]\n'
        '[[tests.eval]]\nat = "1d"\nalerts = [{ rule = "pager", state = "firing" }]\n'
    )
    # No settings file anywhere: `rules test` needs none.
    res = CliRunner().invoke(
        main, ["-c", str(tmp_path / "absent.toml"), "rules", "test", str(test)]
    )
    assert res.exit_code == 0, res.output
    assert "1 passed, 0 failed" in res.stdout


BAD_TESTS = [
    ("unknown key", "bogus = 1\n", "bogus: unknown key"),
    (
        "bad offset",
        "",
        "tests[0].eval[0].at: expected an offset like 1d or 2d12h",
    ),
    ("unknown rule", "", "tests[0].eval[0].alerts[0].rule: no rule 'los' under test"),
    (
        "remove unknown link",
        "",
        "tests[0].snapshots[0].remove[0]: https://nowhere.com/ -> https://example.com/ is not",
    ),
    ("missing rule file", "", "rules[0]: "),
    ("not toml", "", "not valid TOML"),
    (
        "start at the end of the calendar",
        "start = 9999-12-31T00:00:00Z\n",
        "start: expected a time between the years 1970 and 2999",
    ),
]


def _bad_test(kind: str, extra: str, tmp_path: Path) -> Path:
    (tmp_path / "loss.toml").write_text(LOSS_RULE)
    rules = '"loss.toml"' if kind != "missing rule file" else '"gone.toml"'
    at = "1x" if kind == "bad offset" else "1d"
    rule = "los" if kind == "unknown rule" else "loss"
    snapshot = (
        '[[tests.snapshots]]\nat = "0d"\nremove = ["https://nowhere.com/"]\n'
        if kind == "remove unknown link"
        else ""
    )
    text = (
        f'rules = [{rules}]\n{extra}[[sites]]\ndomain = "example.com"\n'
        f'[[tests]]\nname = "t"\n{snapshot}'
        f'[[tests.eval]]\nat = "{at}"\nalerts = [{{ rule = "{rule}" }}]\n'
    )
    if kind == "not toml":
        text = "rules = [\n"
    path = tmp_path / "bad_test.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("kind", "extra", "message"), BAD_TESTS)
def test_bad_test_files_exit_2_naming_file_and_key(
    tmp_path: Path, kind: str, extra: str, message: str
) -> None:
    path = _bad_test(kind, extra, tmp_path)
    good = _example_copy(tmp_path, "link-velocity.toml")
    res = _cli("rules", "test", str(path), str(good))
    assert res.exit_code == 2, res.output
    assert f"{path}: {message}" in res.stderr
    assert "Traceback" not in res.output
    # The good file still ran.
    assert f"ok   {good}: 2 tests passed" in res.stdout


# --- backtest -----------------------------------------------------------------------------


def _history(
    tmp_path: Path, rules: dict[str, str], notifiers: str = CONSOLE
) -> tuple[Path, datetime]:
    """A settings folder whose database holds three weeks of snapshots: ten links, three
    of them gone from the second and third snapshots (lost at the third)."""
    settings_path = write_settings(tmp_path, extra='evaluate_every = "1d"\n', notifiers=notifiers)
    for name, body in rules.items():
        write_rule(tmp_path, name, body)
    settings = load_settings(settings_path)
    store = Store(settings.storage.path)
    store.ensure_site("example.com", "own")
    # 7h off the regular passes (a day apart from the period's start): a pass that lands
    # on time can only be a scheduled one.
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=20, hours=7)
    links = [Backlink(f"https://www.ref{i}.com/p", "https://example.com/") for i in range(10)]
    for day, rows in ((0, links), (1, links[3:]), (2, links[3:]), (4, links[3:])):
        at = t0 + timedelta(days=day)
        result = SnapshotResult(taken_at=at, records=iter(rows), origin=f"day{day}", format="t")
        store.ingest("example.com", "exports", result, GuardSettings(), at)
    store.close()
    return settings_path, t0


def _fingerprint(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.db*"))
    }


def test_backtest_replays_history_and_writes_nothing(tmp_path: Path) -> None:
    settings, t0 = _history(
        tmp_path,
        {
            "loss": LOSS_RULE + 'for = "5h"\n',
            "few-left": LOSS_RULE.replace('"lost_links"', '"live_links"')
            .replace('">="', '"<="')
            .replace("value = 3", "value = 7"),
        },
    )
    before = _fingerprint(tmp_path)
    res = _cli("backtest", "--since", "30d", "--json", settings=settings)
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    alerts = {a["rule"]: a for a in report["alerts"]}
    assert set(alerts) == {"loss", "few-left"}
    lost_at = t0 + timedelta(days=2)
    # Pending from the snapshot that lost the links; fired when `for` ran out, exactly,
    # although the regular passes are a day apart.
    assert alerts["loss"]["fired_at"] == (lost_at + timedelta(hours=5)).isoformat()
    # Resolved as the losses left the 3-day window, not at the next regular pass.
    assert alerts["loss"]["resolved_at"] == (lost_at + timedelta(days=3, seconds=1)).isoformat()
    assert alerts["loss"]["resolve_reason"] is not None
    assert alerts["loss"]["peak_value"] == 3
    assert alerts["few-left"]["resolved_at"] is None
    assert alerts["few-left"]["peak_value"] == 7
    table = _cli("backtest", "--since", "30d", settings=settings)
    assert table.exit_code == 0, table.output
    assert "nothing was written or sent" in table.stdout
    [row] = [line for line in table.stdout.splitlines() if line.startswith("few-left")]
    assert "still firing" in row
    # Read-only: the database is byte for byte what it was (a WAL file, if any, empty).
    after = _fingerprint(tmp_path)
    assert after["linkwatch.db"] == before["linkwatch.db"]
    wal = tmp_path / "linkwatch.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    store = Store(tmp_path / "linkwatch.db")
    assert store.alert_states() == [] and store.outbox_entries() == []
    store.close()


def test_backtest_filters_and_refuses_unknown_names(tmp_path: Path) -> None:
    settings, _ = _history(tmp_path, {"loss": LOSS_RULE, "other": LOSS_RULE})
    res = _cli("backtest", "--rule", "other", "--site", "EXAMPLE.COM", "--json", settings=settings)
    assert res.exit_code == 0, res.output
    assert [a["rule"] for a in json.loads(res.stdout)["alerts"]] == ["other"]
    unknown = _cli("backtest", "--rule", "nope", settings=settings)
    assert unknown.exit_code == 2 and "--rule: no rule 'nope'" in unknown.stderr
    assert "loss, other" in unknown.stderr
    site = _cli("backtest", "--site", "nope.example", settings=settings)
    assert site.exit_code == 2 and "--site" in site.stderr
    quiet = _cli("backtest", "--since", "1d", settings=settings)
    assert quiet.exit_code == 0 and "no alert would have fired" in quiet.stdout


def test_backtest_without_a_database_says_so(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    res = _cli("backtest", settings=settings)
    assert res.exit_code == 1, res.output
    assert "no database yet" in res.stderr
    assert not (tmp_path / "linkwatch.db").exists()


# --- outbox -----------------------------------------------------------------------------


def _queued(tmp_path: Path) -> tuple[Path, list[int]]:
    """A database with one alert told to three notifiers: ids of the rows, oldest first."""
    notifiers = CONSOLE + '[notifiers.backup]\nkind = "console"\n'
    rule = LOSS_RULE.replace('["console"]', '["console", "backup"]')
    settings_path, _ = _history(tmp_path, {"loss": rule}, notifiers)
    settings = load_settings(settings_path)
    store = Store(settings.storage.path)
    at = datetime.now(UTC)
    ctx = EvaluationContext(store, at, at, ["example.com"], ["example.com"])
    rules = load_rules(settings)
    # Evaluated as the day the links were lost: the loss fires, told to both notifiers.
    lost = store.snapshots("example.com")[2]["taken_at"]
    ctx = EvaluationContext(store, datetime.fromisoformat(lost), at, ctx.own_sites, ctx.all_sites)
    assert [t.state for t in evaluate(store, rules, ctx)] == ["firing"]
    ids = sorted(e.id for e in store.outbox_entries())
    assert len(ids) == 2
    store.mark_failed(ids[0], "invalid_auth: token revoked", None)
    store.mark_sent(ids[1], at)
    store.close()
    return settings_path, ids


def test_outbox_lists_rows_and_dead_ones(tmp_path: Path) -> None:
    settings, (dead, sent) = _queued(tmp_path)
    res = _cli("outbox", settings=settings)
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].split() == [
        "ID", "NOTIFIER", "SITE", "TRANSITIONS", "STATUS", "ATTEMPTS", "CREATED", "LAST", "ERROR"
    ]  # fmt: skip
    assert lines[1].split()[:6] == [str(sent), "backup", "example.com", "loss", "firing", "sent"]
    assert lines[2].split()[:6] == [str(dead), "console", "example.com", "loss", "firing", "dead"]
    assert lines[2].endswith("invalid_auth: token revoked")
    only_dead = _cli("outbox", "--dead", "--json", settings=settings)
    assert only_dead.exit_code == 0, only_dead.output
    [row] = [json.loads(line) for line in only_dead.stdout.splitlines()]
    assert row["id"] == dead and row["status"] == "dead" and row["attempts"] == 1
    assert row["transitions"] == ["loss firing"] and row["notifier"] == "console"
    assert row["last_error"] == "invalid_auth: token revoked"


def test_outbox_retry_puts_dead_rows_back_and_delivery_sends_them(tmp_path: Path) -> None:
    settings, (dead, sent) = _queued(tmp_path)
    # A sent or unknown id is refused, naming it, and nothing changes (not even the dead).
    for ids in ([str(sent)], ["999"], [str(dead), str(sent)]):
        res = _cli("outbox", "retry", *ids, settings=settings)
        assert res.exit_code == 2, res.output
        assert "nothing was changed" in res.stderr
    assert f"outbox row {sent} was already sent" in res.stderr
    assert (
        "outbox row 999 does not exist" in _cli("outbox", "retry", "999", settings=settings).stderr
    )
    assert _cli("outbox", "retry", settings=settings).exit_code == 2
    assert _cli("outbox", "retry", "--all", str(dead), settings=settings).exit_code == 2
    store = Store(tmp_path / "linkwatch.db")
    assert {e.id: e.status for e in store.outbox_entries()} == {dead: "dead", sent: "sent"}
    store.close()

    res = _cli("outbox", "retry", str(dead), settings=settings)
    assert res.exit_code == 0, res.output
    assert f"1 notifications queued again: {dead}" in res.stdout
    store = Store(tmp_path / "linkwatch.db")
    [entry] = store.outbox_entries("pending")
    assert entry.id == dead and entry.attempts == 1
    assert entry.next_attempt_at <= datetime.now(UTC)
    # The next delivery pass sends it.
    console = ConsoleNotifier("console", ConsoleSettings(kind="console"))
    report = deliver_due(store, {"console": console}, datetime.now(UTC), timedelta(hours=24))
    assert report.sent == 1
    assert store.outbox_entries("dead") == []
    store.close()
    assert (
        "no dead notifications to retry"
        in _cli("outbox", "retry", "--all", settings=settings).stdout
    )


def test_outbox_retry_all_warns_about_notifiers_no_longer_configured(tmp_path: Path) -> None:
    settings, (dead, _) = _queued(tmp_path)
    text = settings.read_text().replace('[notifiers.console]\nkind = "console"\n', "")
    settings.write_text(text.replace('["console", "backup"]', '["backup"]'))
    (tmp_path / "rules.d" / "loss.toml").write_text(LOSS_RULE.replace("console", "backup"))
    res = _cli("outbox", "retry", "--all", settings=settings)
    assert res.exit_code == 0, res.output
    assert f"queued again: {dead}" in res.stdout
    assert "notifier 'console' is not in the settings" in res.stderr


def test_quiet_replay_leaves_logging_as_it_was() -> None:
    engine = logging.getLogger("alerts.engine")
    from alerts.backtest import quiet_transitions

    level = engine.level
    with quiet_transitions():
        pass
    assert engine.level == level


def test_rule_tests_run_from_their_own_folder(tmp_path: Path) -> None:
    # Rule paths are relative to the test file, wherever the command runs from.
    shutil.copytree(ROOT / "rules.example", tmp_path / "rules")
    res = _cli("rules", "test", str(tmp_path / "rules" / "tests" / "refdomain-loss.toml"))
    assert res.exit_code == 0, res.output


def test_the_documented_examples_run(tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "rules-testing.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", doc, re.S)
    [example] = [b for b in blocks if b.startswith("# rules.d/tests/")]
    path = tmp_path / "doc_test.toml"
    path.write_text(example.replace('"../', f'"{ROOT / "rules.example"}/'))
    res = _cli("rules", "test", str(path))
    assert res.exit_code == 0, res.output
    assert "1 passed, 0 failed" in res.stdout
    [links] = [b for b in blocks if b.startswith("add = [")]
    snapshot = SnapshotSpec.model_validate({"at": "1d", **tomllib.loads(links)})
    assert len(snapshot.add) == 2 and len(snapshot.lost) == 2


def test_the_readme_rule_test_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Testing rules", 1)[1].split("\n## ", 1)[0]
    [example] = re.findall(r"```toml\n(.*?)```", section, re.S)
    path = tmp_path / "readme_test.toml"
    path.write_text(example.replace('"../', f'"{ROOT / "rules.example"}/'))
    res = _cli("rules", "test", str(path))
    assert res.exit_code == 0, res.output
    assert "1 passed, 0 failed" in res.stdout


def test_several_sites_competitors_and_link_rules(tmp_path: Path) -> None:
    (tmp_path / "pace.toml").write_text(
        'kind = "competitor_pace"\nwindow = "7d"\nfactor = 2\nmin_new = 5\nnotify = ["seo"]\n'
    )
    (tmp_path / "lost-links.toml").write_text('kind = "link_lost"\nnotify = ["seo"]\n')
    test = tmp_path / "pace_test.toml"
    body = (
        'rules = ["pace.toml", "lost-links.toml"]\n'
        '[[sites]]\ndomain = "example.com"\ncompetitors = ["rival.com"]\n'
        '[[sites]]\ndomain = "rival.com"\nrole = "competitor"\n'
        '[[tests]]\nname = "the rival gains fast while we lose a link"\n'
        '[[tests.snapshots]]\nsite = "example.com"\nat = "0d"\nlinks = ["https://a{1..10}.com/"]\n'
        '[[tests.snapshots]]\nsite = "rival.com"\nat = "0d"\nlinks = ["https://b{1..10}.com/"]\n'
        '[[tests.snapshots]]\nsite = "rival.com"\nat = "2d"\nadd = ["https://c{1..8}.com/"]\n'
        '[[tests.snapshots]]\nsite = "example.com"\nat = "2d"\nlost = ["https://a1.com/"]\n'
        '[[tests.eval]]\nat = "1d"\nalerts = []\n'
        '[[tests.eval]]\nat = "2d"\nalerts = [{ rule = "pace", site = "example.com" },'
        ' { rule = "lost-links", site = "example.com" }]\n'
    )
    test.write_text(body)
    res = _cli("rules", "test", str(test))
    assert res.exit_code == 0, res.output
    # With two sites, an expectation must say which.
    test.write_text(body.replace(', site = "example.com" }]', " }]"))
    res = _cli("rules", "test", str(test))
    assert res.exit_code == 2, res.output
    assert f"{test}: tests[0].eval[1].alerts[1].site: required: the file has 2 sites" in res.stderr
