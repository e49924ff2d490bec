"""Rows seen before (docs/exports.md): an export row recognised by its fingerprint is not
read again, and the ledger ends up exactly as if every row had been read."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.store import ChangedMeanwhileError, GuardSettings, IngestOutcome, Store
from sources.exports import ExportFile
from sources.fingerprint import row_fingerprint
from sources.model import KNOWN_ROW, Backlink, SnapshotResult, SourceError
from tests.helpers import AHREFS_HEADER

SITE = "example.com"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
GUARDS = GuardSettings(confirm_after=2, suspect_below=0.0)
HEADER = AHREFS_HEADER
# Cells of one row, as a tool writes them: (page, target, anchor, dr, nofollow, lost).
Row = tuple[str, str, str, str, str, str]


def day(n: int) -> datetime:
    return T0 + timedelta(days=n)


def write(path: Path, rows: list[Row], *, stamp: int = 0, extra: set[int] | None = None) -> Path:
    """An Ahrefs export; `Last seen` changes with `stamp` (as it does every day), the rows
    numbered in `extra` get one field too many."""
    lines: list[list[str]] = [HEADER]
    for i, (page, target, anchor, dr, nofollow, lost) in enumerate(rows):
        line = [
            f"Title {i}",
            page,
            "en",
            dr,
            target,
            anchor,
            nofollow,
            "false",
            "false",
            "lost" if lost else "",
            "2025-01-01 00:00:00",
            f"2026-01-{1 + stamp % 28:02d} 00:00:00",
            "2026-01-20 00:00:00" if lost else "",
        ]
        if extra and i in extra:
            line.append("surplus")
        lines.append(line)
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f, quoting=csv.QUOTE_ALL).writerows(lines)
    return path


def snapshot_of(path: Path, taken_at: datetime) -> SnapshotResult:
    return ExportFile(path, SITE).snapshot(taken_at)


def counted(records: Iterator[Backlink], tally: list[int]) -> Iterator[Backlink]:
    """The records unchanged; `tally[0]` counts those recognised as seen before."""
    for rec in records:
        if rec is KNOWN_ROW:
            tally[0] += 1
        yield rec


def then(records: Iterator[Backlink], action: Callable[[], object]) -> Iterator[Backlink]:
    """The records, then `action` run once they are all read (before the write)."""
    yield from records
    action()


def ingest(
    store: Store, path: Path, n: int, tally: list[int] | None = None, slow: bool = False
) -> IngestOutcome:
    result = snapshot_of(path, day(n))
    if tally is not None:
        result.records = counted(result.records, tally)
    outcome = store.ingest(SITE, "ahrefs", result, GUARDS, day(n) + timedelta(hours=1))
    if slow:
        # No row is ever recognised: every one is read in full, as before fingerprints.
        with store.conn:
            store.conn.execute("UPDATE sightings SET raw = NULL")
    return outcome


# Columns that say how long an ingest took or how it was read, not what it stored.
_NOT_COMPARED = {"duration_s", "raw"}


def ledger(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every stored row of every table but the fingerprints and timings."""
    tables = [
        name
        for (name,) in store.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " AND name NOT IN ('meta', '_sqlite_migrations') ORDER BY name"
        )
    ]
    out = {}
    for table in tables:
        cols = [
            c[1]
            for c in store.conn.execute(f"PRAGMA table_info({table})")
            if c[1] not in _NOT_COMPARED
        ]
        out[table] = store.conn.execute(
            f"SELECT {', '.join(cols)} FROM {table} ORDER BY rowid"
        ).fetchall()
    return out


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    fast, slow = Store(tmp_path / "fast.db"), Store(tmp_path / "slow.db")
    for s in (fast, slow):
        s.ensure_site(SITE, "own")
    yield fast, slow
    fast.close()
    slow.close()


# --- examples ------------------------------------------------------------------------------


def profile(n: int, anchor: str = "a") -> list[Row]:
    return [
        (f"https://ref{i}.net/p{i}", "https://example.com/", anchor, "40", "false", "")
        for i in range(n)
    ]


