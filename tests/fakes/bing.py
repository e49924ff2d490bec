"""Bing Webmaster API (`webmaster/api.svc/json/`) on loopback, in its documented shapes.

GetLinkCounts lists the site's pages that have inbound links with their counts, GetUrlLinks
one page's inbound links, both `{"d": {..., "TotalPages": N}}` with a 0-based `page`;
GetUserSites lists the account's sites. The key is the `apikey` query parameter; a wrong one
is HTTP 400 `{"ErrorCode": 3, "Message": "ERROR!!! InvalidApiKey"}`, as Bing answers.
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any

from werkzeug import Request, Response

from tests.fakes.base import FakeApi, FakeLink

_API = "/webmaster/api.svc/json/"
_NS = "#Microsoft.Bing.Webmaster.Api"


class _RedactServerLog(logging.Filter):
    """The stand-in server's access log repeats each request line, `apikey` included: that
    is the (fake) provider's log, not linkwatch's, and would otherwise read as a leak."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "apikey=" in message:
            record.msg = re.sub(r"apikey=[^&\s\"]*", "apikey=***", message)
            record.args = None
        return True


class BingFake(FakeApi):
    """Serves `links` grouped by target page; `counts_page` pages per GetLinkCounts page and
    `details_page` links per GetUrlLinks page (Bing does not document its page sizes)."""

    kind = "bing"
    counts_page = 100
    details_page = 100

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Links Bing counts for a target page beyond those it lists (to test the tolerance).
        self.uncounted: dict[str, int] = {}

    def settings(self, **extra: Any) -> dict[str, Any]:
        return {
            "kind": "bing",
            "base_url": self.base_url(),
            "api_key": self.secret,
            "requests_per_second": 1000,
            "backoff": "0s",
            **extra,
        }

    def install(self) -> None:
        server_log = logging.getLogger("werkzeug")
        if not any(isinstance(f, _RedactServerLog) for f in server_log.filters):
            server_log.addFilter(_RedactServerLog())
        for method, handler in (
            ("GetLinkCounts", self.link_counts),
            ("GetUrlLinks", self.url_links),
            ("GetUserSites", self.user_sites),
        ):
            self.server.expect_request(_API + method, method="GET").respond_with_handler(handler)

    def largest_page(self) -> int:
        return self.details_page

    def expected_data_calls(self) -> int:
        """One GetLinkCounts call per page of targets, then every page of each target."""
        by_target = self._by_target()
        listing = max(1, math.ceil(len(by_target) / self.counts_page))
        return listing + sum(
            max(1, math.ceil(len(links) / self.details_page)) for links in by_target.values()
        )

    # --- the endpoints ---------------------------------------------------------------------

    def _refused(self, request: Request) -> Response | None:
        if self.refuse_auth or request.args.get("apikey") != self.secret:
            return self.json({"ErrorCode": 3, "Message": "ERROR!!! InvalidApiKey"}, status=400)
        return None

    def _site_ok(self, request: Request) -> bool:
        return request.args.get("siteUrl") == f"https://{self.site}/"

    def _by_target(self) -> dict[str, list[FakeLink]]:
        grouped: dict[str, list[FakeLink]] = {}
        for link in self.serve_live():
            grouped.setdefault(link.url_to, []).append(link)
        return grouped

    def user_sites(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        site = {
            "__type": "Site" + _NS,
            "AuthenticationCode": "0123456789ABCDEF",
            "DnsVerificationCode": "0123456789abcdef",
            "IsVerified": True,
            "Url": f"https://{self.site}/",
        }
        return self.json({"d": [site]})

    def link_counts(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        return self.data(request, lambda: self._counts(request))

    def url_links(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        return self.data(request, lambda: self._details(request))

    def _counts(self, request: Request) -> Response:
        if not self._site_ok(request):
            return self.json({"ErrorCode": 14, "Message": "ERROR!!! NotAuthorized"}, status=400)
        page = int(request.args.get("page", "0"))
        by_target = self._by_target()
        targets = list(by_target)
        chunk = targets[page * self.counts_page : (page + 1) * self.counts_page]
        return self.json(
            {
                "d": {
                    "__type": "LinkCounts" + _NS,
                    "Links": [
                        {
                            "__type": "LinkCount" + _NS,
                            "Count": len(by_target[t]) + self.uncounted.get(t, 0),
                            "Url": t,
                        }
                        for t in chunk
                    ],
                    "TotalPages": math.ceil(len(targets) / self.counts_page),
                }
            }
        )

    def _details(self, request: Request) -> Response:
        if not self._site_ok(request):
            return self.json({"ErrorCode": 14, "Message": "ERROR!!! NotAuthorized"}, status=400)
        raw = request.args.get("link", "")
        # The JSON endpoint reads string arguments as JSON literals (the documented sample
        # quotes `link`); a bare value is taken as it is.
        target = json.loads(raw) if raw.startswith('"') else raw
        page = int(request.args.get("page", "0"))
        links = self._by_target().get(target, [])
        chunk = links[page * self.details_page : (page + 1) * self.details_page]
        return self.json(
            {
                "d": {
                    "__type": "LinkDetails" + _NS,
                    "Details": [
                        {
                            "__type": "LinkDetail" + _NS,
                            "AnchorText": link.anchor,
                            "Url": link.url_from,
                        }
                        for link in chunk
                    ],
                    "TotalPages": math.ceil(len(links) / self.details_page),
                }
            }
        )


FAKE = BingFake
