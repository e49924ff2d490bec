"""Pydantic field types shared by the settings and rule files."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

from daemon.timefmt import format_duration, parse_duration

LONGEST = timedelta(days=3660)
# An interval, window or TTL under a second would poll, evaluate or retry in a tight loop,
# or look at an empty window.
SHORTEST_POSITIVE = timedelta(seconds=1)


def _between(value: Any, shortest: timedelta) -> Any:
    if isinstance(value, bool):
        # pydantic would read `true` as one second.
        written = "true" if value else "false"
        raise ValueError(f"expected a duration like 30s, 15m, 6h, 7d or 2w, got {written}")
    if isinstance(value, str):
        value = parse_duration(value)
    elif isinstance(value, int | float):
        if isinstance(value, float) and math.isnan(value):
            raise ValueError("expected a duration, got nan")
        try:
            value = timedelta(seconds=value)
        except (OverflowError, ValueError) as exc:
            raise ValueError("expected a duration of at most 10 years") from exc
    if isinstance(value, timedelta) and not shortest <= value <= LONGEST:
        raise ValueError(f"expected a duration between {format_duration(shortest)} and 10 years")
    return value


def to_duration(value: Any) -> Any:
    """A duration from text (`7d`) or seconds, between 0s and 10 years (ValueError if not)."""
    return _between(value, timedelta(0))


def to_positive_duration(value: Any) -> Any:
    """A duration from text (`7d`) or seconds, between 1s and 10 years (ValueError if not)."""
    return _between(value, SHORTEST_POSITIVE)


# A duration written as "30s", "15m", "6h", "7d" or "2w" (or seconds as a number).
Duration = Annotated[
    timedelta, BeforeValidator(to_duration), PlainSerializer(format_duration, return_type=str)
]
# The same, at least one second: every interval, window and TTL.
PositiveDuration = Annotated[
    timedelta,
    BeforeValidator(to_positive_duration),
    PlainSerializer(format_duration, return_type=str),
]
