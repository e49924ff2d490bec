"""The DataForSEO source: its documented fields, paging past 20,000, status codes, cost."""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from sources.api import ApiAuthError, ApiError, scaled
from sources.dataforseo import DataForSeoSettings, DataForSeoSource, _finite
from sources.dataforseo_shape import LiveItem, decode_live
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
        **({"requests_per_second": 1000, "backoff": "0s"} | extra),
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


def test_paging_goes_by_token_from_the_second_page_with_every_parameter_kept(
    httpserver: HTTPServer,
) -> None:
    fake = DataForSeoFake(httpserver, profile(22_345))
    fake.install()
    links, result = read_all(source(httpserver))
    assert result.complete
    assert len({(link.url_from, link.url_to) for link in links}) == 22_345
    tasks = [json.loads(c["body"])[0] for c in fake.calls]
    assert len(tasks) == 23  # 22 full pages, then a short one ends the listing
    assert "search_after_token" not in tasks[0]
    assert all("search_after_token" in t for t in tasks[1:])
    assert len({t["search_after_token"] for t in tasks[1:]}) == 22
    # With a token every other parameter stays as it was, `offset: 0` and `limit` included.
    assert {
        json.dumps({k: v for k, v in t.items() if k != "search_after_token"}, sort_keys=True)
        for t in tasks
    } == {json.dumps(tasks[0], sort_keys=True)}
    assert tasks[0]["offset"] == 0 and tasks[0]["limit"] == 1000


def _after_first_page(fake: DataForSeoFake, change: Any) -> None:
    """Make `change` to the stand-in's list right after it answers the first page."""
    real = fake._page

    def page(request: Request) -> Response:
        answer = real(request)
        if fake.data_calls == 1:
            change()
        return answer

    fake._page = page  # type: ignore[method-assign]


def test_a_link_lost_during_the_poll_shifts_no_live_row_past_a_page(
    httpserver: HTTPServer,
) -> None:
    fake = DataForSeoFake(httpserver, profile(2500))
    fake.install()
    boundary = fake.links[1000]  # the first row of the second page

    def meanwhile() -> None:
        # At DataForSEO, between two pages: link #10 is found lost (it leaves the live
        # list) and a new link is found (it joins the end, the list is ordered by
        # first_seen): the total stays 2,500. By offset, every later row would move up
        # one place and `boundary` would be read by no page.
        fake.links = [replace(x, lost=True) if i == 10 else x for i, x in enumerate(fake.links)]
        fake.links.append(profile(1, start=9000)[0])

    _after_first_page(fake, meanwhile)
    links, result = read_all(source(httpserver))
    read = {link.url_from for link in links}
    assert result.complete
    assert boundary.url_from in read
    assert {x.url_from for x in fake.links if not x.lost} <= read


def test_a_total_count_that_understates_the_listing_does_not_end_it(
    httpserver: HTTPServer,
) -> None:
    fake = DataForSeoFake(httpserver, profile(2500))
    fake.install()
    real = fake._page

    def understated(request: Request) -> Response:
        body = json.loads(real(request).get_data())
        body["tasks"][0]["result"][0]["total_count"] = 2000  # a stale or capped count
        return fake.json(body)

    fake._page = understated  # type: ignore[method-assign]
    links, result = read_all(source(httpserver))
    assert result.complete and len(links) == 2500
    assert fake.data_calls == 3  # full, full, then the short page that ends it


@pytest.mark.parametrize("total", ["NaN", "Infinity", "-1", "2.5", '"many"'])
def test_a_total_count_that_is_no_count_is_refused(httpserver: HTTPServer, total: str) -> None:
    fake = DataForSeoFake(httpserver, profile(1500))
    fake.install()
    real = fake._page

    def odd(request: Request) -> Response:
        answer = real(request)
        if fake.data_calls != target:
            return answer
        text = answer.get_data(as_text=True).replace(
            '"total_count": 1500', f'"total_count": {total}'
        )
        return Response(text, content_type="application/json")

    fake._page = odd  # type: ignore[method-assign]
    target = 1  # on the first page: an error
    with pytest.raises(ApiError, match="total_count is not a count"):
        read_all(source(httpserver))
    target = fake.data_calls + 2  # on a later page: partial
    links, result = read_all(source(httpserver))
    assert len(links) == 1000 and not result.complete
    assert "total_count is not a count" in (result.error or "")


