"""The daemon loop: APScheduler jobs for polling, evaluation and delivery; signals."""

from __future__ import annotations

import itertools
import logging
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from types import FrameType

from apscheduler.events import EVENT_SCHEDULER_STARTED, SchedulerEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from daemon.sdnotify import notify, watchdog_interval
from daemon.service import Linkwatch, utcnow
from daemon.store import database_problem

log = logging.getLogger(__name__)
# How often the daemon looks for edited rule files (a stat of each file).
RULES_WATCH_EVERY = 5
MAINTENANCE_JOB = "maintenance"


def _guarded(name: str, fn: Callable[[], object]) -> Callable[[], None]:
    def job() -> None:
        try:
            fn()
        except sqlite3.Error as exc:
            # Busy or full: the next run tries again; the cause is the user's to see.
            log.error("job %s failed: %s", name, database_problem(exc))
        except Exception:
            # A failing job must not stop the daemon; the next run tries again.
            log.exception("job %s failed", name)

    return job


def first_poll_at(last: datetime | None, interval_s: float, now: datetime) -> datetime:
    """When a source is next due: at once if never polled, overdue, or last polled "in the
    future" (the clock went back since), else at last + interval."""
    if last is None or last > now:
        return now
    due = last.timestamp() + interval_s
    return now if due <= now.timestamp() else datetime.fromtimestamp(due, tz=now.tzinfo)


def schedule_polls(sched: BaseScheduler, app: Linkwatch, now: datetime) -> None:
    """(Re)place one poll job per (site, source) of the settings in force, and set the
    evaluation and delivery intervals; each source is next due as `first_poll_at` says."""
    for job in sched.get_jobs():
        if job.id.startswith("poll:"):
            job.remove()
    for site in app.settings.sites:
        for source in site.sources:
            cfg = app.settings.sources[source]
            interval = cfg.interval.total_seconds()
            start = first_poll_at(app.store.last_poll_at(site.domain, source), interval, now)

            def poll(domain: str = site.domain, name: str = source) -> None:
                at = utcnow()
                # Evaluated only when a snapshot was stored (one overtaken stores none).
                if any(o.snapshot_id for o in app.poll_source(domain, name, at)):
                    app.evaluate(at)
                    app.wake_delivery(at)

            sched.add_job(
                _guarded(f"poll {site.domain}/{source}", poll),
                # No jitter: APScheduler adds the interval to the jittered time, so it drifts.
                IntervalTrigger(seconds=interval, start_date=start),
                id=f"poll:{site.domain}:{source}",
                next_run_time=start,
            )
    daemon = app.settings.daemon
    for job_id, every in (("evaluate", daemon.evaluate_every), ("deliver", daemon.deliver_every)):
        trigger = IntervalTrigger(seconds=every.total_seconds(), start_date=now)
        if sched.get_job(job_id) is None:
            continue
        sched.reschedule_job(job_id, trigger=trigger)


def maintenance_trigger(app: Linkwatch) -> CronTrigger:
    """Every day at `[storage] maintenance_at`, UTC."""
    at = app.settings.storage.maintenance_at
    return CronTrigger(hour=at.hour, minute=at.minute, timezone="UTC")