def test_rows_listed_again_are_recognised_and_change_nothing(
    stores: tuple[Store, Store], tmp_path: Path
) -> None:
    fast, slow = stores
    rows = profile(50)
    changed = list(rows)
    changed[3] = (*changed[3][:2], "new anchor", *changed[3][3:])
    files = [
        write(tmp_path / "d1.csv", rows, stamp=1),
        write(tmp_path / "d2.csv", rows, stamp=2),
        write(tmp_path / "d3.csv", [*changed[1:], profile(51)[50]], stamp=3),
    ]
    tallies = []
    for n, path in enumerate(files, 1):
        tally = [0]
        ingest(fast, path, n, tally)
        ingest(slow, path, n, slow=True)
        tallies.append(tally[0])
    # The baseline is read in full; the next day's rows are all known (only `Last seen`
    # changed); on day 3 a changed anchor and a new link are read.
    assert tallies == [0, 50, 48]
    assert ledger(fast) == ledger(slow)
    assert [e[0] for e in fast.conn.execute("SELECT kind FROM link_events ORDER BY id")] == [
        "new",
        "changed",
        "missing",
    ]


def test_a_row_with_the_same_cells_but_a_field_too_many_is_malformed_again(
    stores: tuple[Store, Store], tmp_path: Path
) -> None:
    fast, _ = stores
    rows = profile(10)
    ingest(fast, write(tmp_path / "d1.csv", rows, stamp=1), 1)
    tally = [0]
    out = ingest(fast, write(tmp_path / "d2.csv", rows, stamp=2, extra={4}), 2, tally)
    assert (out.status, out.malformed, tally[0]) == ("partial", 1, 9)


def test_a_rating_out_of_scale_is_noted_every_time_it_is_read(
    stores: tuple[Store, Store], tmp_path: Path
) -> None:
    fast, _ = stores
    rows = profile(10)
    rows[2] = (*rows[2][:3], "150", *rows[2][4:])
    notes = []
    for n in (1, 2, 3):
        tally = [0]
        out = ingest(fast, write(tmp_path / f"d{n}.csv", rows, stamp=n), n, tally)
        notes.append((out.note or "", tally[0]))
    assert all("1 rows: Ahrefs DR outside 0-100, ignored" in note for note, _ in notes)
    assert [t for _, t in notes] == [0, 9, 9]


def test_cells_that_spell_the_same_text_together_are_told_apart(
    stores: tuple[Store, Store], tmp_path: Path
) -> None:
    """Target `…/x` with anchor `a`, then target `…/xa` with no anchor: the cells run
    together alike, and are two links."""
    fast, _ = stores
    rows = profile(5)
    one = ("https://ref9.net/p", "https://example.com/x", "a", "40", "false", "")
    two = ("https://ref9.net/p", "https://example.com/xa", "", "40", "false", "")
    ingest(fast, write(tmp_path / "d1.csv", [*rows, one], stamp=1), 1)
    tally = [0]
    out = ingest(fast, write(tmp_path / "d2.csv", [*rows, two], stamp=2), 2, tally)
    assert (tally[0], out.new, out.missing) == (5, 1, 1)


def test_a_row_holding_the_separator_is_not_fingerprinted(tmp_path: Path) -> None:
    path = write(tmp_path / "d1.csv", profile(1), stamp=1)
    export = ExportFile(path, SITE)
    export.close()
    fingerprint = export.row_fingerprint()
    assert fingerprint is not None
    good = list(csv.reader(path.open(newline="")))[1]
    assert fingerprint(good) is not None
    bad = [f"{cell}\x1f" if i == 5 else cell for i, cell in enumerate(good)]
    assert fingerprint(bad) is None


def test_fingerprints_are_the_same_in_another_process(tmp_path: Path) -> None:
    """They are stored: one made by another process (the daemon, tomorrow) must match."""
    path = write(tmp_path / "d1.csv", profile(3), stamp=1)
    script = (
        "import sys, csv\n"
        "from sources.exports import ExportFile\n"
        f"f = ExportFile(__import__('pathlib').Path({str(path)!r}), 'example.com')\n"
        "rows = list(csv.reader(open(sys.argv[1], newline='')))[1:]\n"
        "print([f.row_fingerprint(b'db')(r) for r in rows])\n"
    )
    here = ExportFile(path, SITE)
    fingerprint = here.row_fingerprint(b"db")
    assert fingerprint is not None
    rows = list(csv.reader(path.open(newline="")))[1:]
    mine = [fingerprint(r) for r in rows]
    here.close()
    other = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    ).stdout.strip()
    assert other == str(mine)
    assert len(set(mine)) == 3 and None not in mine


