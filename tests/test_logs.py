"""Log lines: a terminal gets time stamps, the systemd journal gets priorities."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.helpers import cli_command, write_ahrefs, write_settings

LINKS = [(f"https://ref{i}.org/p", "https://example.com/", "a", i) for i in range(3)]


def _import(tmp_path: Path, env: dict[str, str]) -> list[str]:
    settings = write_settings(tmp_path)
    path = write_ahrefs(tmp_path / "links.csv", LINKS)
    proc = subprocess.run(
        cli_command(
            settings, "import", "--site", "example.com", "--taken-at", "2026-01-01", str(path)
        ),
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"} | env,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stderr.splitlines()


def test_the_journal_gets_priorities_and_no_time_stamps(tmp_path: Path) -> None:
    [line] = _import(tmp_path, {"JOURNAL_STREAM": "8:12345"})
    assert line.startswith("<6>daemon.service: example.com/exports/ahrefs: links.csv taken")


def test_a_terminal_gets_time_stamps_and_levels(tmp_path: Path) -> None:
    [line] = _import(tmp_path, {})
    assert line[:2] == "20" and " INFO daemon.service: example.com/exports/ahrefs:" in line
