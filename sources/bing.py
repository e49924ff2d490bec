"""Bing Webmaster API source: the site's linked pages (GetLinkCounts), then each page's
inbound links (GetUrlLinks), every page of both.

Documented (learn.microsoft.com, IWebmasterApi.GetLinkCounts / GetUrlLinks / GetUserSites,
ApiErrorCode): the JSON GET endpoints under `webmaster/api.svc/json/`, `apikey` in the query
string, `page` 0-based with `TotalPages` (Microsoft's sample loops `while (++page <
TotalPages)`), the `{"d": {...}}` wrapper, `link` sent as a JSON string literal (the JSON
request sample quotes it), and the error codes (3 InvalidApiKey, 4/5 Throttle...). Observed
by several public clients, not documented: a refused key is HTTP 400 with a flat
`{"ErrorCode": 3, "Message": "ERROR!!! InvalidApiKey"}`.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from daemon.templates import check_template, parse_template, render_template
from sources.api import (
    ApiAuthError,
    ApiClient,
    ApiError,
    ApiSettings,
    ApiSource,
    Budget,
    Page,
    PollStopped,
    as_number,
    as_text,
    require_dict,
    require_list,
)
from sources.model import Backlink

log = logging.getLogger(__name__)

_API = "webmaster/api.svc/json/"
_ONLY_PLACEHOLDER = "the only placeholder is {domain}"
_SITE_FIELDS = frozenset({"domain"})
# `page` is an Int16 in the documented signatures.
MAX_PAGE = 32_767
# The most of a linked page's counted links that may go unlisted without the snapshot
# being partial: more would let a tenth of a profile vanish silently, poll after poll.
MAX_TOLERANCE = 0.1
# Links a linked page may list fewer than counted, beyond the tolerance: the two lists are
# read minutes apart from a live index, and on a page of a few links any share rounds to
# nothing (2 % of 10 links is 0.2), so one link of drift must not make every poll partial.
# The whole profile is held to the tolerance without it, so such drift cannot add up.
PAGE_SLACK = 1
_AUTH_HINT = (
    "check sources.{name}.api_key (Bing Webmaster Tools > Settings > API Access) and that "
    "sources.{name}.site_url is a site verified for that account"
)
# ApiErrorCode (documented enum): what each code means for a poll.
INVALID_API_KEY = 3
THROTTLE = frozenset({4, 5})  # ThrottleUser, ThrottleHost: wait and try again
REFUSED = frozenset({3, 6, 14})  # InvalidApiKey, UserBlocked, NotAuthorized
SITE_UNKNOWN = frozenset({7, 10, 11})  # InvalidUrl, UserNotFound, NotFound
_CODE_NAMES = {
    0: "None",
    1: "InternalError",
    2: "UnknownError",
    3: "InvalidApiKey",
    4: "ThrottleUser",
    5: "ThrottleHost",
    6: "UserBlocked",
    7: "InvalidUrl",
    8: "InvalidParameter",
    9: "TooManySites",
    10: "UserNotFound",
    11: "NotFound",
    12: "AlreadyExists",
    13: "NotAllowed",
    14: "NotAuthorized",
    15: "UnexpectedState",
    16: "Deprecated",
}


class _RedactKeys(logging.Filter):
    """Takes `apikey=...` out of HTTP-library log lines: urllib3 logs each request line,
    query string included, at DEBUG, and Bing's key can only travel there."""

    _KEY = re.compile(r"(?i)((?:app_)?api_?key=)[^&\s\"']+")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "key=" in message.lower():
            record.msg = self._KEY.sub(r"\1***", message)
            record.args = None
        return True


def _redact_http_logs() -> None:
    logger = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, _RedactKeys) for f in logger.filters):
        logger.addFilter(_RedactKeys())


_redact_http_logs()


def _check_site_url(template: str) -> str:
    """A `site_url` template: `{domain}` only, and an http(s) URL once filled in."""
    check_template(template, _SITE_FIELDS, hint=_ONLY_PLACEHOLDER, specs=False)
    sample = render_template(
        parse_template(template, _SITE_FIELDS, hint=_ONLY_PLACEHOLDER, specs=False),
        {"domain": "example.com"},
    )
    parts = urlsplit(sample)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"expected the site's URL as verified in Bing Webmaster Tools, like "
            f"https://{{domain}}/, got {template!r}"
        )
    return template


class BingSettings(ApiSettings):
    """Settings of a `bing` source."""

    kind: Literal["bing"]
    base_url: str = Field(
        default="https://ssl.bing.com/", description="the API's address (tests: local)"
    )
    api_key: SecretStr = Field(description="the Bing Webmaster API key (a secret)")
    site_url: str = Field(
        default="https://{domain}/",
        description="the site as verified in Bing Webmaster Tools; {domain}, the only "
        "placeholder, is the site's domain",
    )
    count_tolerance: float = Field(
        default=0.02,
        ge=0,
        le=MAX_TOLERANCE,
        allow_inf_nan=False,
        description="the share of the links GetLinkCounts counts for a linked page that "
        "GetUrlLinks may leave unlisted (beyond one link) before the snapshot is partial; "
        "also the share of all counted links",
    )

    @field_validator("site_url")
    @classmethod
    def _site_url(cls, value: str) -> str:
        if "\0" in value:
            raise ValueError("contains a NUL character")
        return _check_site_url(value)