def test_known_rows_an_older_export_changed_meanwhile_are_read_as_before(
    stores: tuple[Store, Store], tmp_path: Path
) -> None:
    """Day 5 is read while day 4 (another anchor, one link gone) is stored by another
    process: day 5's rows recognised against day 3's values are still day 3's values."""
    fast, slow = stores
    rows = profile(20)
    other = [(*r[:2], "b", *r[3:]) for r in rows[:10]] + rows[11:]
    d1 = write(tmp_path / "d1.csv", rows, stamp=1)
    d3 = write(tmp_path / "d3.csv", rows, stamp=3)
    d4 = write(tmp_path / "d4.csv", other, stamp=4)
    d5 = write(tmp_path / "d5.csv", rows, stamp=5)
    for store in stores:
        ingest(store, d1, 1)
        ingest(store, d3, 3)
    meanwhile = Store(fast.path)
    try:
        result = snapshot_of(d5, day(5))
        tally = [0]
        result.records = then(counted(result.records, tally), lambda: ingest(meanwhile, d4, 4))
        out = fast.ingest(SITE, "ahrefs", result, GUARDS, day(5) + timedelta(hours=1))
    finally:
        meanwhile.close()
    ingest(slow, d4, 4, slow=True)
    ingest(slow, d5, 5, slow=True)
    assert tally[0] == 20
    assert (out.status, out.changed, out.restored) == ("complete", 10, 1)
    assert ledger(fast) == ledger(slow)


def test_known_rows_whose_link_was_deleted_meanwhile_store_nothing(
    stores: tuple[Store, Store], tmp_path: Path
) -> None:
    fast, _ = stores
    rows = profile(10)
    ingest(fast, write(tmp_path / "d1.csv", rows[:9], stamp=1), 1)
    added = ingest(fast, write(tmp_path / "d2.csv", rows, stamp=2), 2)
    d3 = write(tmp_path / "d3.csv", rows, stamp=3)
    before = ledger(fast)
    meanwhile = Store(fast.path)
    try:
        result = snapshot_of(d3, day(3))
        result.records = then(
            result.records, lambda: meanwhile.delete_snapshot(added.snapshot_id, day(3))
        )
        with pytest.raises(
            ChangedMeanwhileError,
            match=r"^the links this file lists were changed by another process while it was"
            r" read \(a snapshot deleted meanwhile\); nothing was stored: import it again$",
        ):
            fast.ingest(SITE, "ahrefs", result, GUARDS, day(3) + timedelta(hours=1))
    finally:
        meanwhile.close()
    after = ledger(fast)
    assert after != before  # the deletion stood
    assert len(after["snapshots"]) == 1
    # Read again, the file is read in full: the link deleted with day 2 is new again.
    again = ingest(fast, d3, 3)
    assert (again.status, again.new) == ("complete", 1)


# --- the property: fingerprints never change what the ledger stores -------------------------

_PAGES = ["https://ref{}.net/p", "http://www.ref{}.net/p", "https://blog.ref{}.net/p"]
# What each field of a row (link, spelling, target, anchor, dr, nofollow, marked lost) can
# be; a later day's row is the day before's with one of them changed.
_FIELDS: list[st.SearchStrategy[Any]] = [
    st.integers(0, 7),
    st.sampled_from(range(len(_PAGES))),
    st.sampled_from(["https://example.com/", "https://example.com/x", "https://other.org/"]),
    st.sampled_from(["a", "b", ""]),
    st.sampled_from(["40", "41", "150", ""]),
    st.sampled_from(["false", "true", "FALSE"]),
    st.booleans(),
]
_ROW = st.tuples(*_FIELDS)
# One edit of the day before: change field f of row r, drop row r, or add a row.
_EDIT = st.one_of(
    st.tuples(st.just("change"), st.integers(0, 11), st.integers(0, len(_FIELDS) - 1), st.data()),
    st.tuples(st.just("drop"), st.integers(0, 11)),
    st.tuples(st.just("add"), _ROW),
)


