"""`linkwatch doctor` (issue 6, item 7): live checks against real servers, files and SQLite,
one `ok`/`warn`/`FAIL` line each, exit 1 on any FAIL and 2 only for unreadable settings."""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from daemon.cli import main
from daemon.timefmt import to_db
from tests.conftest import SLACK_TOKEN, SlackStandIn, SmtpServer
from tests.helpers import write_ahrefs, write_rule, write_settings

SITE = "example.com"
CHANNEL = "C0SEOALERTS"
RULE = (
    'kind = "threshold"\nmetric = "lost_refdomains"\nwindow = "7d"\nop = ">="\nvalue = 3\n'
    'notify = ["console"]\n'
)
SCOPES = "chat:write,channels:history,channels:read"


def slack_block(base_url: str, token: str | None = SLACK_TOKEN, channel: str = CHANNEL) -> str:
    secret = f'token = "{token}"\n' if token is not None else ""
    return (
        f'[notifiers.seo-slack]\nkind = "slack"\n{secret}channel = "{channel}"\n'
        f'base_url = "{base_url}"\ntimeout = 2\n'
    )


def email_block(host: str, port: int, extra: str = 'security = "none"\n') -> str:
    return (
        f'[notifiers.mail]\nkind = "email"\nhost = "{host}"\nport = {port}\n{extra}'
        'sender = "linkwatch@example.com"\nrecipients = ["seo@example.com"]\ntimeout = 2\n'
    )


def setup(folder: Path, notifiers: str = "", *, exports: bool = True) -> Path:
    """Settings, one rule, the export folder with one export, and notifiers besides console."""
    settings = write_settings(
        folder, notifiers='[notifiers.console]\nkind = "console"\n' + notifiers
    )
    write_rule(folder, "loss", RULE)
    if exports:
        (folder / "exports" / SITE).mkdir(parents=True)
        write_ahrefs(
            folder / "exports" / SITE / "2026-01-05.csv",
            [(f"https://r{i}.example.org/", f"https://{SITE}/", "a", 10) for i in range(5)],
        )
    return settings


def doctor(settings: Path) -> tuple[int, list[str]]:
    """Run the real CLI; a crash (anything but SystemExit) fails the test."""
    res = CliRunner().invoke(main, ["-c", str(settings), "doctor"])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    assert "Traceback" not in res.output
    return res.exit_code, res.output.strip().splitlines()


def poll(settings: Path) -> Path:
    """Store a snapshot of the export through the real daemon code; the database path."""
    res = CliRunner().invoke(main, ["-c", str(settings), "poll"])
    assert res.exit_code == 0, res.output
    return settings.parent / "linkwatch.db"


def line(lines: list[str], start: str) -> str:
    [found] = [x for x in lines if x.startswith(start)]
    return found


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def slack_api(slack: SlackStandIn, httpserver: HTTPServer) -> SlackStandIn:
    """The conftest Slack stand-in plus auth.test and conversations.info, token-checked."""

    def auth_test(request: Request) -> Response:
        if request.headers.get("Authorization") != f"Bearer {SLACK_TOKEN}":
            return _json({"ok": False, "error": "invalid_auth"})
        body = {"ok": True, "user": "linkwatch", "team": "Example", "user_id": "U0BOT"}
        return _json(body, {"x-oauth-scopes": SCOPES})

    def conversations_info(request: Request) -> Response:
        if request.headers.get("Authorization") != f"Bearer {SLACK_TOKEN}":
            return _json({"ok": False, "error": "invalid_auth"})
        channel = request.form.get("channel")
        if channel != CHANNEL:
            return _json({"ok": False, "error": "channel_not_found"})
        info = {"id": CHANNEL, "name": "seo-alerts", "is_member": True, "is_archived": False}
        return _json({"ok": True, "channel": info})

    httpserver.expect_request("/api/auth.test", method="POST").respond_with_handler(auth_test)
    httpserver.expect_request("/api/conversations.info", method="POST").respond_with_handler(
        conversations_info
    )
    return slack


def _json(body: dict[str, object], headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), content_type="application/json", headers=headers)


def test_a_healthy_setup_is_all_ok_and_sends_nothing(
    tmp_path: Path, slack_api: SlackStandIn, smtp: SmtpServer
) -> None:
    settings = setup(tmp_path, slack_block(slack_api.base_url) + email_block(smtp.host, smtp.port))
    db = poll(settings)
    code, lines = doctor(settings)
    assert code == 0, lines
    assert not [x for x in lines if x.startswith("FAIL")], lines
    assert line(lines, "ok   settings:").endswith("1 sites, 1 sources, 3 notifiers")
    assert line(lines, "ok   rules:") == f"ok   rules: 1 rules load from {tmp_path / 'rules.d'}"
    assert line(lines, "ok   secrets:") == "ok   secrets: all 1 notifier and source secrets are set"
    assert f"ok   database {db}: PRAGMA quick_check passed" in lines
    assert f"ok   database {db}: schema up to date" in "\n".join(lines)
    slack_lines = [x for x in lines if "notifier seo-slack (slack)" in x]
    assert slack_lines == [
        "ok   notifier seo-slack (slack): auth.test: the token works (linkwatch in workspace "
        "Example)",
        f"ok   notifier seo-slack (slack): channel {CHANNEL} (#seo-alerts) exists and the bot "
        "can post there",
    ]
    assert line(lines, "ok   notifier mail (email):") == (
        f"ok   notifier mail (email): connected to {smtp.host}:{smtp.port}; nothing sent"
    )
    assert line(lines, "ok   notifier console (console):")
    source = line(lines, f"ok   source exports for {SITE}:")
    assert "1 export files matching *.csv, *.tsv, *.txt, *.zip, newest 2026-" in source
    clock = line(lines, "ok   clock: now ")
    assert "Z (local zone " in clock and "newest snapshot stored" in clock
    assert lines[-1].endswith(" warn, 0 FAIL")
    # Harmless calls only: nothing was posted or mailed.
    assert slack_api.messages == [] and smtp.messages == []


