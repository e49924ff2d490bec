"""Majestic API source: `GetBackLinkData`, paged by `From`/`Count`, deleted links included.

What is documented (developer-support.majestic.com, "GetBackLinkData", "GetSubscriptionInfo",
"API Reference Guide") and what is inferred is said where it is used: the command, its
parameters (`Count` up to 50,000, `From`, `Mode`, `datasource`, `MaxSourceURLsPerRefDomain`),
the cost (5,000 analysis units per call, one retrieval unit per row returned) and the free
`GetSubscriptionInfo` are documented; the vocabulary of `ReasonLost` and of error codes is
not published, so both are read defensively.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote_plus

from pydantic import Field, SecretStr

from daemon.textsafe import one_line
from sources.api import (
    ApiAuthError,
    ApiClient,
    ApiError,
    ApiSettings,
    ApiSource,
    Budget,
    Page,
    as_date,
    as_number,
    as_text,
    require_dict,
    require_list,
    scaled,
)
from sources.formats.values import map_lost_reason
from sources.model import Backlink

# Documented: "Count ... Maximum: 50000"; GetBackLinkData serves no more rows than that for
# an item in all (beyond it Majestic points to the asynchronous DownloadBackLinks).
MAX_COUNT = 50_000
# Documented: "5000 AnalysisResUnits are consumed for each use" (without sorting/filtering).
ANALYSIS_UNITS_PER_CALL = 5_000
RATING_METRIC = "Majestic TF"
_PATH = "api/json"
_OK = "OK"
_QUOTED = 200
_AUTH_HINT = (
    "check sources.{name}.api_key (majestic.com > Account > API: a key of a plan with API access)"
)
# Error codes are not published; these fragments of `Code` or `ErrorMessage` say "no units
# left" or "this key is refused" (inferred from the command's resource names and the usual
# wording, e.g. InsufficientRetrievalResUnits, InvalidAPIKey).
_UNITS_WORDS = (
    "insufficient",
    "resunits",
    "resource unit",
    "quota",
    "allowance",
    "subscription",
    "expired",
    "limitexceeded",
    "limit exceeded",
)
_AUTH_WORDS = (
    "apikey",
    "api key",
    "accesstoken",
    "access token",
    "privatekey",
    "private key",
    "unauthori",
    "notauthori",
    "authenticat",
    "accessdenied",
    "access denied",
    "forbidden",
    "permission",
    "invalidkey",
)


class MajesticSettings(ApiSettings):
    """Settings of a `majestic` source."""

    kind: Literal["majestic"]
    base_url: str = Field(
        default="https://api.majestic.com/", description="the API's address (tests: local)"
    )
    api_key: SecretStr = Field(description="the Majestic API key (a secret)")
    datasource: Literal["fresh", "historic"] = Field(
        default="fresh",
        description="the index: fresh (links seen in the last ~90 days, updated daily) or "
        "historic (5 years, updated monthly)",
    )
    include_deleted: bool = Field(
        default=True,
        description="also fetch the links Majestic flags deleted (Mode=0): they are lost at "
        "once with Majestic's reason; each is a row the poll pays for",
    )
    page_size: int = Field(
        default=MAX_COUNT,
        ge=1,
        le=MAX_COUNT,
        description="rows per call (each call also costs 5,000 analysis units: keep it large)",
    )


class MajesticSource(ApiSource):
    """Polls Majestic's GetBackLinkData (every backlink of the domain, deleted ones marked
    lost with Majestic's reason); Trust Flow of the linking page is the rating."""

    kind = "majestic"
    cost_unit = "retrieval units"
    Settings = MajesticSettings
    settings: MajesticSettings

    @property
    def budget_unit(self) -> str:
        """Majestic charges one retrieval unit per row returned: the budget counts rows."""
        return "rows (retrieval units)"

    def _post(self, client: ApiClient, cmd: str, **params: str) -> dict[str, Any]:
        """One command's answer, with `Code` checked."""
        # POST keeps the key out of the URL (and so out of proxy and HTTP-library logs);
        # documented: "An HTTP GET or POST request is sent ... to one of the two endpoints".
        form = {
            "app_api_key": self.settings.api_key.get_secret_value(),
            "cmd": cmd,
            "datasource": self.settings.datasource,
            **params,
        }
        body = client.call(
            "POST",
            self.url(_PATH),
            data=form,
            auth_hint=_AUTH_HINT.format(name=self.name),
            error_text=self._error_text,
        )
        answer = require_dict(body, f"{client.source}: {cmd}")
        self._check_code(client, answer, cmd)
        return answer

    def _redacted(self, text: str) -> str:
        """Provider text with the key taken out (FullError may echo the request)."""
        key = self.settings.api_key.get_secret_value()
        if key:
            for form in {key, quote_plus(key)}:
                text = text.replace(form, "***")
        return one_line(text[: _QUOTED * 2])[:_QUOTED].strip()

    def _error_text(self, body: Any) -> str | None:
        if isinstance(body, dict) and (body.get("Code") or body.get("ErrorMessage")):
            said = f"{body.get('Code')}: {body.get('ErrorMessage') or body.get('FullError')}"
            return self._redacted(said)
        return None

    def _check_code(self, client: ApiClient, answer: dict[str, Any], cmd: str) -> None:
        """Majestic answers HTTP 200 with `Code` other than "OK" when a command fails."""
        code = as_text(answer.get("Code"))
        if code == _OK:
            return
        message = as_text(answer.get("ErrorMessage")) or as_text(answer.get("FullError")) or ""
        said = self._redacted(f"{code or 'no Code'}: {message or 'no error message'}")
        words = f"{code or ''} {message}".lower()
        if any(w in words for w in _UNITS_WORDS):
            raise ApiAuthError(
                f"{client.source}: Majestic has no units left for {cmd} ({said}); wait for the"
                " subscription's renewal or add units on majestic.com, and keep"
                f" sources.{self.name}.budget and interval within the plan"
            )
        if any(w in words for w in _AUTH_WORDS):
            raise ApiAuthError(
                f"{client.source}: Majestic refused the credentials ({said});"
                f" {_AUTH_HINT.format(name=self.name)}"
            )
        raise ApiError(f"{client.source}: {cmd}: Majestic answered {said}")

    def pages(self, client: ApiClient, site: str, budget: Budget, now: datetime) -> Iterator[Page]:
        """Pages of GetBackLinkData from `From=0` until a short page (or Majestic's limit)."""
        size = self.settings.page_size
        offset = 0
        # Read from the first answer's Headers (documented field names, values inferred):
        # TotalBackLinks is the item's backlink count, the total paging must reach;
        # AvailableLines is how many rows GetBackLinkData will serve at all (50,000 in
        # every sample, whatever the item's size); TotalLines, at least as large as
        # TotalBackLinks in every sample, bounds the rows there are. None of them ends the
        # listing: only a page shorter than asked does (a count may be stale or capped),
        # and the totals only say, at the end, that it fell short.
        total: int | None = None
        available: int | None = None
        lines: int | None = None
        while True:
            want = budget.cap(size)
            if available is not None:
                want = min(want, available - offset)
            answer = self._post(
                client,
                "GetBackLinkData",
                item=site,
                Count=str(want),
                From=str(offset),
                # Mode 0: deleted links too, so that Majestic's losses are reported as such
                # (Mode 1 leaves them out: they then turn missing, and lost when confirmed).
                Mode="0" if self.settings.include_deleted else "1",
                ShowDomainInfo="0",
                MaxSourceURLsPerRefDomain="-1",
            )
            table = _table(answer, "BackLinks", client.source)
            headers = table.get("Headers")
            headers = headers if isinstance(headers, dict) else {}
            rows = require_list(table.get("Data"), f"{client.source}: BackLinks Data")
            if offset == 0:
                total = _count(headers.get("TotalBackLinks"))
                available = _count(headers.get("AvailableLines"))
                lines = _count(headers.get("TotalLines"))
            links, bad = self._links(rows, client)
            offset += len(rows)
            short = len(rows) < want
            capped = available is not None and offset >= available
            cost = _charged(answer, "ChargedRetrievalResUnits", len(rows))
            if bad is not None:
                # The rows before it are read; the snapshot is partial (even on page one).
                yield Page(links, cost, total)
                raise bad
            if capped and not short:
                # A full page up to the rows GetBackLinkData serves: it cannot be asked for
                # more, and that this is the end is nowhere documented (nor is a count to
                # be trusted for it): read what it gives, then say why it is partial.
                yield Page(links, cost, total)
                more = max(total or 0, lines or 0)
                has = (
                    f"this item has {more:,}"
                    if more > offset
                    else "its last page was full, so more may exist"
                )
                raise ApiError(
                    f"{client.source}: Majestic serves at most {available:,} rows through"
                    f" GetBackLinkData and {has}; the snapshot is partial (import Majestic's"
                    " DownloadBackLinks or Advanced Report CSV through a csv_dir source"
                    " instead)"
                )
            yield Page(links, cost, total, last=short)
            if short:
                return

    def _links(self, rows: list[Any], client: ApiClient) -> tuple[list[Backlink], ApiError | None]:
        """The rows as links, up to the first that is not one (and the error it is)."""
        links: list[Backlink] = []
        for row in rows:
            try:
                links.append(self._link(require_dict(row, f"{client.source}: a row"), client))
            except ApiError as exc:
                return links, exc
        return links, None

    def _link(self, row: dict[str, Any], client: ApiClient) -> Backlink:
        url_from = _url(row.get("SourceURL"))
        url_to = _url(row.get("TargetURL"))
        if url_from is None or url_to is None:
            raise ApiError(
                f"{client.source}: a row without SourceURL/TargetURL: {str(row)[:_QUOTED]}"
            )
        # Deleted when flagged so, or with a readable date lost (an odd value is neither).
        lost = _flag(row.get("FlagDeleted")) is True or as_date(row.get("DateLost")) is not None
        reason = as_text(row.get("ReasonLost")) or ""
        nofollow = _flag(row.get("FlagNoFollow"))
        return Backlink(
            url_from,
            url_to,
            as_text(row.get("AnchorText")),
            nofollow,
            None,  # GetBackLinkData has no ugc/sponsored flags
            None,
            scaled(_finite(row.get("SourceTrustFlow")), 100.0),
            as_date(row.get("FirstIndexedDate")),
            lost,
            majestic_lost_reason(reason) if lost else None,
            RATING_METRIC,
            None,
        )

    def check_credentials(self, client: ApiClient) -> str:
        """`GetSubscriptionInfo` (documented: "this command uses no resources"): the units left."""
        answer = self._post(client, "GetSubscriptionInfo")
        active = _count(_global(answer, "SubscriptionIsActive"))
        if active == 0:
            raise ApiAuthError(
                f"{client.source}: Majestic accepted the key but its subscription is not"
                f" active; renew the plan, or {_AUTH_HINT.format(name=self.name)}"
            )
        retrieval = _count(_global(answer, "TotalRetrievalResUnits"))
        analysis = _count(_global(answer, "TotalAnalysisResUnits"))
        left = [
            f"{n:,} {what} units"
            for n, what in ((retrieval, "retrieval"), (analysis, "analysis"))
            if n is not None
        ]
        return "credentials accepted" + (f"; {' and '.join(left)} left" if left else "")

    def cost_note(self, rows: int, pages: int, cost: float, client: ApiClient) -> str:
        """Rows, calls and both kinds of units the poll used."""
        note = super().cost_note(rows, pages, cost, client)
        return f"{note}; about {pages * ANALYSIS_UNITS_PER_CALL:,} analysis units"


