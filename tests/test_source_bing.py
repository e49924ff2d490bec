"""The Bing Webmaster source: linked pages then their links, every page of both, counts checked,
Bing's error codes, the site URL template, and a key that only ever travels in the query."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from sources.api import ApiAuthError, ApiError
from sources.bing import BingSettings, BingSource
from sources.model import Backlink, SnapshotResult
from tests.fakes.base import FakeLink, Fault, profile
from tests.fakes.bing import BingFake

FIXTURES = Path(__file__).parent / "fixtures" / "api"
T0 = datetime(2026, 3, 1, tzinfo=UTC)
KEY = BingFake.secret
API = "/webmaster/api.svc/json/"


def source(server: HTTPServer, **extra: Any) -> BingSource:
    defaults: dict[str, Any] = {"requests_per_second": 1000, "backoff": "0s"}
    settings = BingSettings(
        kind="bing", base_url=server.url_for("/"), api_key=SecretStr(KEY), **(defaults | extra)
    )
    return BingSource("bwt", settings)


def read_all(src: BingSource) -> tuple[list[Backlink], SnapshotResult]:
    result = src.fetch("example.com", T0, sleep=lambda s: None)
    return list(result.records), result


def fake(server: HTTPServer, links: list[FakeLink]) -> BingFake:
    stand_in = BingFake(server, links)
    stand_in.install()
    return stand_in


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


# --- the documented samples -----------------------------------------------------------------------


def test_the_documented_samples_map_to_links_of_each_linked_page(httpserver: HTTPServer) -> None:
    counts = fixture("bing_getlinkcounts_response.json")
    # The two samples are not of one site: each linked page's Count (14, 3, 1) is set to
    # the 6 links the GetUrlLinks sample lists for it (3 details x 2 pages).
    for entry in counts["d"]["Links"]:
        entry["Count"] = 6
    httpserver.expect_request(API + "GetLinkCounts").respond_with_json(counts)
    details: list[dict[str, str]] = []

    def url_links(request: Request) -> Response:
        details.append(dict(request.args))
        answer = fixture("bing_geturllinks_response.json")
        if request.args["page"] != "0":
            # The sample's rows on every page, each page its own (the same rows again
            # would be paging gone back).
            for detail in answer["d"]["Details"]:
                detail["Url"] += f"?page={request.args['page']}"
        return Response(json.dumps(answer), content_type="application/json")

    httpserver.expect_request(API + "GetUrlLinks").respond_with_handler(url_links)
    links, result = read_all(source(httpserver))
    # 3 linked pages x 2 pages (TotalPages 2) x 3 details = 18.
    assert result.complete and result.format == "bing" and len(links) == 18
    assert links[:3] == [
        Backlink(
            "https://blog.example.org/best-widget-tools/", "https://example.com/", "Example Widgets"
        ),
        Backlink("https://news.example.io/partners", "https://example.com/", "sponsor: Example"),
        # An empty AnchorText is no anchor; Bing says nothing of rel, dates or ratings.
        Backlink("https://directory.example.info/widgets/page-2", "https://example.com/", None),
    ]
    assert all(
        (link.nofollow, link.domain_rating, link.first_seen_at, link.lost, link.rating_metric)
        == (None, None, None, False, None)
        for link in links
    )
    assert {link.url_to for link in links} == {
        "https://example.com/",
        "https://example.com/pricing",
        "https://example.com/features",
    }
    # Each linked page, both of its pages, in order.
    assert [(json.loads(d["link"]), d["page"]) for d in details] == [
        (target, page)
        for target in (
            "https://example.com/",
            "https://example.com/pricing",
            "https://example.com/features",
        )
        for page in ("0", "1")
    ]


# --- the requests ---------------------------------------------------------------------------------


def test_the_requests_carry_the_documented_parameters(httpserver: HTTPServer) -> None:
    stand_in = fake(httpserver, profile(3))
    read_all(source(httpserver))
    counts, *details = stand_in.calls
    assert counts["path"] == API + "GetLinkCounts"
    assert counts["args"] == {"siteUrl": "https://example.com/", "page": "0", "apikey": KEY}
    first = details[0]
    assert first["path"] == API + "GetUrlLinks"
    # `link` as the JSON string literal of the documented JSON sample: quoted, `\/`.
    assert first["args"] == {
        "siteUrl": "https://example.com/",
        "link": '"https:\\/\\/example.com\\/p0"',
        "page": "0",
        "apikey": KEY,
    }


def test_the_site_url_is_a_template_of_the_domain(httpserver: HTTPServer) -> None:
    stand_in = fake(httpserver, profile(3))
    src = source(httpserver, site_url="https://www.{domain}/")
    assert src.site_url("example.com") == "https://www.example.com/"
    # The stand-in verifies https://example.com/ only: Bing answers NotAuthorized (14).
    with pytest.raises(ApiAuthError, match=r"NotAuthorized.*sources\.bwt\.site_url") as caught:
        src.fetch("example.com", T0, sleep=lambda s: None)
    assert "refused the credentials" in str(caught.value)
    assert stand_in.calls[0]["args"]["siteUrl"] == "https://www.example.com/"


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("https://{site}/", "unknown placeholder {site}"),
        ("https://{domain.upper}/", "attribute and index access"),
        ("https://{domain:>40}/", "format specs are not allowed"),
        ("https://{domain/", "unbalanced braces"),
        ("{domain}", "expected the site's URL"),
        ("ftp://{domain}/", "expected the site's URL"),
        ("https://{domain}/\0", "NUL"),
    ],
)
def test_a_bad_site_url_template_is_refused_at_load(template: str, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        BingSettings(kind="bing", api_key=SecretStr(KEY), site_url=template)


def test_settings_defaults() -> None:
    settings = BingSettings(kind="bing", api_key=SecretStr(KEY))
    assert settings.base_url == "https://ssl.bing.com/"
    assert (settings.site_url, settings.count_tolerance) == ("https://{domain}/", 0.02)
    for too_lax in (0.9, 0.5, 0.11):
        with pytest.raises(ValidationError):
            BingSettings(kind="bing", api_key=SecretStr(KEY), count_tolerance=too_lax)
    assert BingSettings(kind="bing", api_key=SecretStr(KEY), count_tolerance=0.1)


# --- paging ---------------------------------------------------------------------------------------


def test_every_page_of_both_lists_is_read(httpserver: HTTPServer) -> None:
    stand_in = fake(httpserver, profile(1000))
    stand_in.counts_page = 7  # 50 linked pages: 8 pages of counts
    stand_in.details_page = 6  # 20 links per linked page: 4 pages each
    links, result = read_all(source(httpserver))
    assert result.complete
    assert len({(link.url_from, link.url_to) for link in links}) == 1000
    counts_pages = [c["args"]["page"] for c in stand_in.calls if c["path"].endswith("Counts")]
    assert counts_pages == [str(p) for p in range(8)]
    assert stand_in.data_calls == stand_in.expected_data_calls() == 8 + 50 * 4
    # GetLinkCounts is read to its end before the first GetUrlLinks.
    assert [c["path"].rsplit("/", 1)[1] for c in stand_in.calls[:9]] == ["GetLinkCounts"] * 8 + [
        "GetUrlLinks"
    ]


def test_a_site_without_links_is_one_call(httpserver: HTTPServer) -> None:
    stand_in = fake(httpserver, [])
    links, result = read_all(source(httpserver))
    assert links == [] and result.complete and stand_in.data_calls == 1


def test_the_first_getlinkcounts_failing_is_an_error_a_later_call_partial(
    httpserver: HTTPServer,
) -> None:
    stand_in = fake(httpserver, profile(300))
    stand_in.counts_page = 20
    stand_in.faults[1] = Fault(500)
    with pytest.raises(ApiError, match="HTTP 500"):
        source(httpserver, retries=0).fetch("example.com", T0, sleep=lambda s: None)
    stand_in.faults[stand_in.data_calls + 2] = Fault(500)  # the second page of the list
    links, result = read_all(source(httpserver, retries=0))
    assert links == [] and not result.complete and "HTTP 500" in (result.error or "")


# --- counts against details -----------------------------------------------------------------------


def test_a_shortfall_within_the_tolerance_is_complete(httpserver: HTTPServer) -> None:
    stand_in = fake(httpserver, profile(1000))  # 50 linked pages of 20 links
    # One link of drift on a page (the slack), 1,001 counted of 1,000 in all: complete.
    stand_in.uncounted = {"https://example.com/p0": 1}
    links, result = read_all(source(httpserver))
    assert result.complete and len(links) == 1000


def test_a_linked_page_short_beyond_its_tolerance_is_partial(httpserver: HTTPServer) -> None:
    stand_in = fake(httpserver, profile(1000))
    # 22 counted, 20 listed: 0.2 % of the whole profile, but two links of one page.
    stand_in.uncounted = {"https://example.com/p0": 2}
    links, result = read_all(source(httpserver))
    assert not result.complete and len(links) < 1000
    assert (
        "Bing counted 22 links to https://example.com/p0 (GetLinkCounts) but GetUrlLinks"
        " listed 20" in (result.error or "")
    )
    assert "sources.bwt.count_tolerance" in (result.error or "")
    # A looser tolerance lets 10 % of a page's links (and one more) go unlisted.
    stand_in.uncounted = {"https://example.com/p0": 3}  # 23 counted: 20 >= 23 * 0.9 - 1
    _, result = read_all(source(httpserver, count_tolerance=0.1))
    assert result.complete


def test_drift_on_every_page_is_held_to_the_tolerance_in_all(httpserver: HTTPServer) -> None:
    stand_in = fake(httpserver, profile(1000))
    # Each page one link short (within its slack), 1,050 counted in all: 4.8 % short.
    stand_in.uncounted = {f"https://example.com/p{i}": 1 for i in range(50)}
    links, result = read_all(source(httpserver))
    assert len(links) == 1000 and not result.complete
    assert "Bing counted 1,050 links to 50 pages (GetLinkCounts) but GetUrlLinks listed 1,000" in (
        result.error or ""
    )


def test_a_zero_tolerance_wants_every_counted_link(httpserver: HTTPServer) -> None:
    stand_in = fake(httpserver, profile(100))
    stand_in.uncounted = {"https://example.com/p3": 1}
    _, result = read_all(source(httpserver, count_tolerance=0))
    assert not result.complete
    stand_in.uncounted = {}
    _, result = read_all(source(httpserver, count_tolerance=0))
    assert result.complete


def test_a_linked_page_listing_none_of_its_counted_links_is_partial(
    httpserver: HTTPServer,
) -> None:
    stand_in = fake(httpserver, profile(3000))  # 50 linked pages of 60 links
    real = stand_in._details

    def emptied(request: Request) -> Response:
        if json.loads(request.args["link"]) == "https://example.com/p7":
            return stand_in.json({"d": {"Details": [], "TotalPages": 0}})
        return real(request)

    stand_in._details = emptied  # type: ignore[method-assign]
    # 60 of 3,000 links (2 %), within the tolerance for the whole profile: yet one page's
    # links all gone at once is a glitch, not a loss, whatever the tolerance.
    links, result = read_all(source(httpserver, count_tolerance=0.1))
    assert not result.complete and len(links) < 3000
    assert "Bing counted 60 links to https://example.com/p7" in (result.error or "")
    assert "listed 0" in (result.error or "")


def test_a_linked_page_counted_twice_means_the_list_shifted(httpserver: HTTPServer) -> None:
    stand_in = fake(httpserver, profile(3000))  # 50 linked pages
    stand_in.counts_page = 20
    real = stand_in._counts

    def shifted(request: Request) -> Response:
        body = json.loads(real(request).get_data())
        if request.args["page"] == "1":
            # Between pages 0 and 1 the order moved by one: page 1 starts with page 0's
            # last linked page, and its own first (p20) is read by no page.
            links = body["d"]["Links"]
            body["d"]["Links"] = [dict(links[0], Url="https://example.com/p19"), *links[1:]]
        return stand_in.json(body)

    stand_in._counts = shifted  # type: ignore[method-assign]
    links, result = read_all(source(httpserver))
    assert links == [] and not result.complete
    assert "GetLinkCounts listed https://example.com/p19 twice" in (result.error or "")


def test_the_budget_counts_rows(httpserver: HTTPServer) -> None:
    fake(httpserver, profile(300))
    links, result = read_all(source(httpserver, budget=100))
    assert not result.complete and 100 <= len(links) < 300
    assert "budget of 100 rows per poll was reached" in (result.error or "")


# --- Bing's error codes ---------------------------------------------------------------------------


def test_a_refused_key_is_an_error_that_says_what_to_fix(httpserver: HTTPServer) -> None:
    stand_in = fake(httpserver, profile(3))
    stand_in.refuse_auth = True
    with pytest.raises(ApiAuthError) as caught:
        source(httpserver).fetch("example.com", T0, sleep=lambda s: None)
    text = str(caught.value)
    assert "source 'bwt' (bing): Bing refused the credentials" in text
    assert "ErrorCode 3 InvalidApiKey" in text and "sources.bwt.api_key" in text
    assert KEY not in text


def test_a_fault_that_echoes_the_key_is_quoted_without_it(httpserver: HTTPServer) -> None:
    httpserver.expect_request(API + "GetLinkCounts").respond_with_json(
        {"ErrorCode": 3, "Message": f"ERROR!!! InvalidApiKey {KEY}"}, status=400
    )
    with pytest.raises(ApiAuthError) as caught:
        source(httpserver).fetch("example.com", T0, sleep=lambda s: None)
    assert KEY not in str(caught.value) and "***" in str(caught.value)


@pytest.mark.parametrize(
    ("code", "name", "error", "says"),
    [
        (6, "UserBlocked", ApiAuthError, "refused the credentials"),
        (14, "NotAuthorized", ApiAuthError, "refused the credentials"),
        (11, "NotFound", ApiError, "a site verified in Bing Webmaster Tools"),
        (7, "InvalidUrl", ApiError, "sources.bwt.site_url"),
        (8, "InvalidParameter", ApiError, "HTTP 400: ErrorCode 8 InvalidParameter"),
        (16, "Deprecated", ApiError, "ErrorCode 16 Deprecated"),
    ],
)
def test_error_codes_are_named(
    httpserver: HTTPServer, code: int, name: str, error: type[Exception], says: str
) -> None:
    httpserver.expect_request(API + "GetLinkCounts").respond_with_json(
        {"ErrorCode": code, "Message": f"ERROR!!! {name}"}, status=400
    )
    with pytest.raises(error, match=says) as caught:
        source(httpserver).fetch("example.com", T0, sleep=lambda s: None)
    assert type(caught.value) is error


def test_throttling_is_waited_out(httpserver: HTTPServer) -> None:
    stand_in = fake(httpserver, profile(20))
    throttled = '{"ErrorCode": 4, "Message": "ERROR!!! ThrottleUser"}'
    stand_in.faults[2] = Fault(400, throttled)
    stand_in.faults[3] = Fault(400, '{"ErrorCode": 5, "Message": "ERROR!!! ThrottleHost"}')
    waits: list[float] = []
    result = source(httpserver, backoff="1s").fetch("example.com", T0, sleep=waits.append)
    assert len(list(result.records)) == 20 and result.complete
    assert "2 retried" in result.notes[0]
    backoffs = [w for w in waits if w >= 0.1]  # not the spacing of calls (1 ms)
    assert len(backoffs) == 2 and 0.5 <= backoffs[0] <= 1 and 1 <= backoffs[1] <= 2  # doubled


def test_throttling_longer_than_the_retries_is_partial(httpserver: HTTPServer) -> None:
    stand_in = fake(httpserver, profile(20))
    for call in range(2, 5):
        stand_in.faults[call] = Fault(400, '{"ErrorCode": 4, "Message": "ERROR!!! ThrottleUser"}')
    links, result = read_all(source(httpserver, retries=2))
    assert links == [] and not result.complete
    assert "ErrorCode 4 ThrottleUser" in (result.error or "")


def test_a_fault_inside_a_200_answer_is_read_as_one(httpserver: HTTPServer) -> None:
    httpserver.expect_request(API + "GetLinkCounts").respond_with_json(
        {"ErrorCode": 3, "Message": "ERROR!!! InvalidApiKey"}
    )
    with pytest.raises(ApiAuthError, match="InvalidApiKey"):
        source(httpserver).fetch("example.com", T0, sleep=lambda s: None)


# --- odd values -----------------------------------------------------------------------------------


def test_odd_values_are_read_defensively(httpserver: HTTPServer) -> None:
    httpserver.expect_request(API + "GetLinkCounts").respond_with_json(
        {"d": {"Links": [{"Count": "2", "Url": "example.com/a"}], "TotalPages": "1"}}
    )
    httpserver.expect_request(API + "GetUrlLinks").respond_with_json(
        {
            "d": {
                "Details": [
                    {"AnchorText": None, "Url": " blog.example.org/x "},
                    {"Url": "http://news.example.io/y"},
                ],
                "TotalPages": 1,
            }
        }
    )
    links, result = read_all(source(httpserver))
    assert result.complete
    assert links == [
        Backlink("https://blog.example.org/x", "https://example.com/a", None),
        Backlink("http://news.example.io/y", "https://example.com/a", None),
    ]


def test_null_links_are_an_empty_list(httpserver: HTTPServer) -> None:
    httpserver.expect_request(API + "GetLinkCounts").respond_with_json(
        {"d": {"Links": None, "TotalPages": 0}}
    )
    links, result = read_all(source(httpserver))
    assert links == [] and result.complete


@pytest.mark.parametrize(
    ("details", "says"),
    [
        ({"Details": [{"AnchorText": "a"}], "TotalPages": 1}, "a LinkDetail without Url"),
        ({"Details": [{"Url": "https://a.example.org/"}]}, "gave no TotalPages"),
        ({"Details": "nope", "TotalPages": 1}, "expected a JSON array"),
        ({"Details": [], "TotalPages": 40_000}, "more than its Int16 page"),
    ],
)
def test_malformed_details_make_the_snapshot_partial(
    httpserver: HTTPServer, details: dict[str, Any], says: str
) -> None:
    httpserver.expect_request(API + "GetLinkCounts").respond_with_json(
        {"d": {"Links": [{"Count": 1, "Url": "https://example.com/"}], "TotalPages": 1}}
    )
    httpserver.expect_request(API + "GetUrlLinks").respond_with_json({"d": details})
    _, result = read_all(source(httpserver))
    assert not result.complete and says in (result.error or "")


# --- the key in logs, and the credentials check ---------------------------------------------------


def test_the_key_never_reaches_a_log_line(
    httpserver: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    fake(httpserver, profile(5))
    # The daemon quiets urllib3 in its own logging set-up: here it speaks, as it would with
    # debug logging turned on.
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="urllib3"):
        links, result = read_all(source(httpserver))
    assert result.complete and len(links) == 5
    # urllib3 logs each request line with its query at DEBUG: linkwatch's filter takes the
    # key out of it (the stand-in's own access log is redacted by the stand-in).
    client_lines = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
    assert any("apikey=***" in line for line in client_lines), client_lines
    assert KEY not in caplog.text


def test_credentials_are_checked_with_getusersites(httpserver: HTTPServer) -> None:
    stand_in = fake(httpserver, profile(5))
    src = source(httpserver)
    assert src.check_credentials(src.client()) == "credentials accepted; 1 sites, 1 verified"
    assert stand_in.data_calls == 0
    stand_in.refuse_auth = True
    with pytest.raises(ApiAuthError, match=r"refused the credentials.*sources\.bwt\.api_key"):
        src.check_credentials(src.client())
