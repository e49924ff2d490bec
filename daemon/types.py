"""Pydantic field types shared by the settings and rule files."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

from daemon.timefmt import format_duration, parse_duration

_LONGEST = timedelta(days=3660)


def to_duration(value: Any) -> Any:
    """A duration from text (`7d`) or seconds, between 0s and 10 years (ValueError if not)."""
    if isinstance(value, str):
        value = parse_duration(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            value = timedelta(seconds=value)
        except (OverflowError, ValueError) as exc:
            raise ValueError("expected a duration of at most 10 years") from exc
    if isinstance(value, timedelta) and not timedelta(0) <= value <= _LONGEST:
        raise ValueError("expected a duration between 0s and 10 years")
    return value


# A duration written as "30s", "15m", "6h", "7d" or "2w" (or seconds as a number).
Duration = Annotated[
    timedelta, BeforeValidator(to_duration), PlainSerializer(format_duration, return_type=str)
]