def test_free_space_is_reported_with_the_database_size(tmp_path: Path) -> None:
    settings = setup(tmp_path)
    db = poll(settings)
    code, lines = doctor(settings)
    assert code == 0, lines
    [disk] = [x for x in lines if "free on its filesystem" in x]
    assert disk.startswith(("ok   ", "warn ")) and f"database {db}: " in disk
    assert " with its WAL; " in disk


def test_slack_refusing_the_token_is_a_fail_naming_the_notifier(
    tmp_path: Path, slack_api: SlackStandIn
) -> None:
    settings = setup(tmp_path, slack_block(slack_api.base_url, token="xoxb-revoked"))
    code, lines = doctor(settings)
    assert code == 1
    fail = line(lines, "FAIL notifier seo-slack (slack):")
    assert fail.startswith(
        "FAIL notifier seo-slack (slack): auth.test answered invalid_auth; fix: "
    )
    assert "LINKWATCH_NOTIFIERS__seo_slack__TOKEN" in fail
    assert lines[-1].endswith(" 1 FAIL")


def test_slack_channel_problems_are_named(tmp_path: Path, slack_api: SlackStandIn) -> None:
    settings = setup(tmp_path, slack_block(slack_api.base_url, channel="C0ELSEWHERE"))
    code, lines = doctor(settings)
    assert code == 1
    assert (
        "FAIL notifier seo-slack (slack): channel C0ELSEWHERE: Slack shows the bot no such channel"
    ) in "\n".join(lines)


def test_slack_unreachable_is_a_fail_not_a_traceback(tmp_path: Path, refused_port: int) -> None:
    settings = setup(tmp_path, slack_block(f"http://127.0.0.1:{refused_port}/api/"))
    code, lines = doctor(settings)
    assert code == 1
    fail = line(lines, "FAIL notifier seo-slack (slack):")
    assert "auth.test at http://127.0.0.1:" in fail and "Connection refused" in fail


def test_smtp_server_not_listening_is_a_fail(tmp_path: Path, refused_port: int) -> None:
    port = refused_port
    settings = setup(tmp_path, email_block("127.0.0.1", port))
    code, lines = doctor(settings)
    assert code == 1
    fail = line(lines, "FAIL notifier mail (email):")
    assert f"cannot talk to 127.0.0.1:{port}: " in fail and "Connection refused" in fail
    assert "fix: check host and port" in fail


def test_starttls_is_verified_with_the_ca_file(tmp_path: Path, tls_smtp: SmtpServer) -> None:
    assert tls_smtp.ca_file is not None
    trusted = email_block(
        tls_smtp.host, tls_smtp.port, f'security = "starttls"\nca_file = "{tls_smtp.ca_file}"\n'
    )
    settings = setup(tmp_path, trusted)
    code, lines = doctor(settings)
    assert code == 0, lines
    assert line(lines, "ok   notifier mail (email):").endswith(", STARTTLS; nothing sent")
    # Without the test CA the certificate is not trusted: said so, with the fix.
    (tmp_path / "untrusted").mkdir()
    settings = setup(tmp_path / "untrusted", email_block(tls_smtp.host, tls_smtp.port, ""))
    code, lines = doctor(settings)
    assert code == 1
    fail = line(lines, "FAIL notifier mail (email):")
    assert "the server's certificate is not trusted" in fail and "ca_file" in fail
    assert tls_smtp.messages == []


def test_a_plain_server_without_starttls_is_a_fail(tmp_path: Path, smtp: SmtpServer) -> None:
    settings = setup(tmp_path, email_block(smtp.host, smtp.port, ""))
    code, lines = doctor(settings)
    assert code == 1
    assert line(lines, "FAIL notifier mail (email):").startswith(
        f"FAIL notifier mail (email): {smtp.host}:{smtp.port} does not offer STARTTLS; fix: "
    )