def majestic_lost_reason(text: str) -> str:
    """The taxonomy reason for Majestic's `ReasonLost` text; `unknown` when nothing says.

    Majestic does not publish the vocabulary: the shared provider mapping is tried first
    ("link removed", "redirect", "404", "noindex", ...), then wording it lacks (an HTTP
    status, "server error", "timeout", "page moved").
    """
    reason = map_lost_reason(text)
    if reason != "unknown":
        return reason
    t = text.strip().lower()
    if not t:
        return "unknown"
    status = re.search(r"(?<!\d)([1-5]\d\d)(?!\d)", t)
    if status is not None:
        code = int(status.group(1))
        if code in (404, 410):
            return "not_found"
        if 300 <= code < 400:
            return "redirected"
        if code >= 400:
            return "page_error"
    plain = re.sub(r"[^a-z]", "", t)
    for fragments, reason in _MAJESTIC_WORDS:
        if any(f in plain for f in fragments):
            return reason
    return "unknown"


_MAJESTIC_WORDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("servererror", "httperror", "badgateway", "unavailable"), "page_error"),
    (("timeout", "timedout", "connection", "notresolv", "nxdomain", "offline"), "unreachable"),
    (("pagemoved", "moved"), "redirected"),
    (("gone",), "not_found"),
    (("targetchanged", "linkchanged", "pointselsewhere", "differenttarget"), "target_changed"),
    (("notcrawled", "notrecrawled", "notseen", "expiredfromindex"), "dropped"),
)


