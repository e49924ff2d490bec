"""The Moz Links API v2 source: documented fields, next_token paging, rows, both credentials."""

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
from werkzeug import Request, Response

from sources.api import ApiAuthError, ApiError
from sources.model import Backlink, SnapshotResult
from sources.moz import MozSettings, MozSource, with_scheme
from tests.fakes.base import FakeLink, Fault, profile
from tests.fakes.moz import ACCESS_ID, MozFake

FIXTURES = Path(__file__).parent / "fixtures" / "api"
SAMPLE = FIXTURES / "moz_links_v2_response.json"
REQUEST = FIXTURES / "moz_links_v2_request.json"
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


def source(server: HTTPServer, **extra: Any) -> MozSource:
    settings = MozSettings(
        kind="moz",
        base_url=server.url_for("/"),
        token=SecretStr(MozFake.secret),
        requests_per_second=1000,
        backoff="0s",
        **extra,
    )
    return MozSource("mz", settings)


def read_all(src: MozSource) -> tuple[list[Backlink], SnapshotResult]:
    result = src.fetch("example.com", T0, sleep=lambda s: None)
    links = list(result.records)
    return links, result


def stand_in(server: HTTPServer, links: list[FakeLink]) -> MozFake:
    fake = MozFake(server, links)
    fake.install()
    return fake


def serve_sample(server: HTTPServer) -> list[dict[str, Any]]:
    """The documented sample as page one, then an empty last page; the bodies sent."""
    sample = json.loads(SAMPLE.read_text(encoding="utf-8"))
    bodies: list[dict[str, Any]] = []

    def answer(request: Request) -> Response:
        body = json.loads(request.get_data())
        bodies.append(body)
        page = {"results": [], "next_token": ""} if body.get("next_token") else sample
        return Response(json.dumps(page), content_type="application/json")

    server.expect_request("/v2/links", method="POST").respond_with_handler(answer)
    return bodies


def test_the_documented_sample_maps_field_by_field(httpserver: HTTPServer) -> None:
    serve_sample(httpserver)
    links, result = read_all(source(httpserver))
    assert result.complete and result.format == "moz"
    assert links == [
        Backlink(
            "https://news.example.io/partners",  # Moz writes pages without a scheme
            "https://example.com/",
            "sponsor: Example",
            False,
            None,  # Moz does not say ugc or sponsored
            None,
            66.0,
            datetime(2023, 11, 29, tzinfo=UTC),
            False,
            None,
            "Moz DA",
            1.0,
        ),
        Backlink(
            "https://directory.example.info/widgets/page-2",
            "https://example.com/features",
            None,
            True,
            None,
            None,
            12.0,
            datetime(2022, 5, 16, tzinfo=UTC),
            True,  # date_disappeared 2025-10-02
            "unknown",  # Moz gives no reason
            "Moz DA",
            17.0,  # percent scale (API v2)
        ),
    ]
    assert "2 rows in 2 pages" in result.notes[0] and "cost 2 Moz rows" in result.notes[0]


def test_the_legacy_flag_scale_is_read_when_asked(httpserver: HTTPServer) -> None:
    serve_sample(httpserver)
    links, _ = read_all(source(httpserver, spam_score_scale="flags"))
    assert [x.toxicity for x in links] == [5.9, 100.0]  # 1 and 17 of 17 flags


def test_the_request_is_the_documented_body_and_the_token_is_followed(
    httpserver: HTTPServer,
) -> None:
    bodies = serve_sample(httpserver)
    read_all(source(httpserver))
    documented = json.loads(REQUEST.read_text(encoding="utf-8"))
    assert bodies[0] == documented
    token = json.loads(SAMPLE.read_text(encoding="utf-8"))["next_token"]
    assert bodies[1] == {**documented, "next_token": token}


def test_paging_reads_every_row_by_next_token(httpserver: HTTPServer) -> None:
    links = profile(117)
    fake = stand_in(httpserver, links)
    got, result = read_all(source(httpserver))
    assert result.complete and len(got) == 117
    assert {x.url_from for x in got} == {x.url_from for x in links}
    bodies = [json.loads(call["body"]) for call in fake.calls]
    assert [b["limit"] for b in bodies] == [50, 50, 50]
    assert "next_token" not in bodies[0] and all(b["next_token"] for b in bodies[1:])
    # Each result is one row of the monthly quota: the note says what Moz counted.
    assert fake.rows_consumed == 117 and "cost 117 Moz rows" in result.notes[0]


