"""Moz Links API v2 `POST v2/links` on loopback, in its documented shape and paging.

`{"results": [...], "next_token": "..."}` with scheme-less `page` values, at most 50 rows
per call, `next_token` empty after the last page; `usage_data` answers `rows_consumed`.
It takes an `x-moz-token` header or Basic auth with the legacy Access ID and Secret Key.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from werkzeug import Request, Response

from tests.fakes.base import FakeApi, FakeLink

ACCESS_ID = "mozscape-0123456789"
MAX_LIMIT = 50


def _bare(url: str) -> str:
    """A URL as Moz writes it: no scheme."""
    return url.split("://", 1)[-1]


class MozFake(FakeApi):
    """Pages by `next_token` only; refuses a `limit` over 50 the way Moz does (HTTP 400)."""

    kind = "moz"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rows_consumed = 0
        self.spam_score = 3

    def settings(self, **extra: Any) -> dict[str, Any]:
        return {
            "kind": "moz",
            "base_url": self.base_url(),
            "token": self.secret,
            "requests_per_second": 1000,
            "backoff": "0s",
            **extra,
        }

    def install(self) -> None:
        self.server.expect_request("/v2/links", method="POST").respond_with_handler(self.links_)
        self.server.expect_request("/v2/usage_data", method="POST").respond_with_handler(
            self.usage_data
        )

    def largest_page(self) -> int:
        return MAX_LIMIT

    def _authorised(self, request: Request) -> bool:
        if self.refuse_auth:
            return False
        if request.headers.get("x-moz-token") == self.secret:
            return True
        basic = base64.b64encode(f"{ACCESS_ID}:{self.secret}".encode()).decode()
        return request.headers.get("Authorization") == f"Basic {basic}"

    def _refused(self) -> Response:
        return self.json({"name": "Unauthorized", "message": "Invalid credentials"}, 401)

    def usage_data(self, request: Request) -> Response:
        if not self._authorised(request):
            return self._refused()
        return self.json({"rows_consumed": self.rows_consumed})

    def links_(self, request: Request) -> Response:
        if not self._authorised(request):
            return self._refused()
        return self.data(request, lambda: self._page(request))

    def result(self, link: FakeLink) -> dict[str, Any]:
        """One result as the documented sample shapes it (its fields, this link's values)."""
        host = _bare(link.url_from).split("/")[0]
        target_host = _bare(link.url_to).split("/")[0]
        return {
            "source": {
                "page": _bare(link.url_from),
                "subdomain": host,
                "root_domain": ".".join(host.split(".")[-2:]),
                "title": "A page",
                "last_crawled": "2025-12-30",
                "http_code": 404 if link.lost else 200,
                "page_authority": 30,
                "domain_authority": link.rating,
                "spam_score": self.spam_score,
            },
            "target": {
                "page": _bare(link.url_to),
                "subdomain": target_host,
                "root_domain": target_host,
                "http_code": 200,
                "page_authority": 41,
                "domain_authority": 35,
                "spam_score": 1,
            },
            "anchor_text": link.anchor,
            "nofollow": link.nofollow,
            "redirect": False,
            "date_first_seen": link.first_seen,
            "date_last_seen": "2025-12-30",
            "date_disappeared": "2026-02-20" if link.lost else "",
        }

    def _page(self, request: Request) -> Response:
        body = json.loads(request.get_data())
        if body.get("target") != self.site:
            return self.json({"name": "BadRequest", "message": "Invalid target"}, 400)
        limit = int(body.get("limit", 25))
        if not 1 <= limit <= MAX_LIMIT:
            return self.json({"name": "BadRequest", "message": "limit must be 1-50"}, 400)
        served = self.serve_live() if "not_deleted" in body.get("filter", "") else self.links
        start = 0
        if body.get("next_token"):
            start = int(base64.b64decode(body["next_token"]).decode())
        chunk = served[start : start + limit]
        end = start + len(chunk)
        token = base64.b64encode(str(end).encode()).decode() if end < len(served) else ""
        self.rows_consumed += len(chunk)
        return self.json({"next_token": token, "results": [self.result(x) for x in chunk]})


FAKE = MozFake
