"""The DataForSEO source: its documented fields, paging past 20,000, status codes, cost."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from sources.api import ApiAuthError, ApiError
from sources.dataforseo import DataForSeoSettings, DataForSeoSource
from sources.model import Backlink
from tests.fakes.base import profile
from tests.fakes.dataforseo import LOGIN, DataForSeoFake

SAMPLE = Path(__file__).parent / "fixtures" / "api" / "dataforseo_backlinks_live_response.json"
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def source(server: HTTPServer, **extra: Any) -> DataForSeoSource:
    settings = DataForSeoSettings(
        kind="dataforseo",
        base_url=server.url_for("/"),
        login=LOGIN,
        password=SecretStr(DataForSeoFake.secret),
        requests_per_second=1000,
        backoff="0s",
        **extra,
    )
    return DataForSeoSource("d4s", settings)


def read_all(src: DataForSeoSource) -> tuple[list[Backlink], Any]:
    result = src.fetch("example.com", T0, sleep=lambda s: None)
    links = list(result.records)
    return links, result


def test_the_documented_sample_maps_field_by_field(httpserver: HTTPServer) -> None:
    body = json.loads(SAMPLE.read_text(encoding="utf-8"))
    httpserver.expect_request("/v3/backlinks/backlinks/live", method="POST").respond_with_json(body)
    links, result = read_all(source(httpserver))
    assert result.complete and result.format == "dataforseo"
    first = links[0]
    assert first == Backlink(
        "https://news.example.io/partners",
        "https://example.com/",
        "sponsor: Example",
        False,  # attributes ["sponsored"]: a sponsored link, not a nofollow one
        False,
        True,
        77.0,
        datetime(2023, 11, 27, 19, 22, 8, tzinfo=UTC),
        False,
        None,
        "DataForSEO rank",
        3.0,
    )
    items = body["tasks"][0]["result"][0]["items"]
    assert len(links) == len(items) == body["tasks"][0]["result"][0]["total_count"]
    for link, item in zip(links, items, strict=True):
        assert (link.url_from, link.url_to, link.anchor) == (
            item["url_from"],
            item["url_to"],
            item["anchor"],
        )
        assert link.domain_rating == item["domain_from_rank"]
    assert "cost 0.0205 USD" in result.notes[0]


def test_the_request_is_the_documented_task(httpserver: HTTPServer) -> None:
    fake = DataForSeoFake(httpserver, profile(5))
    fake.install()
    read_all(source(httpserver, page_size=500))
    (call,) = fake.calls
    (task,) = json.loads(call["body"])
    assert task["target"] == "example.com" and task["mode"] == "as_is"
    assert task["limit"] == 500 and task["offset"] == 0
    assert task["backlinks_status_type"] == "live" and task["rank_scale"] == "one_hundred"


def test_paging_goes_past_offset_20000_by_token(httpserver: HTTPServer) -> None:
    fake = DataForSeoFake(httpserver, profile(22_345))
    fake.install()
    links, result = read_all(source(httpserver))
    assert result.complete
    assert len({(link.url_from, link.url_to) for link in links}) == 22_345
    tasks = [json.loads(c["body"])[0] for c in fake.calls]
    offsets = [t.get("offset") for t in tasks if "offset" in t]
    assert offsets == list(range(0, 20_000, 1000))
    tokens = [t for t in tasks if "search_after_token" in t]
    assert len(tokens) == 3 and all("offset" not in t for t in tokens)
    # With a token every other parameter stays as it was.
    assert {
        json.dumps({k: v for k, v in t.items() if k not in ("search_after_token", "offset")})
        for t in tasks
    } == {json.dumps({k: v for k, v in tasks[0].items() if k != "offset"})}


def test_a_page_short_of_the_total_is_partial(httpserver: HTTPServer) -> None:
    fake = DataForSeoFake(httpserver, profile(1500))
    fake.install()
    fake.page_cap = 1000
    # The second page comes back empty although 1,500 links were announced.
    real = fake._page

    def short(request: Request) -> Response:
        answer = real(request)
        if fake.data_calls == 2:
            body = json.loads(answer.get_data())
            body["tasks"][0]["result"][0]["items"] = []
            body["tasks"][0]["result"][0]["items_count"] = 0
            return fake.json(body)
        return answer

    fake._page = short  # type: ignore[method-assign]
    links, result = read_all(source(httpserver))
    assert len(links) == 1000
    assert not result.complete and "announced 1,500 links" in (result.error or "")


@pytest.mark.parametrize(
    ("level", "code", "message", "error", "said"),
    [
        ("top", 40100, "You are not authorized.", ApiAuthError, "refused the credentials"),
        ("top", 40200, "Payment Required.", ApiAuthError, "top up"),
        ("task", 40501, "Invalid Field: 'target'.", ApiError, "40501 Invalid Field"),
        ("top", 50000, "Internal Error.", ApiError, "status 50000"),
    ],
)
def test_status_codes_in_the_body_are_checked_at_both_levels(
    httpserver: HTTPServer, level: str, code: int, message: str, error: type, said: str
) -> None:
    body = json.loads(SAMPLE.read_text(encoding="utf-8"))
    part = body if level == "top" else body["tasks"][0]
    part["status_code"], part["status_message"] = code, message
    httpserver.expect_request("/v3/backlinks/backlinks/live").respond_with_json(body)
    with pytest.raises(error, match=said):
        read_all(source(httpserver))


def test_lost_links_come_with_a_reason_when_asked_for(httpserver: HTTPServer) -> None:
    links_ = profile(4)
    links_[1] = links_[1].__class__(**{**links_[1].__dict__, "lost": True})
    fake = DataForSeoFake(httpserver, links_)
    fake.install()
    live_only, _ = read_all(source(httpserver))
    assert len(live_only) == 3 and not any(link.lost for link in live_only)
    every, _ = read_all(source(httpserver, include_lost=True))
    lost = [link for link in every if link.lost]
    assert [(link.url_from, link.lost_reason) for link in lost] == [
        (links_[1].url_from, "not_found")  # the stand-in's linking page answers 404
    ]
    assert json.loads(fake.calls[-1]["body"])[0]["backlinks_status_type"] == "all"


def test_settings_refuse_a_page_size_over_the_documented_maximum() -> None:
    with pytest.raises(ValueError, match="less than or equal to 1000"):
        DataForSeoSettings(kind="dataforseo", login="a", password=SecretStr("b"), page_size=5000)
