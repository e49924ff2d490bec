"""Two polls of one API source at once: the one overtaken stores nothing and is no failure.

A real stand-in API on loopback, two linkwatch instances (two connections) on one real
SQLite file, and the real service code path between them.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from daemon.service import Linkwatch
from sources.api import ApiSource
from sources.model import Backlink, SnapshotResult
from tests.fakes.base import profile
from tests.fakes.dataforseo import DataForSeoFake
from tests.helpers import cli_command, write_rule
from tests.test_api_sources import HEALTH_RULE, open_app, states

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def fake() -> Iterator[DataForSeoFake]:
    server = HTTPServer(threaded=True)
    server.start()
    stand_in = DataForSeoFake(server, profile(0))
    stand_in.install()
    yield stand_in
    server.clear()
    server.stop()


@pytest.fixture
def apps(tmp_path: Path, fake: DataForSeoFake) -> Iterator[tuple[Linkwatch, Linkwatch]]:
    """Two instances of one configuration, as two `linkwatch poll` processes would be."""
    first = open_app(tmp_path, fake)
    second = open_app(tmp_path, fake)
    write_rule(tmp_path, "health", HEALTH_RULE)
    yield first, second
    first.close()
    second.close()


def _newer_snapshot(app: Linkwatch, at: datetime) -> None:
    """Fetch and ingest a whole snapshot taken at `at` (a poll that began later)."""
    source = app.sources["api"]
    assert isinstance(source, ApiSource)
    result = source.fetch("example.com", at, sleep=lambda s: None)
    try:
        assert app.store.ingest("example.com", "api", result, app.guards("api"), at).status in (
            "complete",
            "baseline",
        )
    finally:
        result.close()


def test_a_fetch_overtaken_mid_paging_stores_nothing_and_raises_no_alert(
    fake: DataForSeoFake, apps: tuple[Linkwatch, Linkwatch], caplog: pytest.LogCaptureFixture
) -> None:
    first, second = apps
    page = fake.largest_page()
    fake.links = profile(3 * page)
    assert [o.status for o in first.poll_source("example.com", "api", T0)] == ["baseline"]
    assert states(first) == {"live": 3 * page}
    # The profile shrinks: stored, the overtaken fetch would make links missing.
    fake.links = profile(3 * page)[: 2 * page]

    def overtake(result: SnapshotResult) -> None:
        records = result.records

        def wrapped() -> Iterator[Backlink]:
            for i, record in enumerate(records):
                if i == 1:
                    # Mid-paging, a poll that began later stores its snapshot first.
                    _newer_snapshot(second, T0 + timedelta(days=2))
                yield record

        result.records = wrapped()

    first.on_snapshot = overtake
    with caplog.at_level(logging.INFO):
        (outcome,) = first.poll_source("example.com", "api", T0 + timedelta(days=1))
    assert outcome.status == "superseded" and outcome.snapshot_id == 0
    assert outcome.note == (
        "superseded by a newer snapshot taken at 2026-03-03T00:00:00+00:00; nothing stored"
    )
    assert not [r for r in caplog.records if r.exc_info], "no traceback is logged"
    assert [s["status"] for s in first.store.snapshots("example.com")] == [
        "baseline",
        "complete",
    ]
    # The newer poll's snapshot made its missing links missing; nothing else changed.
    assert states(first) == {"live": 2 * page, "missing": page}
    assert [(t.rule, t.state) for t in first.evaluate(T0 + timedelta(days=2))] == []


def test_a_poll_older_than_a_stored_snapshot_does_not_fetch(
    fake: DataForSeoFake, apps: tuple[Linkwatch, Linkwatch], tmp_path: Path
) -> None:
    first, _ = apps
    fake.links = profile(30)
    # A poll that began later (its clock read later) finished before this one got here.
    newer = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=6)
    _newer_snapshot(first, newer)
    calls = fake.data_calls
    run = subprocess.run(
        cli_command(tmp_path / "settings.toml", "poll"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in run.stderr
    assert run.returncode == 0, run.stderr
    assert (
        f"superseded by a newer snapshot taken at {newer.isoformat()}; not fetched, nothing stored"
        in run.stdout
    )
    assert "0 snapshots, 0 alert changes" in run.stdout
    assert fake.data_calls == calls
    assert [s["status"] for s in first.store.snapshots("example.com")] == ["baseline"]


def _cli_poll(settings: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_command(settings, "poll"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_second_poll_of_a_source_being_polled_is_refused_before_it_fetches(
    fake: DataForSeoFake, apps: tuple[Linkwatch, Linkwatch], tmp_path: Path
) -> None:
    first, second = apps
    fake.links = profile(30)
    with second.store.poll_lock("example.com", "api"):
        # Another instance (the daemon, say) is polling this source right now.
        (outcome,) = first.poll_source("example.com", "api", T0)
        run = _cli_poll(tmp_path / "settings.toml")
    assert (outcome.status, outcome.snapshot_id) == ("busy", 0)
    assert outcome.note == (
        "another poll of this source is running; this one is skipped: nothing fetched,"
        " nothing stored"
    )
    assert "Traceback" not in run.stderr
    assert run.returncode == 1, run.stderr
    assert "example.com/api: - taken " in run.stdout
    assert ": busy: another poll of this source is running" in run.stdout
    assert fake.data_calls == 0
    assert first.store.snapshots("example.com") == []
    # Once it is done, the source is polled again as usual.
    assert [o.status for o in first.poll_source("example.com", "api", T0)] == ["baseline"]


def test_a_clock_set_back_is_an_error_not_a_superseded_poll(
    fake: DataForSeoFake, apps: tuple[Linkwatch, Linkwatch]
) -> None:
    first, _ = apps
    fake.links = profile(30)
    # Snapshots taken before the machine's clock went back three days: skipped quietly,
    # every poll for three days would store nothing and tell no one.
    _newer_snapshot(first, T0 + timedelta(days=3))
    calls = fake.data_calls
    (outcome,) = first.poll_source("example.com", "api", T0)
    assert outcome.status == "error"
    assert outcome.note == (
        "the latest snapshot of this source was taken at 2026-03-04T00:00:00+00:00, more than"
        " 1d after now (2026-03-01T00:00:00+00:00): was the clock set back? Not fetched;"
        " polls resume once the clock passes it"
    )
    assert fake.data_calls == calls
    assert [(t.rule, t.state) for t in first.evaluate(T0)] == [("health", "firing")]
    # Within a day it is a poll overtaken, as two overlapping polls are.
    (later,) = first.poll_source("example.com", "api", T0 + timedelta(days=2, hours=1))
    assert later.status == "superseded"
