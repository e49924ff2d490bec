"""The API client's manners: spacing, backoff with jitter, Retry-After, what errors say."""

from __future__ import annotations

import email.utils
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from sources.api import (
    ApiAuthError,
    ApiClient,
    ApiError,
    CallPolicy,
    Pace,
    PagingCheck,
    retry_after_seconds,
)
from sources.model import Backlink


class FakeTime:
    """A clock that only moves when slept on."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds

    def clock(self) -> float:
        return self.now


def client(time: FakeTime, jitter: float = 0.5, **policy: Any) -> ApiClient:
    return ApiClient(
        "source 'x' (test)",
        CallPolicy(
            **{"retries": 4, "backoff": 2.0, "max_backoff": 5.0, "min_interval": 0.0, **policy}
        ),
        sleep=time.sleep,
        clock=time.clock,
        wall=lambda: 1_700_000_000.0,
        jitter=lambda: jitter,
    )


def answers(server: HTTPServer, *responses: Response) -> None:
    queue = list(responses)
    server.expect_request("/data").respond_with_handler(lambda request: queue.pop(0))


def test_backoff_doubles_with_jitter_up_to_the_ceiling(httpserver: HTTPServer) -> None:
    answers(httpserver, *[Response("busy", status=503)] * 4, Response('{"ok": 1}'))
    time = FakeTime()
    assert client(time, jitter=0.5).call("GET", httpserver.url_for("/data"), auth_hint="") == {
        "ok": 1
    }
    # Half the backoff plus a random half: 2, 4, 5 (the ceiling), 5 → 1.5, 3, 3.75, 3.75.
    assert time.slept == [1.5, 3.0, 3.75, 3.75]


def test_jitter_stays_between_half_and_all_of_the_backoff(httpserver: HTTPServer) -> None:
    for jitter, expected in ((0.0, 1.0), (1.0, 2.0)):
        answers(httpserver, Response("busy", status=502), Response("{}"))
        time = FakeTime()
        client(time, jitter=jitter).call("GET", httpserver.url_for("/data"), auth_hint="")
        assert time.slept == [expected]
        httpserver.clear()


def test_retry_after_is_honoured_and_clamped(httpserver: HTTPServer) -> None:
    answers(
        httpserver,
        Response("slow down", status=429, headers={"Retry-After": "7"}),
        Response("slow down", status=429, headers={"Retry-After": "86400"}),
        Response("{}"),
    )
    time = FakeTime()
    client(time, max_retry_after=600.0).call("GET", httpserver.url_for("/data"), auth_hint="")
    assert time.slept == [7.0, 600.0]


def test_retry_after_as_an_http_date() -> None:
    date = email.utils.formatdate(1_700_000_030.0, usegmt=True)
    assert retry_after_seconds(date, 1_700_000_000.0) == 30.0
    assert retry_after_seconds("soon", 0.0) is None
    assert retry_after_seconds("-5", 0.0) == 0.0


def test_calls_are_spaced_by_the_rate_limit_across_clients(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/data").respond_with_data("{}")
    time = FakeTime()
    pace = Pace()
    for _ in range(2):
        c = client(time, min_interval=0.5)
        c.pace = pace
        c.call("GET", httpserver.url_for("/data"), auth_hint="")
        c.call("GET", httpserver.url_for("/data"), auth_hint="")
    # The first call waits for nothing; each later one waits what is left of 0.5 s.
    assert len(time.slept) == 3 and all(0 < s <= 0.5 for s in time.slept)


def test_giving_up_says_how_often_it_tried(httpserver: HTTPServer) -> None:
    answers(httpserver, *[Response("down", status=500)] * 3)
    with pytest.raises(ApiError, match=r"HTTP 500: down \(gave up after 3 attempts\)"):
        client(FakeTime(), retries=2).call("GET", httpserver.url_for("/data"), auth_hint="")


def test_refused_credentials_are_not_retried_and_say_what_to_fix(httpserver: HTTPServer) -> None:
    answers(httpserver, Response('{"error": "invalid key"}', status=401))
    time = FakeTime()
    with pytest.raises(ApiAuthError, match=r"HTTP 401: invalid key.*; set the key"):
        client(time).call(
            "GET",
            httpserver.url_for("/data"),
            auth_hint="set the key",
            error_text=lambda body: body["error"],
        )
    assert time.slept == []


def test_other_client_errors_are_not_retried(httpserver: HTTPServer) -> None:
    answers(httpserver, Response("bad target", status=400))
    time = FakeTime()
    with pytest.raises(ApiError, match="HTTP 400: bad target"):
        client(time).call("GET", httpserver.url_for("/data"), auth_hint="")
    assert time.slept == []


def test_a_key_in_the_query_never_reaches_a_message(httpserver: HTTPServer) -> None:
    answers(httpserver, Response("<html>", status=200))
    with pytest.raises(ApiError) as caught:
        client(FakeTime()).call(
            "GET", httpserver.url_for("/data") + "?apikey=TOPSECRET", auth_hint=""
        )
    assert "not JSON" in str(caught.value) and "TOPSECRET" not in str(caught.value)
    with pytest.raises(ApiError) as refused:
        client(FakeTime(), retries=0).call(
            "GET", "http://127.0.0.1:9/data?apikey=TOPSECRET", auth_hint=""
        )
    assert "TOPSECRET" not in str(refused.value) and "Connection refused" in str(refused.value)


def test_retry_after_dates_without_a_zone_are_utc_and_past_ones_wait_nothing() -> None:
    # RFC 5322 writes "-0000" for "UTC, zone unknown": parsed without a zone.
    assert retry_after_seconds("Tue, 14 Nov 2023 22:14:20 -0000", 1_700_000_100.0) == 0.0
    assert retry_after_seconds("Tue, 14 Nov 2023 22:14:20 -0000", 1_700_000_000.0) == 60.0
    assert retry_after_seconds("Tue, 14 Nov 2023 22:13:00 GMT", 1_700_000_000.0) == 0.0


def test_messages_name_the_path_called_never_more() -> None:
    from sources.api import _path

    assert _path("https://api.example.com/v3/x?key=K") == "/v3/x"
    assert _path("https://api.example.com") == "/"


def test_the_budget_asks_for_at_least_one_row_and_never_more_than_is_left() -> None:
    from sources.api import Budget

    assert Budget(None).cap(1000) == 1000
    assert Budget(1500, used=1000).cap(1000) == 500
    assert Budget(1500, used=1500).cap(1000) == 1
    assert Budget(1500, used=1499).cap(1000) == 1


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (
            b'{"rank": 12.5, "n": 123456789012345678901234567890,'
            b' "t": "Caf\\u00e9 \\ud83d\\ude00 \xc3\xa9"}',
            "application/json",
        ),
        # What msgspec refuses and the standard library reads: read as it always was.
        (b'{"rank": NaN, "spam": Infinity, "big": 1e400}', "application/json"),
        (b'{"anchor": "\\ud800 lone surrogate"}', "application/json"),
        # Not UTF-8 although declared so: the bad byte reads as U+FFFD, as it always did.
        (b'{"anchor": "caf\xe9"}', "application/json; charset=utf-8"),
        (b'{"anchor": "Caf\xe9"}', "application/json; charset=latin-1"),
        # Declared Latin-1, though the bytes would read as UTF-8 too: read as Latin-1.
        (b'{"anchor": "Caf\xc3\xa9"}', "application/json; charset=latin-1"),
    ],
)
def test_answers_decode_as_the_standard_library_reads_them(
    httpserver: HTTPServer, raw: bytes, content_type: str
) -> None:
    import json

    answers(httpserver, Response(raw, content_type=content_type))
    got = client(FakeTime()).call("GET", httpserver.url_for("/data"), auth_hint="")
    charset = "latin-1" if "latin-1" in content_type else "utf-8"
    expected = json.loads(raw.decode(charset, errors="replace"))
    # repr: NaN is never equal to itself, but prints the same.
    assert repr(got) == repr(expected)


def test_an_answer_neither_decoder_reads_names_the_problem(httpserver: HTTPServer) -> None:
    answers(httpserver, Response('{"items": [1, 2,]}', content_type="application/json"))
    with pytest.raises(ApiError, match=r"not JSON \(Expecting value: line 1 column 17"):
        client(FakeTime()).call("GET", httpserver.url_for("/data"), auth_hint="")


def _rows(*numbers: int) -> list[Backlink]:
    return [Backlink(f"https://ref{n}.org/p", "https://example.com/", f"a{n}") for n in numbers]


def test_paging_may_list_a_row_on_both_sides_of_a_page_break() -> None:
    check = PagingCheck("api")
    check.check(_rows(1, 2, 3, 4), 1)
    check.check(_rows(4, 5, 6, 7, 8), 2)  # one row of five again: the API's own duplicate
    check.check(_rows(8, 9, 10), 3)  # one of three, still less than half
    check.check(_rows(10), 4)  # a list shifted by one: its last page, the row again
    check.check([], 5)  # an empty last page repeats nothing


def test_a_page_repeating_half_the_page_before_went_back() -> None:
    check = PagingCheck("api")
    check.check(_rows(1, 2, 3, 4), 1)
    with pytest.raises(ApiError) as raised:
        check.check(_rows(3, 4, 5, 6), 2)
    short = PagingCheck("api")
    short.check(_rows(1, 2, 3), 1)
    with pytest.raises(ApiError, match="page 2 repeats 2 of its 2 rows"):
        short.check(_rows(2, 3), 2)
    assert str(raised.value) == (
        "api: page 2 repeats 2 of its 4 rows from page 1: the API's paging went back, and"
        " rows after it may never come"
    )


def test_a_page_listed_again_later_went_back() -> None:
    check = PagingCheck("api")
    check.check(_rows(1, 2), 1)
    check.check(_rows(3, 4), 2)
    check.check(_rows(5, 6), 3)
    with pytest.raises(ApiError) as raised:
        check.check(_rows(4, 3), 4)
    assert str(raised.value) == (
        "api: page 4 repeats page 2: the API's paging went back, and rows after it may never come"
    )
    # Rows in another order are still the same page; one row more is another page.
    other = PagingCheck("api")
    other.check(_rows(1, 2), 1)
    other.check(_rows(3, 4), 2)
    other.check(_rows(1, 2, 7), 3)


@pytest.mark.parametrize("padding", [0, 270])
def test_an_echoed_basic_token_is_masked_even_where_the_quote_is_cut(
    httpserver: HTTPServer, padding: int
) -> None:
    import base64

    # The header echoed after `padding` characters: at 270 the quote's cut (300) falls
    # inside the token, and each half alone is no secret a whole-token mask would find.
    httpserver.expect_request("/data").respond_with_handler(
        lambda request: Response(
            "x" * padding + "got " + request.headers["Authorization"], status=400
        )
    )
    token = base64.b64encode(b"seo@example.com:pa55word-long-enough").decode()
    with pytest.raises(ApiError) as caught:
        client(FakeTime()).call(
            "GET",
            httpserver.url_for("/data"),
            auth_hint="",
            auth=("seo@example.com", "pa55word-long-enough"),
        )
    said = str(caught.value)
    assert "HTTP 400" in said
    assert not any(token[i : i + 8] in said for i in range(len(token) - 7)), said


@pytest.mark.parametrize(
    ("login", "password"),
    [("me@x.com", "p?>?>?secret"), ("seo", 'a/b"c\\d-é')],
)
def test_a_secret_echoed_in_a_json_string_is_masked_as_escaped(
    httpserver: HTTPServer, login: str, password: str
) -> None:
    import base64
    import json

    # JSON may escape `/` as `\/` (PHP's json_encode does), a quote and a backslash, and
    # write é as \u00e9: the token or the password in any of these forms is masked.
    token = base64.b64encode(f"{login}:{password}".encode()).decode()
    said = {
        "echo": f"Authorization: Basic {token}".replace("/", "\\/"),
        "password": json.dumps(password)[1:-1].replace("/", "\\/"),
        "again": json.dumps(password)[1:-1],
    }
    body = "{" + ", ".join(f'"{k}": "{v}"' for k, v in said.items()) + "}"
    httpserver.expect_request("/data").respond_with_handler(
        lambda request: Response(body, status=400, content_type="text/plain")
    )
    api = client(FakeTime())
    api.secrets = (password,)  # as a source's settings give it
    with pytest.raises(ApiError) as caught:
        api.call("GET", httpserver.url_for("/data"), auth_hint="", auth=(login, password))
    text = str(caught.value)
    assert "HTTP 400" in text and text.count("***") == 3, text
    for value in (token, password, *said.values()):
        assert value.replace("Authorization: Basic ", "") not in text


def test_an_answer_cut_short_is_retried_as_a_network_error() -> None:
    import socket
    import threading

    # A server that announces 40 bytes of JSON, sends 10 and hangs up; then answers whole.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    body = b'{"ok": 1, "padding": "xxxxxxxxxxxxxxxx"}'

    def serve() -> None:
        for whole in (False, True):
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n"
                head += "Content-Type: application/json\r\nConnection: close\r\n\r\n"
                conn.sendall(head.encode() + (body if whole else body[:10]))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    time = FakeTime()
    api = client(time)
    try:
        assert api.call("GET", f"http://127.0.0.1:{port}/data", auth_hint="") == {
            "ok": 1,
            "padding": "xxxxxxxxxxxxxxxx",
        }
    finally:
        thread.join(timeout=10)
        listener.close()
    assert api.retried == 1 and len(time.slept) == 1