@st.composite
def timelines(draw: st.DrawFn) -> list[tuple[list[tuple[Any, ...]], set[int]]]:
    """Days of rows, each mostly the day before's: (rows, rows with a field too many)."""
    rows = draw(st.lists(_ROW, max_size=10))
    days = []
    for _ in range(draw(st.integers(2, 6))):
        for edit in draw(st.lists(_EDIT, max_size=4)):
            if edit[0] == "add":
                rows.append(edit[1])
            elif rows and edit[0] == "drop":
                rows.pop(edit[1] % len(rows))
            elif rows:
                at, field = edit[1] % len(rows), edit[2]
                value = edit[3].draw(_FIELDS[field])
                rows[at] = (*rows[at][:field], value, *rows[at][field + 1 :])
        days.append((list(rows), draw(st.sets(st.integers(0, 11), max_size=1))))
    return days


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(days=timelines())
def test_recognised_rows_store_what_reading_them_would(
    tmp_path_factory: pytest.TempPathFactory, days: list[tuple[list[Any], set[int]]]
) -> None:
    folder = tmp_path_factory.mktemp("timeline")
    fast, slow = Store(folder / "fast.db"), Store(folder / "slow.db")
    try:
        for s in (fast, slow):
            s.ensure_site(SITE, "own")
        for n, (cells, extra) in enumerate(days, 1):
            rows: list[Row] = [
                (_PAGES[spelling].format(link) + str(link), target, anchor, dr, nofollow,
                 "lost" if lost else "")
                for link, spelling, target, anchor, dr, nofollow, lost in cells
            ]  # fmt: skip
            path = write(folder / f"d{n}.csv", rows, stamp=n, extra=extra)
            outcomes = []
            for store, is_slow in ((fast, False), (slow, True)):
                try:
                    out = ingest(store, path, n, slow=is_slow)
                    outcomes.append((out.status, out.new, out.missing, out.lost, out.changed))
                except (ValueError, SourceError) as exc:
                    outcomes.append((type(exc).__name__, str(exc)))
            assert outcomes[0] == outcomes[1]
            assert ledger(fast) == ledger(slow)
    finally:
        fast.close()
        slow.close()


_EXPORTS = Path(__file__).parent / "fixtures" / "exports"


def _fingerprinted(path: Path) -> bool:
    try:
        export = ExportFile(path, SITE, digest=False)
    except SourceError:  # a table of no links
        return False
    export.close()
    return bool(export.fingerprinted)


_LINK_EXPORTS = sorted(p.name for p in _EXPORTS.glob("*.csv") if _fingerprinted(p))


@pytest.mark.parametrize("name", _LINK_EXPORTS)
def test_cells_outside_the_fingerprint_never_change_what_a_row_reads_as(name: str) -> None:
    """Every cell a format's parser reads is covered: rewriting any other cell of any row
    (with text every kind of cell could mean something by) leaves the row as it read."""
    export = ExportFile(_EXPORTS / name, SITE)
    covered = set(export.fingerprinted)
    parse = export._parse_link
    rows = [r for r in csv.reader(export._lines.lines, delimiter=export.delimiter) if r]
    export.close()
    assert rows and covered
    checked = 0
    for row in rows:
        try:
            expected: object = parse(row)
        except (ValueError, IndexError) as exc:
            expected = type(exc)
        for i in range(len(row)):
            if i in covered:
                continue
            for junk in ("", "true", "lost", "150", "2020-01-01", "https://other.org/x"):
                changed = [*row[:i], junk, *row[i + 1 :]]
                try:
                    got: object = parse(changed)
                except (ValueError, IndexError) as exc:
                    got = type(exc)
                assert got == expected, (name, i, junk)
                checked += 1
    assert checked or covered == set(range(len(rows[0])))  # or every cell is read


def test_records_no_source_fingerprints_are_never_looked_up(
    stores: tuple[Store, Store], tmp_path: Path
) -> None:
    """An API's records are not rows: the series' fingerprints are not even read."""
    fast, _ = stores
    ingest(fast, write(tmp_path / "d1.csv", profile(3), stamp=1), 1)
    statements: list[str] = []
    fast.conn.set_trace_callback(statements.append)
    try:
        links = [
            Backlink(f"https://ref{i}.net/p{i}", "https://example.com/", "a") for i in range(3)
        ]
        result = SnapshotResult(taken_at=day(2), records=iter(links), format="ahrefs")
        fast.ingest(SITE, "ahrefs", result, GUARDS, day(2) + timedelta(hours=1))
        export = snapshot_of(write(tmp_path / "d3.csv", profile(3), stamp=3), day(3))
        fast.ingest(SITE, "ahrefs", export, GUARDS, day(3) + timedelta(hours=1))
    finally:
        fast.conn.set_trace_callback(None)
    reads = [s for s in statements if s.lstrip().startswith("SELECT raw, link_key")]
    assert len(reads) == 1  # the export's


