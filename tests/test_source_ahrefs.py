"""The Ahrefs API v3 source: documented fields, keyset paging with ties, lost reasons, units."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from pytest_httpserver import HTTPServer

from sources.ahrefs import (
    KEY,
    LIVE_FIELDS,
    LOST_FIELDS,
    AhrefsSettings,
    AhrefsSource,
    call_units,
    keyset_filter,
    lost_reason,
    row_units,
)
from sources.api import ApiAuthError, ApiError
from sources.model import LOST_REASONS, Backlink, SnapshotResult
from tests.fakes.ahrefs import AhrefsFake
from tests.fakes.base import FakeLink, Fault, profile

FIXTURES = Path(__file__).parent / "fixtures" / "api"
SAMPLE = FIXTURES / "ahrefs_v3_all_backlinks_response.json"
ERROR = FIXTURES / "ahrefs_v3_error_response.json"
T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def httpserver() -> Iterator[HTTPServer]:
    """A server of this test's own: a request an earlier test left queued on the shared
    one (a poll stopped mid-call) cannot reach this test's handlers."""
    server = HTTPServer(host="localhost", port=0)
    server.start()
    yield server
    server.clear()
    server.stop()


PATH = "/v3/site-explorer/all-backlinks"


def source(server: HTTPServer, **extra: Any) -> AhrefsSource:
    settings = AhrefsSettings(
        kind="ahrefs",
        base_url=server.url_for("/"),
        api_key=SecretStr(AhrefsFake.secret),
        requests_per_second=1000,
        backoff="0s",
        **extra,
    )
    return AhrefsSource("ah", settings)


def read_all(src: AhrefsSource) -> tuple[list[Backlink], SnapshotResult]:
    result = src.fetch("example.com", T0, sleep=lambda s: None)
    links = list(result.records)
    return links, result


def stand_in(server: HTTPServer, links: list[FakeLink]) -> AhrefsFake:
    fake = AhrefsFake(server, links)
    fake.install()
    return fake


def test_the_documented_sample_maps_field_by_field(httpserver: HTTPServer) -> None:
    body = json.loads(SAMPLE.read_text(encoding="utf-8"))
    httpserver.expect_ordered_request(PATH, method="GET").respond_with_json(body)
    # The listing ends on a page with nothing new (here: empty).
    httpserver.expect_ordered_request(PATH, method="GET").respond_with_json({"backlinks": []})
    links, result = read_all(source(httpserver))
    assert result.complete and result.format == "ahrefs"
    assert links == [
        Backlink(
            "https://news.example.io/partners",
            "https://example.com/",
            "sponsor: Example",
            False,  # sponsored, not nofollow (and not dofollow either)
            False,
            True,
            72.0,
            datetime(2023, 11, 27, 19, 22, 8, tzinfo=UTC),
            False,
            None,
            "Ahrefs DR",
            0.0,
        ),
        Backlink(
            "https://blog.example.org/best-widget-tools/",
            "https://example.com/",
            "Example Widgets",
            False,
            False,
            False,
            61.0,
            datetime(2024, 3, 18, 7, 41, 55, tzinfo=UTC),
            False,
            None,
            "Ahrefs DR",
            0.0,
        ),
        Backlink(
            "https://directory.example.info/widgets/page-2",
            "https://example.com/features",
            None,  # an image link: empty anchor
            True,
            False,
            False,
            9.0,
            datetime(2022, 5, 14, 3, 12, 44, tzinfo=UTC),
            True,
            "page_error",  # lost_reason "pageerror"
            "Ahrefs DR",
            100.0,  # is_spam
        ),
    ]
    # Each call costs at least 50 units (no cost header: the documented rule).
    assert "3 rows in 2 pages" in result.notes[0] and "cost 100 API units" in result.notes[0]


def test_the_request_selects_only_the_fields_used(httpserver: HTTPServer) -> None:
    fake = stand_in(httpserver, profile(5))
    read_all(source(httpserver))
    first, last = fake.calls
    assert "where" in last["args"]
    args = first["args"]
    assert args["select"].split(",") == [*LIVE_FIELDS, *LOST_FIELDS]
    assert args["target"] == "example.com" and args["mode"] == "subdomains"
    assert args["aggregation"] == "all" and args["limit"] == "1000"
    assert args["history"] == "since:2026-01-30"  # the poll's time less the 30-day lookback
    assert args["order_by"] == "first_seen_link:asc,url_from:asc,url_to:asc"
    assert "where" not in args and "offset" not in args


