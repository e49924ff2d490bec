"""The store's SQLite-only spellings, in one place (the schema's DDL, per dialect anyway, aside)."""

from __future__ import annotations

import sqlite3
import time

# Everything else the store says is SQL PostgreSQL reads as it is (docs/scale-out.md lists
# what still differs in meaning, not spelling); tests/test_dialect.py keeps these spellings
# here. Not gathered: the schema's migrations (daemon/store/schema.py) are historical DDL,
# and DDL is per dialect anyway: a port writes its own schema.

BEGIN_WRITE = "BEGIN IMMEDIATE"  # PostgreSQL: BEGIN, then the per-site advisory lock
"""Start a write transaction holding the write lock from its first statement."""
# Taken at BEGIN, the lock cannot be refused halfway through a transaction that has read.

BEGIN_READ = "BEGIN DEFERRED"  # PostgreSQL: BEGIN
"""Start a transaction that locks nothing until it writes a stored table."""
# Staging writes temp tables only: it must never hold up another process's writer.

BEGIN_SNAPSHOT = "BEGIN DEFERRED"  # PostgreSQL: BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY
"""Start a read transaction whose statements all see one state of the database."""
# An evaluation pass reads the ledger in several statements: one ingest committing
# between two of them must not be half in its counts.

ROWID = "rowid"  # PostgreSQL: an identity column in the staging table
"""The implicit row number staging rows are told apart by."""

REPLACE_INTO = "INSERT OR REPLACE INTO"  # PostgreSQL: ON CONFLICT (key) DO UPDATE SET all
"""Insert a row, replacing whole the one with the same primary key."""

JSON_EACH = "json_each"  # PostgreSQL: json_array_elements_text (its column is `value` too)
"""The table function listing a JSON array's elements, in a column named `value`."""

JSON_ARRAY = "json_array"  # PostgreSQL: json_build_array
"""The function making a JSON array of its arguments."""

JSON_AGG = "json_group_array"  # PostgreSQL: json_agg
"""The aggregate making a JSON array of a group's values."""
# The JSON functions are named here, not wrapped: both dialects call them alike.


def temp(name: str) -> str:
    """A temp table or temp index name, in the connection's own schema."""
    # Qualified, a DROP can only ever reach the temp table, never a stored one so named.
    return f"temp.{name}"  # PostgreSQL: pg_temp.name (or no prefix)


def indexed_by(index: str) -> str:
    """A planner hint: read the table through `index` only."""
    # Without it SQLite may build a Bloom filter by scanning every site's rows.
    return f"INDEXED BY {index}"  # PostgreSQL: nothing (or a pg_hint_plan comment)


def greatest(a: str, b: str) -> str:
    """The larger of two SQL expressions (NULL if either is)."""
    return f"max({a}, {b})"  # PostgreSQL: GREATEST(a, b), which skips a NULL instead


def epoch_to_iso(expr: str) -> str:
    """Unix seconds as ISO 8601 text to the second, UTC, without zone."""
    # PostgreSQL: to_char(to_timestamp(expr) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
    return f"strftime('%Y-%m-%dT%H:%M:%S', {expr}, 'unixepoch')"


def tune(conn: sqlite3.Connection) -> None:
    """Set a freshly opened connection up for linkwatch: WAL, caches, temp storage."""
    # PostgreSQL: server settings (postgresql.conf), nothing per connection.
    _use_wal(conn)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA cache_size = -65536")
    # A log grown by a VACUUM (or a 1M-link baseline) while someone read is cut
    # back to this size at the next checkpoint, not kept at its largest.
    conn.execute("PRAGMA journal_size_limit = 67108864")
    conn.execute("PRAGMA temp_store = FILE")
    # Set before the first temp table: staging is written, sorted and dropped whole, a
    # million rows at a time, and on 16 KB pages that costs a sixth less than on 4 KB
    # ones (fewer pages to allocate, link and free; dropping: half). Larger pages gained
    # little more, and made the evaluation's probes of its small temp tables no faster.
    conn.execute("PRAGMA temp.page_size = 16384")
    conn.execute("PRAGMA temp.cache_size = -32768")


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL (once per file: the mode is stored in it), waiting out
    another connection's write lock as long as the connection's busy timeout."""
    # A file not yet in WAL is switched under an exclusive lock, and while another
    # connection is writing it SQLite refuses at once rather than wait (its deadlock
    # guard skips the busy handler): processes opening a new database together hit it.
    wait_ms = int(conn.execute("PRAGMA busy_timeout").fetchone()[0])
    deadline = time.monotonic() + wait_ms / 1000
    try:
        while True:
            # A reader's lock is waited out by the busy handler: never past the deadline.
            left_ms = max(0, int((deadline - time.monotonic()) * 1000))
            conn.execute(f"PRAGMA busy_timeout = {left_ms}")
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                # The primary code: an extended one (BUSY_RECOVERY, say) is busy too.
                busy = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
                if not busy or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {wait_ms}")


def release_cache(conn: sqlite3.Connection) -> None:
    """Give back the memory of the pages this connection has cached (they are read again
    from the file when needed)."""
    conn.execute("PRAGMA shrink_memory")  # PostgreSQL: nothing (the server's buffers)


def never_wait(conn: sqlite3.Connection) -> None:
    """Make the connection's next statements give up at once on another's lock."""
    # PostgreSQL: SET lock_timeout = '1ms' (there 0 means wait for ever)
    conn.execute("PRAGMA busy_timeout = 0")


def analyze(conn: sqlite3.Connection, name: str | None = None) -> None:
    """Refresh the query planner's statistics of every table and index (or of the one
    table or index `name`)."""
    # analysis_limit samples each index instead of reading it whole: seconds, not minutes,
    # on a database of millions of links, and as good for choosing plans.
    conn.execute("PRAGMA analysis_limit = 1000")
    # PostgreSQL: ANALYZE (autovacuum does it too); an index's statistics are its table's
    conn.execute("ANALYZE" if name is None else f"ANALYZE {name}")


def has_statistics(conn: sqlite3.Connection, index: str) -> bool:
    """True when the planner has statistics of the index `index` (an ANALYZE measured it)."""
    # PostgreSQL: pg_stats rows of its table (dropping an index keeps them there)
    if not has_table(conn, "sqlite_stat1"):
        return False
    row = conn.execute("SELECT 1 FROM sqlite_stat1 WHERE idx = ? LIMIT 1", (index,)).fetchone()
    return row is not None


def optimize(conn: sqlite3.Connection) -> None:
    """What SQLite recommends before a connection closes: re-analyse what looks stale."""
    conn.execute("PRAGMA analysis_limit = 1000")
    conn.execute("PRAGMA optimize")  # PostgreSQL: nothing (autovacuum's ANALYZE)


def vacuum(conn: sqlite3.Connection) -> None:
    """Rewrite the file without its free pages (into the log, in WAL mode)."""
    conn.execute("VACUUM")  # PostgreSQL: autovacuum; VACUUM FULL to give space back


def checkpoint(conn: sqlite3.Connection) -> bool:
    """Copy the log into the file and empty it; False when another connection, reading,
    still needs the log (its space comes back at a later checkpoint)."""
    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return not busy  # PostgreSQL: CHECKPOINT (the server's own business)


def free_fraction(conn: sqlite3.Connection) -> float:
    """The share of the file's pages that are free (what VACUUM would give back)."""
    # PostgreSQL: pgstattuple's free_percent, or the autovacuum statistics.
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    return free / pages if pages else 0.0


