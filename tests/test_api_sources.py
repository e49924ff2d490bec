"""Every API source against its stand-in on loopback: paging, faults, budgets, credentials.

Each scenario runs for every kind in `tests/fakes`: the stand-in serves the provider's
documented response shape, and the real daemon code polls it into a real SQLite file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from daemon.service import Linkwatch
from daemon.settings import load_settings
from daemon.store import IngestOutcome
from sources.api import ApiSource
from tests.fakes import FakeApi, fake_kinds
from tests.fakes.base import Fault, profile
from tests.fakes.bing import BingFake
from tests.helpers import write_rule

KINDS = fake_kinds()
T0 = datetime(2026, 3, 1, tzinfo=UTC)
HEALTH_RULE = 'kind = "source_health"\nnotify = ["console"]\n'


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def open_app(folder: Path, fake: FakeApi, **extra: Any) -> Linkwatch:
    """A linkwatch whose one site is polled by one API source pointing at `fake`."""
    block = "\n".join(f"{k} = {_toml(v)}" for k, v in fake.settings(**extra).items())
    (folder / "rules.d").mkdir(exist_ok=True)
    path = folder / "settings.toml"
    path.write_text(
        '[storage]\npath = "linkwatch.db"\n[daemon]\nrules_dir = "rules.d"\n'
        f'[[sites]]\ndomain = "{fake.site}"\nrole = "own"\nsources = ["api"]\n'
        f"[sources.api]\n{block}\n"
        '[notifiers.console]\nkind = "console"\n',
        encoding="utf-8",
    )
    return Linkwatch.open(load_settings(path))


@pytest.fixture(params=sorted(KINDS))
def fake(request: pytest.FixtureRequest) -> Iterator[FakeApi]:
    # A server of its own per test, answering calls in parallel: a hung answer left by a
    # stop or a timeout must not hold up the next call or the next test.
    server = HTTPServer(threaded=True)
    server.start()
    stand_in = KINDS[request.param](server, profile(0))
    stand_in.install()
    yield stand_in
    server.clear()
    server.stop()


@pytest.fixture
def app_for(tmp_path: Path) -> Iterator[Any]:
    opened: list[Linkwatch] = []

    def make(fake: FakeApi, **extra: Any) -> Linkwatch:
        app = open_app(tmp_path, fake, **extra)
        opened.append(app)
        return app

    yield make
    for app in opened:
        app.close()


def poll(app: Linkwatch, at: datetime) -> IngestOutcome:
    (outcome,) = app.poll_source("example.com", "api", at)
    return outcome


def states(app: Linkwatch) -> dict[str, int]:
    counts: dict[str, int] = {}
    for link in app.store.links("example.com"):
        counts[link["state"]] = counts.get(link["state"], 0) + 1
    return counts


def test_every_kind_has_a_stand_in() -> None:
    from sources.registry import SOURCE_KINDS

    api_kinds = {k for k, cls in SOURCE_KINDS.items() if issubclass(cls, ApiSource)}
    assert api_kinds == set(KINDS)


def test_full_paging_reads_every_row(fake: FakeApi, app_for: Any) -> None:
    page = fake.largest_page()
    fake.links = profile(2 * page + 17)
    app = app_for(fake)
    outcome = poll(app, T0)
    assert (outcome.status, outcome.seen) == ("baseline", 2 * page + 17)
    assert fake.data_calls == fake.expected_data_calls()
    assert states(app) == {"live": 2 * page + 17}
    # The note says what the poll read (and cost, where the API says).
    assert f"{2 * page + 17:,} rows in" in (outcome.note or "") + " ".join(
        s["note"] or "" for s in app.store.snapshots("example.com")
    )


def test_a_429_storm_is_waited_out(fake: FakeApi, app_for: Any) -> None:
    page = fake.largest_page()
    fake.links = profile(page + 5)
    for call in range(2, 6):
        fake.faults[call] = Fault(429, '{"error": "too many requests"}', {"Retry-After": "0"})
    outcome = poll(app_for(fake), T0)
    assert (outcome.status, outcome.seen) == ("baseline", page + 5)
    assert fake.data_calls == fake.expected_data_calls() + 4


def test_a_storm_longer_than_the_retries_leaves_the_snapshot_partial(
    fake: FakeApi, app_for: Any
) -> None:
    page = fake.largest_page()
    fake.links = profile(page + 5)
    app = app_for(fake, retries=2)
    assert poll(app, T0).status == "baseline"
    for call in range(fake.data_calls + 2, fake.data_calls + 6):
        fake.faults[call] = Fault(503, "unavailable", content_type="text/plain")
    outcome = poll(app, T0 + timedelta(days=1))
    assert outcome.status == "partial"
    assert "gave up after 3 attempts" in (outcome.note or "")
    assert states(app) == {"live": page + 5}


def test_a_500_mid_paging_is_partial_and_changes_no_link(fake: FakeApi, app_for: Any) -> None:
    page = fake.largest_page()
    fake.links = profile(3 * page)
    app = app_for(fake, retries=0)
    assert poll(app, T0).status == "baseline"
    fake.links = profile(3 * page)[: page * 2]  # a real loss too: still nothing may move
    fake.faults[fake.data_calls + 2] = Fault(500)
    outcome = poll(app, T0 + timedelta(days=1))
    assert outcome.status == "partial"
    assert (outcome.missing, outcome.lost) == (0, 0)
    assert states(app) == {"live": 3 * page}


@pytest.mark.parametrize("body", ["{}", "[]", "null"])
def test_a_200_answer_without_the_data_is_partial_never_the_end(
    fake: FakeApi, app_for: Any, body: str
) -> None:
    page = fake.largest_page()
    fake.links = profile(3 * page)
    app = app_for(fake, retries=0)
    assert poll(app, T0).status == "baseline"
    # A later page answers 200 with none of the provider's data: never "no more rows".
    fake.faults[fake.data_calls + 2] = Fault(200, body)
    outcome = poll(app, T0 + timedelta(days=1))
    assert outcome.status == "partial"
    assert (outcome.missing, outcome.lost) == (0, 0)
    assert states(app) == {"live": 3 * page}


def test_a_budget_cap_makes_the_snapshot_partial(fake: FakeApi, app_for: Any) -> None:
    page = fake.largest_page()
    fake.links = profile(3 * page)
    app = app_for(fake)
    assert poll(app, T0).status == "baseline"
    app.close()
    capped = app_for(fake, budget=page + page // 2)
    outcome = poll(capped, T0 + timedelta(days=1))
    assert outcome.status == "partial"
    assert "budget" in (outcome.note or "")
    assert outcome.missing == 0 and states(capped) == {"live": 3 * page}


def test_the_next_page_is_asked_for_while_this_one_is_read(fake: FakeApi, app_for: Any) -> None:
    page = fake.largest_page()
    fake.links = profile(5 * page)
    source = app_for(fake).sources["api"]
    assert isinstance(source, ApiSource)
    result = source.fetch(fake.site, T0)
    try:
        asked = fake.data_calls
        records = iter(result.records)
        next(records)  # the first row of the first page is being stored...
        deadline = time.monotonic() + 10
        while fake.data_calls == asked and time.monotonic() < deadline:
            time.sleep(0.005)
        # ...and the next page is on its way, but not the whole profile (a page without
        # rows, as Bing's lists of linked pages give, is passed at once to the next).
        time.sleep(0.2)
        assert asked < fake.data_calls <= asked + 2 < fake.expected_data_calls()
    finally:
        result.close()


def test_a_dropped_poll_asks_the_api_for_nothing_more(
    fake: FakeApi, app_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    page = fake.largest_page()
    fake.links = profile(3 * page)
    source = app_for(fake).sources["api"]
    assert isinstance(source, ApiSource)

    def calls_since(since: int, want: int | None = None) -> int:
        """Data calls since `since`, once `want` of them have arrived (None: once no
        more have arrived for 0.3 s)."""
        deadline = time.monotonic() + 10
        last, steady_at = -1, time.monotonic()
        while time.monotonic() < deadline:
            now = fake.data_calls - since
            if now == want:
                break
            if now != last:
                last, steady_at = now, time.monotonic()
            elif want is None and time.monotonic() - steady_at > 0.3:
                break
            time.sleep(0.01)
        return fake.data_calls - since

    # Which call is the page asked for ahead once the first row is being stored.
    base = fake.data_calls
    result = source.fetch(fake.site, T0, sleep=lambda s: None)
    next(iter(result.records))
    ahead = calls_since(base)
    result.close()
    # That call is slow, then fails: a poll that went on would retry it.
    base = fake.data_calls
    fake.faults[base + ahead] = Fault(500, "{}", delay=1.0)
    result = source.fetch(fake.site, T0, sleep=lambda s: None)
    records = iter(result.records)
    next(records)
    assert calls_since(base, ahead) == ahead
    with caplog.at_level(logging.INFO):
        records.close()  # the ingest failed, or the daemon stops
        result.close()
        time.sleep(1.5)
    assert fake.data_calls - base == ahead
    assert not [r for r in caplog.records if "retry" in r.getMessage()]


def test_refused_credentials_are_an_error_that_says_what_to_fix(
    fake: FakeApi, app_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fake.links = profile(10)
    fake.refuse_auth = True
    app = app_for(fake)
    assert app.settings.config_path is not None
    write_rule(app.settings.config_path.parent, "health", HEALTH_RULE)
    with caplog.at_level(logging.DEBUG):
        outcome = poll(app, T0)
    assert outcome.status == "error"
    assert "credentials" in (outcome.note or "") and "'api'" in (outcome.note or "")
    assert "sources.api." in (outcome.note or "")
    assert fake.secret not in caplog.text and fake.secret not in (outcome.note or "")
    transitions = app.evaluate(T0)
    assert [(t.rule, t.state) for t in transitions] == [("health", "firing")]


def test_an_empty_answer_for_a_site_with_links_is_suspect(fake: FakeApi, app_for: Any) -> None:
    fake.links = profile(40)
    app = app_for(fake)
    assert poll(app, T0).status == "baseline"
    fake.links = []
    outcome = poll(app, T0 + timedelta(days=1))
    assert outcome.status == "suspect"
    assert states(app) == {"live": 40}


def test_malformed_json_first_is_an_error_later_is_partial(fake: FakeApi, app_for: Any) -> None:
    page = fake.largest_page()
    fake.links = profile(page + 3)
    app = app_for(fake, retries=0)
    fake.faults[1] = Fault(200, "<html>gateway</html>", content_type="text/html")
    first = poll(app, T0)
    assert first.status == "error" and "not JSON" in (first.note or "")
    assert poll(app, T0 + timedelta(hours=1)).status == "baseline"
    fake.faults[fake.data_calls + 2] = Fault(200, '{"truncated": ', content_type="application/json")
    later = poll(app, T0 + timedelta(days=1))
    assert later.status == "partial" and "not JSON" in (later.note or "")
    assert states(app) == {"live": page + 3}


def test_a_slow_server_times_out(fake: FakeApi, app_for: Any) -> None:
    fake.links = profile(5)
    fake.faults[1] = Fault(200, "{}", delay=2.5)
    outcome = poll(app_for(fake, read_timeout="1s", retries=0), T0)
    assert outcome.status == "error"
    assert "no answer within 1s" in (outcome.note or "")


def test_credentials_are_checked_with_the_cheapest_call(fake: FakeApi, app_for: Any) -> None:
    app = app_for(fake)
    source = app.sources["api"]
    assert isinstance(source, ApiSource)
    client = source.client()
    assert "accepted" in source.check_credentials(client)
    assert fake.data_calls == 0  # the data endpoint (which costs) was not called
    fake.refuse_auth = True
    from sources.api import ApiAuthError

    with pytest.raises(ApiAuthError, match=r"sources\.api\."):
        source.check_credentials(client)


def _cli(settings: Path, *args: str) -> tuple[int, str]:
    from click.testing import CliRunner

    from daemon.cli import main

    result = CliRunner().invoke(main, ["-c", str(settings), *args])
    return result.exit_code, result.output


def test_doctor_tests_the_credentials_and_check_needs_none(
    fake: FakeApi, app_for: Any, tmp_path: Path
) -> None:
    app = app_for(fake)
    app.close()
    settings = tmp_path / "settings.toml"
    code, out = _cli(settings, "doctor")
    assert f"ok   source api: {fake.base_url()}" in out and "accepted" in out, out
    assert "all 1 notifier and source secrets are set" in out
    assert fake.data_calls == 0
    fake.refuse_auth = True
    code, out = _cli(settings, "doctor")
    assert code == 1 and "FAIL source api:" in out and "refused the credentials" in out, out
    assert fake.secret not in out
    # Without the secret in the file, check says where the daemon must get it.
    text = settings.read_text(encoding="utf-8")
    secret_line = next(line for line in text.splitlines() if fake.secret in line)
    settings.write_text(text.replace(secret_line + "\n", ""), encoding="utf-8")
    code, out = _cli(settings, "check")
    key = secret_line.split("=")[0].strip()
    assert code == 0 and f"sources.api.{key}: not set here" in out, out
    code, out = _cli(settings, "doctor")
    assert f"FAIL source api: secret {key} is not set" in out
    assert f"LINKWATCH_SOURCES__api__{key.upper()}" in out


def test_a_stop_does_not_wait_for_a_hung_server(fake: FakeApi, app_for: Any) -> None:
    import threading
    import time

    page = fake.largest_page()
    fake.links = profile(page + 1)
    app = app_for(fake)
    fake.faults[2] = Fault(200, "{}", delay=4)  # the second page hangs
    threading.Timer(0.5, app.stopping.set).start()
    started = time.monotonic()
    assert app.poll_source("example.com", "api", T0) == []
    assert time.monotonic() - started < 2.5
    assert app.store.snapshots("example.com") == []  # nothing of the poll stored


def _paged(fake: FakeApi) -> None:
    """Five pages of links; at Bing, where each linked page's links are paged, three pages
    of the first linked page (the profile's links point at 50 pages)."""
    if isinstance(fake, BingFake):
        fake.details_page = 3
        fake.links = profile(50 * 3 * 3)
    else:
        fake.links = profile(5 * fake.largest_page())


def test_a_page_that_comes_again_is_partial_and_loses_nothing(fake: FakeApi, app_for: Any) -> None:
    # The second page answered with the first again (the cursor ignored), then paging on
    # as asked: the rows of the real second page never came, and every link on it would
    # have been missing, then lost.
    _paged(fake)
    app = app_for(fake, retries=0)
    assert poll(app, T0).status == "baseline"
    fake.replays.add(fake.data_calls + 3)
    outcome = poll(app, T0 + timedelta(days=1))
    assert outcome.status == "partial"
    # (Ahrefs pages by a sort key, and says so in its own words.)
    said = "paging does not advance" if fake.kind == "ahrefs" else "paging went back"
    assert said in (outcome.note or "")
    assert (outcome.missing, outcome.lost) == (0, 0)
    assert states(app) == {"live": len(fake.links)}


def test_a_listing_that_keeps_coming_back_stops_at_once(fake: FakeApi, app_for: Any) -> None:
    # Every page after the first is the first again, each with a new cursor: without the
    # check a poll pays for calls without end (no budget is set).
    _paged(fake)
    app = app_for(fake, retries=0)
    assert poll(app, T0).status == "baseline"
    first = fake.data_calls
    fake.replays.update(range(first + 3, first + 1000))
    outcome = poll(app, T0 + timedelta(days=1))
    assert outcome.status == "partial"
    assert fake.data_calls - first <= 3 + 1
    assert states(app) == {"live": len(fake.links)}


def _credential_forms(sent: list[str], secret: str) -> set[str]:
    """Every form a credential the client sent could take in a message: the raw secret, each
    Authorization value whole and its token alone (Basic: base64 of login:password), and
    the token decoded, each also URL-encoded."""
    import base64
    import binascii
    import contextlib
    from urllib.parse import quote, quote_plus

    forms = {secret}
    for value in sent:
        forms.add(value)
        token = value.split(" ", 1)[-1]
        forms.add(token)
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):
            forms.add(base64.b64decode(token, validate=True).decode())
    return forms | {quote(f, safe="") for f in forms} | {quote_plus(f) for f in forms}