def test_without_a_lookback_only_live_links_are_asked_for(httpserver: HTTPServer) -> None:
    links = profile(4)
    links[2] = replace(links[2], lost=True)
    fake = stand_in(httpserver, links)
    got, result = read_all(source(httpserver, lost_lookback="0s", mode="domain"))
    assert result.complete and len(got) == 3 and not any(link.lost for link in got)
    args = fake.calls[0]["args"]
    assert args["history"] == "live" and args["mode"] == "domain"
    assert args["select"].split(",") == list(LIVE_FIELDS)
    # Nine one-unit fields: the per-row cost the budget is planned with.
    assert row_units(LIVE_FIELDS) == 9 and row_units((*LIVE_FIELDS, *LOST_FIELDS)) == 13


def test_paging_follows_the_sort_key_and_reads_every_row_once(httpserver: HTTPServer) -> None:
    links = profile(2345)
    fake = stand_in(httpserver, links)
    got, result = read_all(source(httpserver, page_size=1000))
    assert result.complete
    assert sorted((x.url_from, x.url_to) for x in got) == sorted(
        (x.url_from, x.url_to) for x in links
    )
    assert len(fake.calls) == 4  # three pages, and one that brings nothing new
    # Each later page starts at the key the page before ended on (inclusively).
    rows = sorted((f"{x.first_seen}T00:00:00Z", x.url_from, x.url_to) for x in links)
    # A page of 1,000 rows re-reads the last row of the page before: each ends 999 further.
    for number, call in enumerate(fake.calls[1:], start=1):
        last = rows[min(number * 999, len(rows) - 1)]
        assert json.loads(call["args"]["where"]) == keyset_filter(last)
        if number == 3:
            assert last == rows[-1]  # the call after the last row, which brings nothing


def test_a_page_cut_short_by_the_plan_is_not_taken_for_the_end(httpserver: HTTPServer) -> None:
    links = profile(1200)
    fake = stand_in(httpserver, links)
    fake.row_cap = 500  # the plan answers at most 500 rows, whatever the limit asks
    got, result = read_all(source(httpserver, page_size=1000))
    assert result.complete
    assert len({(x.url_from, x.url_to) for x in got}) == len(got) == 1200
    assert fake.calls[-1]["args"]["limit"] == "1000"


def test_rows_tied_on_the_whole_key_at_a_page_boundary_are_read_once(
    httpserver: HTTPServer,
) -> None:
    # Five links from one page to one target, found the same day: one sort key, five rows
    # (different anchors), straddling the boundary of 10-row pages.
    tie = [
        FakeLink("https://ref.example.org/p-08", "https://example.com/", f"anchor {i}")
        for i in range(5)
    ]
    others = [
        FakeLink(f"https://ref.example.org/p-{i:02d}", "https://example.com/", "x")
        for i in range(20)
        if i != 8
    ]
    stand_in(httpserver, others + tie)
    got, result = read_all(source(httpserver, page_size=10))
    assert result.complete
    assert sorted((x.url_from, x.anchor) for x in got) == sorted(
        (x.url_from, x.anchor or None) for x in others + tie
    )
    assert len(got) == 24


def test_a_tie_longer_than_a_page_widens_the_next_call(httpserver: HTTPServer) -> None:
    tie = [
        FakeLink("https://ref.example.org/p-05", "https://example.com/", f"a{i:02d}")
        for i in range(23)
    ]
    others = [
        FakeLink(f"https://ref.example.org/p-{i:02d}", "https://example.com/", "x")
        for i in range(12)
        if i != 5
    ]
    fake = stand_in(httpserver, others + tie)
    got, result = read_all(source(httpserver, page_size=10))
    assert result.complete
    assert sorted(x.anchor or "" for x in got) == sorted(x.anchor for x in others + tie)
    # 5 tied rows read, then 10, then 20: once the tie fills a page, the next asks for more.
    assert [call["args"]["limit"] for call in fake.calls] == ["10", "10", "20", "30", "10"]


def test_a_where_the_api_ignores_is_caught_not_looped(httpserver: HTTPServer) -> None:
    fake = stand_in(httpserver, profile(35))
    fake.ignore_where = True
    got, result = read_all(source(httpserver, page_size=10))
    assert not result.complete and "paging does not advance" in (result.error or "")
    assert len(got) == 10 and len(fake.calls) == 2


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("removedfromhtml", "removed"),
        ("notcanonical", "not_canonical"),
        ("noindex", "noindex"),
        ("pageredirected", "redirected"),
        ("pageerror", "page_error"),
        ("lostredirect", "target_changed"),
        ("notfound", "not_found"),
        ("somethingnew", "unknown"),
    ],
)
def test_ahrefs_lost_reasons_map_onto_the_taxonomy(reason: str, expected: str) -> None:
    assert lost_reason({"lost_reason": reason}) == expected
    assert expected in LOST_REASONS


