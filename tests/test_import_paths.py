"""`import` of paths that are not plain export files: refused at once, named printably."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from daemon.cli import main
from daemon.service import Linkwatch
from daemon.settings import load_settings
from tests.helpers import cli_command, write_ahrefs, write_settings

ROOT = Path(__file__).resolve().parent.parent
LINKS = [
    (f"https://site{i}.example.org/p{i}", "https://example.com/", f"a{i}", i) for i in range(5)
]


def _import(settings: Path, *files: str | bytes) -> subprocess.CompletedProcess[bytes]:
    """`linkwatch import` in a process of its own: a hang fails the test, never the run."""
    return subprocess.run(
        cli_command(settings, "import", "--site", "example.com", *files),
        cwd=ROOT,
        capture_output=True,
        timeout=20,
    )


def _stored(settings: Path) -> list[tuple[object, object]]:
    """(live links, last snapshot time) of each site."""
    res = CliRunner().invoke(main, ["-c", str(settings), "status", "--json"])
    assert res.exit_code == 0, res.output
    return [(row["live_links"], row["last_snapshot_at"]) for row in json.loads(res.output)]


@pytest.mark.parametrize("kind", ["character device", "named pipe (FIFO)", "socket"])
def test_a_path_that_is_not_a_regular_file_is_refused_at_once(tmp_path: Path, kind: str) -> None:
    settings = write_settings(tmp_path)
    good = write_ahrefs(tmp_path / "good.csv", LINKS)
    if kind == "character device":
        odd = "/dev/zero"  # never ends: read, it would hang the import forever
    elif kind == "socket":
        odd = str(tmp_path / "s.csv")
        server = socket.socket(socket.AF_UNIX)
        server.bind(odd)
    else:
        odd = str(tmp_path / "pipe.csv")
        os.mkfifo(odd)  # opened, it would block until a writer came
    run = _import(settings, str(good), odd)
    assert b"Traceback" not in run.stderr
    assert run.returncode == 2, run.stderr
    assert f"linkwatch: {odd}: a {kind}, not an export file".encode() in run.stderr
    assert b"nothing was stored" in run.stderr
    assert _stored(settings) == [(0, None)]


def test_a_file_name_that_is_not_utf8_is_imported_and_named_printably(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    good = write_ahrefs(tmp_path / "good.csv", LINKS)
    odd = os.path.join(os.fsencode(tmp_path), b"\xff_2026-01-02.csv")
    os.rename(good, odd)
    run = _import(settings, odd)
    assert b"Traceback" not in run.stderr and b"surrogates" not in run.stderr
    assert run.returncode == 0, run.stderr
    out = run.stdout.decode("utf-8")
    assert "\\xff_2026-01-02.csv: filed under series exports/ahrefs: 5 rows read" in out
    assert _stored(settings) == [(5, "2026-01-02T00:00:00+00:00")]


def test_a_newline_in_a_file_name_does_not_split_a_line(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    odd = write_ahrefs(tmp_path / "new\nline_2026-01-02.csv", LINKS)
    run = _import(settings, str(odd))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.decode("utf-8").splitlines()
    assert len(lines) == 3
    assert "exports/ahrefs: new\\nline_2026-01-02.csv taken 2026-01-02" in lines[0]
    assert lines[2].startswith("  new\\nline_2026-01-02.csv: filed under series")
    # Refused, it is named on one line too.
    again = _import(settings, str(odd))
    assert again.returncode == 0 and b"duplicate" in again.stdout
    older = write_ahrefs(tmp_path / "old\nline_2026-01-01.csv", LINKS)
    refused = _import(settings, str(older))
    assert refused.returncode == 2
    assert (
        refused.stderr.decode("utf-8")
        .splitlines()[0]
        .startswith("linkwatch: old\\nline_2026-01-01.csv: taken at 2026-01-01")
    )


def test_an_export_folder_file_named_in_bytes_is_read_once(tmp_path: Path) -> None:
    settings = load_settings(write_settings(tmp_path))
    folder = tmp_path / "exports" / "example.com"
    folder.mkdir(parents=True)
    good = write_ahrefs(folder / "good.csv", LINKS)
    os.rename(good, os.path.join(os.fsencode(folder), b"backlinks_\xff_2026-02-01.csv"))
    app = Linkwatch.open(settings)
    try:
        now = datetime(2026, 3, 1, tzinfo=UTC)
        (outcome,) = app.poll_source("example.com", "exports", now)
        assert (outcome.status, outcome.origin) == ("baseline", "backlinks_\\xff_2026-02-01.csv")
        # Stored under the name as shown, it is known as read at the next poll.
        assert app.poll_source("example.com", "exports", now) == []
    finally:
        app.close()