def test_the_budget_stops_before_a_token_page_it_cannot_pay_for(httpserver: HTTPServer) -> None:
    fake = DataForSeoFake(httpserver, profile(3000))
    fake.install()
    links, result = read_all(source(httpserver, budget=1500))
    # The token's page would be 1,000 rows again (its limit cannot change): not asked.
    assert len(links) == 1000 and fake.data_calls == 1 and not result.complete
    assert "budget of 1,500 rows per poll cannot pay for the next page" in (result.error or "")
    links, result = read_all(source(httpserver, budget=500))
    assert len(links) == 500 and not result.complete
    assert json.loads(fake.calls[-1]["body"])[0]["limit"] == 500


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
        ("task", 40100, "You are not authorized.", ApiAuthError, "refused the credentials"),
        ("top", 40200, "Payment Required.", ApiAuthError, "top up"),
        ("task", 40210, "Insufficient Funds.", ApiAuthError, "top up"),
        ("task", 40501, "Invalid Field: 'target'.", ApiError, "40501 Invalid Field"),
        ("task", 40102, "No Search Results.", ApiError, "status 40102 No Search Results"),
        ("top", 40201, "Our algorithms found suspicious activity.", ApiError, "status 40201"),
        ("top", 40203, "The cost limit has been exceeded.", ApiError, "status 40203 The cost"),
        ("top", 50304, "This function temporarily unavailable.", ApiError, "status 50304"),
    ],
)
def test_status_codes_in_the_body_are_checked_at_both_levels(
    httpserver: HTTPServer, level: str, code: int, message: str, error: type, said: str
) -> None:
    body = json.loads(SAMPLE.read_text(encoding="utf-8"))
    part = body if level == "top" else body["tasks"][0]
    part["status_code"], part["status_message"] = code, message
    httpserver.expect_request("/v3/backlinks/backlinks/live").respond_with_json(body)
    with pytest.raises(error, match=said) as caught:
        read_all(source(httpserver))
    if error is not ApiAuthError:
        # Quoted as the API words it, with no wrong fix: not a key, not the balance.
        assert type(caught.value) is ApiError
        assert "credentials" not in str(caught.value) and "top up" not in str(caught.value)
    assert len(httpserver.log) == 1  # none of these is retried


@pytest.mark.parametrize(
    ("level", "code", "message"),
    [
        ("top", 40202, "The rate-limit per minute has been exceeded."),
        ("task", 40202, "The rate-limit per minute has been exceeded."),
        ("task", 40101, "Internal SE Server Error."),
        ("top", 50000, "Internal Error."),
        ("top", 50303, "Update in progress. Please try after a few minutes."),
    ],
)
def test_passing_status_codes_are_retried_with_the_clients_backoff(
    httpserver: HTTPServer, level: str, code: int, message: str
) -> None:
    good = json.loads(SAMPLE.read_text(encoding="utf-8"))
    bad = json.loads(SAMPLE.read_text(encoding="utf-8"))
    part = bad if level == "top" else bad["tasks"][0]
    part["status_code"], part["status_message"] = code, message
    part["result"] = None
    answers = [bad, bad, good]
    httpserver.expect_request("/v3/backlinks/backlinks/live").respond_with_handler(
        lambda request: Response(json.dumps(answers.pop(0)), content_type="application/json")
    )
    slept: list[float] = []
    src = source(httpserver, backoff="1s")
    result = src.fetch("example.com", T0, sleep=slept.append)
    links = list(result.records)
    assert result.complete and len(links) == 3
    assert len(slept) == 2 and 0.5 <= slept[0] <= 1.0 and 1.0 <= slept[1] <= 2.0
    assert "2 retried" in result.notes[0]
    # Longer than the retries: the API's words, never a credentials or balance hint.
    answers[:] = [bad] * 3
    with pytest.raises(ApiError) as caught:
        source(httpserver, retries=2).fetch("example.com", T0, sleep=lambda s: None)
    said = str(caught.value)
    assert type(caught.value) is ApiError
    assert f"status {code} {message}" in said and "gave up after 3 attempts" in said
    assert "credentials" not in said and "top up" not in said


