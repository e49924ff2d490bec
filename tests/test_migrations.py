"""Upgrading a database written before observation series (schema m002) keeps its truth."""

from __future__ import annotations

import fcntl
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from daemon.store import GuardSettings, Store, StoreError
from daemon.store.migrate import upgrade_lock
from daemon.store.schema import MIGRATIONS, m001_ledger, m002_alerts
from sources.model import Backlink, SnapshotResult
from sources.urls import link_key

SITE = "example.com"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _old_database(path: Path, last_format: str, *, gsc_only: bool = False) -> None:
    """A database as the previous version left it: one seen_by bit per (site, source)."""
    old = Migrations("linkwatch")
    old()(m001_ledger)
    old()(m002_alerts)
    conn = sqlite3.connect(path, isolation_level=None)
    old.apply(Database(conn))
    x = conn.execute
    x("INSERT INTO sites (id, domain, role) VALUES (1, ?, 'own')", (SITE,))
    x("INSERT INTO site_sources VALUES (1, 'exports', 1)")
    fmt = "gsc" if gsc_only else "ahrefs"
    for n, (status, f) in enumerate([("baseline", fmt), ("complete", fmt), ("error", "")]):
        if f == "" and last_format != "error":
            f, status = last_format, "complete"
        x(
            "INSERT INTO snapshots (site_id, source, taken_at, status, format, seen, created_at)"
            " VALUES (1, 'exports', ?, ?, ?, ?, ?)",
            (
                f"2026-01-0{n + 1}T00:00:00.000000Z",
                status,
                f,
                1 if f == "gsc" and not gsc_only else 4,
                "2026-01-10T00:00:00.000000Z",
            ),
        )
    # The old key form kept raw non-ASCII paths: these two rows are one link now.
    links = [
        ("https://ref.com/café", "live", 1),
        ("https://ref.com/caf%C3%A9", "lost", 0),
        ("https://gone.org/p", "missing", 0),
        ("https://stays.net/p", "live", 1),
        # Here the older spelling is the lost one: the merge keeps the live one.
        ("https://ref.org/ü", "lost", 0),
        ("https://ref.org/%C3%BC", "live", 1),
        # Both alive: the older row keeps the key, the other is a duplicate.
        ("https://dup.net/ö", "live", 1),
        ("https://dup.net/%C3%B6", "live", 1),
        # A missing duplicate must not go on to be confirmed lost under its dead key.
        ("https://miss.org/%C3%A9", "live", 1),
        ("https://miss.org/é", "missing", 0),
    ]
    for i, (url, state, seen_by) in enumerate(links, start=1):
        norm = url.removeprefix("https://")
        x(
            "INSERT INTO links (id, site_id, link_key, url_from, url_to, refdomain, state,"
            " seen_by, dropped_by, missing_count) VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                i,
                link_key(norm, "example.com/"),
                url,
                "https://example.com/",
                norm.split("/")[0],
                state,
                seen_by,
                0 if state == "live" else 1,
                1 if state == "missing" else 0,
            ),
        )
    x(
        "INSERT INTO link_events (snapshot_id, site_id, link_id, kind, reason, at)"
        " VALUES (2, 1, 2, 'lost', 'dropped', '2026-01-02T00:00:00.000000Z'),"
        " (2, 1, 3, 'missing', NULL, '2026-01-02T00:00:00.000000Z')"
    )
    conn.close()


def _ingest(store: Store, fmt: str, urls: list[str], day: int, *, sample: bool = False) -> str:
    at = T0 + timedelta(days=day)
    result = SnapshotResult(
        taken_at=at,
        records=iter([Backlink(u, "" if sample else "https://example.com/") for u in urls]),
        format=fmt,
        sample=sample,
        origin=f"{day}.csv",
    )
    return store.ingest(SITE, "exports", result, GuardSettings(), at).status


def _states(store: Store) -> dict[str, str]:
    return {r["url_from"]: r["state"] for r in store.links(SITE)}