def quick_check(conn: sqlite3.Connection, limit: int) -> list[str]:
    """The integrity check's findings, at most `limit`; ["ok"] for a sound file."""
    # PostgreSQL: amcheck's verify_heapam and bt_index_check.
    return [str(row[0]) for row in conn.execute(f"PRAGMA quick_check({int(limit)})")]


def table_names(conn: sqlite3.Connection) -> set[str]:
    """The names of the database's stored tables."""
    # PostgreSQL: SELECT table_name FROM information_schema.tables WHERE table_schema = ...
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {str(row[0]) for row in rows}


def ledger_version(conn: sqlite3.Connection) -> tuple[int, int]:
    """Changes when the database is written, by this connection or another: compare two
    readings to tell whether anything changed in between."""
    # PostgreSQL: a counter the ledger's writes bump (or pg_stat_xact_* for this session).
    (other,) = conn.execute("PRAGMA data_version").fetchone()
    return int(other), conn.total_changes


def temp_table_names(conn: sqlite3.Connection, prefix: str) -> list[str]:
    """The names of this connection's temp tables starting with `prefix`."""
    # PostgreSQL: SELECT relname FROM pg_class WHERE relnamespace = pg_my_temp_schema()...
    rows = conn.execute(
        "SELECT name FROM sqlite_temp_master WHERE type = 'table' AND substr(name, 1, ?) = ?",
        (len(prefix), prefix),
    )
    return [str(row[0]) for row in rows]


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    """True when the database holds a table (or index, view, trigger) named `name`."""
    # PostgreSQL: to_regclass(name) IS NOT NULL
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone()
    return row is not None


def index_definition(conn: sqlite3.Connection, name: str) -> str | None:
    """The statement that creates the stored index `name` (None: no such index)."""
    # PostgreSQL: SELECT indexdef FROM pg_indexes WHERE indexname = name
    row = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)
    ).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def sort_large(conn: sqlite3.Connection, statement: str) -> None:
    """Run a statement that sorts a million rows (a table copied in key order, an index
    built) with two sorting threads, each with an 8 MB buffer: with the page cache's
    64 MB each, a 1M-link poll peaked at 367 MB (16 MB: 286 MB; 8 MB: 247 MB, as with
    one thread). The threads took a quarter off the sorts of a first export."""
    # PostgreSQL: SET LOCAL maintenance_work_mem = '8MB', max_parallel_maintenance_workers
    cache = conn.execute("PRAGMA cache_size").fetchone()[0]
    threads = conn.execute("PRAGMA threads").fetchone()[0]
    try:
        conn.execute("PRAGMA cache_size = -8192")
        conn.execute("PRAGMA threads = 2")
        conn.execute(statement)
    finally:
        conn.execute(f"PRAGMA threads = {int(threads)}")
        conn.execute(f"PRAGMA cache_size = {int(cache)}")


__all__ = [
    "BEGIN_READ",
    "BEGIN_SNAPSHOT",
    "BEGIN_WRITE",
    "JSON_AGG",
    "JSON_ARRAY",
    "JSON_EACH",
    "REPLACE_INTO",
    "ROWID",
    "analyze",
    "checkpoint",
    "epoch_to_iso",
    "free_fraction",
    "greatest",
    "has_statistics",
    "has_table",
    "index_definition",
    "indexed_by",
    "ledger_version",
    "never_wait",
    "optimize",
    "quick_check",
    "sort_large",
    "table_names",
    "temp",
    "temp_table_names",
    "tune",
    "vacuum",
]
