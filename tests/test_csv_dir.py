"""csv_dir: only whole files are read, and a file changed after it was read is read again."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.textsafe import shown_path
from sources.csv_dir import CsvDirSettings, CsvDirSource, PendingExport
from tests.helpers import write_ahrefs

SITE = "example.com"
NOW = datetime(2026, 5, 1, tzinfo=UTC)
LINKS = [(f"https://r{i}.example.org/p", "https://example.com/", "a", 10) for i in range(3)]
# An export finished long ago: with the old "mtime older than now - settle" rule it counted
# as settled at once.
OLD = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
LATER = datetime(2026, 4, 1, tzinfo=UTC).timestamp()


def source(tmp_path: Path, settle: timedelta = timedelta(seconds=5)) -> CsvDirSource:
    """A csv_dir source over tmp_path/{domain}, with that folder created."""
    (tmp_path / SITE).mkdir(exist_ok=True)
    settings = CsvDirSettings(kind="csv_dir", path=str(tmp_path / "{domain}"), settle=settle)
    return CsvDirSource("exports", settings)


def stamp_of(path: Path) -> str:
    """The stamp csv_dir gives a file as it is now."""
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def append(path: Path, text: str = "more,rows\n") -> None:
    """Append to a file, as a copy still in progress does."""
    with path.open("a", encoding="utf-8") as f:
        f.write(text)


class Sleeps:
    """A `sleep` that records its calls and runs an action in place of waiting."""

    def __init__(self, action: Callable[[], None] = lambda: None) -> None:
        self.calls: list[float] = []
        self.action = action

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.action()


def names(found: list[PendingExport]) -> list[str]:
    """The file names of pending exports, in order."""
    return [p.path.name for p in found]


def test_a_file_growing_between_looks_waits_for_the_next_poll(tmp_path: Path) -> None:
    src = source(tmp_path)
    export = write_ahrefs(tmp_path / SITE / "a.csv", LINKS)
    steady = write_ahrefs(tmp_path / SITE / "b.csv", LINKS)
    growing = Sleeps(lambda: append(export))
    assert names(src.pending(SITE, set(), NOW, sleep=growing)) == [steady.name]
    assert growing.calls == [5.0]

    found = src.pending(SITE, {(steady.name, stamp_of(steady))}, NOW, sleep=Sleeps())
    assert names(found) == [export.name]
    assert found[0].stamp == stamp_of(export)


def test_an_old_mtime_does_not_make_a_growing_copy_settled(tmp_path: Path) -> None:
    src = source(tmp_path)
    export = write_ahrefs(tmp_path / SITE / "a.csv", LINKS)
    os.utime(export, (OLD, OLD))

    def copy_more() -> None:
        # `cp -p` and rsync set the source's old mtime while the data is still arriving.
        append(export)
        os.utime(export, (OLD, OLD))

    assert src.pending(SITE, set(), NOW, sleep=Sleeps(copy_more)) == []


def test_a_known_name_and_stamp_is_not_returned(tmp_path: Path) -> None:
    src = source(tmp_path)
    export = write_ahrefs(tmp_path / SITE / "a.csv", LINKS)
    sleeps = Sleeps()
    assert src.pending(SITE, {(export.name, stamp_of(export))}, NOW, sleep=sleeps) == []
    assert sleeps.calls == []


@pytest.mark.parametrize(
    "name",
    [
        "ahrefs 2026-04-01 10.41\u202fAM.csv",  # macOS's narrow no-break space
        "ahrefs\u00a02026-04-01.csv",
        "ahrefs\t2026-04-01.csv",  # shown escaped now, stored as it was before
        "ahrefs \u200f2026-04-01.csv",
    ],
)
def test_a_name_read_before_names_were_shown_is_not_read_again(tmp_path: Path, name: str) -> None:
    # Read again, an older export is out of time order: an error snapshot, and a
    # source-health alert about a file read long ago.
    src = source(tmp_path)
    export = write_ahrefs(tmp_path / SITE / name, LINKS)
    assert src.pending(SITE, {(name, stamp_of(export))}, NOW, sleep=Sleeps()) == []
    assert src.pending(SITE, {(name, None)}, NOW, sleep=Sleeps()) == []
    assert names(src.pending(SITE, set(), NOW, sleep=Sleeps())) == [name]


def test_a_shown_name_keeps_its_spaces_and_escapes_what_a_line_cannot_hold() -> None:
    assert shown_path("a\u00a0b\u202fc d.csv") == "a\u00a0b\u202fc d.csv"
    assert shown_path("a\tb\nc\u200f.csv") == "a\\tb\\nc\\u200f.csv"
    assert shown_path(os.fsdecode(b"\xff.csv")) == "\\xff.csv"


def test_a_file_rewritten_after_it_was_read_is_read_again(tmp_path: Path) -> None:
    src = source(tmp_path)
    export = write_ahrefs(tmp_path / SITE / "a.csv", LINKS)
    os.utime(export, (OLD, OLD))
    first = src.pending(SITE, set(), NOW, sleep=Sleeps())
    assert names(first) == [export.name]
    result = src.open(SITE, first[0])
    assert len(list(result.records)) == len(LINKS)
    assert result.origin_stamp == first[0].stamp == stamp_of(export)
    known: set[tuple[str, str | None]] = {(export.name, result.origin_stamp)}

    write_ahrefs(export, LINKS[:2])
    os.utime(export, (LATER, LATER))
    again = src.pending(SITE, known, NOW, sleep=Sleeps())
    assert names(again) == [export.name]
    assert again[0].stamp != first[0].stamp
    assert again[0].taken_at > first[0].taken_at  # the new mtime, so it files after the old one
    assert len(list(src.open(SITE, again[0]).records)) == 2


def test_a_name_stored_without_a_stamp_counts_as_read(tmp_path: Path) -> None:
    src = source(tmp_path)
    export = write_ahrefs(tmp_path / SITE / "a.csv", LINKS)
    append(export)  # changed since: an unknown stamp cannot tell, so it is not re-read
    sleeps = Sleeps()
    assert src.pending(SITE, {(export.name, None)}, NOW, sleep=sleeps) == []
    assert sleeps.calls == []


def test_sleep_only_when_there_are_candidates(tmp_path: Path) -> None:
    src = source(tmp_path, settle=timedelta(seconds=30))
    sleeps = Sleeps()
    assert src.pending(SITE, set(), NOW, sleep=sleeps) == []
    (tmp_path / SITE / "notes.md").write_text("not an export\n")
    (tmp_path / SITE / "sub.csv").mkdir()  # a folder matching a pattern is refused unread
    [refused] = src.pending(SITE, set(), NOW, sleep=sleeps)
    assert refused.problem is not None and "not a regular file" in refused.problem
    assert sleeps.calls == []

    write_ahrefs(tmp_path / SITE / "a.csv", LINKS)
    found = src.pending(SITE, {("sub.csv", refused.stamp)}, NOW, sleep=sleeps)
    assert names(found) == ["a.csv"] and found[0].problem is None
    assert sleeps.calls == [30.0]


def test_a_symlink_in_the_folder_is_refused_not_followed(tmp_path: Path) -> None:
    src = source(tmp_path, settle=timedelta(0))
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / SITE / "passwd.csv").symlink_to(secret)
    [refused] = src.pending(SITE, set(), NOW)
    assert refused.problem is not None and "a symbolic link" in refused.problem
    assert "root:x" not in refused.problem
    # Reported once: the same link is not refused again on every poll.
    assert src.pending(SITE, {("passwd.csv", refused.stamp)}, NOW) == []


def test_settle_zero_looks_twice_without_sleeping(tmp_path: Path) -> None:
    src = source(tmp_path, settle=timedelta(0))
    write_ahrefs(tmp_path / SITE / "a.csv", LINKS)
    sleeps = Sleeps()
    assert names(src.pending(SITE, set(), NOW, sleep=sleeps)) == ["a.csv"]
    assert sleeps.calls == []


def test_a_file_vanishing_between_looks_is_skipped(tmp_path: Path) -> None:
    src = source(tmp_path)
    gone = write_ahrefs(tmp_path / SITE / "a.csv", LINKS)
    kept = write_ahrefs(tmp_path / SITE / "b.csv", LINKS)
    assert names(src.pending(SITE, set(), NOW, sleep=Sleeps(gone.unlink))) == [kept.name]


def test_oldest_first_by_name_date_then_mtime(tmp_path: Path) -> None:
    src = source(tmp_path)
    folder = tmp_path / SITE
    dated = write_ahrefs(folder / "x-backlinks_2026-03-02_10-00-00.csv", LINKS)
    older = write_ahrefs(folder / "z.csv", LINKS)
    os.utime(older, (OLD, OLD))
    newer = write_ahrefs(folder / "a.csv", LINKS)
    os.utime(newer, (LATER, LATER))
    found = src.pending(SITE, set(), NOW, sleep=Sleeps())
    assert names(found) == [older.name, dated.name, newer.name]
    assert [p.taken_at for p in found] == [
        datetime.fromtimestamp(OLD, tz=UTC),
        datetime(2026, 3, 2, 10, tzinfo=UTC),  # the name's date wins over the mtime
        datetime.fromtimestamp(LATER, tz=UTC),
    ]
