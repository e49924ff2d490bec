"""Parsing the cell values backlink tools write: booleans, numbers, dates, lost reasons."""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import UTC, datetime

from sources.urls import ascii_host, host_name, split_url

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


class NonFiniteError(ValueError):
    """A number cell holding `inf`, `nan` or one too big for a float (`1e999`)."""


def _finite(number: float, value: str) -> float:
    if not math.isfinite(number):
        raise NonFiniteError(f"expected a finite number, got {value!r}")
    return number


def parse_number(value: str) -> float | None:
    """A number that may carry thousands separators (`1,240`) or a decimal comma (`12,4`);
    `inf`, `nan` and numbers beyond a float's range (`1e999`) are refused (NonFiniteError)."""
    try:
        return _finite(float(value), value)
    except NonFiniteError:
        raise
    except ValueError:
        pass
    v = value.strip().replace("\u00a0", "").replace(" ", "")
    if not v:
        return None
    try:
        return _finite(float(v), value)
    except NonFiniteError:
        raise
    except ValueError:
        pass
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", v):
        return float(v.replace(",", ""))
    if re.fullmatch(r"-?\d+,\d+", v):
        return float(v.replace(",", "."))
    raise ValueError(f"expected a number, got {value!r}")


def parse_score(value: str, what: str, top: float = 100.0) -> float | None:
    """A provider score from 0 to `top` (`45`, `45%`); None when the cell is empty."""
    v = value.strip().removesuffix("%")
    number = parse_number(v)
    if number is not None and not 0 <= number <= top:
        raise ValueError(f"expected {what} from 0 to {top:g}, got {value!r}")
    return number


def percent_toxicity(value: str) -> float | None:
    """A toxicity already on a 0-100 scale (Semrush Toxic Score, Moz Spam Score since 2019)."""
    return parse_score(value, "a toxicity score")


def moz_legacy_spam_score(value: str) -> float | None:
    """Moz's Spam Score of Open Site Explorer days counted 17 spam flags: 0-17, scaled to
    0-100; a value written as a percentage is the newer 1-100 % scale and kept as it is."""
    if value.strip().endswith("%"):
        return percent_toxicity(value)
    flags = parse_score(value, "a Moz Spam Score (flags)", 17)
    return None if flags is None else round(flags * 100 / 17, 1)


_SPAM = {"true": 100.0, "false": 0.0}


def spam_flag_toxicity(value: str) -> float | None:
    """A provider's is-spam flag (Ahrefs `Is spam`) as a toxicity: true 100, false 0."""
    exact = _SPAM.get(value)  # the spelling exports use, looked up first (hot path)
    if exact is not None:
        return exact
    if not value.strip():
        return None
    return 100.0 if parse_bool(value) else 0.0


def domain_name(value: str) -> str:
    """A referring domain as tools write it (`news.example.io`, `https://www.msn.com/`,
    `WWW.Example.ORG.`) in one spelling: lower case, IDNA, no scheme, path or `www.`."""
    v = value.strip()
    if "/" in v:
        parts = split_url(v)
        host = host_name(parts[0]) if parts is not None else ""
    else:
        host = ascii_host(v.rstrip(".").lower()) if v else ""
    host = host.removeprefix("www.")
    if "." not in host or any(c in host for c in " @,;"):
        raise ValueError(f"expected a domain name, got {value!r}")
    return host


# Month names and their usual abbreviations in the languages Search Console and the other
# tools write dates in (English, Spanish, Italian, French, German, Portuguese, Dutch),
# compared without accents, case or a trailing dot. No spelling names two months.
_MONTH_NAMES: tuple[tuple[str, ...], ...] = (
    (
        "jan",
        "january",
        "ene",
        "enero",
        "gen",
        "gennaio",
        "janv",
        "janvier",
        "januar",
        "janeiro",
        "januari",
    ),
    (
        "feb",
        "february",
        "febrero",
        "febbraio",
        "fev",
        "fevr",
        "fevrier",
        "februar",
        "fevereiro",
        "februari",
    ),
    ("mar", "march", "marzo", "mars", "marz", "maerz", "mrz", "marco", "maart", "mrt"),
    ("apr", "april", "abr", "abril", "aprile", "avr", "avril"),
    ("may", "mayo", "mag", "maggio", "mai", "maio", "mei"),
    ("jun", "june", "junio", "giu", "giugno", "juin", "juni", "junho"),
    ("jul", "july", "julio", "lug", "luglio", "juil", "juillet", "juli", "julho"),
    ("aug", "august", "ago", "agosto", "aout", "augustus"),
    (
        "sep",
        "sept",
        "september",
        "septiembre",
        "setiembre",
        "set",
        "settembre",
        "septembre",
        "setembro",
    ),
    ("oct", "october", "octubre", "ott", "ottobre", "octobre", "okt", "oktober", "out", "outubro"),
    ("nov", "november", "noviembre", "novembre", "novembro"),
    ("dec", "december", "dic", "diciembre", "dicembre", "decembre", "dez", "dezember", "dezembro"),
)
MONTHS: dict[str, int] = {name: i + 1 for i, names in enumerate(_MONTH_NAMES) for name in names}
# `28/09/2026`, `15.09.2026`, optionally with a time (`28/09/2026 14:05`, Ahrefs before 2021):
# day first, as every tool writing this form outside the US does.
_DMY = re.compile(r"(\d{1,2})([./])(\d{1,2})\2(\d{4})(?:,?[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?$")
# `2026/09/28` (Japanese and Chinese UIs), `2026年9月28日`.
_YMD = re.compile(r"(\d{4})(?:[./]|年)\s*(\d{1,2})(?:[./]|月)\s*(\d{1,2})日?$")
# `Sep 15, 2026`; `28 Sep 2026`, `28 de septiembre de 2026`, `28. Sept. 2026`.
_MON_D_Y = re.compile(r"([^\W\d_]{3,})\.? (\d{1,2}),? (\d{4})$")
_D_MON_Y = re.compile(r"(\d{1,2})\.? (?:de )?([^\W\d_]{3,})\.?,? (?:de )?(\d{4})$")


def month_number(name: str) -> int | None:
    """The month a name or abbreviation in one of the languages above stands for."""
    plain = unicodedata.normalize("NFKD", name.casefold().rstrip("."))
    return MONTHS.get("".join(c for c in plain if not unicodedata.combining(c)))


def parse_datetime(value: str) -> datetime | None:
    """Dates as tools write them, in UTC: ISO, `2026-09-15 10:00`, `Sep 15, 2026`, `15.09.2026`."""
    if value[10:11] == " " and (len(value) == 19 or value[19:] == " +00:00"):
        # `YYYY-MM-DD HH:MM:SS` (Ahrefs), with ` +00:00` (DataForSEO): the common cases,
        # parsed as UTC in one call.
        try:
            return datetime.fromisoformat(value[:19] + "+00:00")
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
    try:
        if m := _DMY.match(v):
            h, mi, s = (int(g) if g else 0 for g in (m[5], m[6], m[7]))
            return datetime(int(m[4]), int(m[3]), int(m[1]), h, mi, s)
        if m := _YMD.match(v):
            return datetime(int(m[1]), int(m[2]), int(m[3]))
        v = " ".join(v.split())
        for pattern, (mon, day, year) in ((_MON_D_Y, (1, 2, 3)), (_D_MON_Y, (2, 1, 3))):
            if (m := pattern.match(v)) and (month := month_number(m[mon])) is not None:
                return datetime(int(m[year]), month, int(m[day]))
    except ValueError as exc:
        raise ValueError(f"expected a date, got {v!r}: {exc}") from exc
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
