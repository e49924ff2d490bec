"""The progress line of `import` and `poll`: drawn on a terminal, never anywhere else."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from daemon.cli import main
from daemon.progress import Progress
from sources.model import Backlink, SnapshotResult
from tests.helpers import write_ahrefs, write_settings


class FakeTerminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _result(rows: int, origin: str = "links.csv") -> SnapshotResult:
    records = iter(
        Backlink(url_from=f"https://r{i}.example.org/", url_to="https://example.com/")
        for i in range(rows)
    )
    return SnapshotResult(taken_at=datetime(2026, 1, 1, tzinfo=UTC), records=records, origin=origin)


def test_a_terminal_sees_rows_rates_and_units_redrawn_at_most_every_quarter_second() -> None:
    term, clock = FakeTerminal(), Clock()
    with Progress("importing", "file", 2, stream=term, clock=clock, width=200) as progress:
        first = _result(2000, "a.csv")
        progress.next(first.origin)
        progress.watch(first)
        for read, _ in enumerate(first.records, 1):
            if read == 1024:
                assert term.getvalue() == ""  # no time has passed: nothing drawn yet
                clock.now += 0.5
        shown = term.getvalue()
        # Drawn once, in place (a carriage return, no newline), when 1,024 rows were counted
        # after half a second.
        assert shown == "\rimporting file 1/2 (a.csv): 1,024 rows, 2,048 rows/s"
        clock.now += 0.1  # within a quarter second of the last redraw: not drawn again
        second = _result(10, "b.csv")
        progress.next(second.origin)
        progress.watch(second)
        assert term.getvalue() == shown
        clock.now += 0.4
        assert sum(1 for _ in second.records) == 10
        progress.next("c.csv")
        assert term.getvalue().endswith("\rimporting file 3/2 (c.csv): 2,010 rows, 2,010 rows/s")
    # Finished: the line is blanked and the cursor is back at its start.
    line = "importing file 3/2 (c.csv): 2,010 rows, 2,010 rows/s"
    assert term.getvalue().endswith("\r" + " " * len(line) + "\r")
    assert "\n" not in term.getvalue()


def test_a_poll_counts_files_and_a_shorter_line_covers_a_longer_one() -> None:
    term, clock = FakeTerminal(), Clock()
    with Progress("polling", "site", 2, stream=term, clock=clock, width=200) as progress:
        progress.next("long-site-name.example.com")
        progress.watch(_result(0))
        clock.now += 1
        progress.tick()
        before = "polling site 1/2 (long-site-name.example.com): 1 file, 0 rows, 0 rows/s"
        assert term.getvalue() == "\r" + before
        clock.now += 1
        progress.next("b.io")
        after = "polling site 2/2 (b.io): 1 file, 0 rows, 0 rows/s"
        assert term.getvalue().endswith("\r" + after.ljust(len(before)))


def test_the_line_is_cut_to_the_terminal_width() -> None:
    term, clock = FakeTerminal(), Clock()
    progress = Progress("importing", "file", 1, stream=term, clock=clock, width=20)
    clock.now += 1
    progress.next("a-very-long-file-name.csv")
    assert term.getvalue() == "\rimporting file 1/1 "
    progress.close()


def test_the_line_is_erased_before_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    term, clock = FakeTerminal(), Clock()
    with Progress("polling", "site", 1, stream=term, clock=clock, width=200) as progress:
        clock.now += 1
        progress.next("a.io")
        drawn = term.getvalue()
        with caplog.at_level(logging.INFO):
            logging.getLogger("linkwatch.test").info("ingested")
        assert term.getvalue() == drawn + "\r" + " " * (len(drawn) - 1) + "\r"
        assert "ingested" in caplog.text
    # Nothing left to erase at the end, and the filter is gone with the display.
    assert term.getvalue() == drawn + "\r" + " " * (len(drawn) - 1) + "\r"
    assert not any(progress._filter in h.filters for h in logging.getLogger().handlers)


def test_nothing_is_written_to_a_stream_that_is_not_a_terminal() -> None:
    stream, clock = io.StringIO(), Clock()
    result = _result(5000)
    with Progress("importing", "file", 1, stream=stream, clock=clock) as progress:
        progress.next("links.csv")
        progress.watch(result)
        for _ in result.records:
            clock.now += 1
        progress.tick()
    assert stream.getvalue() == ""
    # Not even wrapped: rows read off a pipe cost nothing more.
    assert progress.rows == 0


def _exports(tmp_path: Path, rows: int) -> tuple[Path, Path, Path]:
    """Settings, an export to import and one in the polled folder, `rows` links each."""
    settings = write_settings(tmp_path)
    links = [(f"https://r{i}.example.org/p", "https://example.com/", "a", 5) for i in range(rows)]
    folder = tmp_path / "exports" / "example.com"
    folder.mkdir(parents=True)
    imported = write_ahrefs(tmp_path / "example.com_2026-01-01.csv", links)
    polled = write_ahrefs(folder / "example.com_2026-01-02.csv", links)
    return settings, imported, polled


def test_import_and_poll_are_quiet_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    settings, imported, _ = _exports(tmp_path, 50)
    runner = CliRunner()
    res = runner.invoke(
        main, ["-c", str(settings), "import", "--site", "example.com", str(imported)]
    )
    assert res.exit_code == 0, res.output
    assert "50 rows read" in res.stdout
    assert "\r" not in res.stderr and "rows/s" not in res.stderr
    res = runner.invoke(main, ["-c", str(settings), "poll"])
    assert res.exit_code == 0, res.output
    assert "1 snapshots" in res.stdout
    assert "\r" not in res.stderr and "rows/s" not in res.stderr


def test_import_and_poll_count_every_row_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import daemon.progress

    settings, imported, _ = _exports(tmp_path, 1500)
    # stderr is a terminal, and every count is drawn.
    monkeypatch.setattr(daemon.progress, "is_terminal", lambda stream: True)
    monkeypatch.setattr(daemon.progress, "REDRAW_EVERY", 0.0)
    runner = CliRunner()
    res = runner.invoke(
        main, ["-c", str(settings), "import", "--site", "example.com", str(imported)]
    )
    assert res.exit_code == 0, res.output
    drawn = res.stderr.split("\r")
    name = imported.name
    assert f"importing file 1/1 ({name}): 0 rows, 0 rows/s" in drawn[1]
    assert any(d.startswith(f"importing file 1/1 ({name}): 1,024 rows, ") for d in drawn)
    # Erased at the end: the last thing written is a blank line and a carriage return.
    assert res.stderr.endswith("\r") and drawn[-2].strip() == ""
    assert "1500 rows read" in res.stdout
    res = runner.invoke(main, ["-c", str(settings), "poll"])
    assert res.exit_code == 0, res.output
    drawn = res.stderr.split("\r")
    assert "polling site 1/1 (example.com): 0 files, 0 rows, 0 rows/s" in drawn[1]
    assert any(d.startswith("polling site 1/1 (example.com): 1 file, 1,024 rows") for d in drawn)
    assert res.stderr.endswith("\r") and drawn[-2].strip() == ""