def test_http_402_is_the_balance_and_http_401_the_credentials(httpserver: HTTPServer) -> None:
    refusals = [
        (402, {"status_code": 40200, "status_message": "Payment Required."}),
        (401, {"status_code": 40100, "status_message": "You are not authorized."}),
    ]
    httpserver.expect_request("/v3/backlinks/backlinks/live").respond_with_handler(
        lambda request: Response(
            json.dumps(refusals[0][1]), status=refusals[0][0], content_type="application/json"
        )
    )
    with pytest.raises(ApiAuthError, match="HTTP 402: 40200 Payment Required") as caught:
        read_all(source(httpserver))
    assert "top up the DataForSEO balance" in str(caught.value)
    assert "login and password" not in str(caught.value)
    refusals.pop(0)
    with pytest.raises(ApiAuthError, match="refused the credentials") as caught:
        read_all(source(httpserver))
    assert "sources.d4s.login and password" in str(caught.value)


@pytest.mark.parametrize(
    ("status", "body", "says", "hint"),
    [
        (
            401,
            {"status_code": 40100, "status_message": "Unauthorized."},
            "refused the credentials",
            "do what it says",
        ),
        (
            200,
            {
                "status_code": 40202,
                "status_message": "The rate-limit per minute has been exceeded.",
            },
            "status 40202 The rate-limit",
            "the API answered with an error",
        ),
        (
            200,
            {"status_code": 40201, "status_message": "Temporarily blocked."},
            "status 40201 Temporarily blocked",
            "the API answered with an error",
        ),
    ],
)
def test_doctor_says_what_the_code_means(
    httpserver: HTTPServer, status: int, body: dict[str, Any], says: str, hint: str
) -> None:
    from daemon.doctor import _credentials

    httpserver.expect_request("/v3/appendix/user_data").respond_with_json(body, status=status)
    (finding,) = _credentials(source(httpserver))
    assert finding.status == "FAIL" and says in finding.detail and hint in finding.fix
    assert "top up" not in finding.detail or body["status_code"] in (40200, 40210)
    if body["status_code"] != 40100:
        assert "credentials" not in finding.detail


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


def _item(**fields: Any) -> dict[str, Any]:
    return {"url_from": "https://a.example.org/", "url_to": "https://example.com/"} | fields


def test_odd_values_are_read_as_unknown_not_as_a_failed_poll() -> None:
    src = DataForSeoSource(
        "d4s", DataForSeoSettings(kind="dataforseo", login="a", password=SecretStr("b"))
    )
    # A first_seen that is no date is no date (as Majestic's), not a failed poll.
    for odd in ("soon", "2025-13-45 00:00:00 +00:00", 20250102, ""):
        assert (
            src._link(src._items([_item(first_seen=odd)])[0], "example.com").first_seen_at is None
        )
    # Rank and spam score are 0-100 (`rank_scale: one_hundred`): clamped to it.
    link = src._link(
        src._items([_item(domain_from_rank=640, backlink_spam_score=-3)])[0], "example.com"
    )
    assert (link.domain_rating, link.toxicity) == (100.0, 0.0)
    link = src._link(
        src._items([_item(domain_from_rank="NaN", backlink_spam_score="x")])[0], "example.com"
    )
    assert (link.domain_rating, link.toxicity) == (None, None)
    link = src._link(
        src._items([_item(domain_from_rank=42, backlink_spam_score=7)])[0], "example.com"
    )
    assert (link.domain_rating, link.toxicity) == (42.0, 7.0)


