"""The Majestic source: its documented fields, paging by From/Count, units, codes, no key leaks."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote_plus

import pytest
from pydantic import SecretStr, ValidationError
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from sources.api import ApiAuthError, ApiError
from sources.majestic import MajesticSettings, MajesticSource, majestic_lost_reason
from sources.model import Backlink, SnapshotResult
from tests.fakes.base import FakeLink, profile
from tests.fakes.majestic import MajesticFake

SAMPLE = Path(__file__).parent / "fixtures" / "api" / "majestic_getbacklinkdata_response.json"
T0 = datetime(2026, 3, 1, tzinfo=UTC)
KEY = MajesticFake.secret


def source(server: HTTPServer, **extra: Any) -> MajesticSource:
    settings = MajesticSettings(
        kind="majestic",
        base_url=server.url_for("/"),
        api_key=SecretStr(KEY),
        requests_per_second=1000,
        backoff="0s",
        **extra,
    )
    return MajesticSource("mj", settings)


def read_all(src: MajesticSource) -> tuple[list[Backlink], SnapshotResult]:
    result = src.fetch("example.com", T0, sleep=lambda s: None)
    return list(result.records), result


def fake(server: HTTPServer, links: list[FakeLink]) -> MajesticFake:
    stand_in = MajesticFake(server, links)
    stand_in.install()
    return stand_in


def form(call: dict[str, Any]) -> dict[str, str]:
    """The form fields of a recorded POST."""
    return {k: v[0] for k, v in parse_qs(call["body"].decode()).items()}


def answer(rows: list[dict[str, Any]], **headers: Any) -> dict[str, Any]:
    """A GetBackLinkData answer around `rows`."""
    base = {"AvailableLines": 50000, "TotalBackLinks": len(rows), "TotalLines": len(rows)}
    return {
        "Code": "OK",
        "ErrorMessage": "",
        "FullError": "",
        "DataTables": {"BackLinks": {"Headers": base | headers, "Data": rows}},
    }


def row(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "SourceURL": "https://blog.example.org/a",
        "TargetURL": "https://example.com/",
        "AnchorText": "widgets",
        "FlagNoFollow": 0,
        "FlagDeleted": 0,
        "FirstIndexedDate": "2024-03-20",
        "DateLost": "",
        "ReasonLost": "",
        "SourceTrustFlow": 24,
    }
    return base | fields


# --- the documented sample ------------------------------------------------------------------------


def test_the_documented_sample_maps_field_by_field(httpserver: HTTPServer) -> None:
    body = json.loads(SAMPLE.read_text(encoding="utf-8"))
    httpserver.expect_request("/api/json", method="POST").respond_with_json(body)
    links, result = read_all(source(httpserver))
    assert result.format == "majestic" and result.origin == "majestic API"
    assert links == [
        Backlink(
            "https://news.example.io/partners",
            "https://example.com/",
            "sponsor: example",
            True,  # FlagNoFollow 1
            None,  # GetBackLinkData has no ugc/sponsored flags
            None,
            37.0,  # SourceTrustFlow
            datetime(2023, 11, 29, tzinfo=UTC),
            False,
            None,
            "Majestic TF",
            None,
        ),
        Backlink(
            "https://blog.example.org/best-widget-tools/",
            "https://example.com/",
            "example widgets",
            False,
            None,
            None,
            24.0,
            datetime(2024, 3, 20, tzinfo=UTC),
            False,
            None,
            "Majestic TF",
            None,
        ),
        Backlink(
            "https://directory.example.info/widgets/page-2",
            "https://example.com/features",
            None,  # an empty anchor (an image link)
            False,
            None,
            None,
            0.0,
            datetime(2022, 5, 16, tzinfo=UTC),
            True,  # FlagDeleted 1, DateLost 2025-10-02
            "unknown",  # the sample's ReasonLost is a placeholder: no reason to map
            "Majestic TF",
            None,
        ),
    ]
    # The sample is one short page of a profile of 1,742 backlinks: never complete.
    assert not result.complete
    assert "announced 1,742 links but paging ended after 3" in (result.error or "")


def test_global_variables_are_read_nested_or_at_the_top(httpserver: HTTPServer) -> None:
    body = json.loads(SAMPLE.read_text(encoding="utf-8"))
    body["GlobalVars"]["ChargedRetrievalResUnits"] = 3
    body["DataTables"]["BackLinks"]["Headers"]["TotalBackLinks"] = 3
    httpserver.expect_request("/api/json", method="POST").respond_with_json(body)
    _, result = read_all(source(httpserver))
    assert result.complete
    assert "3 rows in 1 pages (1 calls), cost 3 retrieval units" in result.notes[0]


# --- the request ----------------------------------------------------------------------------------


def test_the_request_is_the_documented_command_and_keeps_the_key_out_of_the_url(
    httpserver: HTTPServer,
) -> None:
    stand_in = fake(httpserver, profile(5))
    links, result = read_all(source(httpserver, datasource="historic", page_size=20_000))
    assert result.complete and len(links) == 5
    (call,) = stand_in.calls
    assert call["path"] == "/api/json" and call["args"] == {}  # nothing in the query string
    assert form(call) == {
        "app_api_key": KEY,
        "cmd": "GetBackLinkData",
        "datasource": "historic",
        "item": "example.com",
        "Count": "20000",
        "From": "0",
        "Mode": "0",  # deleted links too: Majestic's own losses are reported
        "ShowDomainInfo": "0",
        "MaxSourceURLsPerRefDomain": "-1",  # every link, not one per domain
    }


def test_deleted_links_can_be_left_out(httpserver: HTTPServer) -> None:
    links = profile(3)
    links[1] = FakeLink(links[1].url_from, links[1].url_to, "gone", lost=True)
    stand_in = fake(httpserver, links)
    read, result = read_all(source(httpserver, include_deleted=False))
    assert result.complete and len(read) == 2 and not any(link.lost for link in read)
    assert form(stand_in.calls[0])["Mode"] == "1"


def test_settings_default_to_the_fresh_index_and_the_largest_page() -> None:
    settings = MajesticSettings(kind="majestic", api_key=SecretStr(KEY))
    assert settings.base_url == "https://api.majestic.com/"
    assert (settings.datasource, settings.page_size) == ("fresh", 50_000)
    assert settings.include_deleted is True
    with pytest.raises(ValidationError):
        MajesticSettings(kind="majestic", api_key=SecretStr(KEY), datasource="live")
    with pytest.raises(ValidationError):
        MajesticSettings(kind="majestic", api_key=SecretStr(KEY), page_size=50_001)
    with pytest.raises(ValidationError, match="api_key"):
        MajesticSettings.model_validate({"kind": "majestic"})


# --- paging ---------------------------------------------------------------------------------------


def test_paging_walks_from_by_count_to_a_short_page(httpserver: HTTPServer) -> None:
    stand_in = fake(httpserver, profile(2500))
    links, result = read_all(source(httpserver, page_size=1000))
    assert result.complete
    assert len({(link.url_from, link.url_to) for link in links}) == 2500
    asked = [(form(c)["From"], form(c)["Count"]) for c in stand_in.calls]
    assert asked == [("0", "1000"), ("1000", "1000"), ("2000", "1000")]


def test_a_profile_that_fills_its_last_page_ends_on_an_empty_one(httpserver: HTTPServer) -> None:
    stand_in = fake(httpserver, profile(2000))
    links, result = read_all(source(httpserver, page_size=1000))
    # TotalLines (2,000) is not taken for the end (a count may be stale or capped): only a
    # short page ends the listing, here an empty third one (5,000 analysis units more).
    assert result.complete and len(links) == 2000
    assert stand_in.data_calls == 3


@pytest.mark.parametrize("header", ["TotalBackLinks", "TotalLines", "both"])
def test_an_understated_total_is_not_taken_for_the_end(httpserver: HTTPServer, header: str) -> None:
    stand_in = fake(httpserver, profile(2500))
    real = stand_in._backlinks

    def understated(request: Request) -> Response:
        body = json.loads(real(request).get_data())
        headers = body["DataTables"]["BackLinks"]["Headers"]
        for name in ("TotalBackLinks", "TotalLines") if header == "both" else (header,):
            headers[name] = 1500
        return stand_in.json(body)

    stand_in._backlinks = understated  # type: ignore[method-assign]
    links, result = read_all(source(httpserver, page_size=1000))
    assert result.complete and len({link.url_from for link in links}) == 2500
    assert stand_in.data_calls == 3


def test_full_pages_up_to_the_rows_served_are_partial_whatever_the_totals(
    httpserver: HTTPServer,
) -> None:
    stand_in = fake(httpserver, profile(2000))
    stand_in.available_lines = 2000  # TotalBackLinks and TotalLines say 2,000 too
    links, result = read_all(source(httpserver, page_size=1000))
    assert len(links) == 2000 and not result.complete
    assert "serves at most 2,000 rows" in (result.error or "")
    assert "its last page was full, so more may exist" in (result.error or "")
    assert stand_in.data_calls == 2  # nothing is asked past AvailableLines


def test_a_page_short_of_the_announced_total_is_partial(httpserver: HTTPServer) -> None:
    stand_in = fake(httpserver, profile(2500))
    real = stand_in._backlinks

    def short(request: Request) -> Response:
        reply = real(request)
        if stand_in.data_calls == 2:  # the second page stops 10 rows early
            body = json.loads(reply.get_data())
            body["DataTables"]["BackLinks"]["Data"] = body["DataTables"]["BackLinks"]["Data"][:990]
            return stand_in.json(body)
        return reply

    stand_in._backlinks = short  # type: ignore[method-assign]
    links, result = read_all(source(httpserver, page_size=1000))
    assert len(links) == 1990 and not result.complete
    assert "announced 2,500 links but paging ended after 1,990" in (result.error or "")
    assert stand_in.data_calls == 2


def test_more_backlinks_than_getbacklinkdata_serves_is_partial(httpserver: HTTPServer) -> None:
    stand_in = fake(httpserver, profile(3000))
    stand_in.available_lines = 2500
    links, result = read_all(source(httpserver, page_size=1000))
    assert len(links) == 2500 and not result.complete
    assert "serves at most 2,500 rows through GetBackLinkData and this item has 3,000" in (
        result.error or ""
    )
    assert "csv_dir" in (result.error or "")
    # The last call asks only for what is left below the limit.
    assert [form(c)["Count"] for c in stand_in.calls] == ["1000", "1000", "500"]


def test_lines_beyond_the_limit_make_a_full_read_partial_too(httpserver: HTTPServer) -> None:
    stand_in = fake(httpserver, profile(2000))
    stand_in.available_lines = 2000
    stand_in.extra_lines = 300  # TotalLines 2,300: rows exist past what is served
    _, result = read_all(source(httpserver, page_size=1000))
    assert not result.complete and "this item has 2,300" in (result.error or "")


def test_an_empty_profile_is_one_call_and_complete(httpserver: HTTPServer) -> None:
    stand_in = fake(httpserver, [])
    links, result = read_all(source(httpserver))
    assert links == [] and result.complete and stand_in.data_calls == 1


# --- units and budget -----------------------------------------------------------------------------


def test_the_note_counts_retrieval_and_analysis_units(httpserver: HTTPServer) -> None:
    fake(httpserver, profile(2500))
    _, result = read_all(source(httpserver, page_size=1000))
    assert result.notes == [
        "2,500 rows in 3 pages (3 calls), cost 2,500 retrieval units; about 15,000 analysis units"
    ]


def test_the_charged_units_are_what_majestic_reports(httpserver: HTTPServer) -> None:
    stand_in = fake(httpserver, profile(10))
    real = stand_in._backlinks

    def charged(request: Request) -> Response:
        body = json.loads(real(request).get_data())
        body["ChargedRetrievalResUnits"] = "12"  # a numeric string, as Majestic may send
        return stand_in.json(body)

    stand_in._backlinks = charged  # type: ignore[method-assign]
    _, result = read_all(source(httpserver))
    assert "cost 12 retrieval units" in result.notes[0]


def test_the_budget_counts_rows_and_shrinks_the_last_call(httpserver: HTTPServer) -> None:
    stand_in = fake(httpserver, profile(3000))
    links, result = read_all(source(httpserver, page_size=1000, budget=1500))
    assert len(links) == 1500 and not result.complete
    assert "budget of 1,500 rows (retrieval units) per poll was reached" in (result.error or "")
    assert [form(c)["Count"] for c in stand_in.calls] == ["1000", "500"]


# --- lost links -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Link removed", "removed"),
        ("LinkRemoved", "removed"),
        ("Page not found", "not_found"),
        ("HTTP 404", "not_found"),
        ("410 Gone", "not_found"),
        ("Gone", "not_found"),
        ("Redirect", "redirected"),
        ("301 Moved Permanently", "redirected"),
        ("Page moved", "redirected"),
        ("Server error", "page_error"),
        ("HTTP 503", "page_error"),
        ("403", "page_error"),
        ("Meta NoIndex", "noindex"),
        ("Canonical to another page", "not_canonical"),
        ("NoFollow", "nofollowed"),
        ("Blocked by robots.txt", "robots_blocked"),
        ("DNS error", "unreachable"),
        ("Connection timed out", "unreachable"),
        ("Domain not resolved", "unreachable"),
        ("Link points to a different target", "target_changed"),
        ("Not recrawled", "dropped"),
        ("", "unknown"),
        ("   ", "unknown"),
        ("7", "unknown"),
        ("REASON_PLACEHOLDER_UNVERIFIED", "unknown"),
    ],
)
def test_reason_lost_maps_onto_the_taxonomy(text: str, reason: str) -> None:
    assert majestic_lost_reason(text) == reason


@pytest.mark.parametrize(
    ("fields", "lost", "reason"),
    [
        ({}, False, None),
        (
            {"FlagDeleted": 1, "DateLost": "2025-10-02", "ReasonLost": "Link removed"},
            True,
            "removed",
        ),
        ({"FlagDeleted": "1"}, True, "unknown"),  # a flag as a string, no date or reason
        ({"FlagDeleted": True}, True, "unknown"),
        ({"FlagDeleted": "true"}, True, "unknown"),
        ({"FlagDeleted": " TRUE "}, True, "unknown"),
        ({"FlagDeleted": 1.0}, True, "unknown"),
        # Anything but 0/1 or true/false is no flag: never a loss.
        ({"FlagDeleted": "null", "ReasonLost": "Link removed"}, False, None),
        ({"FlagDeleted": "-"}, False, None),
        ({"FlagDeleted": "None"}, False, None),
        ({"FlagDeleted": "unknown"}, False, None),
        ({"FlagDeleted": "yes"}, False, None),
        ({"FlagDeleted": 2}, False, None),
        ({"FlagDeleted": -1}, False, None),
        ({"FlagDeleted": "NaN"}, False, None),
        ({"FlagDeleted": [1]}, False, None),
        ({"FlagDeleted": {"v": 1}}, False, None),
        # A DateLost that is no date is no loss either.
        ({"DateLost": "-"}, False, None),
        ({"DateLost": "0000-00-00"}, False, None),
        ({"DateLost": "2025-10-02", "ReasonLost": "HTTP 404"}, True, "not_found"),
        ({"FlagDeleted": "0", "ReasonLost": "Link removed"}, False, None),  # not deleted
    ],
)
def test_deleted_rows_are_lost_with_their_reason(
    httpserver: HTTPServer, fields: dict[str, Any], lost: bool, reason: str | None
) -> None:
    httpserver.expect_request("/api/json").respond_with_json(answer([row(**fields)]))
    (link,), result = read_all(source(httpserver))
    assert result.complete and (link.lost, link.lost_reason) == (lost, reason)


def test_the_stand_in_reports_deleted_links_with_mode_0(httpserver: HTTPServer) -> None:
    links = profile(3)
    links[1] = FakeLink(links[1].url_from, links[1].url_to, "gone", lost=True)
    fake(httpserver, links)
    read, result = read_all(source(httpserver))
    assert result.complete
    assert [(link.lost, link.lost_reason) for link in read] == [
        (False, None),
        (True, "removed"),
        (False, None),
    ]


# --- odd values -----------------------------------------------------------------------------------


def test_numbers_as_strings_scheme_less_urls_and_odd_values(httpserver: HTTPServer) -> None:
    rows = [
        row(
            SourceURL=" news.example.io/partners ",
            TargetURL="example.com/pricing",
            AnchorText="",
            FlagNoFollow="1",
            SourceTrustFlow="37",
            FirstIndexedDate="not a date",
        ),
        row(SourceTrustFlow=150, FlagNoFollow=True, FirstIndexedDate=""),
        row(SourceTrustFlow="", FlagNoFollow=None),
    ]
    body = answer(rows, TotalBackLinks="3", TotalLines="3", AvailableLines="50000")
    httpserver.expect_request("/api/json").respond_with_json(body)
    links, result = read_all(source(httpserver))
    assert result.complete
    first, second, third = links
    assert first[:8] == (
        "https://news.example.io/partners",
        "https://example.com/pricing",
        None,
        True,
        None,
        None,
        37.0,
        None,
    )
    assert (second.domain_rating, second.nofollow, second.first_seen_at) == (100.0, True, None)
    assert (third.domain_rating, third.nofollow) == (None, None)


def test_a_row_without_a_url_makes_the_snapshot_partial(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/json").respond_with_json(
        answer([row(), row(TargetURL=""), row()])
    )
    _, result = read_all(source(httpserver))
    assert not result.complete and "without SourceURL/TargetURL" in (result.error or "")


def test_an_answer_without_the_backlinks_table_is_an_error(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/json").respond_with_json({"Code": "OK", "DataTables": {}})
    with pytest.raises(ApiError, match=r"DataTables\.BackLinks"):
        source(httpserver).fetch("example.com", T0, sleep=lambda s: None)


# --- codes and secrets ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "message", "error", "says"),
    [
        ("InvalidAPIKey", "Invalid API key", ApiAuthError, "refused the credentials"),
        ("AccessDenied", "Access denied", ApiAuthError, "refused the credentials"),
        (
            "InsufficientRetrievalResUnits",
            "Not enough retrieval units",
            ApiAuthError,
            "no units left",
        ),
        ("InsufficientAnalysisResUnits", "", ApiAuthError, "no units left"),
        ("SubscriptionExpired", "Your subscription has expired", ApiAuthError, "no units left"),
        ("InvalidItem", "Item is not valid", ApiError, "Majestic answered InvalidItem"),
    ],
)
def test_codes_other_than_ok_say_what_to_fix(
    httpserver: HTTPServer, code: str, message: str, error: type[Exception], says: str
) -> None:
    # Majestic's FullError may echo the request: the key must not come back out.
    body = {"Code": code, "ErrorMessage": message, "FullError": f"app_api_key={quote_plus(KEY)}"}
    httpserver.expect_request("/api/json").respond_with_json(body)
    with pytest.raises(error, match=says) as caught:
        source(httpserver).fetch("example.com", T0, sleep=lambda s: None)
    assert type(caught.value) is error
    assert "source 'mj' (majestic)" in str(caught.value)
    if error is ApiAuthError and "credentials" in says:
        assert "sources.mj.api_key" in str(caught.value)
    assert KEY not in str(caught.value)


def test_a_refusal_after_the_first_page_is_partial(httpserver: HTTPServer) -> None:
    stand_in = fake(httpserver, profile(1500))
    real = stand_in._backlinks

    def units_run_out(request: Request) -> Response:
        if stand_in.data_calls == 2:
            return stand_in.json({"Code": "InsufficientRetrievalResUnits", "ErrorMessage": ""})
        return real(request)

    stand_in._backlinks = units_run_out  # type: ignore[method-assign]
    links, result = read_all(source(httpserver, page_size=1000))
    assert len(links) == 1000 and not result.complete
    assert "no units left" in (result.error or "")


def test_the_key_is_in_no_message_and_no_log_line(
    httpserver: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    key = "k3y/with+odd=chars"
    stand_in = MajesticFake(httpserver, profile(5))
    stand_in.secret = key  # type: ignore[misc]
    stand_in.install()
    settings = MajesticSettings(
        kind="majestic",
        base_url=httpserver.url_for("/"),
        api_key=SecretStr(key),
        requests_per_second=1000,
        backoff="0s",
        retries=0,
    )
    with caplog.at_level(logging.DEBUG):
        links, result = read_all(MajesticSource("mj", settings))
        assert result.complete and len(links) == 5
        stand_in.refuse_auth = True
        with pytest.raises(ApiAuthError) as caught:
            MajesticSource("mj", settings).fetch("example.com", T0, sleep=lambda s: None)
    for text in (key, quote_plus(key)):
        assert text not in caplog.text and text not in str(caught.value)
        assert text not in repr(settings) and text not in str(result.notes)


# --- credentials ----------------------------------------------------------------------------------


def test_credentials_are_checked_with_getsubscriptioninfo(httpserver: HTTPServer) -> None:
    stand_in = fake(httpserver, profile(5))
    src = source(httpserver)
    said = src.check_credentials(src.client())
    assert said == (
        "credentials accepted; 19,462,891 retrieval units and 97,095,051 analysis units left"
    )
    assert stand_in.data_calls == 0


def test_the_subscription_may_be_read_with_nested_global_variables(
    httpserver: HTTPServer,
) -> None:
    body = {
        "Code": "OK",
        "ErrorMessage": "",
        "GlobalVars": {"SubscriptionIsActive": "1", "TotalRetrievalResUnits": "200000"},
    }
    httpserver.expect_request("/api/json").respond_with_json(body)
    src = source(httpserver)
    assert src.check_credentials(src.client()) == (
        "credentials accepted; 200,000 retrieval units left"
    )


def test_an_inactive_subscription_fails_the_check(httpserver: HTTPServer) -> None:
    body = {"Code": "OK", "ErrorMessage": "", "SubscriptionIsActive": 0}
    httpserver.expect_request("/api/json").respond_with_json(body)
    src = source(httpserver)
    with pytest.raises(ApiAuthError, match="subscription is not active"):
        src.check_credentials(src.client())
