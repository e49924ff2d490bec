"""A read-only look at a database file for `linkwatch check`: never creates, migrates or writes."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from sqlite_utils import Database

from daemon.store import dialect
from daemon.store.schema import MIGRATIONS

# `check` runs as systemd's ExecReload: an integrity check of a huge file is cut short
# rather than holding up the reload.
CHECK_BUDGET_S = 20.0


@dataclass(frozen=True)
class DatabaseCheck:
    """What `check` found: a problem (None if the file is usable) and a one-line note."""

    problem: str | None
    note: str


def check_database(path: Path, budget_s: float = CHECK_BUDGET_S) -> DatabaseCheck:
    """Open `path` read-only and run SQLite's quick integrity check; a missing file is fine."""
    if not path.exists():
        return DatabaseCheck(None, f"{path} does not exist yet; it will be created")
    try:
        # mode=ro: SQLite refuses every write, so a check never creates or migrates the file.
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as exc:
        return DatabaseCheck(f"cannot open {path} read-only: {exc}", "")
    deadline = time.monotonic() + budget_s
    # A non-zero answer interrupts the running statement (OperationalError "interrupted").
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    try:
        return _inspect(conn, path)
    except sqlite3.Error as exc:
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_INTERRUPT:
            return DatabaseCheck(
                None, f"{path}: integrity check skipped: it took over {budget_s:g} s"
            )
        return DatabaseCheck(_problem(path, exc), "")
    finally:
        conn.close()


def _problem(path: Path, exc: sqlite3.Error) -> str:
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_NOTADB:
        return f"{path}: not a linkwatch database ({exc})"
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_CORRUPT:
        return f"{path}: the database is damaged ({exc})"
    return f"{path}: cannot read the database: {exc}"


def _inspect(conn: sqlite3.Connection, path: Path) -> DatabaseCheck:
    tables = dialect.table_names(conn)
    if not tables:
        return DatabaseCheck(None, f"{path} is empty; linkwatch will set it up")
    db = Database(conn)
    if not MIGRATIONS.applied(db):
        shown = ", ".join(sorted(tables)[:5])
        return DatabaseCheck(
            f"{path}: not a linkwatch database (an SQLite file with other tables: {shown})", ""
        )
    # One line per problem: SQLite's findings can hold newlines.
    findings = [" ".join(finding.split()) for finding in dialect.quick_check(conn, 10)]
    if findings != ["ok"]:
        return DatabaseCheck(f"{path}: the database is damaged: {'; '.join(findings)}", "")
    pending = len(MIGRATIONS.pending(db))
    upgrade = f"; {pending} schema upgrade(s) will be applied at start" if pending else ""
    return DatabaseCheck(None, f"{path} passed its integrity check{upgrade}")


__all__ = ["CHECK_BUDGET_S", "DatabaseCheck", "check_database"]
