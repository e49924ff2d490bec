"""A one-line progress display for long commands (`import`, `poll`) on a terminal.

The line goes to stderr, so stdout stays what scripts read; it is redrawn in place at most
a few times a second, erased before anything is logged and when the work ends, and never
written at all when stderr is not a terminal (a pipe, a file, the journal, cron).
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from sources.model import SnapshotResult

T = TypeVar("T")

# Seconds between redraws, at least: enough to look alive, too few to cost anything.
REDRAW_EVERY = 0.25
# Rows counted between looks at the clock: counting stays a few nanoseconds a row.
_ROWS_PER_LOOK = 512


class Stream(Protocol):
    """What the display writes to: a text stream that can say whether it is a terminal."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...

    def isatty(self) -> bool: ...


def is_terminal(stream: Stream) -> bool:
    """True when `stream` is an open terminal."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        # No isatty, or a closed stream: not a terminal to draw on.
        return False


class Progress:
    """Rows read, rows per second and units (files, sites) done, on one line of `stream`.

    `next(label)` starts the next unit of `total`; `watch(result)` counts the rows of a
    snapshot as they are read. Use it as a context manager, so the line is erased however
    the work ends. `every`: seconds between redraws, at least (default REDRAW_EVERY).
    """

    def __init__(
        self,
        action: str,
        unit: str,
        total: int,
        *,
        stream: Stream | None = None,
        clock: Callable[[], float] = time.monotonic,
        every: float | None = None,
        width: int | None = None,
    ) -> None:
        self.action = action
        self.unit = unit
        self.total = total
        self.stream: Stream = stream if stream is not None else sys.stderr
        self.enabled = is_terminal(self.stream)
        self.clock = clock
        self.every = REDRAW_EVERY if every is None else every
        self.width = width
        self.rows = 0
        self.snapshots = 0
        self.index = 0
        self.label = ""
        self.started = clock()
        self._drawn_at = self.started
        self._shown = 0  # characters on the line now; 0: nothing shown
        self._filter = _EraseBeforeLog(self)

    def __enter__(self) -> Progress:
        if self.enabled:
            for handler in logging.getLogger().handlers:
                handler.addFilter(self._filter)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Erase the line; nothing is drawn after this."""
        self.erase()
        self.enabled = False
        for handler in logging.getLogger().handlers:
            handler.removeFilter(self._filter)

    def next(self, label: str = "") -> None:
        """Start the next unit (a file, a site), named `label`."""
        self.index += 1
        self.label = label
        self.tick()

    def watch(self, result: SnapshotResult) -> None:
        """Count the rows of `result` as they are read (its iterators are wrapped in place:
        the source fills in the result's other fields as it reads, so it stays one object)."""
        self.snapshots += 1
        if not self.enabled:
            return
        result.records = self.counted(result.records)
        if result.domain_records is not None:
            result.domain_records = self.counted(result.domain_records)

    def counted(self, items: Iterator[T]) -> Iterator[T]:
        """`items`, each counted as a row when the next is asked for."""
        pending = 0
        for item in items:
            yield item
            pending += 1
            if pending == _ROWS_PER_LOOK:
                self.rows += pending
                pending = 0
                self.tick()
        self.rows += pending

    def tick(self) -> None:
        """Redraw the line if it has not been drawn for `every` seconds."""
        if not self.enabled:
            return
        now = self.clock()
        if now - self._drawn_at >= self.every:
            self._drawn_at = now
            self._draw(self.line(now))

    def line(self, now: float) -> str:
        """What the line says at `now`."""
        head = f"{self.action} {self.unit} {self.index}/{self.total}"
        if self.label:
            head += f" ({self.label})"
        elapsed = now - self.started
        rate = self.rows / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.rows:,} rows", f"{rate:,.0f} rows/s"]
        if self.unit != "file":
            parts.insert(0, f"{self.snapshots} file{'' if self.snapshots == 1 else 's'}")
        return f"{head}: {', '.join(parts)}"

    def erase(self) -> None:
        """Blank the line and put the cursor back at its start (a log line may follow)."""
        if self._shown:
            self._write("\r" + " " * self._shown + "\r")
            self._shown = 0

    def _draw(self, text: str) -> None:
        # Never wider than the terminal: a wrapped line cannot be redrawn in place.
        width = self.width or shutil.get_terminal_size().columns
        text = text[: max(width - 1, 1)]
        # Blanks cover what a longer previous line left; no escape sequences, so a dumb
        # terminal shows it right as well.
        self._write("\r" + text.ljust(self._shown))
        self._shown = len(text)

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            # The terminal went away: the work goes on without its progress line.
            self.enabled = False
            self._shown = 0


class _EraseBeforeLog(logging.Filter):
    """Erases the progress line before a log record is written to the same terminal."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress

    def filter(self, record: logging.LogRecord) -> bool:
        self.progress.erase()
        # The line comes back at the next redraw.
        return True
