"""DataForSEO `v3/backlinks/backlinks/live` on loopback, in its documented task shape."""

from __future__ import annotations

import base64
import json
from typing import Any

from werkzeug import Request, Response

from tests.fakes.base import FakeApi, FakeLink

LOGIN = "seo@example.com"


def _envelope(result: list[dict[str, Any]], cost: float = 0.02) -> dict[str, Any]:
    return {
        "version": "0.1.20251208",
        "status_code": 20000,
        "status_message": "Ok.",
        "time": "0.1 sec.",
        "cost": cost,
        "tasks_count": 1,
        "tasks_error": 0,
        "tasks": [
            {
                "id": "01101234-0000-0000-0000-000000000000",
                "status_code": 20000,
                "status_message": "Ok.",
                "cost": cost,
                "result_count": 1,
                "result": result,
            }
        ],
    }


class DataForSeoFake(FakeApi):
    """Pages by `offset` (at most 20,000) and by `search_after_token` (every other parameter
    identical to the request that gave the token), as documented."""

    kind = "dataforseo"
    # Pages are this size at most whatever `limit` asks (the documented maximum is 1000).
    page_cap = 1000

    def settings(self, **extra: Any) -> dict[str, Any]:
        return {
            "kind": "dataforseo",
            "base_url": self.base_url(),
            "login": LOGIN,
            "password": self.secret,
            "requests_per_second": 1000,
            "backoff": "0s",
            **extra,
        }

    def install(self) -> None:
        self.server.expect_request(
            "/v3/backlinks/backlinks/live", method="POST"
        ).respond_with_handler(self.live)
        self.server.expect_request("/v3/appendix/user_data", method="GET").respond_with_handler(
            self.user_data
        )

    def largest_page(self) -> int:
        return self.page_cap

    def _authorised(self, request: Request) -> bool:
        expected = base64.b64encode(f"{LOGIN}:{self.secret}".encode()).decode()
        return not self.refuse_auth and request.headers.get("Authorization") == f"Basic {expected}"

    def _refused(self) -> Response:
        # DataForSEO answers 401 with its own status code in the body.
        return self.json(
            {
                "status_code": 40100,
                "status_message": "You are not authorized to access this resource.",
            },
            status=401,
        )

    def user_data(self, request: Request) -> Response:
        if not self._authorised(request):
            return self._refused()
        return self.json(_envelope([{"login": LOGIN, "money": {"balance": 42.5}}], cost=0))

    def live(self, request: Request) -> Response:
        if not self._authorised(request):
            return self._refused()
        return self.data(request, lambda: self._page(request))

    def _page(self, request: Request) -> Response:
        tasks = json.loads(request.get_data())
        task = tasks[0]
        if task.get("target") != self.site or task.get("mode") != "as_is":
            return self.json({"status_code": 40501, "status_message": "Invalid Field: 'target'."})
        served = self.links if task.get("backlinks_status_type") == "all" else self.serve_live()
        limit = min(int(task.get("limit", 100)), self.page_cap)
        request_key = _request_key(task)
        if "search_after_token" in task:
            try:
                after = json.loads(base64.b64decode(task["search_after_token"]))
            except ValueError:
                after = None
            # Documented: with a token every other parameter must be identical.
            if not isinstance(after, dict) or after.get("request") != request_key:
                return self.json(
                    {"status_code": 40501, "status_message": "Invalid Field: 'search_after_token'."}
                )
            # Like a search-after key: the page goes on after the row the token was given
            # with, by its place in the order (here: the profile's order), whatever rows
            # joined or left the list meanwhile.
            order = {(x.url_from, x.url_to): i for i, x in enumerate(self.links)}
            last = order.get(tuple(after["after"] or ()), -1)
            if after["after"] and last < 0:
                return self.json(
                    {"status_code": 40501, "status_message": "Invalid Field: 'search_after_token'."}
                )
            chunk = [x for x in served if order[(x.url_from, x.url_to)] > last][:limit]
        else:
            start = int(task.get("offset", 0))
            if start > 20_000:
                return self.json(
                    {"status_code": 40501, "status_message": "Invalid Field: 'offset'."}
                )
            chunk = served[start : start + limit]
        # Every answer carries a token, the first one too (as the documented sample does).
        after_key = [chunk[-1].url_from, chunk[-1].url_to] if chunk else None
        if not chunk and "search_after_token" in task:
            after_key = json.loads(base64.b64decode(task["search_after_token"]))["after"]
        token = base64.b64encode(
            json.dumps({"after": after_key, "request": request_key}).encode()
        ).decode()
        result = {
            "target": self.site,
            "mode": "as_is",
            "total_count": len(served),
            "items_count": len(chunk),
            "search_after_token": token,
            "items": [_item(link) for link in chunk],
        }
        return self.json(_envelope([result]))


def _request_key(task: dict[str, Any]) -> str:
    """The task's parameters besides the token, which a token is valid for."""
    return json.dumps({k: v for k, v in task.items() if k != "search_after_token"}, sort_keys=True)


def _item(link: FakeLink) -> dict[str, Any]:
    """One item as the documented sample shapes it (the sample's fields, this link's values)."""
    host = link.url_from.split("/")[2]
    return {
        "type": "backlink",
        "domain_from": host,
        "url_from": link.url_from,
        "domain_to": link.url_to.split("/")[2],
        "url_to": link.url_to,
        "is_new": False,
        "is_lost": link.lost,
        "backlink_spam_score": 3,
        "rank": 10,
        "page_from_rank": 20,
        "domain_from_rank": link.rating,
        "page_from_title": "A page",
        "page_from_status_code": 404 if link.lost else 200,
        "first_seen": f"{link.first_seen} 00:00:00 +00:00",
        "prev_seen": "2025-12-01 10:00:00 +00:00",
        "last_seen": "2025-12-31 09:00:00 +00:00",
        "item_type": "anchor",
        "attributes": ["nofollow"] if link.nofollow else None,
        "dofollow": not link.nofollow,
        "anchor": link.anchor,
        "text_pre": "",
        "text_post": "",
        "links_count": 1,
        "is_broken": False,
        "url_to_status_code": 200,
        "is_indirect_link": False,
    }


FAKE = DataForSeoFake