def test_a_drop_from_the_index_is_dropped_and_no_reason_is_unknown() -> None:
    assert lost_reason({"lost_reason": None, "drop_reason": "tooold"}) == "dropped"
    assert lost_reason({"lost_reason": None, "drop_reason": None}) == "unknown"


def test_lost_links_come_with_their_reason_within_the_lookback(httpserver: HTTPServer) -> None:
    links = profile(5)
    for i in (1, 2, 3):
        links[i] = replace(links[i], lost=True)
    fake = stand_in(httpserver, links)
    fake.reasons = {links[1].url_from: "notfound", links[2].url_from: None}
    fake.drop_reasons = {links[2].url_from: "oldunavailable"}
    got, _ = read_all(source(httpserver))
    lost = {x.url_from: x.lost_reason for x in got if x.lost}
    assert lost == {
        links[1].url_from: "not_found",
        links[2].url_from: "dropped",
        links[3].url_from: "removed",
    }
    # Found lost on 2026-02-20: a 5-day lookback from 2026-03-01 no longer lists them.
    got, _ = read_all(source(httpserver, lost_lookback="5d"))
    assert fake.calls[-1]["args"]["history"] == "since:2026-02-24"
    assert len(got) == 2 and not any(x.lost for x in got)


def test_the_lost_flag_decides_and_a_lost_date_only_without_it(httpserver: HTTPServer) -> None:
    body = json.loads(SAMPLE.read_text(encoding="utf-8"))
    row = body["backlinks"][2]
    row["lost_reason"] = "notcanonical"
    answers = [
        # Ahrefs says live: a `last_seen` beside it does not make the row lost.
        {**row, "is_lost": False, "last_seen": "2026-02-20T00:00:00Z"},
        # No flag: a lost date says lost ...
        {k: v for k, v in row.items() if k != "is_lost"} | {"last_seen": "2026-02-20T00:00:00Z"},
        # ... but not a value that is no date.
        {k: v for k, v in row.items() if k != "is_lost"} | {"last_seen": "soon"},
        {**row, "is_lost": None, "last_seen": None},
    ]
    got = []
    for answer in answers:
        httpserver.clear()
        httpserver.expect_request(PATH).respond_with_json({"backlinks": [answer]})
        (link,), _ = read_all(source(httpserver))
        got.append((link.lost, link.lost_reason))
    assert got == [(False, None), (True, "not_canonical"), (False, None), (False, None)]


@pytest.mark.parametrize(
    "body",
    [
        "{}",
        '{"backlinks": null}',
        '{"error": "query timed out"}',
        # An error beside rows: the rows may be cut short, so it is not a page.
        '{"error": "query timed out", "backlinks": []}',
    ],
)
def test_an_answer_without_its_rows_is_an_error_never_the_end(
    httpserver: HTTPServer, body: str
) -> None:
    fake = stand_in(httpserver, profile(2500))
    fake.faults[1] = Fault(200, body)
    with pytest.raises(ApiError, match=r"backlinks|query timed out"):
        read_all(source(httpserver))
    fake.faults[fake.data_calls + 3] = Fault(200, body)  # the third page of a poll
    links, result = read_all(source(httpserver))
    assert not result.complete and len(links) < 2500
    if "error" in body:
        assert "Ahrefs answered an error: query timed out" in (result.error or "")


def test_an_error_beside_rows_is_an_error(httpserver: HTTPServer) -> None:
    body = json.loads(SAMPLE.read_text(encoding="utf-8"))
    body["error"] = "partial result: timeout"
    httpserver.expect_request(PATH).respond_with_json(body)
    with pytest.raises(ApiError, match="Ahrefs answered an error: partial result: timeout"):
        read_all(source(httpserver))


def test_an_unreadable_first_seen_is_no_date(httpserver: HTTPServer) -> None:
    body = json.loads(SAMPLE.read_text(encoding="utf-8"))
    # (It stays text: it is part of the sort key each page starts at.)
    odd = ("not-a-date", "yesterday", "2023-13-45T00:00:00Z")
    for row, value in zip(body["backlinks"], odd, strict=True):
        row["first_seen_link"] = value
    httpserver.expect_ordered_request(PATH).respond_with_json(body)
    httpserver.expect_ordered_request(PATH).respond_with_json({"backlinks": []})
    links, result = read_all(source(httpserver))
    assert result.complete and [link.first_seen_at for link in links] == [None, None, None]