def test_rows_read_in_full_are_never_read_back(stores: tuple[Store, Store], tmp_path: Path) -> None:
    """Only rows recognised as seen before can need reading back: a first export's, or
    changed ones', are not looked for (the check would scan every row they add)."""
    fast, _ = stores
    statements: list[str] = []
    fast.conn.set_trace_callback(statements.append)
    try:
        ingest(fast, write(tmp_path / "d1.csv", profile(3), stamp=1), 1)
        ingest(fast, write(tmp_path / "d2.csv", profile(4, "b"), stamp=2), 2)
        checks = sum("url_to IS NULL" in s for s in statements)
        assert checks == 0
        # Two rows seen before and a new one: the read-back is looked for, once.
        ingest(
            fast, write(tmp_path / "d3.csv", profile(5, "b")[:2] + profile(6, "b")[5:], stamp=3), 3
        )
    finally:
        fast.conn.set_trace_callback(None)
    assert sum("url_to IS NULL" in s for s in statements) == 1


# --- upgrades, and rows set aside ----------------------------------------------------------


def test_a_database_from_before_fingerprints_recognises_rows_after_one_import(
    stores: tuple[Store, Store], tmp_path: Path
) -> None:
    """Sightings stored before fingerprints (or under other code) get the fingerprint of
    the row that lists them at the next import, whether or not their values change."""
    fast, _ = stores
    rows = profile(30)
    ingest(fast, write(tmp_path / "d1.csv", rows, stamp=1), 1, slow=True)  # no fingerprints
    tallies = []
    for n in (2, 3, 4):
        tally = [0]
        ingest(fast, write(tmp_path / f"d{n}.csv", rows, stamp=n), n, tally)
        tallies.append(tally[0])
    assert tallies == [0, 30, 30]


def test_every_database_keys_its_fingerprints_with_its_own_secret(
    stores: tuple[Store, Store], tmp_path: Path
) -> None:
    path = write(tmp_path / "d1.csv", profile(3), stamp=1)
    raws = []
    for store in stores:
        ingest(store, path, 1)
        raws.append({r for (r,) in store.conn.execute("SELECT raw FROM sightings")})
    assert len(raws[0]) == 3 and None not in raws[0]
    assert not raws[0] & raws[1]


def test_the_salt_is_the_code_imported_not_the_code_on_disk_later(tmp_path: Path) -> None:
    """A daemon running while linkwatch is upgraded in place parses with the code it
    imported: its fingerprints must not claim the new code's salt."""
    repo = Path(__file__).parent.parent
    for package in ("sources", "daemon"):
        shutil.copytree(repo / package, tmp_path / package)
    salt = "from sources.fingerprint import code_salt; print(code_salt().hex())"
    upgrade_then_salt = (
        "import sources.exports, daemon.store.ledger\n"
        "from pathlib import Path\n"
        "p = Path('sources/urls.py'); p.write_text(p.read_text() + '\\n# upgraded\\n')\n" + salt
    )

    def run(script: str) -> str:
        return subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"},
        ).stdout.strip()

    before = run(salt)
    assert run(upgrade_then_salt) == before
    assert run(salt) != before  # the next process runs the new code


_OFF = [(f"https://off{i}.net/p", "https://other.net/", "a", "40", "false", "") for i in range(5)]


