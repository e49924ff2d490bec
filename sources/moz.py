"""Moz Links API v2 source: `POST v2/links`, paged by `next_token`.

Documented (moz.com/help/links-api: getting-started/overview, making-calls/links,
making-calls/usage-data):
- Base `https://lsapi.seomoz.com/v2/`; every call is a JSON `POST`. Authentication is an API
  token in the `x-moz-token` header (accounts since March 2024), or, for legacy
  subscribers, Basic auth with the Access ID as user name and the Secret Key as password
  (linkwatch keeps the one secret in `token`: with `access_id` set it is the Secret Key).
- `links` takes `target`, `target_scope` (page | subdomain | root_domain), `filter`
  (default `external`; `+`-joined, e.g. `external+not_deleted`), `sort`, `limit` (at most
  50) and `next_token`; it answers `{"results": [...], "next_token": "..."}` and is read
  until `next_token` comes back empty. Each result is one row of the monthly quota.
- `usage_data` (body `{}`) answers `{"rows_consumed": N}` for the billing period: the
  cheapest call that proves the credentials (it returns no link rows).

Inferred: URLs come without a scheme (`blog.example.org/page`: the sample, two public
parsers), read as https; `date_disappeared` is empty while a link lives; Moz gives no lost
reason; an error body carries its text under `message` (or `error`/`name`). Spam Score:
Moz's API v2 and Link Explorer give the 2019 percentage scale (1 to 100, -1 when Moz has none),
the Mozscape (v1) API a count of 17 spam flags; `spam_score_scale` says which to read.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, SecretStr

from sources.api import (
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
from sources.model import Backlink

DATA_PATH = "v2/links"
CHECK_PATH = "v2/usage_data"
MAX_LIMIT = 50
# "Moz Links offers a maximum of 100,000 results per URL" (documented for the v1 API's
# paging; assumed for v2): a listing that long may be cut short, so it is never whole.
MAX_RESULTS = 100_000
# Empty pages in a row (each with a fresh next_token) after which a listing is taken as
# not advancing: a page of nothing is no progress, and a row budget never binds on it.
MAX_EMPTY_PAGES = 3
RATING_METRIC = "Moz DA"
SPAM_FLAGS = 17
_AUTH_HINT = (
    "check sources.{name}.token (an API token from moz.com/api/dashboard; for a legacy"
    " subscription, access_id and the Secret Key as token)"
)


class MozSettings(ApiSettings):
    """Settings of a `moz` source (the budget counts Moz rows: one per link)."""

    kind: Literal["moz"]
    base_url: str = Field(
        default="https://lsapi.seomoz.com/", description="the API's address (tests: local)"
    )
    token: SecretStr = Field(
        description="the Moz API token, sent as `x-moz-token` (a secret); with access_id, "
        "the Secret Key of a legacy subscription, sent with Basic auth"
    )
    access_id: str | None = Field(
        default=None,
        min_length=1,
        description="legacy subscriptions only: the Access ID (then token is the Secret Key)",
    )
    page_size: int = Field(
        default=MAX_LIMIT, ge=1, le=MAX_LIMIT, description="links per call (Moz allows 50)"
    )
    target_scope: Literal["page", "subdomain", "root_domain"] = Field(
        default="root_domain", description="which links count: to the whole registrable domain"
    )
    include_lost: bool = Field(
        default=True,
        description="also read the links Moz saw disappear (lost at once; each is a row of "
        "your quota); false asks for `external+not_deleted`",
    )
    spam_score_scale: Literal["percent", "flags"] = Field(
        default="percent",
        description="how Moz writes `spam_score`: percent (1-100, API v2) or flags (0-17)",
    )


def _error_text(body: Any) -> str | None:
    if isinstance(body, dict):
        for key in ("message", "error_message", "error", "name"):
            if isinstance(body.get(key), str) and body[key]:
                return str(body[key])
    return None


def with_scheme(url: str) -> str:
    """A Moz URL (`blog.example.org/page`, `//host/`, `http://…`) with a scheme."""
    url = url.strip()
    if "://" in url[:12]:
        return url
    return "https:" + url if url.startswith("//") else "https://" + url


class MozSource(ApiSource):
    """Polls Moz's Links API v2 (one row per link; links Moz saw disappear are lost)."""

    kind = "moz"
    cost_unit = "Moz rows"
    Settings = MozSettings
    settings: MozSettings

    def _credentials(self) -> dict[str, Any]:
        secret = self.settings.token.get_secret_value()
        if self.settings.access_id is not None:
            return {"auth": (self.settings.access_id, secret)}
        return {"headers": {"x-moz-token": secret}}

    def _post(self, client: ApiClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = client.call(
            "POST",
            self.url(path),
            json=body,
            auth_hint=_AUTH_HINT.format(name=self.name),
            error_text=_error_text,
            **self._credentials(),
        )
        return require_dict(answer, f"{self.name}: {path}")

    def pages(self, client: ApiClient, site: str, budget: Budget, now: datetime) -> Iterator[Page]:
        """Pages of `v2/links`, following `next_token` until it comes back empty."""
        base: dict[str, Any] = {
            "target": site,
            "target_scope": self.settings.target_scope,
            "filter": "external" if self.settings.include_lost else "external+not_deleted",
            "sort": "source_domain_authority",
        }
        token: str | None = None
        used: set[str] = set()
        read = 0
        empty = 0  # pages in a row with no results but a next token
        while True:
            body = dict(base, limit=budget.cap(self.settings.page_size))
            if token is not None:
                body["next_token"] = token
            answer = self._post(client, DATA_PATH, body)
            if "results" not in answer and _error_text(answer):
                # An error worded in a 200 answer (`{"name": ..., "message": ...}`).
                raise ApiError(f"{self.name}: Moz answered an error: {_error_text(answer)}")
            # The array is required: an answer without it (or null) is an error, never the end.
            results = require_list(answer.get("results"), f"{self.name}: results")
            links = [self._link(require_dict(r, f"{self.name}: a result")) for r in results]
            next_token = as_text(answer.get("next_token"))
            read += len(links)
            empty = empty + 1 if not links and next_token is not None else 0
            capped = read >= MAX_RESULTS
            last = next_token is None and not capped
            yield Page(links, float(len(links)), None, last)
            if last:
                return
            if capped:
                raise ApiError(
                    f"{self.name}: Moz lists at most {MAX_RESULTS:,} links per target and"
                    f" {read:,} were read{' with more to come' if next_token else ''}: the"
                    f" profile may be cut short (narrow sources.{self.name}.target_scope, or"
                    " use another source for this site)"
                )
            assert next_token is not None
            if empty >= MAX_EMPTY_PAGES:
                # Fresh tokens with nothing behind them: following them would cost calls
                # (no rows, so no budget) for ever.
                raise ApiError(
                    f"{self.name}: {empty} pages in a row had no results but a next_token;"
                    " the listing does not advance"
                )
            if next_token in used:
                raise ApiError(f"{self.name}: the API sent the same next_token twice")
            used.add(next_token)
            token = next_token

    def _link(self, result: dict[str, Any]) -> Backlink:
        source = require_dict(result.get("source") or {}, f"{self.name}: source")
        target = require_dict(result.get("target") or {}, f"{self.name}: target")
        page_from = as_text(source.get("page"))
        page_to = as_text(target.get("page"))
        if page_from is None or page_to is None:
            raise ApiError(f"{self.name}: a link without source/target page: {str(result)[:200]}")
        # Lost only on a readable date: an odd value in `date_disappeared` is not read as a
        # loss (an empty one is a live link).
        gone = as_date(result.get("date_disappeared"))
        nofollow = result.get("nofollow")
        return Backlink(
            with_scheme(page_from),
            with_scheme(page_to),
            as_text(result.get("anchor_text")),
            nofollow if isinstance(nofollow, bool) else None,
            None,  # Moz's links do not say ugc or sponsored
            None,
            scaled(_score(source.get("domain_authority")), 100.0),
            as_date(result.get("date_first_seen")),
            gone is not None,
            "unknown" if gone is not None else None,
            RATING_METRIC,
            self._toxicity(source.get("spam_score")),
        )

    def _toxicity(self, value: Any) -> float | None:
        score = _score(value)
        if score is None:
            return None
        if self.settings.spam_score_scale == "flags":
            return round(scaled(score, SPAM_FLAGS) or 0.0, 1)
        return scaled(score, 100.0)

    def check_credentials(self, client: ApiClient) -> str:
        """`usage_data` (no link rows): the rows used this billing period."""
        answer = self._post(client, CHECK_PATH, {})
        used = as_number(answer.get("rows_consumed"))
        return "credentials accepted" + (
            f"; {used:,.0f} rows used this billing period" if used is not None else ""
        )


def _score(value: Any) -> float | None:
    """A Moz metric, None when Moz has none (it writes -1)."""
    number = as_number(value)
    return None if number is None or number < 0 else number
