"""Faults on the real process: kill -9 in the middle of an ingest loses and invents nothing."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import cli_command, write_ahrefs, write_settings

ROOT = Path(__file__).resolve().parent.parent


def _links(n: int, start: int = 0) -> list[tuple[str, str, str, int]]:
    return [
        (f"https://site{i % 3000}.org/page/{i}", "https://example.com/", f"a{i}", i % 90)
        for i in range(start, start + n)
    ]


def _import(settings: Path, export: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cli_command(settings, "import", "--site", "example.com", str(export)),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _state(db: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        snaps = conn.execute("SELECT id, status, seen FROM snapshots ORDER BY id").fetchall()
        links = conn.execute(
            "SELECT state, count(*) FROM links GROUP BY state ORDER BY state"
        ).fetchall()
        return snaps, links
    finally:
        conn.close()


def _in_write_transaction(db: Path) -> bool:
    """True while another process holds the database's write lock."""
    conn = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return True
    finally:
        conn.close()


@pytest.mark.parametrize("phase", ["reading", "writing"])
def test_kill_9_during_an_ingest_leaves_the_last_state_and_a_retry_completes(
    tmp_path: Path, phase: str
) -> None:
    settings = write_settings(tmp_path)
    db = tmp_path / "linkwatch.db"
    first = write_ahrefs(tmp_path / "backlinks_2026-02-01.csv", _links(2000))
    done = _import(settings, first)
    assert done.wait(timeout=60) == 0, done.stderr.read() if done.stderr else ""
    before = _state(db)
    # The second export drops 1,000 links and adds 150,000: big enough to catch mid-way.
    second = write_ahrefs(tmp_path / "backlinks_2026-02-08.csv", _links(151_000, start=1000))
    proc = _import(settings, second)
    deadline = time.monotonic() + 60
    if phase == "reading":
        time.sleep(1.0)
    else:
        while not _in_write_transaction(db):
            assert proc.poll() is None, "the import ended before it was caught writing"
            assert time.monotonic() < deadline
            time.sleep(0.005)
    assert proc.poll() is None, "the import ended before the kill"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert _state(db) == before
    again = _import(settings, second)
    assert again.wait(timeout=120) == 0, again.stderr.read() if again.stderr else ""
    snaps, links = _state(db)
    assert [s[1:] for s in snaps] == [("baseline", 2000), ("complete", 151_000)]
    assert dict(links) == {"live": 151_000, "missing": 1000}
