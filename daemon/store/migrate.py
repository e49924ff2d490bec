"""sqlite-utils migrations, registered without loading sqlite-utils until one must run.

Opening an up-to-date database is what every command does; sqlite-utils (with dateutil
and the rest it loads) is a good part of a reading command's start-up, so the names of
the applied migrations are read with plain SQL and the library is loaded only when one
is pending, or when a caller asks it about a database (issue 9).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from sqlite_utils import Database
    from sqlite_utils.migrations import Migrations

# sqlite-utils' bookkeeping table (`Migrations.migrations_table`); a test checks the two
# agree, since `up_to_date` reads it without the library.
MIGRATIONS_TABLE = "_sqlite_migrations"

_Fn = TypeVar("_Fn", bound=Callable[..., Any])


@dataclass(frozen=True)
class _Registered:
    name: str
    fn: Callable[[Database], None]
    transactional: bool


class LazyMigrations:
    """A sqlite-utils `Migrations` set whose library is loaded on first real use."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._registered: list[_Registered] = []
        self._loaded: Migrations | None = None

    def __call__(
        self, *, name: str | None = None, transactional: bool = True
    ) -> Callable[[_Fn], _Fn]:
        """Register a migration, as `Migrations.__call__` does."""

        def register(fn: _Fn) -> _Fn:
            self._registered.append(_Registered(name or fn.__name__, fn, transactional))
            self._loaded = None
            return fn

        return register

    @property
    def names(self) -> list[str]:
        """The registered migrations' names, in order."""
        return [m.name for m in self._registered]

    def migrations(self) -> Migrations:
        """The sqlite-utils set itself (loads the library)."""
        if self._loaded is None:
            from sqlite_utils.migrations import Migrations

            loaded = Migrations(self.name)
            for m in self._registered:
                loaded(name=m.name, transactional=m.transactional)(m.fn)
            self._loaded = loaded
        return self._loaded

    def applied(self, db: Database) -> list[Any]:
        """`Migrations.applied`."""
        return self.migrations().applied(db)

    def pending(self, db: Database) -> list[Any]:
        """`Migrations.pending`."""
        return self.migrations().pending(db)

    def apply(self, db: Database, *, stop_before: str | Iterable[str] | None = None) -> None:
        """`Migrations.apply`."""
        self.migrations().apply(db, stop_before=stop_before)

    def up_to_date(self, conn: sqlite3.Connection) -> bool:
        """True when every registered migration is recorded as applied (plain SQL, no
        sqlite-utils); False when one is pending or the table is not there yet."""
        try:
            rows = conn.execute(
                f"SELECT name FROM {MIGRATIONS_TABLE} WHERE migration_set = ?", (self.name,)
            ).fetchall()
        except sqlite3.OperationalError:
            # No table yet (a new file), or anything else: the slow path says what it is.
            return False
        return set(self.names) <= {str(r[0]) for r in rows}

    def upgrade(self, conn: sqlite3.Connection, lock: Path, wait: float) -> None:
        """Apply pending migrations to a database; loads sqlite-utils only if there are.

        One process at a time upgrades, holding `lock` (a file beside the database): the
        others wait for it, up to `wait` seconds, and then find nothing left to do."""
        if self.up_to_date(conn):
            return
        from sqlite_utils import Database

        # A lock of its own, not a transaction: a migration's executescript() commits
        # whatever transaction is open, so no SQLite lock can span a whole upgrade.
        with ExitStack() as held:
            try:
                held.enter_context(exclusive(lock, wait))
            except TimeoutError:
                raise TimeoutError(
                    f"another linkwatch process has been upgrading the database's schema"
                    f" for over {wait:g}s (it holds {lock}); try again when it is done"
                ) from None
            # Another process may have upgraded the file while this one waited.
            if not self.up_to_date(conn):
                self.apply(Database(conn))


def upgrade_lock(database: Path) -> Path:
    """The file whose lock serialises schema upgrades of `database`."""
    return database.with_name(database.name + "-upgrade.lock")


@contextmanager
def exclusive(path: Path, wait: float) -> Iterator[None]:
    """Hold an exclusive lock on `path` (made if need be), waiting up to `wait` seconds;
    TimeoutError when another process holds it longer. The kernel drops the lock of a
    process that dies (kill -9)."""
    # The file stays: unlinking it would let a waiting process and a newcomer lock two.
    import fcntl

    # Opened for reading, which is all flock needs: a lock file another user made (a
    # `sudo linkwatch` once) must not keep this one out.
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"{path} is locked by another process") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