@pytest.mark.parametrize("status", [400, 500])
@pytest.mark.parametrize(
    ("fake", "legacy"),
    # Every kind with its own credentials; Moz also with the legacy Access ID + Secret Key
    # (HTTP Basic), which only Moz has.
    [*((kind, False) for kind in sorted(KINDS)), ("moz", True)],
    ids=[*sorted(KINDS), "moz-basic"],
    indirect=["fake"],
)
def test_an_answer_echoing_the_credentials_never_shows_them(
    fake: FakeApi,
    app_for: Any,
    tmp_path: Path,
    status: int,
    legacy: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import re

    from tests.fakes.moz import ACCESS_ID

    sent: list[str] = []

    def echo(request: Any) -> Any:
        from werkzeug import Response

        # As a misconfigured proxy or API might: the request's credentials quoted back.
        auth = request.headers.get("Authorization", "")
        if auth:
            sent.append(auth)
        return Response(
            f"rejected; you sent Authorization: {auth} x-moz-token: "
            f"{request.headers.get('x-moz-token', '')} query: {request.query_string.decode()}",
            status=status,
            content_type="text/plain",
        )

    app_for(fake, retries=0, **({"access_id": ACCESS_ID} if legacy else {})).close()
    write_rule(tmp_path, "health", HEALTH_RULE)
    fake.server.clear()
    fake.server.expect_request(re.compile(".*")).respond_with_handler(echo)
    settings = tmp_path / "settings.toml"

    with caplog.at_level(logging.DEBUG):
        code, polled = _cli(settings, "poll")
    assert code == 1 and f"HTTP {status}" in polled and "rejected" in polled, polled
    # The source_health alert went to the console notifier: its text is in the output too.
    assert "[FIRING" in polled and "unhealthy_sources" in polled, polled
    app = open_app(tmp_path, fake, retries=0, **({"access_id": ACCESS_ID} if legacy else {}))
    try:
        notes = " ".join(s["note"] or "" for s in app.store.snapshots("example.com"))
    finally:
        app.close()
    assert "rejected" in notes
    code, doctored = _cli(settings, "doctor")
    assert code == 1 and "FAIL source api:" in doctored and "rejected" in doctored, doctored
    if fake.kind == "dataforseo" or legacy:
        assert any(value.startswith("Basic ") for value in sent)
    for form in _credential_forms(sent, fake.secret):
        for text in (polled, notes, doctored, caplog.text):
            assert form not in text, form


@pytest.mark.parametrize("given_by", ["file", "environment", "credential"])
def test_an_empty_secret_is_refused_naming_the_key_and_where_it_came_from(
    fake: FakeApi,
    app_for: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    given_by: str,
) -> None:
    app_for(fake).close()
    settings = tmp_path / "settings.toml"
    text = settings.read_text(encoding="utf-8")
    secret_line = next(line for line in text.splitlines() if fake.secret in line)
    key = secret_line.split("=")[0].strip()
    if given_by == "file":
        settings.write_text(text.replace(secret_line, f'{key} = ""'), encoding="utf-8")
        origin = str(settings)
    elif given_by == "environment":
        # An empty variable would win over the file's good value, and send no secret.
        origin = f"environment variable LINKWATCH_SOURCES__api__{key.upper()}"
        monkeypatch.setenv(origin.split()[-1], "")
    else:
        settings.write_text(text.replace(secret_line + "\n", ""), encoding="utf-8")
        creds = tmp_path / "creds"
        creds.mkdir()
        (creds / f"sources__api__{key}").write_text("\n", encoding="utf-8")
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
        origin = f"credential file {creds}/sources__api__{key}"
    for command in ("check", "doctor", "poll"):
        code, out = _cli(settings, command)
        assert code == 2, (command, out)
        assert f"{origin}: sources.api.{key}: " in out and "empty" in out, (command, out)
        assert "Traceback" not in out and "secrets are set" not in out
    assert fake.data_calls == 0 and not fake.server.log


def _d4s_settings(folder: Path, base_url: str) -> Path:
    """Settings whose one source is a DataForSEO block with this `base_url`."""
    (folder / "rules.d").mkdir(exist_ok=True)
    path = folder / "settings.toml"
    path.write_text(
        '[storage]\npath = "linkwatch.db"\n[daemon]\nrules_dir = "rules.d"\n'
        '[[sites]]\ndomain = "example.com"\nsources = ["d4s"]\n'
        f'[sources.d4s]\nkind = "dataforseo"\nbase_url = "{base_url}"\n'
        'login = "seo@example.com"\npassword = "s3cret-key"\n',
        encoding="utf-8",
    )
    return path


def _refused_at_load(settings: Path, message: str) -> None:
    """`check`, `doctor` and `poll` each exit 2 with `message` on sources.d4s.base_url."""
    for command in ("check", "doctor", "poll"):
        code, out = _cli(settings, command)
        assert code == 2, (command, out)
        assert f"{settings}: sources.d4s.base_url: " in out and message in out, (command, out)
        assert "hunter2" not in out and "Traceback" not in out and "InvalidURL" not in out


@pytest.mark.parametrize(
    "base_url",
    [
        "http://user:hunter2@127.0.0.1:18080/",
        "http://:hunter2@127.0.0.1:18080/",
        "https://seo%40example.com@api.example.com/",
        # Refused for its scheme too: the message must not quote it either.
        "ftp://user:hunter2@api.example.com/",
        "user:hunter2@api.example.com/",
    ],
)
def test_a_base_url_with_a_user_or_password_is_refused_unquoted(
    tmp_path: Path, base_url: str
) -> None:
    _refused_at_load(_d4s_settings(tmp_path, base_url), "a user or password")


@pytest.mark.parametrize(
    ("base_url", "message"),
    [
        ("http://127.0.0.1:99999/", "port 99999: expected a port from 1 to 65535"),
        ("http://127.0.0.1:0/", "port 0: expected a port from 1 to 65535"),
        ("http://127.0.0.1:http/", "port 'http': expected a port from 1 to 65535"),
        ("http://[::1]:70000/", "port 70000: expected a port from 1 to 65535"),
        ("http://:8080/", "no host"),
    ],
)
def test_a_base_url_with_a_bad_port_is_refused_at_load(
    tmp_path: Path, base_url: str, message: str
) -> None:
    _refused_at_load(_d4s_settings(tmp_path, base_url), message)


def test_a_base_url_with_a_port_in_range_is_kept(tmp_path: Path) -> None:
    for host in (
        "127.0.0.1:1",
        "127.0.0.1:18080",
        "127.0.0.1:65535",
        "[::1]:443",
        "[::1]",
        "localhost:",
    ):
        settings = _d4s_settings(tmp_path, f"http://{host}/v3")
        code, out = _cli(settings, "check")
        assert code == 0, out
        assert load_settings(settings).sources["d4s"].base_url == (  # type: ignore[union-attr]
            f"http://{host}/v3/"
        )


@pytest.mark.parametrize("name", ["d4s", "seo-d4s"])
def test_poll_doctor_and_check_name_one_variable_for_a_missing_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    settings = _d4s_settings(tmp_path, "http://127.0.0.1:18080/")
    text = settings.read_text(encoding="utf-8").replace('password = "s3cret-key"\n', "")
    settings.write_text(text.replace("d4s", name), encoding="utf-8")
    # As the file spells the name, `-` as `_`: a shell can export it, and it is README's.
    variable = f"LINKWATCH_SOURCES__{name.replace('-', '_')}__PASSWORD"
    code, polled = _cli(settings, "poll")
    assert code == 2 and f"sources.{name}.password: Field required" in polled, polled
    code, doctored = _cli(settings, "doctor")
    assert code == 1 and f"FAIL source {name}: secret password is not set" in doctored
    for out in (polled, doctored):
        assert f"set {variable} " in out and f"sources__{name}__password" in out, out
        assert out.count("LINKWATCH_SOURCES__") == 1, out
    # And that variable is the one the loader reads.
    monkeypatch.setenv(variable, "from-the-environment")
    source = load_settings(settings).sources[name]
    assert source.password.get_secret_value() == "from-the-environment"  # type: ignore[union-attr]
