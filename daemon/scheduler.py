"""The daemon loop: APScheduler jobs for polling, evaluation and delivery; signals."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import datetime
from types import FrameType

from apscheduler.events import EVENT_SCHEDULER_STARTED, SchedulerEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger

from daemon.sdnotify import notify, watchdog_interval
from daemon.service import Linkwatch, utcnow

log = logging.getLogger(__name__)


def _guarded(name: str, fn: Callable[[], object]) -> Callable[[], None]:
    def job() -> None:
        try:
            fn()
        except Exception:
            # A failing job must not stop the daemon; the next run tries again.
            log.exception("job %s failed", name)

    return job


def first_poll_at(last: datetime | None, interval_s: float, now: datetime) -> datetime:
    """When a source is next due: at once if never polled or overdue, else at last + interval."""
    if last is None:
        return now
    due = last.timestamp() + interval_s
    return now if due <= now.timestamp() else datetime.fromtimestamp(due, tz=now.tzinfo)


def build_scheduler(app: Linkwatch, now: datetime) -> BlockingScheduler:
    """A scheduler with one poll job per (site, source), an evaluation and a delivery job.

    Jobs run one at a time (one worker): they share one SQLite connection, and
    an ingest must finish before the next job starts.
    """
    sched = BlockingScheduler(
        timezone="UTC",
        executors={"default": ThreadPoolExecutor(max_workers=1)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
    )
    for site in app.settings.sites:
        for source in site.sources:
            cfg = app.settings.sources[source]
            interval = cfg.interval.total_seconds()
            start = first_poll_at(app.store.last_poll_at(site.domain, source), interval, now)

            def poll(domain: str = site.domain, name: str = source) -> None:
                at = utcnow()
                if app.poll_source(domain, name, at):
                    app.evaluate(at)
                    app.wake_delivery(at)

            sched.add_job(
                _guarded(f"poll {site.domain}/{source}", poll),
                IntervalTrigger(seconds=interval, start_date=start, jitter=min(60, interval / 10)),
                id=f"poll:{site.domain}:{source}",
                next_run_time=start,
            )
    sched.add_job(
        _guarded("evaluate", lambda: app.evaluate(utcnow())),
        IntervalTrigger(seconds=app.settings.daemon.evaluate_every.total_seconds()),
        id="evaluate",
    )
    sched.add_job(
        # Wakes each notifier's worker thread: a poll never waits on a notifier.
        _guarded("deliver", lambda: app.wake_delivery(utcnow())),
        IntervalTrigger(seconds=app.settings.daemon.deliver_every.total_seconds()),
        id="deliver",
        next_run_time=now,
    )
    ping_every = watchdog_interval()
    if ping_every is not None:
        # Its own executor: the ping proves the scheduler loop is alive even while a
        # long ingest holds the job worker.
        sched.add_executor(ThreadPoolExecutor(max_workers=1), "watchdog")
        sched.add_job(
            lambda: notify("WATCHDOG=1"),
            IntervalTrigger(seconds=ping_every),
            id="watchdog",
            executor="watchdog",
            next_run_time=now,
        )
    return sched


def run(app: Linkwatch) -> None:
    """Run until SIGTERM or SIGINT; the running job finishes first. SIGHUP reloads rules."""
    sched = build_scheduler(app, utcnow())
    stopping = threading.Event()
    stopper: list[threading.Thread] = []

    def shut_down() -> None:
        # shutdown waits for the running job; a signal handler must not block, so a
        # thread does it, once.
        if not stopper:
            app.stop_delivery()  # no new rows; a send in progress gets STOP_GRACE at most
            stopper.append(threading.Thread(target=sched.shutdown, kwargs={"wait": True}))
            stopper[0].start()

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s: finishing the running job, then exiting", signal.Signals(signum).name)
        notify("STOPPING=1", "STATUS=finishing the running job")
        stopping.set()
        if sched.running:
            shut_down()

    def started(event: SchedulerEvent) -> None:
        # A signal that came while the scheduler was starting is honoured now.
        if stopping.is_set():
            shut_down()

    def reload(signum: int, frame: FrameType | None) -> None:
        app.rulebook.reload()

    sched.add_listener(started, EVENT_SCHEDULER_STARTED)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    status = (
        f"linkwatch running: {len(app.settings.sites)} sites, {len(app.rulebook.rules)} rules, "
        f"{len(app.notifiers)} notifiers, database {app.store.path}"
    )
    log.info("%s", status)
    # Storage and rules are loaded by now: tell systemd the service is up.
    notify("READY=1", f"STATUS={status}")
    sched.start()
    for thread in stopper:
        thread.join()
    app.join_delivery()
    log.info("linkwatch stopped")
