"""Pydantic field types shared by the settings and rule files."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, SecretStr

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


_YEARS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*y\s*$")
# A year of history is 365 days: retention is about how much to keep, not calendar dates.
YEAR = timedelta(days=365)
# Shorter than a week would leave rules nothing to compare a window with.
SHORTEST_KEEP = timedelta(days=7)


def to_keep(value: Any) -> Any:
    """How long history is kept: `all` (None, the default), or a duration like `2y`, `400d`
    or `26w` between 7 days and 10 years (ValueError if not)."""
    if value is None or isinstance(value, timedelta):
        written = value
    elif isinstance(value, str) and value.strip().lower() == "all":
        return None
    else:
        written = None
        years = _YEARS.match(value) if isinstance(value, str) else None
        try:
            if years is not None:
                written = timedelta(days=float(years.group(1)) * YEAR.days)
            elif not isinstance(value, bool):
                written = to_duration(value)
        except (ValueError, OverflowError):
            written = None
    if written is None and value is not None:
        shown = str(value).lower() if isinstance(value, bool) else repr(value)
        raise ValueError(f"expected `all` or a duration like 2y, 400d or 26w, got {shown}")
    if isinstance(written, timedelta) and not SHORTEST_KEEP <= written <= LONGEST:
        raise ValueError(
            "expected `all` or a duration between 7d and 10y (like 2y, 400d or 26w),"
            f" got {format_duration(written)}"
        )
    return written


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
# How long history is kept: `all` (None) or `2y`, `400d`, `26w`: 7 days to 10 years.
KeepDuration = Annotated[
    timedelta | None,
    BeforeValidator(to_keep),
    PlainSerializer(lambda v: "all" if v is None else format_duration(v), return_type=str),
]


def given_secret(value: Any) -> Any:
    """`value`, refused (ValueError) when it is an empty or blank secret: it would be sent
    as one, and an empty variable would hide the file's good value."""
    if isinstance(value, SecretStr) and not value.get_secret_value().strip():
        raise ValueError(
            "is empty: give the secret, or leave the key out of the file and set it "
            "in the environment or a systemd credential"
        )
    return value
