"""Short write transactions: readers never wait on an ingest, a failed ingest is retried."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from daemon.cli import main
from daemon.service import Linkwatch
from daemon.settings import load_settings
from tests.helpers import write_ahrefs, write_rule, write_settings

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 3, 1, tzinfo=UTC)
RULE = (
    'kind = "threshold"\nmetric = "lost_links"\nwindow = "7d"\nop = ">="\nvalue = 1\n'
    'notify = ["console"]\n'
)


def _links(n: int, start: int = 0) -> list[tuple[str, str, str, int]]:
    return [
        (f"https://site{i % 5000}.org/page/{i}", "https://example.com/", f"a{i}", i % 90)
        for i in range(start, start + n)
    ]


def test_an_ingest_that_fails_in_the_database_is_tried_again_next_poll(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(write_settings(tmp_path))
    folder = tmp_path / "exports" / "example.com"
    folder.mkdir(parents=True)
    write_ahrefs(folder / "backlinks_2026-02-01.csv", _links(50))
    app = Linkwatch.open(settings)
    try:
        # The database refuses the snapshot (as a full disk or a lock would), yet takes the
        # error record: the file must not count as read.
        app.store.conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON snapshots WHEN NEW.status != 'error'"
            " BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
        first = app.poll_source("example.com", "exports", NOW)
        assert [(o.status, o.note) for o in first] == [("error", "database or disk is full")]
        assert "backlinks_2026-02-01.csv: database or disk is full" in caplog.text
        app.store.conn.execute("DROP TRIGGER refuse")
        second = app.poll_source("example.com", "exports", NOW)
        assert [o.status for o in second] == ["baseline"]
        assert sum(1 for _ in app.store.links("example.com", "live")) == 50
        # A file whose content is wrong is judged once, until it changes.
        (folder / "backlinks_2026-02-02.csv").write_text("no,export,here\n1,2,3\n")
        assert [o.status for o in app.poll_source("example.com", "exports", NOW)] == ["error"]
        assert app.poll_source("example.com", "exports", NOW) == []
    finally:
        app.close()


def test_a_full_disk_fails_the_ingest_clearly_and_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(write_settings(tmp_path))
    folder = tmp_path / "exports" / "example.com"
    folder.mkdir(parents=True)
    write_ahrefs(folder / "backlinks_2026-02-01.csv", _links(200))
    app = Linkwatch.open(settings)
    try:
        assert [o.status for o in app.poll_source("example.com", "exports", NOW)] == ["baseline"]
        write_ahrefs(folder / "backlinks_2026-02-08.csv", _links(5000, start=100))
        pages = app.store.conn.execute("PRAGMA page_count").fetchone()[0]
        app.store.conn.execute(f"PRAGMA max_page_count = {pages + 2}")
        failed = app.poll_source("example.com", "exports", NOW)
        assert [o.status for o in failed] == ["error"]
        assert "full" in (failed[0].note or "")
        # One line that says what to do, not a traceback.
        assert "the disk is full" in caplog.text and "Traceback" not in caplog.text
        assert app.store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert sum(1 for _ in app.store.links("example.com", "live")) == 200
        app.store.conn.execute("PRAGMA max_page_count = 1073741823")
        done = app.poll_source("example.com", "exports", NOW)
        assert [(o.status, o.new, o.missing) for o in done] == [("complete", 4900, 100)]
    finally:
        app.close()


def test_an_ingest_holds_the_write_lock_only_while_applying_its_diff(tmp_path: Path) -> None:
    settings = load_settings(write_settings(tmp_path))
    folder = tmp_path / "exports" / "example.com"
    folder.mkdir(parents=True)
    app = Linkwatch.open(settings)
    try:
        write_ahrefs(folder / "backlinks_2026-02-01.csv", _links(20_000))
        outcome = app.poll_source("example.com", "exports", NOW)[0]
        assert outcome.status == "baseline"
        total = app.store.snapshots("example.com")[0]["duration_s"]
        # Reading and staging the export happen before the write transaction.
        assert 0 < outcome.locked_s < total
    finally:
        app.close()


def test_readers_answer_while_a_300k_row_import_runs(tmp_path: Path) -> None:
    settings_path = write_settings(tmp_path)
    write_rule(tmp_path, "any-loss", RULE)
    export = write_ahrefs(tmp_path / "backlinks_2026-02-01.csv", _links(300_000))
    app = Linkwatch.open(load_settings(settings_path))
    try:
        importer = subprocess.Popen(
            [
                *(sys.executable, "-m", "daemon.cli", "-c", str(settings_path)),
                *("import", "--site", "example.com", str(export)),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        status_waits: list[float] = []
        write_waits: list[float] = []
        while importer.poll() is None:
            t0 = time.monotonic()
            app.store.status()
            status_waits.append(time.monotonic() - t0)
            app.evaluate(NOW)
            t0 = time.monotonic()
            # A short write transaction (the role changes, so it must write).
            app.store.ensure_site("example.com", ("own", "competitor")[len(write_waits) % 2])
            write_waits.append(time.monotonic() - t0)
            time.sleep(0.05)
        _, err = importer.communicate()
        assert importer.returncode == 0, err
        assert len(status_waits) >= 3  # the loop ran while the import did
        assert max(status_waits) < 1.0, status_waits
        app.store.ensure_site("example.com", "own")
        assert app.store.status()[0].live_links == 300_000
        # A writer waits for the diff only, never for the reading and staging.
        took = app.store.snapshots("example.com")[0]["duration_s"]
        assert max(write_waits) < 0.75 * took, (write_waits, took)
    finally:
        app.close()


def test_a_command_that_waits_past_the_busy_timeout_exits_1_with_one_line(
    tmp_path: Path,
) -> None:
    settings_path = write_settings(tmp_path)
    text = settings_path.read_text().replace(
        'path = "linkwatch.db"\n', 'path = "linkwatch.db"\nbusy_timeout = "1s"\n', 1
    )
    settings_path.write_text(text)
    export = write_ahrefs(tmp_path / "backlinks_2026-02-01.csv", _links(10))
    app = Linkwatch.open(load_settings(settings_path))
    app.close()
    holder = sqlite3.connect(tmp_path / "linkwatch.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        cli = [sys.executable, "-m", "daemon.cli", "-c", str(settings_path)]
        blocked = subprocess.run(
            [*cli, "import", "--site", "example.com", str(export)],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert blocked.returncode == 1, blocked.stderr
        assert "Traceback" not in blocked.stderr
        assert "the database is busy" in blocked.stderr
        assert "storage.busy_timeout" in blocked.stderr
        # Readers never wait for a writer.
        reader = subprocess.run(
            [*cli, "metrics", "--site", "example.com"],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert reader.returncode == 0, reader.stderr
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_an_export_that_cannot_be_opened_is_tried_again_once_it_can(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(write_settings(tmp_path))
    folder = tmp_path / "exports" / "example.com"
    folder.mkdir(parents=True)
    export = write_ahrefs(folder / "backlinks_2026-02-01.csv", _links(20))
    real_open = Path.open

    def refuse(self: Path, *args: Any, **kwargs: Any) -> Any:
        # Tests run as root, whom chmod does not stop: the refusal is simulated.
        if self == export:
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)

    app = Linkwatch.open(settings)
    try:
        monkeypatch.setattr(Path, "open", refuse)
        first = app.poll_source("example.com", "exports", NOW)
        assert [(o.status, "Permission denied" in (o.note or "")) for o in first] == [
            ("error", True)
        ]
        monkeypatch.setattr(Path, "open", real_open)
        # chmod changes neither size nor mtime: the file must not count as read.
        assert [o.status for o in app.poll_source("example.com", "exports", NOW)] == ["baseline"]
    finally:
        app.close()


def test_the_cli_in_process_names_a_busy_database(tmp_path: Path) -> None:
    settings_path = write_settings(tmp_path)
    settings_path.write_text(
        settings_path.read_text().replace(
            'path = "linkwatch.db"\n', 'path = "linkwatch.db"\nbusy_timeout = "1s"\n', 1
        )
    )
    export = write_ahrefs(tmp_path / "backlinks_2026-02-01.csv", _links(10))
    Linkwatch.open(load_settings(settings_path)).close()
    holder = sqlite3.connect(tmp_path / "linkwatch.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        res = CliRunner().invoke(
            main, ["-c", str(settings_path), "import", "--site", "example.com", str(export)]
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    assert res.output == (
        "linkwatch: the database is busy (database is locked): another linkwatch process held"
        " its write lock past the busy timeout (storage.busy_timeout); try again\n"
    )


def test_an_ingest_that_cannot_take_the_write_lock_leaves_no_staging_behind(
    tmp_path: Path,
) -> None:
    settings = load_settings(write_settings(tmp_path))
    folder = tmp_path / "exports" / "example.com"
    folder.mkdir(parents=True)
    write_ahrefs(folder / "backlinks_2026-02-01.csv", _links(50))
    app = Linkwatch.open(settings)
    holder = sqlite3.connect(settings.storage.path, isolation_level=None)
    try:
        app.store.conn.execute("PRAGMA busy_timeout = 0")
        holder.execute("BEGIN IMMEDIATE")
        export = app.sources["exports"].pending("example.com", set(), NOW)[0]
        result = app.sources["exports"].open("example.com", export)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            app.store.ingest("example.com", "exports", result, app.guards("exports"), NOW)
        result.close()
        temp = app.store.conn.execute("SELECT name FROM sqlite_temp_master").fetchall()
        assert temp == []
        assert not app.store.conn.in_transaction
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        app.close()