def _stored_by_an_older_version(
    store: Store, path: Path, n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a linkwatch from before rows pointing elsewhere were set aside stored them."""
    with monkeypatch.context() as m:
        m.setattr("daemon.store.ledger._stored_keys", lambda conn, site, keys: set(keys))
        ingest(store, path, n, slow=True)


def _outcome(store: Store, path: Path, n: int, slow: bool) -> object:
    try:
        out = ingest(store, path, n, slow=slow)
    except SourceError as exc:
        return type(exc).__name__
    return (out.status, out.new, out.missing, out.changed)


def test_rows_set_aside_are_never_recognised(
    stores: tuple[Store, Store], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Known links of another site's targets are followed, but whether a file is another
    site's export, and which of a key's rows counts, is decided as when every row is read."""
    b = [(*r[:2], "b", *r[3:]) for r in _OFF]
    c = (*_OFF[0][:2], "c", *_OFF[0][3:])
    d1 = write(tmp_path / "d1.csv", profile(5) + _OFF, stamp=1)
    d2 = write(tmp_path / "d2.csv", profile(5) + b, stamp=2)
    d3 = write(tmp_path / "d3.csv", [*profile(5), c, *b], stamp=3)  # one key listed twice
    d4 = write(tmp_path / "d4.csv", b, stamp=4)  # other.net's links only
    got = []
    for store, slow in zip(stores, (False, True), strict=True):
        _stored_by_an_older_version(store, d1, 1, monkeypatch)
        got.append([_outcome(store, d, n, slow) for n, d in ((2, d2), (3, d3), (4, d4))])
    assert got[0] == got[1]
    assert got[0][1][3] == 1  # the first row of the key, "c", is a change
    assert got[0][2] == "OtherSiteError"
    assert ledger(stores[0]) == ledger(stores[1])


# --- the fingerprint itself ------------------------------------------------------------------


@pytest.mark.parametrize("covered", [(0,), (0, 2), (0, 1, 3)])
def test_a_fingerprint_changes_with_every_cell_it_covers_and_no_other(
    covered: tuple[int, ...],
) -> None:
    fingerprint = row_fingerprint("kind", 4, [(i, f"col {i}") for i in covered])
    row = ["a", "b", "c", "d"]
    base = fingerprint(row)
    assert base is not None
    for i in range(4):
        changed = fingerprint([*row[:i], row[i] + "x", *row[i + 1 :]])
        assert (changed != base) == (i in covered), i
    # Cells moved from one covered column to the next are another row.
    if len(covered) > 1:
        a, b = covered[:2]
        moved = list(row)
        moved[a], moved[b] = row[a] + row[b], ""
        assert fingerprint(moved) != base
    assert fingerprint(row[:3]) is None  # a field short: read in full, to be reported


def test_a_fingerprint_is_keyed_by_format_columns_secret_and_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    row = ["a", "b", "c"]
    cols = [(0, "from"), (1, "to")]
    base = row_fingerprint("ahrefs", 3, cols)(row)
    others = [
        row_fingerprint("semrush", 3, cols)(row),
        row_fingerprint("ahrefs", 3, [(0, "from"), (1, "target")])(row),
        row_fingerprint("ahrefs", 3, cols, b"another database")(row),
    ]
    monkeypatch.setattr("sources.fingerprint.code_salt", lambda: b"other code" * 3)
    others.append(row_fingerprint("ahrefs", 3, cols)(row))
    assert base is not None and base not in others and len(set(others)) == 4


def test_samples_are_read_in_full_and_never_fingerprinted(
    stores: tuple[Store, Store], tmp_path: Path
) -> None:
    fast, _ = stores
    ingest(fast, write(tmp_path / "d1.csv", profile(3), stamp=1), 1)
    sample = _EXPORTS / "gsc_latest_links.csv"
    tally = [0]
    result = ExportFile(sample, SITE).snapshot(day(2))
    assert result.sample and result.fingerprints
    result.records = counted(result.records, tally)
    out = fast.ingest(SITE, "gsc", result, GUARDS, day(2) + timedelta(hours=1))
    assert (out.status, out.malformed, tally[0]) == ("baseline", 0, 0) and out.seen > 0
    assert fast.conn.execute(
        "SELECT count(*) FROM sightings s JOIN series r ON r.id = s.series_id"
        " WHERE r.source = 'gsc' AND s.raw IS NOT NULL"
    ).fetchone() == (0,)


def test_any_text_a_cell_can_hold_has_a_fingerprint() -> None:
    fingerprint = row_fingerprint("kind", 2, [(0, "a"), (1, "b")])
    for cell in ("\ud800", "é", "\x00", "😀", ""):
        assert fingerprint([cell, "x"]) is not None
    assert fingerprint(["\ud800", "x"]) != fingerprint(["\udc00", "x"])


def test_a_format_is_described_alike_in_every_process() -> None:
    """No address of a function (a toxicity scale) in what keys the fingerprints."""
    from sources.fingerprint import stable_repr
    from sources.formats import FORMATS
    from sources.formats.base import ColumnMap

    maps = [v.columns for f in FORMATS.values() for v in f.variants]
    scaled = [m for m in maps if isinstance(m, ColumnMap) and m.toxicity_scale is not None]
    assert scaled
    for m in maps:
        assert " at 0x" not in stable_repr(m)
    assert all(m.toxicity_scale.__qualname__ in stable_repr(m) for m in scaled)  # type: ignore[union-attr]


def test_column_maps_that_read_rows_differently_are_described_differently() -> None:
    from sources.fingerprint import stable_repr
    from sources.formats.base import ColumnMap

    plain = ColumnMap(url_from=("page",), url_to=("target",))
    others = [
        ColumnMap(url_from=("page",), url_to=("target",), add_scheme=True),
        ColumnMap(url_from=("page",), url_to=("target",), flags_nonempty_true=True),
        ColumnMap(url_from=("page",), url_to=("target",), rating_metric="Moz DA"),
        ColumnMap(url_from=("page", "source"), url_to=("target",)),
    ]
    described = {stable_repr(m) for m in [plain, *others]}
    assert len(described) == 5
