"""Ahrefs API v3 `site-explorer/all-backlinks` on loopback, as its OpenAPI spec documents it.

It answers `{"backlinks": [...]}` with only the selected fields, sorts by `order_by`,
filters by the documented `where` grammar (and/or/not over field conditions), adds the
links lost since `history=since:DATE`, has no offset, and sends the documented cost
headers. Errors are `{"error": "..."}`; a wrong key gets a 401.
"""

from __future__ import annotations

import json
from typing import Any

from werkzeug import Request, Response

from tests.fakes.base import FakeApi, FakeLink

# Every field the spec lists for all-backlinks that the stand-in can render.
FIELDS = frozenset(
    {
        "url_from",
        "url_to",
        "anchor",
        "title",
        "first_seen_link",
        "last_visited",
        "last_seen",
        "domain_rating_source",
        "url_rating_source",
        "is_dofollow",
        "is_nofollow",
        "is_ugc",
        "is_sponsored",
        "is_lost",
        "is_spam",
        "lost_reason",
        "drop_reason",
        "http_code",
        "link_type",
        "traffic",
    }
)
UNITS = {"traffic": 10}
# The day the stand-in's lost links were found lost.
LOST_ON = "2026-02-20T00:00:00Z"


class AhrefsFake(FakeApi):
    """Pages only by `where` on the sort key (no offset, no cursor), as the spec has it."""

    kind = "ahrefs"
    # Ahrefs' reason per lost link (by url_from); links without one are `removedfromhtml`.
    reasons: dict[str, str | None]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reasons = {}
        self.drop_reasons: dict[str, str] = {}
        self.spam: set[str] = set()
        # The `x-api-units-cost-total-actual` to send instead of the computed cost (a cache
        # hit costs 0), or None to send the computed one, or "" to send none.
        self.actual_cost: str | None = None
        self.ignore_where = False
        # A plan's cap on rows per request: the answer is shorter than asked, not the end.
        self.row_cap: int | None = None

    def settings(self, **extra: Any) -> dict[str, Any]:
        return {
            "kind": "ahrefs",
            "base_url": self.base_url(),
            "api_key": self.secret,
            "requests_per_second": 1000,
            "backoff": "0s",
            **extra,
        }

    def install(self) -> None:
        self.server.expect_request(
            "/v3/site-explorer/all-backlinks", method="GET"
        ).respond_with_handler(self.all_backlinks)
        self.server.expect_request(
            "/v3/subscription-info/limits-and-usage", method="GET"
        ).respond_with_handler(self.limits_and_usage)

    def largest_page(self) -> int:
        return 1000

    def expected_data_calls(self) -> int:
        """Keyset pages overlap: each later page starts with the last row of the one before,
        and a poll ends on the first page that brings nothing new."""
        size, left, calls, overlap = self.largest_page(), len(self.links), 0, 0
        while True:
            calls += 1
            new = min(size - overlap, left)
            if new <= 0:
                return calls
            left -= new
            overlap = 1

    def _authorised(self, request: Request) -> bool:
        return not self.refuse_auth and request.headers.get("Authorization") == (
            f"Bearer {self.secret}"
        )

    def _refused(self) -> Response:
        return self.json({"error": "Unauthorized: invalid API key"}, status=401)

    def limits_and_usage(self, request: Request) -> Response:
        if not self._authorised(request):
            return self._refused()
        return self.json(
            {
                "limits_and_usage": {
                    "subscription": "Enterprise",
                    "usage_reset_date": "2026-04-01",
                    "units_limit_workspace": 2_000_000,
                    "units_usage_workspace": 120_500,
                    "units_limit_api_key": 1_000_000,
                    "units_usage_api_key": 20_500,
                    "api_key_expiration_date": "2027-01-01T00:00:00Z",
                }
            }
        )

    def all_backlinks(self, request: Request) -> Response:
        if not self._authorised(request):
            return self._refused()
        return self.data(request, lambda: self._page(request))

    def row(self, link: FakeLink) -> dict[str, Any]:
        """Every field of one link, as the documented sample shapes it."""
        reason = self.reasons.get(link.url_from, "removedfromhtml") if link.lost else None
        return {
            "url_from": link.url_from,
            "url_to": link.url_to,
            "anchor": link.anchor,
            "title": "A page",
            "first_seen_link": f"{link.first_seen}T00:00:00Z",
            "last_visited": "2026-01-09T22:10:03Z",
            "last_seen": LOST_ON if link.lost else None,
            "domain_rating_source": link.rating,
            "url_rating_source": 12.4,
            "is_dofollow": not link.nofollow,
            "is_nofollow": link.nofollow,
            "is_ugc": False,
            "is_sponsored": False,
            "is_lost": link.lost,
            "is_spam": link.url_from in self.spam,
            "lost_reason": reason,
            "drop_reason": self.drop_reasons.get(link.url_from) if link.lost else None,
            "http_code": 404 if link.lost else 200,
            "link_type": "text",
            "traffic": 100,
        }

    def _page(self, request: Request) -> Response:
        args = request.args
        select = [name for name in args.get("select", "").split(",") if name]
        if not select:
            return self.json({"error": "missing required parameter: select"}, status=400)
        unknown = [name for name in select if name not in FIELDS]
        if unknown:
            return self.json({"error": f"invalid select: unknown column '{unknown[0]}'"}, 400)
        if args.get("target") != self.site:
            return self.json({"error": "invalid target"}, status=400)
        if "offset" in args:
            return self.json({"error": "offset is deprecated"}, status=400)
        history = args.get("history", "all_time")
        rows = [self.row(link) for link in self.links]
        if history == "live":
            rows = [row for row in rows if not row["is_lost"]]
        elif history.startswith("since:"):
            since = history.removeprefix("since:")
            rows = [row for row in rows if not row["is_lost"] or row["last_seen"] >= since]
        elif history != "all_time":
            return self.json({"error": f"invalid history: {history}"}, status=400)
        where_fields: set[str] = set()
        if "where" in args and not self.ignore_where:
            try:
                where = json.loads(args["where"])
                rows = [row for row in rows if _matches(where, row, where_fields)]
            except (ValueError, KeyError, TypeError) as exc:
                return self.json({"error": f"invalid where: {exc}"}, status=400)
        order = [part.split(":") for part in args.get("order_by", "").split(",") if part]
        for name, *direction in reversed(order):
            rows.sort(key=lambda row: row[name], reverse=direction == ["desc"])
        limit = int(args.get("limit", 1000))
        chunk = rows[: min(limit, self.row_cap or limit)]
        fields = set(select) | where_fields | {name for name, *_ in order}
        per_row = sum(UNITS.get(name, 1) for name in fields)
        total = max(50, per_row * len(chunk))
        actual = str(total) if self.actual_cost is None else self.actual_cost
        headers = {
            "x-api-rows": str(len(chunk)),
            "x-api-units-cost-row": str(per_row),
            "x-api-units-cost-total": str(total),
            "x-api-cache": "hit" if actual == "0" else "miss",
        }
        if actual:
            headers["x-api-units-cost-total-actual"] = actual
        body = {"backlinks": [{name: row[name] for name in select} for row in chunk]}
        return Response(
            json.dumps(body), status=200, headers=headers, content_type="application/json"
        )


def _matches(expr: dict[str, Any], row: dict[str, Any], fields: set[str]) -> bool:
    """The documented filter grammar: and / or / not over `{"field", "is": [op, value]}`."""
    if "and" in expr:
        return all([_matches(e, row, fields) for e in expr["and"]])
    if "or" in expr:
        return any([_matches(e, row, fields) for e in expr["or"]])
    if "not" in expr:
        return not _matches(expr["not"], row, fields)
    name = expr["field"]
    fields.add(name)
    op, value = expr["is"]
    have = row[name]
    return bool(
        {
            "eq": lambda: have == value,
            "neq": lambda: have != value,
            "gt": lambda: have > value,
            "gte": lambda: have >= value,
            "lt": lambda: have < value,
            "lte": lambda: have <= value,
        }[op]()
    )


FAKE = AhrefsFake
