"""The reading commands start fast: they never load what only other commands need.

Start-up time itself is measured by bench/cli_bench.py, not here (a timed test fails on a
busy machine); what is checked is the cause, in a fresh interpreter: which modules a
command loaded.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.store import Store
from daemon.store.migrate import MIGRATIONS_TABLE
from daemon.store.schema import MIGRATIONS
from tests.helpers import write_settings

ROOT = Path(__file__).resolve().parent.parent

# Libraries (and linkwatch's own heavy parts) no reading command needs: HTTP clients,
# Slack's SDK, the Public Suffix List, sqlite-utils (only migrations need it), the
# scheduler, the SMTP test server, rule loading, the alert engine, the doctor; the source,
# notifier and export-format plugins (and the full settings model that validates their
# blocks); the ledger and the rebuild of a deleted snapshot.
HEAVY = (
    "requests",
    "urllib3",
    "slack_sdk",
    "tldextract",
    "idna",
    "sqlite_utils",
    "dateutil",
    "apscheduler",
    "aiosmtpd",
    "http.client",
    "alerts.rules",
    "alerts.engine",
    "alerts.render",
    "daemon.service",
    "daemon.scheduler",
    "daemon.doctor",
    "daemon.settings",
    "sources.registry",
    "sources.api",
    "sources.csv_dir",
    "sources.formats",
    "alerts.notifiers",
    "daemon.store.ledger",
    "daemon.store.rebuild",
)

# Every kind of notifier and an API source configured, with their secrets in the
# environment: a reading command does not read their blocks (`check` does).
NOTIFIERS = (
    '[notifiers.console]\nkind = "console"\n'
    '[notifiers.seo-slack]\nkind = "slack"\nchannel = "#seo-alerts"\n'
    '[notifiers.mail]\nkind = "email"\nhost = "smtp.example.com"\nsender = "lw@example.com"\n'
    'recipients = ["seo@example.com"]\n'
    '[sources.d4s]\nkind = "dataforseo"\nlogin = "me@example.com"\n'
)
SITES = '[[sites]]\ndomain = "example.com"\nrole = "own"\nsources = ["exports", "d4s"]\n'
SECRETS = {
    "LINKWATCH_NOTIFIERS__seo-slack__TOKEN": "xoxb-test",
    "LINKWATCH_SOURCES__d4s__PASSWORD": "secret",
}

# Runs one command in a fresh interpreter and prints its exit code, its output and the
# modules it loaded, as one JSON object on the real stdout.
PROBE = """
import json, sys
from click.testing import CliRunner
from daemon.cli import main
result = CliRunner().invoke(main, sys.argv[1:])
answer = {"code": result.exit_code, "output": result.output, "modules": sorted(sys.modules)}
print(json.dumps(answer))
"""


def _probe(*args: str) -> tuple[int, str, set[str]]:
    env = {**os.environ, **SECRETS}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    answer = json.loads(done.stdout.splitlines()[-1])
    return answer["code"], answer["output"], set(answer["modules"])


def _loaded(modules: set[str]) -> list[str]:
    """The heavy modules (or a submodule of one) among `modules`."""
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


@pytest.fixture
def settings(tmp_path: Path) -> Path:
    """Settings with every plugin kind, and their database created (empty, up to date)."""
    path = write_settings(tmp_path, sites=SITES, notifiers=NOTIFIERS)
    (tmp_path / "exports" / "example.com").mkdir(parents=True)
    Store(tmp_path / "linkwatch.db").close()
    return path


@pytest.mark.parametrize(
    "verb",
    [
        ["status"],
        ["status", "--json"],
        ["metrics", "--site", "example.com"],
        ["links", "--site", "example.com"],
        ["links", "--site", "example.com", "--format", "json"],
    ],
    ids=" ".join,
)
def test_a_reading_command_loads_nothing_heavy(settings: Path, verb: list[str]) -> None:
    code, output, modules = _probe("-c", str(settings), *verb)
    assert code == 0, output
    assert _loaded(modules) == []
    # It did read: the settings, through pydantic, and the database.
    assert {"daemon.settings_core", "daemon.store", "pydantic"} <= modules


def test_a_reading_command_leaves_the_plugin_blocks_to_check(settings: Path) -> None:
    # A notifier block the daemon would refuse: `status` still answers, as it does with a
    # broken rule file; `check` (and every command that builds plugins) names the key.
    text = settings.read_text(encoding="utf-8")
    settings.write_text(text.replace('host = "smtp.example.com"', "port = 0"), encoding="utf-8")
    code, output, _ = _probe("-c", str(settings), "status")
    assert code == 0 and "example.com (own)" in output, output
    for verb in ("check", "poll"):
        code, output, _ = _probe("-c", str(settings), verb)
        assert code == 2, output
        assert f"{settings}: notifiers.mail.host: Field required" in output, output
        assert f"{settings}: notifiers.mail.port: Input should be greater than" in output
    # The blocks must still be tables.
    settings.write_text(text + "[notifiers]\nloose = 3\n", encoding="utf-8")
    code, output, _ = _probe("-c", str(settings), "status")
    assert code == 2 and "notifiers.loose: Input should be a valid dictionary" in output


def test_the_probe_would_see_a_heavy_import(settings: Path) -> None:
    # `check` loads the rules and the doctor's helpers: the probe notices.
    code, output, modules = _probe("-c", str(settings), "check")
    assert code == 0, output
    assert {"alerts.rules", "daemon.doctor"} <= set(_loaded(modules))


def test_a_new_database_is_created_by_a_reading_command(tmp_path: Path) -> None:
    # No database yet: `status` creates it, loading sqlite-utils for the migrations only.
    path = write_settings(tmp_path, sites=SITES, notifiers=NOTIFIERS)
    code, output, modules = _probe("-c", str(path), "status")
    assert code == 0, output
    assert "example.com (own): 0 live links" in output
    assert "sqlite_utils" in modules
    assert MIGRATIONS.up_to_date(sqlite3.connect(tmp_path / "linkwatch.db"))


def test_up_to_date_agrees_with_sqlite_utils(tmp_path: Path) -> None:
    from sqlite_utils import Database
    from sqlite_utils.migrations import Migrations

    assert Migrations.migrations_table == MIGRATIONS_TABLE
    conn = sqlite3.connect(tmp_path / "linkwatch.db")
    assert not MIGRATIONS.up_to_date(conn)  # no table at all yet
    Store(tmp_path / "linkwatch.db").close()
    assert MIGRATIONS.up_to_date(conn)
    assert MIGRATIONS.pending(Database(conn)) == []
    assert [m.name for m in MIGRATIONS.applied(Database(conn))] == MIGRATIONS.names
    # One migration not recorded: pending for both.
    conn.execute(
        f"DELETE FROM {MIGRATIONS_TABLE} WHERE rowid = (SELECT max(rowid) FROM {MIGRATIONS_TABLE})"
    )
    conn.commit()
    assert not MIGRATIONS.up_to_date(conn)
    assert [m.name for m in MIGRATIONS.pending(Database(conn))] == MIGRATIONS.names[-1:]
    conn.close()


def test_a_reading_command_does_not_stop_at_a_bad_rule_file(settings: Path) -> None:
    # Rules are not loaded to read: `status` answers while `check` names the bad file.
    (settings.parent / "rules.d" / "loss.toml").write_text('kind = "threshold"\n', "utf-8")
    code, output, _ = _probe("-c", str(settings), "status")
    assert code == 0, output
    assert "example.com (own): 0 live links" in output
    code, output, _ = _probe("-c", str(settings), "check")
    assert code == 2 and "loss.toml" in output
