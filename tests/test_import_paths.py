"""`import` of paths that are not plain export files: refused at once, named printably."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from daemon.cli import main
from tests.helpers import write_ahrefs, write_settings

ROOT = Path(__file__).resolve().parent.parent
LINKS = [
    (f"https://site{i}.example.org/p{i}", "https://example.com/", f"a{i}", i) for i in range(5)
]


def _import(settings: Path, *files: str | bytes) -> subprocess.CompletedProcess[bytes]:
    """`linkwatch import` in a process of its own: a hang fails the test, never the run."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "daemon.cli",
            "-c",
            str(settings),
            "import",
            "--site",
            "example.com",
            *files,
        ],
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
