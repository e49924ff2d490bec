"""Delivery workers: one thread per notifier, so a notifier that hangs delays no other."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path

from alerts.notifiers import Notifier
from alerts.outbox import deliver_due
from daemon.store import Store

log = logging.getLogger(__name__)

# How long a stopping daemon waits for sends in progress before abandoning them: with
# the scheduler's own shutdown it keeps a stop well inside systemd's TimeoutStopSec.
STOP_GRACE = 10.0


class DeliveryWorker:
    """Delivers one notifier's due rows on its own daemon thread and database connection.

    A thread blocked in a send that never returns cannot keep the process alive (it is a
    daemon thread), and its row stays claimed, to be taken over when the claim expires.
    """

    def __init__(
        self,
        path: Path,
        name: str,
        notifier: Notifier,
        ttl: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        self.name = name
        self.notifier = notifier
        self.ttl = ttl
        self.clock = clock
        # Its own connection: one sqlite3 connection is not safe for transactions from
        # several threads at once, and WAL lets this one write beside the others.
        self.store = Store(path)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"deliver-{name}", daemon=True)

    def start(self) -> None:
        """Start the worker thread."""
        self._thread.start()

    def wake(self) -> None:
        """Ask for a delivery pass; never waits."""
        self._wake.set()

    def stop(self) -> None:
        """Take no further rows; never waits (a send in progress finishes or times out)."""
        self._stop.set()
        self._wake.set()

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the thread to end; True if it did."""
        self._thread.join(max(timeout, 0))
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stop.is_set():
                    return
                self._drain()
        finally:
            self.store.close()

    def _drain(self) -> None:
        """Deliver due rows one at a time, each with a fresh `now`, until none is due."""
        while not self._stop.is_set():
            try:
                report = deliver_due(
                    self.store,
                    {self.name: self.notifier},
                    self.clock(),
                    self.ttl,
                    notifier=self.name,
                    limit=1,
                    clock=self.clock,
                )
            except Exception:
                # A database held too long by another writer, say: the next wake retries.
                log.exception("delivery to %s failed; trying again at the next pass", self.name)
                return
            if not (report.sent or report.retrying or report.dead):
                return


class DeliveryWorkers:
    """A delivery worker for each notifier; replaced as a whole when the notifiers are."""

    def __init__(self, path: Path, clock: Callable[[], datetime]) -> None:
        self.path = path
        self.clock = clock
        self.notifiers: Mapping[str, Notifier] = {}
        self.ttl = timedelta(0)
        self.workers: list[DeliveryWorker] = []
        # Workers of replaced notifiers, finishing the send they are in.
        self.retired: list[DeliveryWorker] = []
        self.deadline: float | None = None

    def configure(self, notifiers: Mapping[str, Notifier], ttl: timedelta) -> None:
        """Run one worker per notifier of `notifiers` (a new mapping after a reload)."""
        if (notifiers is self.notifiers and ttl == self.ttl) or self.deadline is not None:
            return  # unchanged, or stopping: no new workers
        # Built before anything is replaced: if one cannot open its connection, the next
        # call tries again instead of finding the mapping already taken.
        workers = [
            DeliveryWorker(self.path, name, notifier, ttl, self.clock)
            for name, notifier in notifiers.items()
        ]
        for worker in self.workers:
            worker.stop()
        self.retired = [w for w in self.retired + self.workers if not w.join(0)]
        self.notifiers, self.ttl, self.workers = notifiers, ttl, workers
        for worker in self.workers:
            worker.start()

    def wake(self) -> None:
        """Ask every worker for a delivery pass; never waits."""
        for worker in self.workers:
            worker.wake()

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Tell every worker to take no further rows; never waits. `join` waits for them
        at most `grace` seconds from now."""
        if self.deadline is None:
            self.deadline = time.monotonic() + grace
        for worker in self.workers + self.retired:
            worker.stop()

    def join(self) -> list[str]:
        """Wait for the workers until the stop's grace ends; the names of those abandoned
        mid-send (their rows stay claimed and are delivered after the next start)."""
        deadline = self.deadline if self.deadline is not None else time.monotonic()
        stuck = [
            w.name for w in self.workers + self.retired if not w.join(deadline - time.monotonic())
        ]
        for name in stuck:
            log.warning(
                "delivery to %s abandoned mid-send at shutdown; it is delivered after the next"
                " start",
                name,
            )
        return stuck
