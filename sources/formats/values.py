"""Parsing the cell values backlink tools write: booleans, numbers, dates, lost reasons."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_TRUE = frozenset({"true", "yes", "1", "y", "t", "+", "x"})
_FALSE = frozenset({"false", "no", "0", "n", "f", ""})
# The spellings exports actually use, looked up before any string work (hot path).
_EXACT = {"true": True, "false": False, "": False, "TRUE": True, "FALSE": False}


def parse_bool(value: str, *, nonempty_is_true: bool = False) -> bool:
    """`true/false` in any case, `Yes/No`, `1/0`; Majestic flags: any non-empty cell is set."""
    exact = _EXACT.get(value)
    if exact is not None:
        return exact
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    if nonempty_is_true:
        return True
    raise ValueError(f"expected true/false, got {value!r}")


def parse_number(value: str) -> float | None:
    """A number that may carry thousands separators (`1,240`) or a decimal comma (`12,4`)."""
    try:
        return float(value)
    except ValueError:
        pass
    v = value.strip().replace("\u00a0", "").replace(" ", "")
    if not v:
        return None
    try:
        return float(v)
    except ValueError:
        pass
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", v):
        return float(v.replace(",", ""))
    if re.fullmatch(r"-?\d+,\d+", v):
        return float(v.replace(",", "."))
    raise ValueError(f"expected a number, got {value!r}")


_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
_DMY = re.compile(r"(\d{1,2})[./](\d{1,2})[./](\d{4})$")
_MON_D_Y = re.compile(r"([A-Za-z]{3})[a-z]*\.? (\d{1,2}), (\d{4})$")
_D_MON_Y = re.compile(r"(\d{1,2}) ([A-Za-z]{3})[a-z]*\.? (\d{4})$")


def parse_datetime(value: str) -> datetime | None:
    """Dates as tools write them, in UTC: ISO, `2026-09-15 10:00`, `Sep 15, 2026`, `15.09.2026`."""
    if len(value) == 19 and value[10] == " ":
        # `YYYY-MM-DD HH:MM:SS` (Ahrefs): the common case, parsed as UTC in one call.
        try:
            return datetime.fromisoformat(value + "+00:00")
        except ValueError:
            pass
    v = value.strip()
    if not v:
        return None
    try:
        dt = datetime.fromisoformat(v.replace(" +", "+"))
    except ValueError:
        dt = _parse_localised_date(v)
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    try:
        return dt.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(f"date out of range: {value!r}") from exc


def _parse_localised_date(v: str) -> datetime:
    if m := _DMY.match(v):
        return datetime(int(m[3]), int(m[2]), int(m[1]))
    for pattern, order in ((_MON_D_Y, (1, 2, 3)), (_D_MON_Y, (2, 1, 3))):
        if m := pattern.match(v):
            month = _MONTHS.get(m[order[0]].lower())
            if month is not None:
                return datetime(int(m[order[2]]), month, int(m[order[1]]))
    raise ValueError(f"expected a date, got {v!r}")


# Provider wording (Ahrefs lost_reason / "Lost status", Majestic ReasonLost, …) onto
# linkwatch's taxonomy; the first matching fragment wins.
_REASON_FRAGMENTS = (
    ("notfound", "not_found"),
    ("404", "not_found"),
    ("410", "not_found"),
    ("not found", "not_found"),
    ("noindex", "noindex"),
    ("canonical", "not_canonical"),
    ("redirect", "redirected"),
    ("pageerror", "page_error"),
    ("page error", "page_error"),
    ("5xx", "page_error"),
    ("robots", "robots_blocked"),
    ("nofollow", "nofollowed"),
    ("unreachable", "unreachable"),
    ("dns", "unreachable"),
    ("removed", "removed"),
    ("link removed", "removed"),
    ("deleted", "removed"),
    ("dropped", "dropped"),
)


def map_lost_reason(*texts: str) -> str:
    """The taxonomy reason for a provider's lost-status text; `unknown` when nothing says."""
    for text in texts:
        t = text.strip().lower().replace("_", "")
        if not t:
            continue
        for fragment, reason in _REASON_FRAGMENTS:
            if fragment in t:
                return reason
    return "unknown"
