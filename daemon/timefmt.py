"""Instants and durations: one text form in SQLite, one parser for what users write."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def to_db(at: datetime) -> str:
    """The stored form of an instant: UTC, fixed width, so text order is time order."""
    if at.tzinfo is not UTC:
        if at.tzinfo is None:
            raise ValueError(f"naive datetime {at!r}: linkwatch keeps times timezone-aware")
        at = at.astimezone(UTC)
    # isoformat is several times faster than strftime; this runs once per imported row.
    return at.isoformat(timespec="microseconds")[:-6] + "Z"


def from_db(text: str) -> datetime:
    """Read an instant written by `to_db`."""
    return datetime.fromisoformat(text)


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant from a user; a time without zone is taken as UTC."""
    try:
        at = datetime.fromisoformat(text.strip())
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ValueError(
            f"expected an ISO 8601 time like 2026-01-09T22:10:00Z, got {text!r}"
        ) from exc
    if not 1970 <= at.year <= 2999:
        raise ValueError(f"expected a time between the years 1970 and 2999, got {text!r}")
    return at


def parse_duration(text: str) -> timedelta:
    """`30s`, `15m`, `6h`, `7d`, `2w` as a timedelta."""
    m = _DURATION.match(text)
    if m is None:
        raise ValueError(f"expected a duration like 30s, 15m, 6h, 7d or 2w, got {text!r}")
    try:
        return timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2)])
    except OverflowError as exc:
        raise ValueError(f"duration {text!r} is too long") from exc


def format_duration(delta: timedelta) -> str:
    """The shortest exact `7d` / `6h` / `90s` form of a duration."""
    seconds = int(delta.total_seconds())
    for unit in ("d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def format_elapsed(delta: timedelta) -> str:
    """How long something lasted, for people: `2d 3h`, `45m`, `30s` (two units at most)."""
    seconds = max(int(delta.total_seconds()), 0)
    parts: list[str] = []
    for unit in ("d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
        if len(parts) == 2:
            break
    return " ".join(parts)
