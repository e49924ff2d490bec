"""DataForSEO Backlinks API source: `backlinks/backlinks/live`, paged by offset then token."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, SecretStr

from sources.api import (
    ApiAuthError,
    ApiClient,
    ApiError,
    ApiSettings,
    ApiSource,
    Budget,
    Page,
    as_number,
    as_text,
    require_dict,
    require_list,
)
from sources.formats.values import parse_datetime
from sources.model import Backlink

# DataForSEO refuses `offset` beyond this; later pages follow `search_after_token`.
MAX_OFFSET = 20_000
MAX_LIMIT = 1000
_OK = 20000
_AUTH_HINT = "check sources.{name}.login and password (the API password, not the site's)"
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

    def __init__(self, name: str, settings: DataForSeoSettings) -> None:
        super().__init__(name, settings)

    def _auth(self) -> tuple[str, str]:
        return self.settings.login, self.settings.password.get_secret_value()

    def _post(self, client: ApiClient, path: str, task: dict[str, Any]) -> dict[str, Any]:
        body = client.call(
            "POST",
            self.url(path),
            json=[task],
            auth=self._auth(),
            auth_hint=_AUTH_HINT.format(name=self.name),
            error_text=_error_text,
        )
        return self._task(body, path)

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
        message = str(part.get("status_message") or "no status message")[:300]
        if isinstance(code, int) and 40100 <= code < 40200:
            raise ApiAuthError(
                f"{what}: the API refused the credentials ({code} {message});"
                f" {_AUTH_HINT.format(name=self.name)}"
            )
        if isinstance(code, int) and 40200 <= code < 40300:
            raise ApiAuthError(
                f"{what}: the account cannot pay for this call ({code} {message});"
                " top up the DataForSEO balance"
            )
        raise ApiError(f"{what}: status {code} {message}")

    def pages(self, client: ApiClient, site: str, budget: Budget, now: datetime) -> Iterator[Page]:
        """Pages of `backlinks/backlinks/live`: offsets up to 20,000, then the token."""
        size = self.settings.page_size
        base: dict[str, Any] = {
            "target": site,
            "mode": "as_is",
            "backlinks_status_type": "all" if self.settings.include_lost else "live",
            "include_subdomains": self.settings.include_subdomains,
            "exclude_internal_backlinks": True,
            "rank_scale": "one_hundred",
            # A stable order: offsets page the same list from call to call.
            "order_by": ["first_seen,asc"],
        }
        offset = 0
        token: str | None = None
        while True:
            limit = budget.cap(size)
            task = dict(base, limit=limit)
            if token is None:
                task["offset"] = offset
            else:
                # All other parameters must stay identical with a token (limit included).
                task["search_after_token"] = token
                task["limit"] = size
            answer = self._post(client, "v3/backlinks/backlinks/live", task)
            result = require_list(answer.get("result"), f"{self.name}: result")
            if not result:
                raise ApiError(f"{self.name}: the task has no result")
            data = require_dict(result[0], f"{self.name}: result[0]")
            items = require_list(data.get("items"), f"{self.name}: items", null_is_empty=True)
            links = [self._link(require_dict(i, f"{self.name}: item"), site) for i in items]
            total = as_number(data.get("total_count"))
            next_token = as_text(data.get("search_after_token"))
            offset += len(items)
            last = len(items) < limit or (total is not None and offset >= total)
            yield Page(
                links, float(answer["_cost"]), int(total) if total is not None else None, last
            )
            if last:
                return
            if token is not None or offset + size > MAX_OFFSET:
                if next_token is None:
                    raise ApiError(
                        f"{self.name}: past offset {offset:,} the API gave no search_after_token"
                    )
                token = next_token

    def _link(self, item: dict[str, Any], site: str) -> Backlink:
        url_from = as_text(item.get("url_from"))
        url_to = as_text(item.get("url_to"))
        if url_from is None or url_to is None:
            raise ApiError(f"{self.name}: an item without url_from/url_to: {str(item)[:200]}")
        attributes = item.get("attributes") or []
        if not isinstance(attributes, list):
            attributes = []
        dofollow = item.get("dofollow")
        nofollow = (
            "nofollow" in attributes
            if attributes or not isinstance(dofollow, bool)
            else not dofollow
        )
        lost = item.get("is_lost") is True
        first = item.get("first_seen")
        return Backlink(
            url_from,
            url_to,
            # "" is an empty anchor (an image link), None a field not given.
            anchor if isinstance(anchor := item.get("anchor"), str) else None,
            nofollow,
            "ugc" in attributes,
            "sponsored" in attributes,
            as_number(item.get("domain_from_rank")),
            parse_datetime(first) if isinstance(first, str) else None,
            lost,
            _lost_reason(item) if lost else None,
            RATING_METRIC,
            as_number(item.get("backlink_spam_score")),
        )

    def check_credentials(self, client: ApiClient) -> str:
        """`appendix/user_data` (free): the account's login and balance."""
        body = client.call(
            "GET",
            self.url("v3/appendix/user_data"),
            auth=self._auth(),
            auth_hint=_AUTH_HINT.format(name=self.name),
            error_text=_error_text,
        )
        task = self._task(body, "v3/appendix/user_data")
        result = require_list(task.get("result"), f"{self.name}: result")
        data = require_dict(result[0], f"{self.name}: result[0]") if result else {}
        money = data.get("money") if isinstance(data.get("money"), dict) else {}
        balance = as_number(money.get("balance")) if money else None
        who = as_text(data.get("login")) or self.settings.login
        return f"credentials accepted for {who}" + (
            f"; balance {balance:g} USD" if balance is not None else ""
        )


def _lost_reason(item: dict[str, Any]) -> str:
    """DataForSEO gives no lost reason; the linking page's status says the most."""
    status = as_number(item.get("page_from_status_code"))
    if status in (404.0, 410.0):
        return "not_found"
    if status is not None and status >= 500:
        return "page_error"
    if status is not None and 300 <= status < 400:
        return "redirected"
    return "unknown"