@pytest.mark.parametrize(
    ("fields", "nofollow"),
    [
        ({"attributes": None, "dofollow": False}, True),
        ({"attributes": None, "dofollow": True}, False),
        ({"attributes": [], "dofollow": False}, True),
        ({"attributes": ["nofollow"], "dofollow": True}, True),
        ({"attributes": ["sponsored"], "dofollow": False}, False),
        ({"attributes": "nofollow", "dofollow": False}, True),  # not a list: no attributes
        ({"attributes": "nofollow", "dofollow": None}, False),
    ],
)
def test_rel_comes_from_the_attributes_else_from_dofollow(
    fields: dict[str, Any], nofollow: bool
) -> None:
    """`attributes` (a list) says the rel when given; else `dofollow` does."""
    src = DataForSeoSource(
        "d4s", DataForSeoSettings(kind="dataforseo", login="a", password=SecretStr("b"))
    )
    link = src._link(src._items([_item(**fields)])[0], "example.com")
    assert link.nofollow is nofollow


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (200, "removed"),
        (404, "not_found"),
        (410, "not_found"),
        (503, "page_error"),
        (301, "redirected"),
        (None, "unknown"),
        (0, "unknown"),
    ],
)
def test_a_lost_links_reason_comes_from_its_pages_status(status: int | None, reason: str) -> None:
    src = DataForSeoSource(
        "d4s", DataForSeoSettings(kind="dataforseo", login="a", password=SecretStr("b"))
    )
    link = src._link(
        src._items([_item(is_lost=True, page_from_status_code=status)])[0], "example.com"
    )
    assert (link.lost, link.lost_reason) == (True, reason)


def test_settings_refuse_a_page_size_over_the_documented_maximum() -> None:
    with pytest.raises(ValueError, match="less than or equal to 1000"):
        DataForSeoSettings(kind="dataforseo", login="a", password=SecretStr("b"), page_size=5000)


# --- the shaped decode reads an answer as the generic decode does ----------------------

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
# The fields read, a field not read, and sometimes the odd value where a part is expected.
_ITEM_FIELDS = st.sampled_from([*LiveItem.__struct_fields__, "last_seen", "rank"])
_ITEMS = st.lists(
    st.dictionaries(_ITEM_FIELDS, _JSON | st.sampled_from(["https://a.example.org/x", "nofollow"]))
    | _JSON,
    max_size=4,
)