def test_the_budget_shrinks_the_last_call_and_makes_the_snapshot_partial(
    httpserver: HTTPServer,
) -> None:
    fake = stand_in(httpserver, profile(117))
    got, result = read_all(source(httpserver, budget=60))
    assert [json.loads(c["body"])["limit"] for c in fake.calls] == [50, 10]
    assert len(got) == 60 and fake.rows_consumed == 60
    assert not result.complete and "budget of 60 rows" in (result.error or "")


def test_without_lost_links_the_filter_leaves_them_out(httpserver: HTTPServer) -> None:
    links = profile(6)
    links[3] = replace(links[3], lost=True)
    fake = stand_in(httpserver, links)
    got, _ = read_all(source(httpserver))
    assert [(x.url_from, x.lost_reason) for x in got if x.lost] == [(links[3].url_from, "unknown")]
    assert json.loads(fake.calls[-1]["body"])["filter"] == "external"
    got, _ = read_all(source(httpserver, include_lost=False, target_scope="subdomain"))
    assert len(got) == 5 and not any(x.lost for x in got)
    body = json.loads(fake.calls[-1]["body"])
    assert body["filter"] == "external+not_deleted" and body["target_scope"] == "subdomain"


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("blog.example.org/page", "https://blog.example.org/page"),
        ("example.com/", "https://example.com/"),
        ("  example.com/a b ", "https://example.com/a b"),
        ("//cdn.example.net/x", "https://cdn.example.net/x"),
        ("http://old.example.org/", "http://old.example.org/"),
        ("HTTPS://Example.com/", "HTTPS://Example.com/"),
        (
            "example.org/?next=https://example.com/",
            "https://example.org/?next=https://example.com/",
        ),
    ],
)
def test_scheme_less_pages_get_https(written: str, read: str) -> None:
    assert with_scheme(written) == read


def test_missing_or_negative_metrics_are_unknown_not_zero(httpserver: HTTPServer) -> None:
    sample = json.loads(SAMPLE.read_text(encoding="utf-8"))
    result = sample["results"][0]
    result["source"]["spam_score"] = -1
    result["source"]["domain_authority"] = None
    result["date_disappeared"] = None
    result["date_first_seen"] = ""
    result["anchor_text"] = ""
    httpserver.expect_request("/v2/links").respond_with_json(
        {"results": [result], "next_token": ""}
    )
    (link,), _ = read_all(source(httpserver))
    assert (link.toxicity, link.domain_rating, link.lost, link.first_seen_at) == (
        None,
        None,
        False,
        None,
    )
    assert link.anchor is None


def test_the_same_next_token_twice_is_partial_not_a_loop(httpserver: HTTPServer) -> None:
    sample = json.loads(SAMPLE.read_text(encoding="utf-8"))
    answers = 0

    def links_call(request: Request) -> Response:
        # Other rows each time, but always the sample's one next_token.
        nonlocal answers
        answers += 1
        body = json.loads(json.dumps(sample))
        for row in body["results"]:
            row["source"]["page"] += f"?n={answers}"
        return Response(json.dumps(body), content_type="application/json")

    httpserver.expect_request("/v2/links").respond_with_handler(links_call)
    links, result = read_all(source(httpserver))
    assert len(links) == 4 and not result.complete
    assert "same next_token twice" in (result.error or "")


def test_the_same_page_twice_is_partial_not_a_loop(httpserver: HTTPServer) -> None:
    sample = json.loads(SAMPLE.read_text(encoding="utf-8"))
    httpserver.expect_request("/v2/links").respond_with_json(sample)
    links, result = read_all(source(httpserver))
    assert len(links) == 2 and not result.complete
    assert "page 2 repeats page 1" in (result.error or "")


