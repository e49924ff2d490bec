"""Clock jumps: a clock set back or forward neither pauses polling nor crashes the daemon."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.scheduler import ClockWatch, build_scheduler, first_poll_at, replan_jobs
from daemon.service import Linkwatch
from daemon.settings import load_settings
from tests.helpers import write_ahrefs, write_settings

NOW = datetime(2026, 3, 1, tzinfo=UTC)
HOUR = 3600.0


def test_a_source_last_polled_in_the_future_is_due_at_once() -> None:
    assert first_poll_at(NOW + timedelta(days=300), HOUR, NOW) == NOW
    assert first_poll_at(NOW - timedelta(minutes=10), HOUR, NOW) == NOW + timedelta(minutes=50)
    assert first_poll_at(NOW - timedelta(hours=2), HOUR, NOW) == NOW
    assert first_poll_at(None, HOUR, NOW) == NOW


def test_the_clock_watch_reports_jumps_over_its_threshold_only() -> None:
    jumps: list[float] = []
    clock = ClockWatch(jumps.append, jump=60)
    assert clock.check() == 0.0
    clock.offset -= 30  # as if the wall clock moved 30 s more than the monotonic one
    assert clock.check() == 0.0
    clock.offset += 3600  # the wall clock was set back an hour
    moved = clock.check()
    assert -3700 < moved < -3500
    assert jumps == [moved]
    assert clock.check() == 0.0


def test_after_the_clock_went_back_every_job_is_planned_from_the_new_time(
    tmp_path: Path,
) -> None:
    settings = load_settings(write_settings(tmp_path))
    folder = tmp_path / "exports" / "example.com"
    folder.mkdir(parents=True)
    write_ahrefs(
        folder / "backlinks_2026-02-01.csv", [("https://a.org/", "https://example.com/", "a", 1)]
    )
    app = Linkwatch.open(settings)
    try:
        # Polled while the clock was a year ahead.
        ahead = NOW + timedelta(days=365)
        assert [o.status for o in app.poll_source("example.com", "exports", ahead)] == ["baseline"]
        sched = build_scheduler(app, ahead)
        poll = sched.get_job("poll:example.com:exports")
        assert poll.next_run_time > ahead
        replan_jobs(sched, app, NOW)
        for job in sched.get_jobs():
            assert job.next_run_time == NOW, job.id
    finally:
        app.close()


def test_polls_keep_their_interval_without_drift(tmp_path: Path) -> None:
    settings = load_settings(write_settings(tmp_path))
    app = Linkwatch.open(settings)
    try:
        sched = build_scheduler(app, NOW)
        trigger = sched.get_job("poll:example.com:exports").trigger
        at = NOW
        for _ in range(100):
            at = trigger.get_next_fire_time(at, at)
        assert at == NOW + 100 * timedelta(hours=1)
    finally:
        app.close()


def test_alert_states_evaluated_ahead_of_the_clock_are_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from daemon.scheduler import warn_if_evaluated_ahead

    app = Linkwatch.open(load_settings(write_settings(tmp_path)))
    try:
        assert not warn_if_evaluated_ahead(app, NOW)  # never evaluated
        app.store.mark_evaluated(NOW + timedelta(seconds=30))
        assert not warn_if_evaluated_ahead(app, NOW)  # within a minute: clocks differ
        app.store.mark_evaluated(NOW + timedelta(days=2))
        with caplog.at_level("WARNING"):
            assert warn_if_evaluated_ahead(app, NOW)
        assert "later than now" in caplog.text and "check the clock" in caplog.text
    finally:
        app.close()