class BingSource(ApiSource):
    """Polls Bing Webmaster Tools' inbound links of a verified site (free; no dates or rel)."""

    kind = "bing"
    Settings = BingSettings
    settings: BingSettings

    def __init__(self, name: str, settings: BingSettings) -> None:
        super().__init__(name, settings)
        self._site_url = parse_template(
            settings.site_url, _SITE_FIELDS, hint=_ONLY_PLACEHOLDER, specs=False
        )

    def site_url(self, site: str) -> str:
        """The verified site URL Bing knows the site by."""
        return render_template(self._site_url, {"domain": site})

    def _get(self, client: ApiClient, method: str, **params: str) -> Any:
        """One GET of the JSON API, its `d`; Bing's own error codes turned into errors that
        say what to fix, its throttling waited out like a 429."""
        query = {**params, "apikey": self.settings.api_key.get_secret_value()}
        attempt = 0
        while True:
            fault: dict[str, Any] = {}

            def said(body: Any, fault: dict[str, Any] = fault) -> str | None:
                return _fault_text(body, fault, query["apikey"])

            try:
                body = client.call(
                    "GET",
                    self.url(_API + method),
                    params=query,
                    auth_hint=_AUTH_HINT.format(name=self.name),
                    error_text=said,
                )
                if isinstance(body, dict) and "d" not in body and "ErrorCode" in body:
                    # A fault in a 200 answer: read it as Bing's 400 would be.
                    raise ApiError(
                        f"{client.source}: GET /{_API}{method}:"
                        f" {_fault_text(body, fault, query['apikey'])}"
                    )
            except ApiAuthError:
                raise
            except ApiError as exc:
                code = fault.get("code")
                if code in THROTTLE and attempt < client.policy.retries:
                    ceiling = min(client.policy.max_backoff, client.policy.backoff * 2**attempt)
                    wait = ceiling / 2 + client.jitter() * ceiling / 2
                    attempt += 1
                    client.retried += 1
                    log.info(
                        "%s: %s: Bing throttles the key (%s); retry %d of %d in %.1fs",
                        client.source,
                        method,
                        _CODE_NAMES.get(code, code),
                        attempt,
                        client.policy.retries,
                        wait,
                    )
                    _wait(client, wait)
                    continue
                if code in REFUSED:
                    raise ApiAuthError(
                        f"{client.source}: Bing refused the credentials ({fault.get('text')});"
                        f" {_AUTH_HINT.format(name=self.name)}"
                    ) from exc
                if code in SITE_UNKNOWN:
                    raise ApiError(
                        f"{exc}; is {params.get('siteUrl')!r} a site verified in Bing Webmaster"
                        f" Tools for this key? (sources.{self.name}.site_url)"
                    ) from exc
                raise
            answer = require_dict(body, f"{client.source}: {method}")
            return answer.get("d")

    def pages(self, client: ApiClient, site: str, budget: Budget, now: datetime) -> Iterator[Page]:
        """GetLinkCounts to the last page, then GetUrlLinks of each linked page to its last."""
        site_url = self.site_url(site)
        targets: dict[str, int] = {}
        page = 0
        while True:
            counts = require_dict(
                self._get(client, "GetLinkCounts", siteUrl=site_url, page=str(page)),
                f"{client.source}: GetLinkCounts",
            )
            for item in require_list(
                counts.get("Links"), f"{client.source}: Links", null_is_empty=True
            ):
                entry = require_dict(item, f"{client.source}: a LinkCount")
                url = _url(entry.get("Url"))
                if url is None:
                    raise ApiError(f"{client.source}: a LinkCount without Url: {str(entry)[:200]}")
                if url in targets:
                    # The list shifted between its pages (the index updating): a page seen
                    # twice means another was pushed past a page boundary, read by none.
                    raise ApiError(
                        f"{client.source}: GetLinkCounts listed {url} twice (page {page + 1}"
                        " repeats an earlier one): the list changed while it was read, and a"
                        " linked page may have been skipped; the snapshot is partial"
                    )
                targets[url] = _count(entry.get("Count"))
            total_pages = _total_pages(counts, client.source, "GetLinkCounts")
            page += 1
            if page >= total_pages:
                break
            # Each page of the list is a page of the poll, so a failure after the first
            # call makes the snapshot partial rather than an error.
            yield Page([])
        announced = sum(targets.values())
        if not targets:
            yield Page([], last=True)
            return
        yield Page([])
        listed = 0
        tolerance = self.settings.count_tolerance
        for target, counted in targets.items():
            page = 0
            rows_of_target = 0
            while True:
                details = require_dict(
                    self._get(
                        client,
                        "GetUrlLinks",
                        siteUrl=site_url,
                        # The documented JSON sample sends `link` as a JSON string literal
                        # (quoted, slashes escaped), unlike `siteUrl`.
                        link=json.dumps(target).replace("/", "\\/"),
                        page=str(page),
                    ),
                    f"{client.source}: GetUrlLinks",
                )
                rows = require_list(details.get("Details"), f"{client.source}: Details")
                links = [self._link(row, target, client) for row in rows]
                rows_of_target += len(links)
                total_pages = _total_pages(details, client.source, "GetUrlLinks")
                yield Page(links)
                page += 1
                if page >= total_pages:
                    break
            listed += rows_of_target
            # Each linked page on its own: a page counted with links and listed with none
            # (a glitch, a cold cache) or with far fewer would lose them all in a snapshot
            # that looks whole, however small a share of the profile they are.
            if counted > 0 and (
                rows_of_target == 0 or rows_of_target < counted * (1 - tolerance) - PAGE_SLACK
            ):
                raise ApiError(
                    f"{client.source}: Bing counted {counted:,} links to {target}"
                    f" (GetLinkCounts) but GetUrlLinks listed {rows_of_target:,}; the snapshot"
                    f" is partial (sources.{self.name}.count_tolerance)"
                )
        log.info(
            "%s: Bing counted %d links to %d pages; GetUrlLinks listed %d",
            client.source,
            announced,
            len(targets),
            listed,
        )
        # Bing does not document that a page's Count equals the rows GetUrlLinks lists for
        # it (LinkCount.Count has no description) and the two lists are read minutes apart
        # from a live index: a small shortfall is drift; more means rows went missing in
        # paging, and missing rows must never read as lost links.
        if listed < announced * (1 - tolerance):
            raise ApiError(
                f"{client.source}: Bing counted {announced:,} links to {len(targets):,} pages"
                f" (GetLinkCounts) but GetUrlLinks listed {listed:,}, more than"
                f" {tolerance * 100:g}% short; the snapshot is partial"
                f" (sources.{self.name}.count_tolerance)"
            )

    def _link(self, row: Any, target: str, client: ApiClient) -> Backlink:
        detail = require_dict(row, f"{client.source}: a LinkDetail")
        url_from = _url(detail.get("Url"))
        if url_from is None:
            raise ApiError(f"{client.source}: a LinkDetail without Url: {str(detail)[:200]}")
        return Backlink(url_from, target, as_text(detail.get("AnchorText")))

    def check_credentials(self, client: ApiClient) -> str:
        """`GetUserSites` (no parameters, reads nothing of a site): the account's sites."""
        sites = require_list(self._get(client, "GetUserSites"), f"{client.source}: sites")
        verified = sum(1 for s in sites if isinstance(s, dict) and s.get("IsVerified") is True)
        return f"credentials accepted; {len(sites)} sites, {verified} verified"