def _odd_or(part: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(part, part, part, _JSON)


@st.composite
def _answers(draw: st.DrawFn) -> Any:
    result = _odd_or(
        st.fixed_dictionaries(
            {},
            optional={
                "items": _odd_or(_ITEMS),
                "total_count": _JSON,
                "search_after_token": _JSON,
                "type": _JSON,
            },
        )
    )
    task = st.fixed_dictionaries(
        {},
        optional={
            "status_code": st.sampled_from([20000, 40100, 50000]) | _JSON,
            "status_message": _JSON,
            "result": _odd_or(st.lists(result, max_size=2)),
            "path": _JSON,
        },
    )
    return draw(
        _odd_or(
            st.fixed_dictionaries(
                {},
                optional={
                    "status_code": st.sampled_from([20000, 50301]) | _JSON,
                    "status_message": _JSON,
                    "cost": _JSON,
                    "tasks": _odd_or(st.lists(_odd_or(task), max_size=2)),
                    "version": _JSON,
                },
            )
        )
    )


def _read(src: DataForSeoSource, item: Any) -> object:
    """What the source makes of one item: its Backlink, or the error it raises."""
    try:
        return src._link(src._items([item])[0], "example.com")
    except ApiError as exc:
        return ("ApiError", str(exc))


def _as_read(src: DataForSeoSource, value: Any, path: tuple[str, ...] = ()) -> Any:
    """An answer with each item replaced by what the source makes of it."""
    if path[-1:] == ("items",) and isinstance(value, list):
        return [_read(src, i) for i in value]
    if isinstance(value, dict):
        return {k: _as_read(src, v, (*path, k)) for k, v in value.items()}
    if isinstance(value, list) and path[-1:] in (("tasks",), ("result",)):
        return [_as_read(src, v, path) for v in value]
    return value


@settings(max_examples=300, deadline=None)
@given(answer=_answers())
def test_the_shaped_decode_reads_every_answer_as_the_generic_decode(answer: Any) -> None:
    """What the adapter reads from an answer decoded by its shape equals what it reads
    from the same answer decoded generically; an answer the shape refuses is decoded
    generically (so judged as before)."""
    src = DataForSeoSource(
        "d4s", DataForSeoSettings(kind="dataforseo", login="a", password=SecretStr("b"))
    )
    content = json.dumps(answer).encode()
    generic = msgspec.json.decode(content)
    try:
        shaped = decode_live(content)
    except msgspec.ValidationError:
        return  # decoded generically instead (sources.api.decode_json)
    assert _as_read(src, shaped) == _as_read(src, _only_read(generic))


def _only_read(answer: Any) -> Any:
    """The generic answer without the fields of its parts the adapter never reads."""
    keep = {
        (): {"status_code", "status_message", "cost", "tasks"},
        ("tasks",): {"status_code", "status_message", "result"},
        ("tasks", "result"): {"items", "total_count", "search_after_token"},
    }

    def walk(value: Any, path: tuple[str, ...]) -> Any:
        if isinstance(value, dict) and path in keep:
            return {
                k: [walk(v, (*path, k)) for v in value[k]]
                if k in ("tasks", "result") and isinstance(value[k], list)
                else value[k]
                for k in value
                if k in keep[path]
            }
        return value

    return walk(answer, ())


def test_a_page_whose_items_are_not_all_objects_is_refused_as_before(
    httpserver: HTTPServer,
) -> None:
    """An answer off the shape is read generically: the odd item is named, as before."""
    body = json.loads(SAMPLE.read_text(encoding="utf-8"))
    body["tasks"][0]["result"][0]["items"].append("not an item")
    httpserver.expect_request("/v3/backlinks/backlinks/live", method="POST").respond_with_json(body)
    with pytest.raises(ApiError, match="item: expected a JSON object, got str"):
        src = source(httpserver)
        src.fetch("example.com", T0, sleep=lambda s: None)


def test_an_item_without_a_target_is_named_with_what_it_has(httpserver: HTTPServer) -> None:
    """The poll fails naming the missing URL and showing the fields read of the item."""
    body = json.loads(SAMPLE.read_text(encoding="utf-8"))
    item = body["tasks"][0]["result"][0]["items"][0]
    item["url_to"] = None
    httpserver.expect_request("/v3/backlinks/backlinks/live", method="POST").respond_with_json(body)
    with pytest.raises(ApiError) as caught:
        source(httpserver).fetch("example.com", T0, sleep=lambda s: None)
    message = str(caught.value)
    assert "an item without url_to: {'url_from': 'https://news.example.io/partners'" in message
    assert "'url_to': None" in message
    assert "'anchor': 'sponsor: Example'" in message
    assert "'alt'" not in message and "None, '" not in message.split("'url_to': None")[1]


@pytest.mark.parametrize(
    ("fields", "missing"),
    [({"url_from": None}, "url_from"), ({"url_from": "", "url_to": None}, "url_from/url_to")],
)
def test_an_item_without_a_source_names_it(fields: dict[str, Any], missing: str) -> None:
    src = DataForSeoSource(
        "d4s", DataForSeoSettings(kind="dataforseo", login="a", password=SecretStr("b"))
    )
    with pytest.raises(ApiError) as caught:
        src._link(src._items([_item(**fields)])[0], "example.com")
    assert f"an item without {missing}: {{'url_from': " in str(caught.value)


def _metric_as_before(value: object, top: float) -> str:
    """A number as as_number read it before its shortcut, finite, then max(0, min(100,
    x * 100 / top)); the repr of the result (a zero's sign shows) or the error's name."""
    number: float | None = None
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str) and value.strip():
            with contextlib.suppress(ValueError):
                number = float(value.strip())
    except OverflowError:
        return "OverflowError"
    if number is None or not math.isfinite(number):
        return repr(None)
    return repr(max(0.0, min(100.0, number * 100.0 / top)))


@given(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=8),
        st.floats().map(repr),
    ),
    st.sampled_from([100.0, 10.0, 3.0, 1.0, 0.5]),
)
# The clamp's edges, which random values seldom reach: a zero's sign, just over the top.
@example(-0.0, 100.0)
@example(100.5, 100.0)
@example(100, 100.0)
def test_a_metric_is_read_and_scaled_as_before(value: object, top: float) -> None:
    """The shortcuts for JSON numbers and the clamp without calls give the same float, to
    the sign of a zero, for every kind of value an answer can hold."""
    try:
        got = repr(scaled(_finite(value), top))
    except OverflowError:
        got = "OverflowError"
    assert got == _metric_as_before(value, top)
