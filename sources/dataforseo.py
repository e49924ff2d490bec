"""DataForSEO Backlinks API source: `backlinks/backlinks/live`, paged by `search_after_token`.

Documented (docs.dataforseo.com/v3/backlinks/backlinks/live; /v3/appendix/errors, whose
code list public clients mirror, e.g. a TypeScript `Status_Code` type of it):
- `offset` pages at most 20,000 rows deep; `search_after_token`, in every answer, pages on
  from the row the answer ended at, "all other parameters identical".
- HTTP statuses besides 200: 401 Unauthorized, 402 Payment Required ("check your
  account's balance"), 404, 500 ("try again later"). In the body, at the top and per
  task: 20000 Ok; 40100 not authorized; 40101 "Internal SE Server Error"; 40102 "No Search
  Results"; 40200 "Payment Required"; 40201 account "temporarily blocked"; 40202 "The
  rate-limit per minute has been exceeded"; 40203 "The cost limit has been exceeded"
  (the daily limit set in the dashboard); 4040x/40501 bad paths and fields; 50000
  "Internal Error"; 50301 "3rd Party API Service Unavailable"; 50303 "Update in progress.
  Please try after a few minutes"; 50304 "temporarily unavailable. Please contact support".
Inferred: 40210 "Insufficient Funds" (so named by public clients, not in the appendix
mirror); which codes pass: 40202 (a per-minute limit), 40101 (the help centre: the search
engine failed and DataForSEO already retried; public clients retry it), 50000, 50301 and
50303 (the server's "try again later" words): these are retried with the client's backoff.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr

from sources.api import (
    ApiAuthError,
    ApiClient,
    ApiError,
    ApiSettings,
    ApiSource,
    Budget,
    BudgetReached,
    Page,
    RetryableAnswer,
    as_date,
    as_number,
    as_text,
    require_dict,
    require_list,
    scaled,
)
from sources.model import Backlink

if TYPE_CHECKING:
    from sources.dataforseo_shape import LiveItem

MAX_LIMIT = 1000
_OK = 20000
# The appendix's codes (see the module docstring) that say what to do.
CREDENTIALS = frozenset({40100})
PAYMENT = frozenset({40200, 40210})
# Passing trouble: retried like a 429 or a 5xx.
RETRYABLE = frozenset({40101, 40202, 50000, 50301, 50303})
_AUTH_HINT = "check sources.{name}.login and password (the API password, not the site's)"
_PAY_HINT = "top up the DataForSEO balance (app.dataforseo.com)"
RATING_METRIC = "DataForSEO rank"


class DataForSeoSettings(ApiSettings):
    """Settings of a `dataforseo` source."""

    kind: Literal["dataforseo"]
    base_url: str = Field(
        default="https://api.dataforseo.com/", description="the API's address (tests: local)"
    )
    login: str = Field(min_length=1, description="the API login (an e-mail address)")
    password: SecretStr = Field(description="the API password (a secret)")
    page_size: int = Field(default=MAX_LIMIT, ge=1, le=MAX_LIMIT, description="links per call")
    include_subdomains: bool = Field(default=True, description="count links to subdomains")
    include_lost: bool = Field(
        default=False,
        description="also fetch the links DataForSEO marks lost (they are lost at once; "
        "every lost link ever is a row you pay for)",
    )


def _error_text(body: Any) -> str | None:
    if isinstance(body, dict) and body.get("status_message"):
        return f"{body.get('status_code')} {body['status_message']}"
    return None


class DataForSeoSource(ApiSource):
    """Polls DataForSEO's Backlinks API (live links, one row per link, `as_is` mode)."""

    kind = "dataforseo"
    cost_unit = "USD"
    Settings = DataForSeoSettings
    settings: DataForSeoSettings

    def _auth(self) -> tuple[str, str]:
        return self.settings.login, self.settings.password.get_secret_value()

    def _call(self, client: ApiClient, method: str, path: str, **kwargs: Any) -> Any:
        """One call's answer; a passing status in the body is retried, HTTP 402 is the
        account's balance."""
        try:
            return client.call(
                method,
                self.url(path),
                auth=self._auth(),
                auth_hint=_AUTH_HINT.format(name=self.name),
                error_text=_error_text,
                check=_retry_passing,
                **kwargs,
            )
        except ApiAuthError:
            raise
        except ApiError as exc:
            if exc.status == 402:
                raise ApiAuthError(
                    f"{exc}; the account cannot pay for this call: {_PAY_HINT}"
                ) from exc
            raise

    def _post(self, client: ApiClient, path: str, task: dict[str, Any]) -> dict[str, Any]:
        from sources.dataforseo_shape import decode_live

        return self._task(self._call(client, "POST", path, json=[task], shaped=decode_live), path)

    def _task(self, body: Any, path: str) -> dict[str, Any]:
        """The one task of an answer, after checking the status at both levels."""
        what = f"{self.name}: {path}"
        answer = require_dict(body, what)
        self._check_status(answer, what)
        tasks = require_list(answer.get("tasks"), f"{what}: tasks")
        if len(tasks) != 1:
            raise ApiError(f"{what}: expected one task in the answer, got {len(tasks)}")
        task = require_dict(tasks[0], f"{what}: tasks[0]")
        self._check_status(task, f"{what}: task")
        task["_cost"] = as_number(answer.get("cost")) or 0.0
        return task

    def _check_status(self, part: dict[str, Any], what: str) -> None:
        code = part.get("status_code")
        if code == _OK:
            return
        known = code if isinstance(code, int) else None
        message = str(part.get("status_message") or "no status message")[:300]
        if known in CREDENTIALS:
            raise ApiAuthError(
                f"{what}: the API refused the credentials ({code} {message});"
                f" {_AUTH_HINT.format(name=self.name)}"
            )
        if known in PAYMENT:
            raise ApiAuthError(
                f"{what}: the account cannot pay for this call ({code} {message}); {_PAY_HINT}"
            )
        # Anything else (a blocked account, the daily cost limit, a bad field, a passing
        # fault that outlasted the retries) is quoted as the API words it.
        raise ApiError(f"{what}: status {code} {message}")

    def pages(self, client: ApiClient, site: str, budget: Budget, now: datetime) -> Iterator[Page]:
        """Pages of `backlinks/backlinks/live`: the first by `offset` 0, every later one by
        the `search_after_token` of the answer before, until a page shorter than asked."""
        task: dict[str, Any] = {
            "target": site,
            "mode": "as_is",
            "backlinks_status_type": "all" if self.settings.include_lost else "live",
            "include_subdomains": self.settings.include_subdomains,
            "exclude_internal_backlinks": True,
            "rank_scale": "one_hundred",
            # A stable order; links found meanwhile join the end of the list.
            "order_by": ["first_seen,asc"],
            "limit": budget.cap(self.settings.page_size),
            "offset": 0,
        }
        # With a token "all other parameters should be identical" to the first request
        # (documented), so `limit` and `offset: 0` stay as they were: only the token
        # changes. A token continues after the row it was given with, whatever left the
        # list meanwhile; offsets would shift past a boundary row when an earlier link is
        # found lost during the poll, and it would never be read.
        limit = int(task["limit"])
        used: set[str] = set()
        rows = 0
        while True:
            answer = self._post(client, "v3/backlinks/backlinks/live", task)
            result = require_list(answer.get("result"), f"{self.name}: result")
            if not result:
                raise ApiError(f"{self.name}: the task has no result")
            data = require_dict(result[0], f"{self.name}: result[0]")
            # DataForSEO writes an empty result as `items: null` (inferred from its answers'
            # convention; `total_count` then says 0): an empty page, unlike a missing result.
            items = require_list(data.get("items"), f"{self.name}: items", null_is_empty=True)
            links = [self._link(i, site) for i in self._items(items)]
            total = self._total(data.get("total_count"))
            rows += len(items)
            # Only a short page ends the listing: `total_count` is only compared at the end
            # (a listing shorter than it is partial), never taken for the end, so a stale or
            # capped count cannot cut a listing whose pages are still full.
            last = len(items) < limit
            yield Page(links, float(answer["_cost"]), total, last)
            if last:
                return
            token = as_text(data.get("search_after_token"))
            if token is None:
                raise ApiError(
                    f"{self.name}: a full page without a search_after_token after {rows:,}"
                    " rows; cannot read on"
                )
            if token in used:
                raise ApiError(f"{self.name}: the API sent the same search_after_token twice")
            used.add(token)
            left = budget.left()
            if left is not None and left < limit:
                # The token's page is as large as the first (its parameters cannot change):
                # stop rather than pay past the budget.
                raise BudgetReached(
                    f"{self.name}: the budget of {budget.limit:,} rows per poll cannot pay for"
                    f" the next page of {limit:,}; the snapshot is partial (raise"
                    f" sources.{self.name}.budget, or poll less often)"
                )
            task["search_after_token"] = token

    def _total(self, value: Any) -> int | None:
        """`total_count`: a count, or None when the answer has none."""
        if value is None:
            return None
        number = as_number(value)
        if number is None or not math.isfinite(number) or number < 0 or number != int(number):
            raise ApiError(f"{self.name}: total_count is not a count: {str(value)[:40]!r}")
        return int(number)

    def _items(self, items: list[Any]) -> list[LiveItem]:
        """The items of an answer as read by their shape (decoded so, or converted)."""
        from sources.dataforseo_shape import LiveItem, as_live_item

        return [
            i if isinstance(i, LiveItem) else as_live_item(require_dict(i, f"{self.name}: item"))
            for i in items
        ]

    def _link(self, item: LiveItem, site: str) -> Backlink:
        url_from = as_text(item.url_from)
        url_to = as_text(item.url_to)
        if url_from is None or url_to is None:
            # The fields read (the URLs even when missing); the item's others are not.
            shown = {
                k: v
                for k in item.__struct_fields__
                if (v := getattr(item, k)) is not None or k in ("url_from", "url_to")
            }
            urls = (("url_from", url_from), ("url_to", url_to))
            missing = "/".join(k for k, url in urls if url is None)
            raise ApiError(f"{self.name}: an item without {missing}: {str(shown)[:200]}")
        attributes = item.attributes or []
        if not isinstance(attributes, list):
            attributes = []
        dofollow = item.dofollow
        nofollow = (
            "nofollow" in attributes
            if attributes or not isinstance(dofollow, bool)
            else not dofollow
        )
        lost = item.is_lost is True
        return Backlink(
            url_from,
            url_to,
            # "" is an empty anchor (an image link), None a field not given.
            anchor if isinstance(anchor := item.anchor, str) else None,
            nofollow,
            "ugc" in attributes,
            "sponsored" in attributes,
            # Both on 0-100 (`rank_scale: one_hundred` is asked for; the spam score is
            # always 0-100): clamped, so an odd value cannot leave the scale.
            scaled(_finite(item.domain_from_rank), 100.0),
            as_date(item.first_seen),
            lost,
            _lost_reason(item) if lost else None,
            RATING_METRIC,
            scaled(_finite(item.backlink_spam_score), 100.0),
        )

    def check_credentials(self, client: ApiClient) -> str:
        """`appendix/user_data` (free): the account's login and balance."""
        body = self._call(client, "GET", "v3/appendix/user_data")
        task = self._task(body, "v3/appendix/user_data")
        result = require_list(task.get("result"), f"{self.name}: result")
        data = require_dict(result[0], f"{self.name}: result[0]") if result else {}
        money = data.get("money") if isinstance(data.get("money"), dict) else {}
        balance = as_number(money.get("balance")) if money else None
        who = as_text(data.get("login")) or self.settings.login
        return f"credentials accepted for {who}" + (
            f"; balance {balance:g} USD" if balance is not None else ""
        )


def _retry_passing(body: Any) -> None:
    """A passing status at the top or in the task: retried by the client with backoff."""
    if not isinstance(body, dict):
        return
    tasks = body.get("tasks")
    parts = [body] + ([tasks[0]] if isinstance(tasks, list) and tasks else [])
    for part in parts:
        code = part.get("status_code") if isinstance(part, dict) else None
        if isinstance(code, int) and code in RETRYABLE:
            message = str(part.get("status_message") or "no status message")[:300]
            raise RetryableAnswer(f"status {code} {message}")


def _finite(value: Any) -> float | None:
    number = as_number(value)
    return number if number is not None and math.isfinite(number) else None


def _lost_reason(item: LiveItem) -> str:
    """DataForSEO gives no lost reason; the linking page's status says the most."""
    status = as_number(item.page_from_status_code)
    if status is not None and 200 <= status < 300:
        # The page answers and no longer links: the link was taken out of it.
        return "removed"
    if status in (404.0, 410.0):
        return "not_found"
    if status is not None and status >= 500:
        return "page_error"
    if status is not None and 300 <= status < 400:
        return "redirected"
    return "unknown"