def test_a_missing_secret_names_the_variable_and_the_credential(
    tmp_path: Path, slack_api: SlackStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    settings = setup(tmp_path, slack_block(slack_api.base_url, token=None))
    code, lines = doctor(settings)
    assert code == 1
    assert line(lines, "FAIL notifier seo-slack:") == (
        "FAIL notifier seo-slack: secret token is not set (the daemon will not start); fix: set "
        "LINKWATCH_NOTIFIERS__seo_slack__TOKEN in the daemon's environment, or a systemd "
        "credential file notifiers__seo-slack__token (LoadCredential=), or token in "
        "[notifiers.seo-slack]"
    )
    assert "warn notifier seo-slack (slack): not tried: token not set (see above)" in lines
    assert slack_api.calls == 0
    # The same name as a systemd credential file supplies it, and the token is tried.
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "notifiers__seo-slack__token").write_text(SLACK_TOKEN + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    code, lines = doctor(settings)
    assert code == 0, lines
    assert line(lines, "ok   notifier seo-slack (slack): auth.test: the token works")


@pytest.mark.parametrize("damage", ["random bytes", "overwritten pages"])
def test_a_corrupt_database_is_a_fail_and_left_unchanged(tmp_path: Path, damage: str) -> None:
    settings = setup(tmp_path)
    db = tmp_path / "linkwatch.db"
    if damage == "random bytes":
        db.write_bytes(random.Random(7).randbytes(64 * 1024))
    else:
        # Enough rows for pages beyond the schema: the file opens, quick_check finds it.
        write_ahrefs(
            tmp_path / "exports" / SITE / "2026-01-06.csv",
            [
                (f"https://r{i}.example.org/{'x' * 200}", f"https://{SITE}/", "a", 1)
                for i in range(400)
            ],
        )
        poll(settings)
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        with db.open("r+b") as f:
            f.seek(4096 * 8)
            f.write(b"\xde\xad\xbe\xef" * 4096)
    before = digest(db)
    code, lines = doctor(settings)
    assert code == 1
    fail = line(lines, f"FAIL database {db}:")
    expected = "not a linkwatch" if damage == "random bytes" else "the database is damaged:"
    assert fail.startswith(f"FAIL database {db}: {expected}"), fail
    assert "fix: restore the database from a backup" in fail
    assert line(lines, "warn clock:").endswith("not compared: the database cannot be read")
    assert digest(db) == before, fail


def test_a_snapshot_stored_in_the_future_is_a_clock_fail(tmp_path: Path) -> None:
    settings = setup(tmp_path)
    db = poll(settings)
    ahead = datetime.now(UTC) + timedelta(days=1)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE snapshots SET created_at = ?", (to_db(ahead),))
    conn.close()
    code, lines = doctor(settings)
    assert code == 1
    fail = line(lines, "FAIL clock:")
    assert fail.startswith(
        "FAIL clock: the clock went back or was ahead: the newest snapshot was stored at "
        f"{ahead.isoformat(timespec='seconds').replace('+00:00', 'Z')}, 23h after now "
    )
    assert "timedatectl set-ntp true" in fail


def test_a_missing_export_folder_is_a_fail_with_the_command_to_fix_it(tmp_path: Path) -> None:
    settings = setup(tmp_path, exports=False)
    folder = tmp_path / "exports" / SITE
    code, lines = doctor(settings)
    assert code == 1
    assert line(lines, f"FAIL source exports for {SITE}:") == (
        f"FAIL source exports for {SITE}: folder {folder} does not exist for site {SITE}; "
        f"fix: create it (mkdir -p {folder}) and have the export job write there, or correct "
        "the source's path"
    )
    # An empty folder only warns: the export job may not have run yet.
    folder.mkdir(parents=True)
    code, lines = doctor(settings)
    assert code == 0, lines
    assert line(lines, f"warn source exports for {SITE}:").startswith(
        f"warn source exports for {SITE}: {folder}: no export files matching *.csv, *.tsv, *.txt"
    )


def test_a_missing_database_and_pending_upgrades_warn(tmp_path: Path) -> None:
    settings = setup(tmp_path)
    db = tmp_path / "linkwatch.db"
    code, lines = doctor(settings)
    assert code == 0, lines
    assert line(lines, f"warn database {db}: does not exist yet")
    assert not db.exists()
    poll(settings)
    with sqlite3.connect(db) as conn:
        conn.execute(
            "DELETE FROM _sqlite_migrations"
            " WHERE rowid = (SELECT max(rowid) FROM _sqlite_migrations)"
        )
    conn.close()
    code, lines = doctor(settings)
    assert code == 0, lines
    assert line(lines, f"warn database {db}: 1 schema upgrade(s) not applied yet")
    checked = CliRunner().invoke(main, ["-c", str(settings), "check"])
    assert checked.exit_code == 0, checked.output
    assert f"{db} passed its integrity check; 1 schema upgrade(s) will be applied at start" in (
        checked.output
    )


def test_rule_errors_fail_and_unreadable_settings_exit_2(tmp_path: Path) -> None:
    settings = setup(tmp_path)
    rule = write_rule(tmp_path, "loss", RULE.replace('"7d"', '"0s"'))
    code, lines = doctor(settings)
    assert code == 1
    assert line(lines, "FAIL rules:").startswith(f"FAIL rules: {rule}: window: ")
    settings.write_text("[storage\n")
    code, lines = doctor(settings)
    assert code == 2
    assert lines[0].startswith(f"{settings}: not valid TOML")
