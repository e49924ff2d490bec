"""Majestic `api/json` on loopback: GetBackLinkData and GetSubscriptionInfo, documented shapes.

Majestic's documented JSON: `Code`/`ErrorMessage`/`FullError` at the top with the global
variables beside them, and `DataTables.<Name>.Headers` / `.Data` (rows as objects with the
fields of the `Headers="..."` list of the XML form). Parameters come as a query string or a
form body ("an HTTP GET or POST request"). Paging is `From` (0-based row) and `Count`
(at most 50,000); at most `AvailableLines` rows are served for an item in all.
"""

from __future__ import annotations

from typing import Any

from werkzeug import Request, Response

from tests.fakes.base import FakeApi, FakeLink

MAX_COUNT = 50_000
# The stand-in's settings ask pages of this size (a real poll asks 50,000 at once).
PAGE = 1000


class MajesticFake(FakeApi):
    """Serves `links` (deleted ones too with Mode=0, as documented) by `From`/`Count`."""

    kind = "majestic"
    # The rows GetBackLinkData serves for an item in all (50,000 in Majestic's samples).
    available_lines = 50_000
    # Rows the index holds besides those GetBackLinkData returns (alt text, mentions).
    extra_lines = 0

    def settings(self, **extra: Any) -> dict[str, Any]:
        return {
            "kind": "majestic",
            "base_url": self.base_url(),
            "api_key": self.secret,
            "page_size": PAGE,
            "requests_per_second": 1000,
            "backoff": "0s",
            **extra,
        }

    def install(self) -> None:
        self.server.expect_request("/api/json").respond_with_handler(self.api)

    def largest_page(self) -> int:
        return PAGE

    def api(self, request: Request) -> Response:
        params = request.values
        if self.refuse_auth or params.get("app_api_key") != self.secret:
            # HTTP 200 with a Code other than OK: how Majestic reports a failed command.
            return self.json(
                {
                    "Code": "InvalidAPIKey",
                    "ErrorMessage": "Invalid API key",
                    "FullError": "The API key supplied is not valid",
                }
            )
        command = params.get("cmd")
        if command == "GetSubscriptionInfo":
            return self.json(_subscription())
        if command == "GetBackLinkData":
            return self.data(request, lambda: self._backlinks(request))
        return self.json({"Code": "InvalidCommand", "ErrorMessage": f"unknown {command}"})

    def _backlinks(self, request: Request) -> Response:
        params = request.values
        if params.get("item") != self.site:
            return self.json({"Code": "OK", "ErrorMessage": "", "DataTables": {}})
        served = self.serve_live() if params.get("Mode") == "1" else self.links
        count = min(int(params.get("Count", 100)), MAX_COUNT)
        start = int(params.get("From", 0))
        end = min(start + count, self.available_lines)
        chunk = served[start:end] if start < end else []
        headers = {
            "AvailableLines": self.available_lines,
            "BackLinkItem": self.site,
            "BackLinkType": "BackLinks",
            "Count": len(chunk),
            "From": start,
            "Item": self.site,
            "ItemType": "RootDomain",
            "OrigItem": self.site,
            "TotalBackLinks": len(served),
            "TotalLines": len(served) + self.extra_lines,
            "TotalMatches": len(chunk),
        }
        return self.json(
            {
                "Code": "OK",
                "ErrorMessage": "",
                "FullError": "",
                "ChargedAnalysisResUnits": 5000,
                "ChargedRetrievalResUnits": len(chunk),
                "IndexBuildDate": "2026-01-10 06:12:44",
                "IndexType": 1,
                "DataTables": {
                    "BackLinks": {"Headers": headers, "Data": [_row(link) for link in chunk]}
                },
            }
        )


def _subscription() -> dict[str, Any]:
    """GetSubscriptionInfo as documented (its XML sample's values, in the JSON form)."""
    return {
        "Code": "OK",
        "ErrorMessage": "",
        "FullError": "",
        "SubscriptionIsActive": 1,
        "TotalAnalysisResUnits": 97095051,
        "TotalIndexItemInfoResUnits": 504986,
        "TotalRetrievalResUnits": 19462891,
        "DataTables": {
            "Subscriptions": {
                "Headers": {},
                "Data": [
                    {
                        "Starts": "2017-09-25 15:06:27",
                        "Expires": "2017-10-25 15:05:40",
                        "IndexItemInfoResUnits": 499986,
                        "RetrievalResUnits": 19262891,
                        "AnalysisResUnits": 96095051,
                    }
                ],
            }
        },
    }


def _row(link: FakeLink) -> dict[str, Any]:
    """One row with the documented fields (the sample's order), this link's values."""
    return {
        "SourceURL": link.url_from,
        "ACRank": 3,
        "AnchorText": link.anchor.lower(),
        "Date": "2025-12-30",
        "FlagRedirect": 0,
        "FlagFrame": 0,
        "FlagNoFollow": 1 if link.nofollow else 0,
        "FlagImages": 0,
        "FlagDeleted": 1 if link.lost else 0,
        "FlagAltText": 0,
        "FlagMention": 0,
        "TargetURL": link.url_to,
        "DomainID": -1,
        "FirstIndexedDate": link.first_seen,
        "LastSeenDate": "2025-12-30",
        "DateLost": "2025-12-31" if link.lost else "",
        "ReasonLost": "Link removed" if link.lost else "",
        "LinkType": "TextLink",
        "LinkSubType": "TextLink_Normal",
        "TargetCitationFlow": 38,
        "TargetTrustFlow": 29,
        "TargetTopicalTrustFlow_Topic_0": "Computers/Software",
        "TargetTopicalTrustFlow_Value_0": 25,
        "SourceCitationFlow": 40,
        "SourceTrustFlow": int(link.rating),
        "SourceTopicalTrustFlow_Topic_0": "News/Technology",
        "SourceTopicalTrustFlow_Value_0": 30,
    }


FAKE = MajesticFake
