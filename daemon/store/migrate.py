"""sqlite-utils migrations, registered without loading sqlite-utils until one must run.

Opening an up-to-date database is what every command does; sqlite-utils (with dateutil
and the rest it loads) is a good part of a reading command's start-up, so the names of
the applied migrations are read with plain SQL and the library is loaded only when one
is pending, or when a caller asks it about a database (issue 9).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
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

    def upgrade(self, conn: sqlite3.Connection) -> None:
        """Apply pending migrations to a database; loads sqlite-utils only if there are."""
        if self.up_to_date(conn):
            return
        from sqlite_utils import Database

        self.apply(Database(conn))
