"""Instants and durations as users write them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from daemon.timefmt import format_duration, from_db, parse_duration, parse_instant, to_db


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-09T22:10:00Z", datetime(2026, 1, 9, 22, 10, tzinfo=UTC)),
        ("2026-01-10T00:10:00+02:00", datetime(2026, 1, 9, 22, 10, tzinfo=UTC)),
        ("2026-01-09T17:10:00-05:00", datetime(2026, 1, 9, 22, 10, tzinfo=UTC)),
        ("2026-01-09 22:10", datetime(2026, 1, 9, 22, 10, tzinfo=UTC)),  # no zone: UTC
        ("2026-01-09", datetime(2026, 1, 9, tzinfo=UTC)),
    ],
)
def test_instants_are_read_in_utc_whatever_their_offset(text: str, expected: datetime) -> None:
    got = parse_instant(text)
    assert got == expected and got.tzinfo is UTC
    assert from_db(to_db(got)) == expected


def test_a_bad_instant_says_what_is_expected() -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_instant("yesterday")


def test_durations_round_trip() -> None:
    for text, delta in (
        ("30s", timedelta(seconds=30)),
        ("6h", timedelta(hours=6)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(days=14)),
    ):
        assert parse_duration(text) == delta
    assert format_duration(timedelta(days=14)) == "14d"
    assert format_duration(timedelta(seconds=90)) == "90s"


@pytest.mark.parametrize("text", ["0001-01-01T00:30:00+01:00", "9999-12-31T23:59:59-05:00"])
def test_instants_out_of_range_are_refused_not_crashed(text: str) -> None:
    with pytest.raises(ValueError, match="expected"):
        parse_instant(text)


def test_an_overlong_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration("99999999999d")