def test_the_cost_is_what_the_api_says_it_charged(httpserver: HTTPServer) -> None:
    fake = stand_in(httpserver, profile(1500))
    _, result = read_all(source(httpserver))
    # 13 unit-fields per row: 1000 rows, then 501 (the overlap row comes again), then the
    # overlap row alone, which says the listing is over.
    assert call_units(13, 1000) + call_units(13, 501) + call_units(13, 1) == 19_563
    assert "1,500 rows in 3 pages" in result.notes[0]
    assert "cost 19,563 API units" in result.notes[0]
    fake.actual_cost = "0"  # served from Ahrefs' cache: free
    _, cached = read_all(source(httpserver, budget=1000))
    assert cached.complete and "cost" not in cached.notes[0]


def test_without_the_cost_header_the_documented_rule_is_used(httpserver: HTTPServer) -> None:
    fake = stand_in(httpserver, profile(30))
    fake.actual_cost = ""
    _, result = read_all(source(httpserver, lost_lookback="0s"))
    assert "cost 320 API units" in result.notes[0]  # 30 rows x 9 fields, then 50 for the end
    assert call_units(9, 3) == 50  # a small answer still costs the minimum


@pytest.mark.parametrize("header", ["nan", "NaN", "inf", "-1000000", "-1", "lots", " "])
def test_a_cost_header_that_is_no_cost_falls_back_to_the_documented_rule(
    httpserver: HTTPServer, header: str
) -> None:
    fake = stand_in(httpserver, profile(30))
    fake.actual_cost = header
    _, result = read_all(source(httpserver, lost_lookback="0s", budget=1_000_000))
    assert result.complete and "cost 320 API units" in result.notes[0]
    # The budget binds on the documented cost: a negative header cannot unbind it.
    fake.links = profile(2500)
    links, result = read_all(source(httpserver, lost_lookback="0s", budget=10_000))
    assert not result.complete and "budget" in (result.error or "")
    assert len(links) < 2500


def test_the_budget_sizes_the_calls_and_stops_before_overspending(
    httpserver: HTTPServer,
) -> None:
    fake = stand_in(httpserver, profile(200))
    got, result = read_all(source(httpserver, budget=1000))
    # 1,000 units buy 76 rows at 13 units; the 12 units left cannot pay for a call.
    assert [call["args"]["limit"] for call in fake.calls] == ["76"]
    assert len(got) == 76
    assert not result.complete and "budget of 1,000 API units" in (result.error or "")


def test_a_budget_below_one_call_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least 50 units"):
        AhrefsSettings(kind="ahrefs", api_key=SecretStr("k"), budget=49)


def test_an_error_answer_is_quoted(httpserver: HTTPServer) -> None:
    httpserver.expect_request(PATH).respond_with_data(
        ERROR.read_text(encoding="utf-8"), status=400, content_type="application/json"
    )
    with pytest.raises(ApiError, match="HTTP 400: invalid select: unknown column 'domain_from'"):
        read_all(source(httpserver))


def test_a_refused_key_names_the_setting_and_never_the_key(httpserver: HTTPServer) -> None:
    fake = stand_in(httpserver, profile(3))
    fake.refuse_auth = True
    with pytest.raises(ApiAuthError) as caught:
        read_all(source(httpserver))
    said = str(caught.value)
    assert "sources.ah.api_key" in said and "Unauthorized: invalid API key" in said
    assert AhrefsFake.secret not in said


def test_the_credentials_check_says_the_plan_and_units(httpserver: HTTPServer) -> None:
    fake = stand_in(httpserver, profile(3))
    src = source(httpserver)
    said = src.check_credentials(src.client())
    assert said == (
        "credentials accepted (Enterprise); 20,500 of 1,000,000 API units used this month"
    )
    assert fake.data_calls == 0


def test_the_sort_key_filter_follows_the_documented_grammar() -> None:
    last = ("2025-01-02T00:00:00Z", "https://a.example.org/", "https://example.com/")
    where = keyset_filter(last)
    assert where == {
        "or": [
            {"field": KEY[0], "is": ["gt", last[0]]},
            {
                "and": [
                    {"field": KEY[0], "is": ["eq", last[0]]},
                    {"field": KEY[1], "is": ["gt", last[1]]},
                ]
            },
            {
                "and": [
                    {"field": KEY[0], "is": ["eq", last[0]]},
                    {"field": KEY[1], "is": ["eq", last[1]]},
                    {"field": KEY[2], "is": ["gte", last[2]]},
                ]
            },
        ]
    }


def test_the_key_stays_out_of_the_settings_repr() -> None:
    settings = AhrefsSettings(kind="ahrefs", api_key=SecretStr("very-secret"))
    assert "very-secret" not in repr(settings)
    assert settings.base_url == "https://api.ahrefs.com/" and settings.page_size == 1000