def test_an_old_series_keeps_its_format_and_losses_are_still_found(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _old_database(path, last_format="error")  # the last poll before the upgrade failed
    store = Store(path)
    rows = store.conn.execute("SELECT source, format, coverage, bit FROM series").fetchall()
    assert rows == [("exports", "ahrefs", "complete", 1)]
    # Of two spellings of one link the live one takes the key; the lost one keeps its
    # past (and its key no export can produce): nothing that was true is rewritten.
    assert _states(store) == {
        "https://ref.com/café": "live",
        "https://ref.com/caf%C3%A9": "lost",
        "https://gone.org/p": "missing",
        "https://stays.net/p": "live",
        "https://ref.org/ü": "lost",
        "https://ref.org/%C3%BC": "live",
        "https://dup.net/ö": "live",
        "https://dup.net/%C3%B6": "unconfirmed",
        "https://miss.org/%C3%A9": "live",
        "https://miss.org/é": "unconfirmed",
    }
    # Every link can be found by its page.
    assert store.conn.execute("SELECT count(*) FROM links WHERE from_key IS NULL").fetchone() == (
        0,
    )
    kinds = store.conn.execute(
        "SELECT link_id, kind, reason, at FROM link_events ORDER BY id"
    ).fetchall()
    assert kinds == [
        (2, "lost", "dropped", "2026-01-02T00:00:00.000000Z"),
        (3, "missing", None, "2026-01-02T00:00:00.000000Z"),
        # The duplicate fades at the latest accepted snapshot: not a loss.
        (8, "unconfirmed", "merged", "2026-01-02T00:00:00.000000Z"),
        (10, "unconfirmed", "merged", "2026-01-02T00:00:00.000000Z"),
    ]
    [(seen_by,)] = store.conn.execute("SELECT seen_by FROM links WHERE id = 8")
    assert seen_by == 0
    # An Ahrefs export after the upgrade continues the same series: not a new baseline.
    assert _ingest(
        store,
        "ahrefs",
        ["https://ref.com/caf%C3%A9", "https://stays.net/p", "https://ref.org/ü"],
        5,
    ) == ("complete")
    assert _states(store)["https://gone.org/p"] == "lost"
    assert _states(store)["https://ref.com/café"] == "live"
    store.close()


def test_a_sample_older_than_an_absence_before_the_upgrade_restores_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    _old_database(path, last_format="ahrefs")
    store = Store(path)
    [(dropped,)] = store.conn.execute("SELECT dropped_at FROM links WHERE id = 3")
    assert dropped == "2026-01-02T00:00:00.000000Z"
    # A Search Console sample taken before the link went missing.
    result = SnapshotResult(
        taken_at=T0,
        records=iter([Backlink("https://gone.org/p", "")]),
        format="gsc",
        sample=True,
        origin="gsc.csv",
    )
    store.ingest(SITE, "exports", result, GuardSettings(), T0 + timedelta(days=9))
    assert _states(store)["https://gone.org/p"] == "missing"
    store.close()


def test_an_old_search_console_source_stays_a_sample(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _old_database(path, last_format="gsc", gsc_only=True)
    store = Store(path)
    rows = store.conn.execute("SELECT format, coverage FROM series").fetchall()
    assert rows == [("gsc", "sample")]
    # The sample vouches for 90 days from its last snapshot, no longer as a full profile.
    assert store.conn.execute(
        "SELECT DISTINCT seen_by, sample_until FROM links WHERE state = 'live'"
    ).fetchall() == [(0, "2026-04-03T00:00:00.000000Z")]
    before = _states(store)
    for day in (5, 6, 7):
        assert _ingest(store, "gsc", ["https://stays.net/p"], day, sample=True) == "complete"
    # Samples never make a link missing or lost.
    assert _states(store) == before
    # Nor do they hold a link a full export stops listing: its loss is found.
    _ingest(store, "ahrefs", ["https://ref.com/café", "https://stays.net/p"], 8)
    for day in (9, 10):
        _ingest(store, "ahrefs", ["https://ref.com/café", "https://gone.org/x"], day)
    assert _states(store)["https://stays.net/p"] == "lost"
    store.close()


def test_the_series_format_is_the_latest_full_profile_one(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _old_database(path, last_format="gsc")  # Ahrefs exports, then a small Search Console one
    store = Store(path)
    assert store.conn.execute("SELECT format, coverage, bit FROM series").fetchall() == [
        ("ahrefs", "complete", 1),
        ("gsc", "sample", 2),
    ]
    # Each old snapshot is in its own format's series: a one-row Ahrefs export is compared
    # with the 4-row Ahrefs snapshot, not with the 1-row sample, and is suspect.
    assert _ingest(store, "ahrefs", ["https://stays.net/p"], 5) == "suspect"
    store.close()


def test_a_source_that_never_had_an_accepted_snapshot_keeps_no_format(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _old_database(path, last_format="error")
    conn = sqlite3.connect(path)
    conn.execute("UPDATE snapshots SET status = 'error', format = ''")
    conn.commit()
    conn.close()
    store = Store(path)
    assert store.conn.execute("SELECT format, coverage FROM series").fetchall() == [
        ("", "complete")
    ]
    store.close()


def test_an_alert_of_the_previous_version_resolves_to_whoever_heard_it_fire(
    tmp_path: Path,
) -> None:
    import json

    from alerts.engine import evaluate
    from alerts.message import Notification
    from alerts.rules.context import EvaluationContext

    path = tmp_path / "old.db"
    old = Migrations("linkwatch")
    old()(m001_ledger)
    old()(m002_alerts)
    conn = sqlite3.connect(path, isolation_level=None)
    old.apply(Database(conn))
    fired = "2026-01-05T00:00:00.000000Z"
    conn.execute(
        "INSERT INTO alerts (fingerprint, rule, site, state, value, since_at, fired_at,"
        " evaluated_at) VALUES ('fp-old', 'loss', ?, 'firing', 6, ?, ?, ?)",
        (SITE, fired, fired, fired),
    )
    payload = {
        "transition": "firing",
        "rule": "loss",
        "site": SITE,
        "severity": "critical",
        "metric": "lost_refdomains",
        "value": 6,
        "op": ">=",
        "threshold": 5,
        "window": "7d",
        "summary": "example.com lost 6 referring domains in 7d",
        "at": "2026-01-05T00:00:00+00:00",
        "lost_domains": [],
        "recipients": [],
    }
    for notifier in ("seo-slack", "team-email"):
        conn.execute(
            "INSERT INTO outbox (idempotency_key, fingerprint, notifier, transition, payload,"
            " status, next_attempt_at, created_at) VALUES (?, 'fp-old', ?, 'firing', ?,"
            " 'sent', ?, ?)",
            (f"fp-old:firing:{notifier}", notifier, json.dumps(payload), fired, fired),
        )
    conn.close()

    store = Store(path)
    try:
        [alert] = store.alert_states()
        assert (alert.state, alert.told) == ("firing", "firing")
        # Its rule is gone in the new version's rules: resolved, told to both notifiers.
        at = T0 + timedelta(days=10)
        [t] = evaluate(store, [], EvaluationContext(store, at, at, [SITE], [SITE]))
        assert (t.state, t.reason, t.notifiers) == (
            "resolved",
            "rule_removed",
            ("seo-slack", "team-email"),
        )
        rows = store.conn.execute(
            "SELECT notifier, payload FROM outbox WHERE transition = 'resolved' ORDER BY id"
        ).fetchall()
        assert [r[0] for r in rows] == ["seo-slack", "team-email"]
        [message] = Notification.from_payload(json.loads(rows[0][1])).alerts
        assert (message.severity, message.summary, message.threshold, message.window) == (
            "critical",
            "example.com lost 6 referring domains in 7d",
            5,
            "7d",
        )
        # The old rows still read as one-alert messages.
        old_row = store.conn.execute("SELECT payload FROM outbox ORDER BY id").fetchone()[0]
        assert Notification.from_payload(json.loads(old_row)).alerts[0].rule == "loss"
    finally:
        store.close()


def test_provenance_starts_from_what_each_series_saw_at_the_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _old_database(path, last_format="ahrefs")
    store = Store(path)
    try:
        columns = {r[1] for r in store.conn.execute("PRAGMA table_info(links)")}
        assert {"rating_metric", "toxicity"} <= columns
        indexes = {r[1] for r in store.conn.execute("PRAGMA index_list(links)")}
        assert "links_presence" not in indexes
        # Each set seen_by bit is an open sighting; when it began is not known exactly:
        # the series' first accepted snapshot stands in.
        seeded = store.conn.execute(
            "SELECT l.url_from, si.first_at, si.first_snapshot_id, si.ended_snapshot_id"
            " FROM sightings si JOIN links l ON l.link_key = si.link_key ORDER BY l.id"
        ).fetchall()
        seeing = [
            r[0]
            for r in store.conn.execute("SELECT url_from FROM links WHERE seen_by != 0 ORDER BY id")
        ]
        assert [r[0] for r in seeded] == seeing and len(seeing) == 5
        assert {r[1:] for r in seeded} == {("2026-01-01T00:00:00.000000Z", None, None)}
        # The next export continues the series: the sightings it confirms go on under
        # the values it reports; a link it lacks is no longer seen, and goes missing.
        assert _ingest(store, "ahrefs", ["https://ref.com/café", "https://stays.net/p"], 5) == (
            "complete"
        )
        rows = store.conn.execute(
            "SELECT l.url_from, si.ended_snapshot_id IS NULL FROM sightings si"
            " JOIN links l ON l.link_key = si.link_key WHERE si.first_snapshot_id IS NOT NULL"
        ).fetchall()
        assert sorted(rows) == [("https://ref.com/café", 1), ("https://stays.net/p", 1)]
        assert store.conn.execute(
            "SELECT count(*) FROM sightings WHERE first_snapshot_id IS NULL"
            " AND ended_snapshot_id IS NULL"
        ).fetchone() == (0,)
        assert _states(store)["https://ref.org/%C3%BC"] == "missing"
    finally:
        store.close()


# --- one upgrade at a time ----------------------------------------------------------------

_OPEN = (
    "import sys\n"
    "from pathlib import Path\n"
    "from daemon.store import Store, StoreError\n"
    "try:\n"
    "    Store(Path(sys.argv[1]), busy_timeout=float(sys.argv[2])).close()\n"
    "except StoreError as exc:\n"
    "    print(exc)\n"
    "    raise SystemExit(1)\n"
)


def _open_in_child(db: Path, wait: float = 30.0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _OPEN, str(db), str(wait)],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_processes_opening_a_new_database_at_once_all_get_it(tmp_path: Path) -> None:
    # Each process found upgrades pending and ran them: the later ones failed on tables
    # and columns the first had just made ("table sites already exists").
    db = tmp_path / "linkwatch.db"
    children = [_open_in_child(db) for _ in range(4)]
    outputs = [(c.wait(timeout=120), c.stdout.read() if c.stdout else "") for c in children]
    assert outputs == [(0, "")] * 4
    conn = sqlite3.connect(db)
    applied = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY id")]
    conn.close()
    assert applied == MIGRATIONS.names


def test_opening_a_new_database_waits_for_a_writer_holding_it(tmp_path: Path) -> None:
    # Turning a file to WAL while another connection writes it fails at once: SQLite's
    # deadlock guard skips the busy timeout. One of four processes opening a new database
    # at once failed so in CI ("database is locked").
    db = tmp_path / "linkwatch.db"
    writer = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.5, writer.execute, ("COMMIT",))
    release.start()
    try:
        store = Store(db, busy_timeout=30.0)
    finally:
        release.join()
        writer.close()
    assert store.conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    store.close()


def test_a_writer_holding_a_new_database_past_the_busy_timeout_is_an_error(
    tmp_path: Path,
) -> None:
    db = tmp_path / "linkwatch.db"
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    try:
        with pytest.raises(StoreError, match=r"the database is busy .*storage\.busy_timeout"):
            Store(db, busy_timeout=0.3)
    finally:
        writer.close()
    assert time.monotonic() - started >= 0.3


def test_waiting_for_a_new_database_never_passes_the_busy_timeout(tmp_path: Path) -> None:
    # A writer makes the switch fail at once, a reader makes SQLite's busy handler wait:
    # the handler's wait once added a whole busy timeout to the time already spent.
    db = tmp_path / "linkwatch.db"
    writer = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE t (x)")
    reader = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    reader.execute("BEGIN")
    reader.execute("SELECT * FROM t").fetchall()
    release = threading.Timer(0.8, writer.execute, ("ROLLBACK",))
    release.start()
    started = time.monotonic()
    try:
        with pytest.raises(StoreError, match="the database is busy"):
            Store(db, busy_timeout=1.0)
    finally:
        release.join()
        reader.close()
        writer.close()
    assert 1.0 <= time.monotonic() - started < 1.5


def test_an_upgrade_waits_for_the_one_under_way(tmp_path: Path) -> None:
    db = tmp_path / "linkwatch.db"
    with upgrade_lock(db).open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        child = _open_in_child(db)
        time.sleep(1.0)
        # Still waiting: it has applied nothing behind the other process's back.
        assert child.poll() is None
        assert not Database(sqlite3.connect(db))["_sqlite_migrations"].exists()
        fcntl.flock(held, fcntl.LOCK_UN)
    assert child.wait(timeout=60) == 0
    assert Store(db).conn.execute("SELECT count(*) FROM sites").fetchone() == (0,)


def test_an_upgrade_held_up_too_long_is_an_error_naming_the_lock(tmp_path: Path) -> None:
    db = tmp_path / "linkwatch.db"
    with upgrade_lock(db).open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        child = _open_in_child(db, wait=0.3)
        output = child.stdout.read() if child.stdout else ""
        assert child.wait(timeout=60) == 1
    assert f"{db}: cannot open the database: another linkwatch process" in output
    assert str(upgrade_lock(db)) in output and "try again" in output
    assert "Traceback" not in output


def test_an_up_to_date_database_makes_no_lock_file(tmp_path: Path) -> None:
    db = tmp_path / "linkwatch.db"
    Store(db).close()
    upgrade_lock(db).unlink()
    Store(db).close()
    assert not upgrade_lock(db).exists()


def test_forgotten_links_get_their_pages_key_at_the_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "linkwatch.db"
    conn = sqlite3.connect(path, isolation_level=None)
    MIGRATIONS.apply(Database(conn), stop_before="m009_forgotten_pages")
    conn.execute("INSERT INTO sites (id, domain, role) VALUES (1, 'example.com', 'own')")
    conn.execute(
        "INSERT INTO forgotten_links (site_id, link_key, url_from, url_to, dropped_at)"
        " VALUES (1, 7, 'https://www.Ref.org/p', 'https://example.com/', '2026-01-01')"
    )
    conn.execute("INSERT INTO forgotten_links (site_id, link_key) VALUES (1, 8)")
    conn.close()
    store = Store(path)
    rows = store.conn.execute(
        "SELECT link_key, from_key FROM forgotten_links ORDER BY link_key"
    ).fetchall()
    store.close()
    # The key a page-only sample row of the same page is staged under.
    assert rows == [(7, link_key("ref.org/p", "")), (8, None)]


def test_a_lock_file_another_user_left_does_not_block_the_upgrade() -> None:
    # Not under tmp_path: another user cannot enter it.
    folder = Path(tempfile.mkdtemp(prefix="linkwatch-lock-"))
    try:
        db = folder / "linkwatch.db"
        conn = sqlite3.connect(db, isolation_level=None)
        MIGRATIONS.apply(Database(conn), stop_before="m009_forgotten_pages")
        conn.close()
        # Left by a `sudo linkwatch` once: readable by all, writable by its owner only.
        upgrade_lock(db).touch()
        os.chmod(upgrade_lock(db), 0o444)
        os.chmod(folder, 0o777)
        os.chmod(db, 0o666)
        assert _open_as_another_user(db) == 0
        assert Store(db).conn.execute("SELECT count(*) FROM forgotten_links").fetchone() == (0,)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _open_as_another_user(db: Path) -> int:
    """Open `db` in a forked process that cannot write the lock file: as nobody when the
    tests run as root (who may write any file), else as the file's owner, whom its mode
    keeps out; the exit status (0: opened and upgraded)."""
    # Loaded before the fork: the child reads no code a user other than root may not read.
    import sqlite_utils.migrations  # noqa: F401

    import daemon.store.ledger  # noqa: F401 - the upgrade imports it

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            Store(db, busy_timeout=5).close()
            code = 0
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