def test_a_listing_as_long_as_moz_ever_gives_is_not_taken_as_whole(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sources.moz

    monkeypatch.setattr(sources.moz, "MAX_RESULTS", 100)
    stand_in(httpserver, profile(100))
    got, result = read_all(source(httpserver))
    assert len(got) == 100 and not result.complete
    assert "at most 100 links per target" in (result.error or "")


def test_tokens_that_keep_coming_past_the_cap_end_the_poll_partial(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sources.moz

    monkeypatch.setattr(sources.moz, "MAX_RESULTS", 100)
    fake = stand_in(httpserver, profile(400))
    got, result = read_all(source(httpserver))
    assert len(got) == 100 and fake.data_calls == 2 and not result.complete
    assert "at most 100 links per target and 100 were read with more to come" in (
        result.error or ""
    )


def _tokens(server: HTTPServer, pages: list[list[dict[str, Any]]]) -> list[int]:
    """Answers `pages` in turn, each with a fresh next_token (then nothing, no token)."""
    calls: list[int] = []

    def answer(request: Request) -> Response:
        calls.append(len(calls))
        n = len(calls) - 1
        if n < len(pages):
            body = {"results": pages[n], "next_token": f"tok-{n}"}
        else:
            body = {"results": [], "next_token": ""}
        return Response(json.dumps(body), content_type="application/json")

    server.expect_request("/v2/links", method="POST").respond_with_handler(answer)
    return calls


def test_empty_pages_with_fresh_tokens_end_the_poll_partial(httpserver: HTTPServer) -> None:
    calls = _tokens(httpserver, [[]] * 2000)
    links, result = read_all(source(httpserver, budget=100))
    assert links == [] and not result.complete and len(calls) == 3
    assert "3 pages in a row had no results but a next_token" in (result.error or "")


def test_an_empty_page_between_full_ones_is_no_end_and_no_fault(httpserver: HTTPServer) -> None:
    rows = json.loads(SAMPLE.read_text(encoding="utf-8"))["results"]
    calls = _tokens(httpserver, [rows[:1], [], [], rows[1:]])
    links, result = read_all(source(httpserver))
    assert result.complete and len(links) == len(rows) and len(calls) == 5


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("{}", "results: missing"),
        ('{"results": null}', "results: missing"),
        ('{"name": "InternalError", "message": "try later"}', "Moz answered an error: try later"),
    ],
)
def test_an_answer_without_results_is_an_error_never_the_end(
    httpserver: HTTPServer, body: str, says: str
) -> None:
    fake = stand_in(httpserver, profile(200))
    fake.faults[1] = Fault(200, body)
    with pytest.raises(ApiError, match=says):
        read_all(source(httpserver))
    fake.faults[fake.data_calls + 3] = Fault(200, body)
    links, result = read_all(source(httpserver))
    assert len(links) == 100 and not result.complete and says in (result.error or "")


def test_odd_dates_are_no_dates_and_no_losses(httpserver: HTTPServer) -> None:
    rows = json.loads(SAMPLE.read_text(encoding="utf-8"))["results"][:1]
    odd = [
        ("2025-13-45", ""),
        (20250102, "-"),
        ("soon", "null"),
        ("2023-11-29", "2026-02-20"),
    ]
    results = [rows[0] | {"date_first_seen": f, "date_disappeared": d} for f, d in odd]
    httpserver.expect_request("/v2/links").respond_with_json({"results": results, "next_token": ""})
    links, result = read_all(source(httpserver))
    assert result.complete
    assert [(x.first_seen_at, x.lost) for x in links] == [
        (None, False),
        (None, False),
        (None, False),
        (datetime(2023, 11, 29, tzinfo=UTC), True),
    ]


def test_legacy_access_id_and_secret_key_use_basic_auth(httpserver: HTTPServer) -> None:
    fake = stand_in(httpserver, profile(3))
    got, result = read_all(source(httpserver, access_id=ACCESS_ID))
    assert result.complete and len(got) == 3
    with pytest.raises(ApiAuthError):
        read_all(source(httpserver, access_id="mozscape-someone-else"))
    assert fake.data_calls == 1


def test_a_refused_token_names_the_setting_and_never_the_token(httpserver: HTTPServer) -> None:
    fake = stand_in(httpserver, profile(3))
    fake.refuse_auth = True
    with pytest.raises(ApiAuthError) as caught:
        read_all(source(httpserver))
    said = str(caught.value)
    assert "HTTP 401: Invalid credentials" in said and "sources.mz.token" in said
    assert MozFake.secret not in said


def test_the_credentials_check_reads_the_usage_not_links(httpserver: HTTPServer) -> None:
    fake = stand_in(httpserver, profile(3))
    fake.rows_consumed = 12_345
    src = source(httpserver)
    assert src.check_credentials(src.client()) == (
        "credentials accepted; 12,345 rows used this billing period"
    )
    assert fake.data_calls == 0


def test_settings_keep_to_the_documented_limit_and_hide_the_secret() -> None:
    with pytest.raises(ValidationError, match="less than or equal to 50"):
        MozSettings(kind="moz", token=SecretStr("t"), page_size=51)
    with pytest.raises(ValidationError, match="token"):
        MozSettings.model_validate({"kind": "moz", "access_id": ACCESS_ID})
    settings = MozSettings(kind="moz", token=SecretStr("very-secret"))
    assert "very-secret" not in repr(settings)
    assert settings.base_url == "https://lsapi.seomoz.com/"
    assert (settings.target_scope, settings.include_lost) == ("root_domain", True)
