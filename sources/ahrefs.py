"""Ahrefs API v3 source: `site-explorer/all-backlinks`, paged by a sort key (keyset).

Documented (Ahrefs' OpenAPI spec, mirrored in api-evangelist/ahrefs
`openapi/ahrefs-site-explorer-openapi.json`, and docs.ahrefs.com/api/docs/...):
- `GET /v3/site-explorer/all-backlinks` with `Authorization: Bearer <key>`; parameters
  `target`, `select` (required), `mode`, `aggregation` (`all`: one row per link), `history`
  (`live`, `since:YYYY-MM-DD` adds the links lost since that day, `all_time`), `order_by`
  (`field:asc,...`), `where` (a JSON filter), `limit` (default 1000). The answer is
  `{"backlinks": [{...the selected fields...}]}`; errors are `{"error": "..."}` with
  400/401/403/429/500.
- There is no `offset` (deprecated on 31 May 2024) and no cursor: linkwatch pages by a sort
  key, `first_seen_link, url_from, url_to`, and a `where` that starts each page at the last
  key of the previous one (filter grammar: docs.ahrefs.com/api/docs/filter-syntax).
- Cost (limits-consumption): a call costs `max(50, per_row_cost * rows)` units, where
  `per_row_cost` sums the cost of every unique field named in `select`, `where` or
  `order_by` (1 unit each, except a few metrics at 5 or 10, none of which are used here);
  a cached answer costs nothing. The answer's `x-api-units-cost-total-actual` header says
  what the call cost.
- `subscription-info/limits-and-usage` is free ("do not consume any API units").

Inferred (not documented): a `where` value for a datetime field is written as the API
writes the field in answers; rows tied on the whole sort key come back in the same order
from call to call (they share the link's two URLs, so the ledger sees one link either way).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, model_validator

from daemon.textsafe import one_line
from daemon.types import Duration
from sources.api import (
    ApiClient,
    ApiError,
    ApiSettings,
    ApiSource,
    Budget,
    BudgetReached,
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

if TYPE_CHECKING:
    import requests

DATA_PATH = "v3/site-explorer/all-backlinks"
CHECK_PATH = "v3/subscription-info/limits-and-usage"
RATING_METRIC = "Ahrefs DR"
# Every call costs at least this many units, whatever it returns (limits-consumption).
BASE_COST = 50
# Fields that cost more than one unit per row (the spec marks them "(5 units)"/"(10 units)");
# linkwatch selects none of them, the table keeps the cost model honest if that changes.
FIELD_UNITS = {
    "class_c": 5,
    "refdomains_source": 5,
    "refdomains_source_domain": 5,
    "refdomains_target_domain": 5,
    "traffic": 10,
    "traffic_domain": 10,
}
# The sort key: unique enough that ties are rare, each part already selected (free in
# `order_by` and `where`).
KEY = ("first_seen_link", "url_from", "url_to")
LIVE_FIELDS = (
    "url_from",
    "url_to",
    "anchor",
    "first_seen_link",
    "domain_rating_source",
    "is_nofollow",
    "is_ugc",
    "is_sponsored",
    "is_spam",
)
LOST_FIELDS = ("is_lost", "last_seen", "lost_reason", "drop_reason")
# Ahrefs' `lost_reason` enum onto linkwatch's taxonomy.
LOST_REASONS = {
    "removedfromhtml": "removed",
    "notcanonical": "not_canonical",
    "noindex": "noindex",
    "pageredirected": "redirected",
    "pageerror": "page_error",
    "notfound": "not_found",
    # The link reached the site through a redirect that no longer leads there: the page
    # still links, but not to the site any more (inferred from the enum's name).
    "lostredirect": "target_changed",
}
_AUTH_HINT = (
    "check sources.{name}.api_key (an API v3 key from Ahrefs' Account settings > API keys;"
    " keys expire after a year and need a plan with API access)"
)

Key = tuple[str, str, str]


class AhrefsSettings(ApiSettings):
    """Settings of an `ahrefs` source (the budget counts API units)."""

    kind: Literal["ahrefs"]
    base_url: str = Field(
        default="https://api.ahrefs.com/", description="the API's address (tests: local)"
    )
    api_key: SecretStr = Field(description="the Ahrefs API v3 key (a secret)")
    page_size: int = Field(
        default=1000,
        ge=10,
        le=100_000,
        description="links per call (at most your plan's rows per request)",
    )
    mode: Literal["exact", "prefix", "domain", "subdomains"] = Field(
        default="subdomains", description="which links count: to the site and its subdomains"
    )
    lost_lookback: Duration = Field(
        default=timedelta(days=30),
        description="also fetch the links Ahrefs marks lost within this long before the poll "
        "(lost at once, with Ahrefs' reason); 0s fetches live links only",
    )

    @model_validator(mode="after")
    def _budget_pays_for_a_call(self) -> AhrefsSettings:
        if self.budget is not None and self.budget < BASE_COST:
            raise ValueError(
                f"budget: every Ahrefs call costs at least {BASE_COST} units, got {self.budget}"
            )
        return self


def _error_text(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return None


def row_units(fields: tuple[str, ...]) -> int:
    """API units one row costs when `fields` are selected, filtered or sorted on."""
    return sum(FIELD_UNITS.get(name, 1) for name in set(fields))


def call_units(per_row: int, rows: int) -> int:
    """API units a call returning `rows` rows costs (limits-consumption)."""
    return max(BASE_COST, per_row * rows)


def keyset_filter(last: Key) -> dict[str, Any]:
    """The `where` that starts a page at the sort key `last`, inclusively: rows tied with the
    last row of the previous page come again, and are skipped by count."""
    first, page, target = (
        {"field": KEY[0], "is": ["eq", last[0]]},
        {"field": KEY[1], "is": ["eq", last[1]]},
        {"field": KEY[2], "is": ["gte", last[2]]},
    )
    return {
        "or": [
            {"field": KEY[0], "is": ["gt", last[0]]},
            {"and": [first, {"field": KEY[1], "is": ["gt", last[1]]}]},
            {"and": [first, page, target]},
        ]
    }


class AhrefsSource(ApiSource):
    """Polls Ahrefs' API v3 (all backlinks, one row per link, lost links with their reason)."""

    kind = "ahrefs"
    cost_unit = "API units"
    Settings = AhrefsSettings
    settings: AhrefsSettings

    @property
    def budget_unit(self) -> str:
        """What the budget counts."""
        return "API units"

    def spent(self, rows: int, cost: float) -> float:
        """Units spent so far, as the API counted them (or as its documented rule says)."""
        return cost

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.api_key.get_secret_value()}"}

    def _fields(self) -> tuple[str, ...]:
        return LIVE_FIELDS + (LOST_FIELDS if self.settings.lost_lookback else ())

    def _history(self, now: datetime) -> str:
        lookback = self.settings.lost_lookback
        if not lookback:
            return "live"
        return f"since:{(now - lookback).astimezone(UTC).date().isoformat()}"

    def pages(self, client: ApiClient, site: str, budget: Budget, now: datetime) -> Iterator[Page]:
        """Pages of `all-backlinks`, each starting at the sort key where the last one ended."""
        fields = self._fields()
        per_row = row_units(fields)
        base = {
            "target": site,
            "select": ",".join(fields),
            "mode": self.settings.mode,
            "aggregation": "all",
            "history": self._history(now),
            "order_by": ",".join(f"{name}:asc" for name in KEY),
            "output": "json",
        }
        size = self.settings.page_size
        last: Key | None = None
        tied = 0  # rows already read whose sort key is `last`
        before: set[Key] = set()
        while True:
            # Rows tied with the last key come again at the start of the page: ask for room
            # to get past them (only a pathological tie needs more than the page size).
            want = size if tied < size else tied + size
            left = budget.left()
            if left is not None:
                if left < BASE_COST:
                    raise BudgetReached(
                        f"{self.name}: the budget of {budget.limit:,} API units per poll is"
                        f" spent ({left:,} left, a call costs at least {BASE_COST}); the"
                        f" snapshot is partial (raise sources.{self.name}.budget)"
                    )
                want = min(want, left // per_row)
                if want <= tied:
                    raise BudgetReached(
                        f"{self.name}: the budget of {budget.limit:,} API units per poll"
                        " cannot pay for the next page; the snapshot is partial"
                        f" (raise sources.{self.name}.budget)"
                    )
            params = dict(base, limit=str(want))
            if last is not None:
                params["where"] = json.dumps(keyset_filter(last), separators=(",", ":"))
            seen: dict[str, str] = {}
            body = client.call(
                "GET",
                self.url(DATA_PATH),
                params=params,
                headers=self._headers(),
                auth_hint=_AUTH_HINT.format(name=self.name),
                error_text=_error_text,
                hooks={"response": [_remember_cost(seen)]},
            )
            answer = require_dict(body, f"{self.name}: the answer")
            if "error" in answer:
                # Ahrefs words its errors `{"error": "..."}`: in a 200 answer too it is an
                # error (rows beside it may be cut short), never a page or the end.
                said = one_line(str(answer["error"]))[:300]
                raise ApiError(f"{self.name}: Ahrefs answered an error: {said}")
            # The array is required: an answer without it is an error, never the end.
            rows = require_list(answer.get("backlinks"), f"{self.name}: backlinks")
            items = [require_dict(row, f"{self.name}: a backlink") for row in rows]
            keys = [self._key(item) for item in items]
            if last is not None and keys and keys[0] != last and keys[0] in before:
                # The page starts where an earlier one did: the filter was not applied, and
                # reading on would read the same rows again and again.
                raise ApiError(f"{self.name}: paging does not advance (the `where` was ignored)")
            skip = 0
            while skip < min(tied, len(keys)) and keys[skip] == last:
                skip += 1
            links = [self._link(item) for item in items[skip:]]
            cost = _charged(seen.get("x-api-units-cost-total-actual"))
            if cost is None:
                cost = float(call_units(per_row, len(items)))
            # Only a page with nothing new ends the listing: a page shorter than asked may be
            # the plan's cap on rows per request, not the end, and Ahrefs gives no total to
            # check against. The last call (at least 50 units) is the price of certainty.
            done = not links
            yield Page(links, cost, None, done)
            if done:
                return
            # The page holds every row of the last key read so far (the tied rows from
            # before came again at its start), so counting them here is the whole count.
            last = keys[-1]
            tied = sum(1 for key in keys if key == last)
            before = set(keys)

    def _key(self, item: dict[str, Any]) -> Key:
        parts = tuple(item.get(name) for name in KEY)
        if not all(isinstance(part, str) and part for part in parts):
            raise ApiError(f"{self.name}: a backlink without {', '.join(KEY)}: {str(item)[:200]}")
        return (str(parts[0]), str(parts[1]), str(parts[2]))

    def _link(self, item: dict[str, Any]) -> Backlink:
        flag = item.get("is_lost")
        # `is_lost` decides when Ahrefs sends it; a lost date (`last_seen`, a readable date)
        # only when it does not, so a live row carrying an odd date is not lost.
        lost = flag if isinstance(flag, bool) else as_date(item.get("last_seen")) is not None
        spam = item.get("is_spam")
        return Backlink(
            str(item["url_from"]),
            str(item["url_to"]),
            as_text(item.get("anchor")),
            _flag(item.get("is_nofollow")),
            _flag(item.get("is_ugc")),
            _flag(item.get("is_sponsored")),
            scaled(as_number(item.get("domain_rating_source")), 100.0),
            as_date(item.get("first_seen_link")),
            lost,
            lost_reason(item) if lost else None,
            RATING_METRIC,
            None if not isinstance(spam, bool) else (100.0 if spam else 0.0),
        )

    def check_credentials(self, client: ApiClient) -> str:
        """`subscription-info/limits-and-usage` (free): the plan and the units used."""
        body = client.call(
            "GET",
            self.url(CHECK_PATH),
            params={"output": "json"},
            headers=self._headers(),
            auth_hint=_AUTH_HINT.format(name=self.name),
            error_text=_error_text,
        )
        answer = require_dict(body, f"{self.name}: the answer")
        usage = require_dict(answer.get("limits_and_usage") or {}, f"{self.name}: usage")
        plan = as_text(usage.get("subscription"))
        used = as_number(usage.get("units_usage_api_key"))
        limit = as_number(usage.get("units_limit_api_key"))
        said = "credentials accepted" + (f" ({plan})" if plan else "")
        if used is not None:
            of = f" of {limit:,.0f}" if limit is not None else " (no limit on this key)"
            said += f"; {used:,.0f}{of} API units used this month"
        return said


def lost_reason(item: dict[str, Any]) -> str:
    """The taxonomy reason for a row Ahrefs marks lost."""
    reason = as_text(item.get("lost_reason"))
    if reason:
        return LOST_REASONS.get(reason.strip().lower()) or map_lost_reason(reason)
    if as_text(item.get("drop_reason")):
        # Ahrefs removed the link from its index (`drop_reason`): no live evidence of a loss.
        return "dropped"
    return "unknown"


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _charged(header: str | None) -> float | None:
    """The units a call cost by its header; None when absent or no finite, non-negative
    number (then the documented rule counts them, as Majestic's units are)."""
    cost = as_number(header)
    return cost if cost is not None and math.isfinite(cost) and cost >= 0 else None


def _remember_cost(into: dict[str, str]) -> Any:
    """A `requests` response hook keeping the cost headers of the answer."""

    def hook(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        into.clear()
        for name in ("x-api-units-cost-total-actual", "x-api-units-cost-total", "x-api-cache"):
            value = response.headers.get(name)
            if value is not None:
                into[name] = value

    return hook