def _table(answer: dict[str, Any], name: str, source: str) -> dict[str, Any]:
    tables = require_dict(answer.get("DataTables"), f"{source}: DataTables")
    return require_dict(tables.get(name), f"{source}: DataTables.{name}")


def _global(answer: dict[str, Any], key: str) -> Any:
    """A global variable: top level in Majestic's documented JSON, or under `GlobalVars`
    as the XML form nests it (and some samples copy)."""
    if key in answer:
        return answer[key]
    nested = answer.get("GlobalVars")
    return nested.get(key) if isinstance(nested, dict) else None


def _charged(answer: dict[str, Any], key: str, default: int) -> float:
    charged = as_number(_global(answer, key))
    if charged is None or not math.isfinite(charged) or charged < 0:
        return float(default)
    return charged


def _finite(value: Any) -> float | None:
    """A number Majestic may send as a number or a numeric string; None if not a finite one."""
    number = as_number(value)
    return number if number is not None and math.isfinite(number) else None


def _count(value: Any) -> int | None:
    """A count Majestic may send as a number or a numeric string."""
    number = as_number(value)
    if number is None or not math.isfinite(number) or number < 0:
        return None
    return int(number)


def _flag(value: Any) -> bool | None:
    """A Majestic flag: 0/1 as a number or a numeric string, or true/false; anything else
    (null, "-", "unknown", 2) is no value, so a flag Majestic did not clearly set is never
    read as set (a deleted link lost at once)."""
    if isinstance(value, bool):
        return value
    number = as_number(value)
    if number is not None:
        return {0.0: False, 1.0: True}.get(number)
    if isinstance(value, str):
        return {"true": True, "false": False}.get(value.strip().lower())
    return None


def _url(value: Any) -> str | None:
    """A URL as Majestic wrote it; one without a scheme gets `https://`."""
    text = as_text(value)
    if text is None or not text.strip():
        return None
    text = text.strip()
    return text if "://" in text else "https://" + text
