"""Validation at the edge (issue 6): every bad setting, rule and database file is named, never
a traceback; `linkwatch check` reports every problem as `file: key: message`."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from alerts.rules.threshold import ThresholdRule
from daemon.cli import main
from daemon.store import Store, StoreError
from daemon.store.check import check_database
from daemon.templates import TemplateError, parse_template, render_template
from daemon.types import to_positive_duration
from tests.helpers import write_ahrefs, write_rule, write_settings

ROOT = Path(__file__).resolve().parent.parent
SITE = "example.com"
RULE = (
    'kind = "threshold"\nmetric = "lost_refdomains"\nwindow = "7d"\nop = ">="\nvalue = 3\n'
    'notify = ["console"]\n'
)
HEALTH = 'kind = "source_health"\nnotify = ["console"]\n'
SLACK = '[notifiers.seo-slack]\nkind = "slack"\ntoken = "xoxb-t"\nchannel = "#seo-alerts"\n'
EMAIL = (
    '[notifiers.mail]\nkind = "email"\nhost = "smtp.example.com"\nsender = "a@example.com"\n'
    'recipients = ["b@example.com"]\n'
)


def invoke(settings: Path, *args: str) -> Result:
    """Run the real CLI; a crash (anything but SystemExit) fails the test."""
    res = CliRunner().invoke(main, ["-c", str(settings), *args])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    assert "Traceback" not in res.output
    return res


def run(settings: Path, *args: str) -> tuple[int, str]:
    res = invoke(settings, *args)
    return res.exit_code, res.output


def source_setting(folder: Path, line: str) -> Path:
    """Settings whose csv_dir source `exports` also has `line`."""
    path = write_settings(folder)
    keep = "" if line.startswith("settle") else 'settle = "0s"\n'
    path.write_text(path.read_text().replace('settle = "0s"\n', f"{keep}{line}\n"))
    return path


def with_storage(folder: Path, value: str) -> Path:
    path = write_settings(folder)
    path.write_text(path.read_text().replace('path = "linkwatch.db"', f"path = {value}"))
    return path


def ready(folder: Path) -> Path:
    """Good settings, one good rule and the export folder: `check` passes."""
    path = write_settings(folder)
    write_rule(folder, "loss", RULE)
    (folder / "exports" / SITE).mkdir(parents=True)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- settings: every key bounded --------------------------------------------------------

DAEMON_CASES = [
    ('evaluate_every = "99999999999d"', "duration '99999999999d' is too long"),
    ('evaluate_every = "1000000w"', "expected a duration between 1s and 10 years"),
    ("evaluate_every = 1e300", "expected a duration of at most 10 years"),
    ("evaluate_every = nan", "expected a duration, got nan"),
    ("evaluate_every = -1", "expected a duration between 1s and 10 years"),
    ("deliver_every = -5", "expected a duration between 1s and 10 years"),
    ('deliver_every = "0s"', "expected a duration between 1s and 10 years"),
    ('deliver_every = "0.5s"', "expected a duration between 1s and 10 years"),
    ("deliver_every = true", "expected a duration like 30s, 15m, 6h, 7d or 2w, got true"),
    ("deliver_every = false", "expected a duration like 30s, 15m, 6h, 7d or 2w, got false"),
    ('delivery_ttl = "-1h"', "expected a duration like 30s"),
    ("delivery_ttl = -3600", "expected a duration between 1s and 10 years"),
    ('delivery_ttl = "1000000w"', "expected a duration between 1s and 10 years"),
]


@pytest.mark.parametrize(("line", "message"), DAEMON_CASES)
def test_daemon_durations_are_bounded(tmp_path: Path, line: str, message: str) -> None:
    settings = write_settings(tmp_path, extra=line + "\n")
    key = line.split(" =")[0]
    for verb in (["status"], ["check"]):
        code, out = run(settings, *verb)
        assert code == 2, out
        assert f"{settings}: daemon.{key}: {message}" in out


SOURCE_CASES = [
    ("interval = -5", "interval: expected a duration between 1s and 10 years"),
    ('interval = "0s"', "interval: expected a duration between 1s and 10 years"),
    ('interval = "1000000w"', "interval: expected a duration between 1s and 10 years"),
    ("interval = inf", "interval: expected a duration of at most 10 years"),
    ("confirm_after = 1e23", "confirm_after: "),
    ("confirm_after = 1001", "confirm_after: Input should be less than or equal to 1000"),
    ("confirm_after = 0", "confirm_after: Input should be greater than or equal to 1"),
    ("confirm_after = 2.5", "confirm_after: Input should be a valid integer"),
    ("suspect_below = nan", "suspect_below: Input should be a finite number"),
    ("suspect_below = inf", "suspect_below: Input should be a finite number"),
    ("suspect_below = 0", "suspect_below: Input should be greater than 0"),
    ('sample_ttl = "1000000w"', "sample_ttl: expected a duration between 0s and 10 years"),
    ('settle = "2h"', "settle: must be between 0s and 1h"),
    ('settle = "-1s"', "settle: expected a duration like 30s"),
    ("patterns = []", "patterns: List should have at least 1 item"),
    ('patterns = [""]', "patterns[0]: '' is not a file name pattern"),
    ('patterns = ["*.csv", "../*"]', "patterns[1]: '../*' is not a file name pattern"),
    ('patterns = ["**"]', "patterns[0]: '**' is not a file name pattern"),
    ('patterns = [".."]', "patterns[0]: '..' is not a file name pattern"),
    ('format = "nope"', "format: unknown export format 'nope' (known: ahrefs, semrush"),
]


@pytest.mark.parametrize(("line", "message"), SOURCE_CASES)
def test_source_settings_are_bounded(tmp_path: Path, line: str, message: str) -> None:
    settings = source_setting(tmp_path, line)
    code, out = run(settings, "check")
    assert code == 2, out
    assert f"{settings}: sources.exports.{message}" in out


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("exports/{site}", "unknown placeholder {site}; the only placeholder is {domain}"),
        ("exports/{0}", "unknown placeholder {0}; the only placeholder is {domain}"),
        ("exports/{}", "unknown placeholder {}; the only placeholder is {domain}"),
        (
            "exports/{domain.__class__.__base__}",
            "placeholder {domain.__class__.__base__}: attribute and index access are not allowed",
        ),
        ("exports/{domain:>100000000}", "conversions and format specs are not allowed"),
        ("exports/{domain!r}", "conversions and format specs are not allowed"),
        ("exports/{domain", "unbalanced braces"),
        ("x" * 5000 + "/{domain}", "longer than 4096 characters"),
    ],
)
def test_source_path_template_is_refused_through_the_cli(
    tmp_path: Path, template: str, message: str
) -> None:
    settings = write_settings(tmp_path)
    text = settings.read_text().replace('path = "exports/{domain}"', f"path = '{template}'")
    settings.write_text(text)
    for verb in ("poll", "check", "run"):
        code, out = run(settings, verb)
        assert code == 2, out
        assert f"{settings}: sources.exports.path: " in out and message in out


def test_source_path_with_a_nul_is_refused(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    text = settings.read_text().replace('"exports/{domain}"', '"exports/\\u0000/{domain}"')
    settings.write_text(text)
    code, out = run(settings, "check")
    assert code == 2
    assert f"{settings}: sources.exports.path: contains a NUL character" in out


@pytest.mark.parametrize("domain", ["../etc", "example.com/../../etc", "..", "a/b"])
def test_a_site_domain_with_a_path_is_refused(tmp_path: Path, domain: str) -> None:
    settings = write_settings(
        tmp_path, sites=f'[[sites]]\ndomain = "{domain}"\nsources = ["exports"]\n'
    )
    code, out = run(settings, "check")
    assert code == 2
    assert f"{settings}: sites[0].domain: " in out
    assert f"{domain!r} is not a hostname" in out or "at least 3 characters" in out


NOTIFIER_CASES = [
    (SLACK + "timeout = inf\n", "seo-slack.timeout: Input should be a finite number"),
    (SLACK + "timeout = nan\n", "seo-slack.timeout: Input should be a finite number"),
    (SLACK + "timeout = 1e9\n", "seo-slack.timeout: Input should be less than or equal to 60"),
    (SLACK + "timeout = 0\n", "seo-slack.timeout: Input should be greater than 0"),
    (SLACK.replace('"#seo-alerts"', '""'), "seo-slack.channel: String should have at least"),
    (EMAIL + "port = 0\n", "mail.port: Input should be greater than or equal to 1"),
    (EMAIL + "port = 70000\n", "mail.port: Input should be less than or equal to 65535"),
    (EMAIL + "timeout = -1\n", "mail.timeout: Input should be greater than 0"),
    (EMAIL + "timeout = inf\n", "mail.timeout: Input should be a finite number"),
    (EMAIL + "timeout = 61\n", "mail.timeout: Input should be less than or equal to 60"),
    (EMAIL.replace('"smtp.example.com"', '""'), "mail.host: String should have at least 1"),
]


@pytest.mark.parametrize(("block", "message"), NOTIFIER_CASES)
def test_notifier_numbers_are_bounded(tmp_path: Path, block: str, message: str) -> None:
    settings = write_settings(tmp_path, notifiers='[notifiers.console]\nkind = "console"\n' + block)
    code, out = run(settings, "check")
    assert code == 2, out
    assert f"{settings}: notifiers.{message}" in out


def test_every_settings_problem_is_reported_at_once(tmp_path: Path) -> None:
    settings = write_settings(tmp_path, extra="deliver_every = -5\n")
    text = settings.read_text().replace('settle = "0s"\n', 'settle = "0s"\nconfirm_after = 1e23\n')
    settings.write_text(text.replace('path = "linkwatch.db"', 'path = "."'))
    code, out = run(settings, "check")
    assert code == 2
    lines = out.strip().splitlines()
    assert len(lines) == 3, out
    assert lines[0].startswith(f"{settings}: daemon.deliver_every: ")
    assert lines[1].startswith(f"{settings}: sources.exports.confirm_after: ")
    assert lines[2].startswith(f"{settings}: storage.path: {tmp_path} is a folder")


# --- storage.path -----------------------------------------------------------------------


def test_storage_path_that_is_a_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    settings = with_storage(tmp_path, '"data"')
    for verb in ("status", "check", "run"):
        code, out = run(settings, verb)
        assert code == 2, out
        assert (
            f"{settings}: storage.path: {tmp_path / 'data'} is a folder; name the database" in out
        )


def test_storage_path_under_a_regular_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("not a folder")
    settings = with_storage(tmp_path, '"blocker/sub/linkwatch.db"')
    code, out = run(settings, "status")
    assert code == 2, out
    assert (
        f"{settings}: storage.path: {tmp_path / 'blocker/sub/linkwatch.db'} lies under "
        f"{tmp_path / 'blocker'}, which is a file, not a folder"
    ) in out
    assert (tmp_path / "blocker").read_text() == "not a folder"


@pytest.mark.parametrize(
    "content",
    [
        b"just some text, not a database\n" * 10,
        random.Random(6).randbytes(16384),
    ],
    ids=["text", "random-bytes"],
)
def test_a_file_that_is_not_a_database_is_left_untouched(tmp_path: Path, content: bytes) -> None:
    settings = ready(tmp_path)
    db = tmp_path / "linkwatch.db"
    db.write_bytes(content)
    for verb in ("status", "poll", "evaluate", "run"):
        code, out = run(settings, verb)
        assert code == 1, out
        assert f"linkwatch: {db}: not a linkwatch database (file is not a database)" in out
    code, out = run(settings, "check")
    assert code == 2
    assert (
        f"{settings}: storage.path: {db}: not a linkwatch database (file is not a database)" in out
    )
    assert db.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("linkwatch.db")) == [
        "linkwatch.db"
    ]


def test_a_corrupt_database_is_a_clear_message_in_a_real_process(tmp_path: Path) -> None:
    settings = ready(tmp_path)
    db = tmp_path / "linkwatch.db"
    db.write_bytes(b"SQLite? no.\n" * 100)
    proc = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "-c", str(settings), "status"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"linkwatch: {db}: not a linkwatch database" in proc.stderr


def _damaged(folder: Path, settings: Path) -> Path:
    """A real linkwatch database with some pages overwritten."""
    export = write_ahrefs(
        folder / "a.csv",
        [
            (f"https://r{i}.example.org/page/{'x' * 200}", f"https://{SITE}/", "a", i)
            for i in range(400)
        ],
    )
    code, out = run(settings, "import", "--site", SITE, "--taken-at", "2026-01-01", str(export))
    assert code == 0, out
    db = folder / "linkwatch.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    assert pages > 20
    with db.open("r+b") as f:
        f.seek(4096 * 8)
        f.write(b"\xde\xad\xbe\xef" * 4096)
    return db


def test_check_finds_a_damaged_database_without_changing_it(tmp_path: Path) -> None:
    settings = ready(tmp_path)
    db = _damaged(tmp_path, settings)
    before = digest(db)
    code, out = run(settings, "check")
    assert code == 2
    [line] = out.strip().splitlines()
    assert line.startswith(f"{settings}: storage.path: {db}: the database is damaged")
    assert digest(db) == before


def test_check_refuses_another_programs_sqlite_file(tmp_path: Path) -> None:
    settings = ready(tmp_path)
    db = tmp_path / "linkwatch.db"
    with sqlite3.connect(db) as conn:
        for name in ("recipes", "a", "b", "c", "d", "e", "f"):
            conn.execute(f"CREATE TABLE {name} (name TEXT)")
    conn.close()
    before = digest(db)
    code, out = run(settings, "check")
    assert code == 2
    assert (
        f"{settings}: storage.path: {db}: not a linkwatch database "
        "(an SQLite file with other tables: a, b, c, d, e)"
    ) in out
    assert digest(db) == before


# --- rules ------------------------------------------------------------------------------

RULE_CASES = [
    (
        "loss",
        RULE,
        'window = "7d"',
        'window = "1000000w"',
        "window: expected a duration between 1s",
    ),
    ("loss", RULE, 'window = "7d"', 'window = "99999999999d"', "window: duration '99999999999d'"),
    ("loss", RULE, 'window = "7d"', 'window = "0s"', "window: expected a duration between 1s"),
    ("loss", RULE, 'window = "7d"', "window = -5", "window: expected a duration between 1s"),
    ("loss", RULE, "value = 3", "value = inf", "value: Input should be a finite number"),
    ("loss", RULE, "value = 3", "value = nan", "value: Input should be a finite number"),
    ("loss", RULE, "value = 3", "value = 1e23", "value: Input should be less than or equal to"),
    ("health", HEALTH, "", 'max_age = "-1h"', "max_age: expected a duration like 30s"),
    ("health", HEALTH, "", "max_age = -60", "max_age: expected a duration between 1s"),
    ("health", HEALTH, "", 'max_age = "0s"', "max_age: expected a duration between 1s"),
    ("health", HEALTH, "", 'max_age = "1000000w"', "max_age: expected a duration between 1s"),
]


@pytest.mark.parametrize(("name", "body", "old", "new", "message"), RULE_CASES)
def test_rule_numbers_are_bounded(
    tmp_path: Path, name: str, body: str, old: str, new: str, message: str
) -> None:
    settings = ready(tmp_path)
    (tmp_path / "rules.d" / "loss.toml").unlink()
    rule = write_rule(tmp_path, name, body.replace(old, new) if old else body + new + "\n")
    for verb in (["rules", "check"], ["check"]):
        code, out = run(settings, *verb)
        assert code == 2, out
        assert f"{rule}: {message}" in out
    # A command that loads the rules refuses them too (`status` reads without them).
    code, out = run(settings, "evaluate")
    assert code == 2 and f"{rule}: {message}" in out


SUMMARY_CASES = [
    (
        "{site.__class__.__base__.__subclasses__}",
        "placeholder {site.__class__.__base__.__subclasses__}: attribute and index access are "
        "not allowed",
    ),
    ("{site[0]}", "placeholder {site[0]}: attribute and index access are not allowed"),
    ("{site:>100000000}", "cannot be rendered: {site:>100000000}: width 100000000 is over 200"),
    ("{site:.1000}", "cannot be rendered: {site:.1000}: precision 1000 is over 200"),
    ("{site:x<30}", "cannot be rendered: {site:x<30}: format spec 'x<30' is not allowed"),
    ("{value:.0f}", "cannot be rendered: {value:.0f}: format spec '.0f' is not allowed"),
    ("{site:{value}}", "cannot be rendered: {site:{value}}: format spec '{value}'"),
    ("{0}", "unknown placeholder {0}; use {metric}, {op}, {rule}"),
    ("{}", "unknown placeholder {}; use {metric}"),
    ("{sight}", "unknown placeholder {sight}; use {metric}"),
    ("{site!r}", "placeholder {site!r}: conversions (!r, !s, !a) are not allowed"),
    ("{site!s}", "placeholder {site!s}: conversions (!r, !s, !a) are not allowed"),
    ("{site", "unbalanced braces (expected '}' before end of string)"),
    ("x" * 1001, "longer than 1000 characters"),
]


@pytest.mark.parametrize(("summary", "message"), SUMMARY_CASES)
def test_summary_templates_allow_only_plain_named_fields(
    tmp_path: Path, summary: str, message: str
) -> None:
    settings = ready(tmp_path)
    rule = write_rule(tmp_path, "loss", RULE + f"summary = '{summary}'\n")
    for verb in (["rules", "check"], ["check"]):
        code, out = run(settings, *verb)
        assert code == 2, out
        assert f"{rule}: summary: {message}" in out


def test_every_rule_problem_is_reported_at_once(tmp_path: Path) -> None:
    settings = ready(tmp_path)
    write_rule(tmp_path, "a", RULE.replace("value = 3", "value = nan"))
    write_rule(tmp_path, "b", RULE + "summary = '{0}'\n")
    write_rule(tmp_path, "c", HEALTH + "max_age = -1\n")
    code, out = run(settings, "rules", "check")
    assert code == 2
    assert [line.split(": ")[1] for line in out.strip().splitlines()] == [
        "value",
        "summary",
        "max_age",
    ]


def test_allowed_specs_render_without_str_format() -> None:
    rule = ThresholdRule.from_file(
        "loss", {**_rule_dict(), "summary": "[{site:>14}] [{value:^7}] [{rule:.2}] {{x}}"}
    )
    assert rule.summary(SITE, 5) == "[   example.com] [   5   ] [lo] {x}"
    assert rule.summary(SITE, None) == "[   example.com] [no data] [lo] {x}"
    # The renderer reads only the names it is given, as text: no attribute, no format call.
    pieces = parse_template("{a:>3}{b}", {"a", "b"}, hint="")
    assert render_template(pieces, {"a": "x", "b": "{a.__class__}"}) == "  x{a.__class__}"
    with pytest.raises(TemplateError, match="width 201 is over 200"):
        parse_template("{a:201}", {"a"}, hint="")
    assert parse_template("{a:200}", {"a"}, hint="")[0].spec == "200"


def _rule_dict() -> dict[str, object]:
    return {
        "kind": "threshold",
        "metric": "lost_links",
        "window": "7d",
        "op": ">",
        "value": 1,
        "notify": ["console"],
    }


# --- linkwatch check --------------------------------------------------------------------


def test_check_passes_a_good_setup_and_writes_nothing(tmp_path: Path) -> None:
    settings = ready(tmp_path)
    code, out = run(settings, "check")
    assert code == 0, out
    db = tmp_path / "linkwatch.db"
    assert out.strip() == (
        f"{settings}: OK: 1 sites, 1 sources, 1 notifiers, 1 rules; "
        f"{db} does not exist yet; it will be created"
    )
    assert not db.exists()
    # An existing database is checked read-only: the file is the same afterwards.
    assert run(settings, "status")[0] == 0
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = digest(db)
    code, out = run(settings, "check")
    assert code == 0 and f"{db} passed its integrity check" in out, out
    assert digest(db) == before


def test_check_does_not_set_up_an_empty_database_file(tmp_path: Path) -> None:
    settings = ready(tmp_path)
    db = tmp_path / "linkwatch.db"
    db.touch()
    code, out = run(settings, "check")
    assert code == 0 and f"{db} is empty; linkwatch will set it up" in out, out
    assert db.stat().st_size == 0


def test_check_names_each_missing_or_wrong_export_folder(tmp_path: Path) -> None:
    settings = write_settings(
        tmp_path,
        sites='[[sites]]\ndomain = "example.com"\nsources = ["exports"]\n'
        '[[sites]]\ndomain = "rival.example"\nrole = "competitor"\nsources = ["exports"]\n',
    )
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "rival.example").write_text("a file, not a folder")
    code, out = run(settings, "check")
    assert code == 2
    assert out.strip().splitlines() == [
        f"{settings}: sources.exports.path: folder {tmp_path / 'exports' / SITE} does not exist "
        f"for site {SITE}",
        f"{settings}: sources.exports.path: {tmp_path / 'exports' / 'rival.example'} is not a "
        "folder (site rival.example)",
    ]


def test_check_names_an_unreadable_export_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = ready(tmp_path)
    folder = tmp_path / "exports" / SITE
    real_access = os.access

    def access(path: Any, mode: int) -> bool:
        # Root (as tests and CI run) reads every folder: refuse as the mode bits say.
        if Path(path) == folder:
            return bool(folder.stat().st_mode & 0o500 == 0o500)
        return real_access(path, mode)

    monkeypatch.setattr("daemon.doctor.os.access", access)
    folder.chmod(0)
    try:
        code, out = run(settings, "check")
    finally:
        folder.chmod(0o755)
    assert code == 2 and f"folder {folder} is not readable by this user" in out


def test_check_reports_settings_rules_database_and_folders_together(tmp_path: Path) -> None:
    settings = write_settings(tmp_path, notifiers=EMAIL + 'ca_file = "missing-ca.pem"\n')
    write_rule(tmp_path, "loss", RULE.replace('["console"]', '["mail"]').replace("7d", "0s"))
    (tmp_path / "linkwatch.db").write_text("hello")
    code, out = run(settings, "check")
    assert code == 2
    assert out.strip().splitlines() == [
        f"{tmp_path / 'rules.d' / 'loss.toml'}: window: expected a duration between 1s and "
        "10 years",
        f"{settings}: storage.path: {tmp_path / 'linkwatch.db'}: not a linkwatch database "
        "(file is not a database)",
        f"{settings}: sources.exports.path: folder {tmp_path / 'exports' / SITE} does not exist "
        f"for site {SITE}",
        f"{settings}: notifiers.mail.ca_file: {tmp_path / 'missing-ca.pem'} is not a readable file",
    ]


def test_check_names_a_missing_rules_folder(tmp_path: Path) -> None:
    settings = ready(tmp_path)
    shutil.rmtree(tmp_path / "rules.d")
    code, out = run(settings, "check")
    assert code == 2
    assert f"{settings}: daemon.rules_dir: {tmp_path / 'rules.d'} does not exist" in out


def test_check_and_rules_check_do_not_need_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    no_token = SLACK.replace('token = "xoxb-t"\n', "")
    settings = ready(tmp_path)
    settings.write_text(settings.read_text() + no_token)
    write_rule(tmp_path, "loss", RULE.replace('["console"]', '["seo-slack"]'))
    code, out = run(settings, "check")
    assert code == 0, out
    assert (
        f"{settings}: notifiers.seo-slack.token: not set here; the daemon must get it from its "
        "environment or systemd credentials"
    ) in out
    assert run(settings, "rules", "check")[0] == 0
    # The daemon itself still needs it.
    code, out = run(settings, "poll")
    assert code == 2 and f"{settings}: notifiers.seo-slack.token: Field required" in out
    monkeypatch.setenv("LINKWATCH_NOTIFIERS__seo-slack__TOKEN", "xoxb-from-env")
    code, out = run(settings, "check")
    assert code == 0 and "token: not set here" not in out, out


def test_check_passes_the_shipped_example(tmp_path: Path) -> None:
    for name in ("settings.example.toml", "rules.example", "examples"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tmp_path / name)
        else:
            shutil.copy(src, tmp_path / name)
    code, out = run(tmp_path / "settings.example.toml", "check")
    assert code == 0, out
    assert "1 sites, 1 sources, 1 notifiers, 7 rules" in out


def test_braces_in_the_settings_folder_are_not_placeholders(tmp_path: Path) -> None:
    folder = tmp_path / "conf{x}"
    folder.mkdir()
    settings = ready(folder)
    code, out = run(settings, "check")
    assert code == 0, out
    code, out = run(settings, "poll")
    assert code == 0, out


def test_the_configuration_page_lists_every_key() -> None:
    from alerts.notifiers.console import ConsoleSettings
    from alerts.notifiers.email import EmailSettings
    from alerts.notifiers.slack import SlackSettings
    from alerts.rules.source_health import SourceHealthRuleConfig
    from alerts.rules.threshold import MAX_VALUE, ThresholdRuleConfig
    from daemon.settings import DaemonSettings, SiteSettings, StorageSettings
    from daemon.templates import MAX_TEMPLATE_LENGTH, MAX_WIDTH
    from sources.csv_dir import MAX_CONFIRM_AFTER, MAX_PATTERNS, CsvDirSettings

    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    models = (
        StorageSettings,
        DaemonSettings,
        SiteSettings,
        CsvDirSettings,
        SlackSettings,
        EmailSettings,
        ConsoleSettings,
        ThresholdRuleConfig,
        SourceHealthRuleConfig,
    )
    from sources.registry import SOURCE_KINDS

    models += tuple(cls.Settings for cls in SOURCE_KINDS.values())
    missing = [
        f"{model.__name__}.{key}"
        for model in models
        for key, field in model.model_fields.items()
        if f"| `{field.alias or key}` |" not in page
    ]
    kinds = [kind for kind in SOURCE_KINDS if f'`kind = "{kind}"`' not in page]
    assert kinds == []
    assert missing == []
    assert (
        f"at most\n  **{MAX_WIDTH}**" in page and f"over {MAX_TEMPLATE_LENGTH} characters" in page
    )
    dash = "\N{EN DASH}"
    assert f"1 {dash} {MAX_CONFIRM_AFTER}" in page
    assert f"1 {dash} {MAX_PATTERNS} file name patterns" in page
    assert MAX_VALUE == 1e12 and "between \N{MINUS SIGN}10¹² and 10¹²" in page


# --- found by review: inputs that still crashed --------------------------------------


def test_toml_nested_too_deeply_is_refused_not_a_traceback(tmp_path: Path) -> None:
    settings = ready(tmp_path)
    deep = "x = " + "[" * 5000 + "]" * 5000 + "\n"
    write_rule(tmp_path, "deep", deep)
    code, out = run(settings, "rules", "check")
    assert code == 2 and "deep.toml: not valid TOML" in out
    settings.write_text(deep)
    code, out = run(settings, "check")
    assert code == 2 and f"{settings}: not valid TOML" in out


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"notifiers__console__token": b"\xff\xfe"}, "credential file cannot be read"),
        (
            {"notifiers__console": b"x", "notifiers__console__kind": b"y"},
            "'console' is both a value and a group",
        ),
    ],
)
def test_bad_credential_files_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes], message: str
) -> None:
    settings = ready(tmp_path)
    creds = tmp_path / "creds"
    creds.mkdir()
    for name, body in files.items():
        (creds / name).write_bytes(body)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    code, out = run(settings, "check")
    assert code == 2 and message in out and str(creds) in out


def test_a_source_path_too_long_once_resolved_is_refused(tmp_path: Path) -> None:
    settings = ready(tmp_path)
    text = settings.read_text().replace("exports/{domain}", "x" * 4080 + "/{domain}")
    settings.write_text(text)
    code, out = run(settings, "check")
    assert code == 2 and "sources.exports.path: longer than 4096 characters" in out


def _real_database(path: Path, links: int) -> Path:
    settings = write_settings(path.parent)
    folder = path.parent / "exports" / SITE
    folder.mkdir(parents=True, exist_ok=True)
    export = write_ahrefs(
        path.parent / "backlinks_2026-02-01.csv",
        [(f"https://s{i}.org/p", f"https://{SITE}/", "a", 1) for i in range(links)],
    )
    assert invoke(settings, "import", "--site", SITE, str(export)).exit_code == 0
    return path


def test_an_integrity_check_over_its_budget_is_skipped_and_says_so(tmp_path: Path) -> None:
    db = _real_database(tmp_path / "linkwatch.db", 3000)
    within = check_database(db)
    assert (within.problem, within.note) == (None, f"{db} passed its integrity check")
    over = check_database(db, budget_s=0)
    assert over.problem is None
    assert over.note == f"{db}: integrity check skipped: it took over 0 s"


def test_a_database_whose_schema_page_is_damaged_is_named_damaged(tmp_path: Path) -> None:
    db = _real_database(tmp_path / "linkwatch.db", 10)
    with db.open("r+b") as f:
        f.seek(100)
        f.write(b"\xff" * 3900)  # the rest of page 1: sqlite_master's b-tree
    before = digest(db)
    found = check_database(db)
    assert found.problem is not None and found.problem.startswith(f"{db}: the database is damaged")
    with pytest.raises(StoreError, match="the database is damaged"):
        Store(db)
    assert digest(db) == before


def test_a_store_that_cannot_make_its_folder_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(StoreError, match=r"a-file/linkwatch.db: cannot open the database: "):
        Store(tmp_path / "a-file" / "linkwatch.db")


def test_durations_reach_exactly_ten_years_and_templates_exactly_their_length() -> None:
    assert to_positive_duration("3660d") == timedelta(days=3660)
    with pytest.raises(ValueError, match="between 1s and 10 years"):
        to_positive_duration("3661d")
    assert to_positive_duration("1s") == timedelta(seconds=1)
    longest = "{site}" + "x" * 994
    assert len(longest) == 1000
    assert render_template(parse_template(longest, {"site"}, hint=""), {"site": "a"}) == (
        "a" + "x" * 994
    )
    with pytest.raises(TemplateError, match="longer than 1000 characters"):
        parse_template(longest + "x", {"site"}, hint="")