def _fault_text(body: Any, fault: dict[str, Any], key: str) -> str | None:
    """Bing's ApiFault (`ErrorCode`, `Message`) as text without the key, its code and text
    kept in `fault`."""
    if not isinstance(body, dict) or "ErrorCode" not in body:
        return None
    number = as_number(body.get("ErrorCode"))
    code = int(number) if number is not None else -1
    fault["code"] = code
    message = as_text(body.get("Message")) or ""
    if key:
        message = message.replace(key, "***")
    fault["text"] = f"ErrorCode {code} {_CODE_NAMES.get(code, 'unknown')}: {message[:200]}"
    return str(fault["text"])


def _count(value: Any) -> int:
    """A count Bing may send as a number or a numeric string (0 if it is neither)."""
    number = as_number(value)
    return int(number) if number is not None and math.isfinite(number) and number > 0 else 0


def _total_pages(answer: dict[str, Any], source: str, method: str) -> int:
    total = as_number(answer.get("TotalPages"))
    if total is None or not math.isfinite(total) or total < 0:
        raise ApiError(f"{source}: {method} gave no TotalPages; cannot tell the last page")
    if total > MAX_PAGE + 1:
        raise ApiError(
            f"{source}: {method} announced {int(total):,} pages, more than its Int16 page"
            " number can reach"
        )
    return int(total)


def _url(value: Any) -> str | None:
    """A URL as Bing wrote it; one without a scheme gets `https://`."""
    text = as_text(value)
    if text is None or not text.strip():
        return None
    text = text.strip()
    return text if "://" in text else "https://" + text


def _wait(client: ApiClient, seconds: float) -> None:
    """Wait like the client does between retries: a stopping daemon does not wait."""
    if client.stop is None:
        client.sleep(seconds)
    elif client.stop.wait(seconds):
        raise PollStopped