def schedule_maintenance(sched: BaseScheduler, app: Linkwatch, now: datetime) -> None:
    """(Re)place the daily maintenance job (retention, ANALYZE, VACUUM when worth it) at
    the quiet time the settings in force name, next due after `now`."""
    # On the job worker like every job: it shares the store's connection, and an ingest
    # never runs beside it (the write lock is taken per site, briefly, all the same).
    trigger = maintenance_trigger(app)
    sched.add_job(
        _guarded("maintenance", lambda: app.maintain(utcnow())),
        trigger,
        id=MAINTENANCE_JOB,
        replace_existing=True,
        next_run_time=trigger.get_next_fire_time(None, now),
    )


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
    schedule_polls(sched, app, now)
    schedule_maintenance(sched, app, now)
    # Evaluated at start too: an alert due while the daemon was down is told now.
    sched.add_job(
        _guarded("evaluate", lambda: app.evaluate(utcnow())),
        IntervalTrigger(seconds=app.settings.daemon.evaluate_every.total_seconds()),
        id="evaluate",
        next_run_time=now,
    )
    # A rule file edited, added or removed is evaluated within seconds, not at the next
    # evaluation (it may be minutes away).
    sched.add_job(
        _guarded("rules", lambda: evaluate_if_rules_changed(app)),
        IntervalTrigger(seconds=RULES_WATCH_EVERY),
        id="rules",
        next_run_time=now + timedelta(seconds=RULES_WATCH_EVERY),
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


def evaluate_if_rules_changed(app: Linkwatch) -> bool:
    """Evaluate at once (and wake delivery) when a rule file changed; True if it did."""
    if not app.rules_changed():
        return False
    now = utcnow()
    app.evaluate(now)
    app.wake_delivery(now)
    return True


def warn_if_evaluated_ahead(app: Linkwatch, now: datetime) -> bool:
    """Log a warning when alert states were last committed at a time still to come (the
    clock went back, or a `--commit` ran ahead): their `for`, `keep_firing_for` and
    reminders wait until the clock reaches it. True if so."""
    last = app.store.last_evaluation()
    if last is None or last <= now + timedelta(minutes=1):
        return False
    log.warning(
        "alert states were last evaluated at %s, later than now (%s): pending alerts and "
        "reminders wait until then; check the clock",
        last.isoformat(timespec="seconds"),
        now.isoformat(timespec="seconds"),
    )
    return True


def running_status(app: Linkwatch) -> str:
    """The STATUS= line: what runs, and whether the last reload was refused."""
    status = (
        f"linkwatch running: {len(app.settings.sites)} sites, {len(app.rulebook.rules)} rules, "
        f"{len(app.notifiers)} notifiers, database {app.store.path}"
    )
    problems = app.config_health().problems
    if problems:
        status += f"; last reload refused ({len(problems)} problems, see the log)"
    return status


def reload_now(sched: BaseScheduler, app: Linkwatch) -> bool:
    """Reload settings and rules; on success the polls follow the new settings. Either way
    the alerts are evaluated at once, so config_health tells a refused reload."""
    ok = app.reload()
    now = utcnow()
    if ok:
        schedule_polls(sched, app, now)
        schedule_maintenance(sched, app, now)
    app.evaluate(now)
    app.wake_delivery(now)
    return ok


def _in_worker(sched: BaseScheduler, name: str, fn: Callable[[], object]) -> None:
    """Run `fn` once, now, on the job worker after the running job: the worker is the only
    thread that uses the store's connection."""
    sched.add_job(_guarded(name, fn), id=name, replace_existing=True)


def replan_jobs(sched: BaseScheduler, app: Linkwatch, now: datetime) -> None:
    """Plan every job again from `now` (after the clock jumped)."""
    schedule_polls(sched, app, now)
    for job in sched.get_jobs():
        # The maintenance too: planned a year ahead by a clock that was, it would not run
        # for a year; run once now, it is back at its time of day from then on.
        if not job.id.startswith("poll:") and job.next_run_time is not None:
            job.modify(next_run_time=now)


class ClockWatch:
    """Notices the wall clock jumping (it is compared with the monotonic clock) and then
    re-plans every job from the new time: a clock set back must not pause polling."""

    def __init__(self, on_jump: Callable[[float], None], every: float = 15, jump: float = 60):
        self.on_jump = on_jump
        self.every = every
        self.jump = jump
        self.offset = time.time() - time.monotonic()
        self.stopped = threading.Event()

    def check(self) -> float:
        """The jump since the last check in seconds (0 if under the threshold)."""
        offset = time.time() - time.monotonic()
        moved = offset - self.offset
        self.offset = offset
        if abs(moved) < self.jump:
            return 0.0
        self.on_jump(moved)
        return moved

    def run(self) -> None:
        """Check every `every` seconds (monotonic waits) until stopped."""
        while not self.stopped.wait(self.every):
            try:
                self.check()
            except Exception:
                log.exception("re-planning after a clock jump failed")

    def start(self) -> threading.Thread:
        """Run in a daemon thread."""
        thread = threading.Thread(target=self.run, name="clock-watch", daemon=True)
        thread.start()
        return thread


def run(app: Linkwatch) -> None:
    """Run until SIGTERM or SIGINT (the running job is cut short or finishes first); SIGHUP
    reloads settings and rules, keeping the running ones if the new ones are refused."""
    app.watch_config = True
    warn_if_evaluated_ahead(app, utcnow())
    sched = build_scheduler(app, utcnow())
    reloads = itertools.count(1)
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
        app.stopping.set()  # an ingest still reading stops; nothing of it is stored
        if sched.running:
            shut_down()

    def started(event: SchedulerEvent) -> None:
        # A signal that came while the scheduler was starting is honoured now.
        if stopping.is_set():
            shut_down()

    def reloaded() -> None:
        try:
            ok = reload_now(sched, app)
            log.info("reload %s", "done" if ok else "refused; the running configuration stays")
        finally:
            notify("READY=1", f"STATUS={running_status(app)}")

    def reload(signum: int, frame: FrameType | None) -> None:
        notify(
            "RELOADING=1",
            f"MONOTONIC_USEC={time.monotonic_ns() // 1000}",
            "STATUS=reloading settings and rules",
        )
        # A thread adds the job: the scheduler's lock must not be taken in a signal handler.
        name = f"reload {next(reloads)}"  # a SIGHUP during a reload gets its own run
        threading.Thread(target=_in_worker, args=(sched, name, reloaded)).start()

    def replan(moved: float) -> None:
        log.warning("the clock jumped by %+.0f s: re-planning every job from now", moved)
        _in_worker(sched, "replan", lambda: replan_jobs(sched, app, utcnow()))

    sched.add_listener(started, EVENT_SCHEDULER_STARTED)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    status = running_status(app)
    log.info("%s", status)
    clock = ClockWatch(replan)
    clock.start()
    # Storage and rules are loaded by now: tell systemd the service is up.
    notify("READY=1", f"STATUS={status}")
    sched.start()
    clock.stopped.set()
    for thread in stopper:
        thread.join()
    app.join_delivery()
    log.info("linkwatch stopped")
