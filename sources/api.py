"""What every backlink API source shares: settings, a polite HTTP client, paging to the end.

An API source fetches the whole profile or says the snapshot is partial: a failure after
the first page, a budget reached or a paging that ends short of the total the API
announced all make the snapshot partial, and a partial snapshot changes no link.
"""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import math
import random
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus, urljoin, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from daemon.textsafe import one_line
from daemon.types import Duration, PositiveDuration, given_secret
from sources.formats.values import parse_datetime
from sources.model import Backlink, SnapshotResult, SourceError

if TYPE_CHECKING:
    # requests is imported where a call is made: settings and reading commands that only
    # name an API source never load it (issue 9).
    import requests


def _new_session() -> requests.Session:
    """A fresh `requests` session."""
    import requests

    return requests.Session()


log = logging.getLogger(__name__)

Sleep = Callable[[float], object]
# How much of an error answer is quoted in a message.
_QUOTED = 300
# Retry-After beyond this is clamped: a server asking for an hour would stall the poll.
MAX_RETRY_AFTER = timedelta(minutes=10)
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})


class ApiError(SourceError):
    """An API call failed for good (after its retries) or answered something unreadable."""

    # The HTTP status the call was refused with (402, 404, ...), None for anything else: an
    # adapter reads what the status means for its API (DataForSEO's 402: no credit).
    status: int | None = None


class RetryableAnswer(ApiError):
    """A successful HTTP answer that says "try again later" in the API's own words (a rate
    limit or a passing fault reported in the body): raised by a call's `check`, it is
    retried like a 429 or a 5xx, with the same backoff and number of attempts."""


class ApiAuthError(ApiError):
    """The API refused the credentials: retrying cannot help, the settings must change."""


class PollStopped(Exception):
    """The daemon is stopping: the poll is dropped where it stands, nothing of it stored."""


class BudgetReached(ApiError):
    """The poll's budget (rows or units) is spent: the snapshot is partial."""


class ApiSettings(BaseModel):
    """Settings every API source has: where, how often, how politely, within what budget."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(description="the API's address (tests point it at a local server)")
    interval: PositiveDuration = Field(
        default=timedelta(days=1), description="how often to poll (each poll costs money)"
    )
    connect_timeout: PositiveDuration = Field(
        default=timedelta(seconds=10), description="how long to wait for a connection"
    )
    read_timeout: PositiveDuration = Field(
        default=timedelta(seconds=120), description="how long to wait for an answer"
    )
    retries: int = Field(
        default=5, ge=0, le=20, description="retries of a call on 429, 5xx or a network error"
    )
    backoff: Duration = Field(
        default=timedelta(seconds=2),
        description="the first retry's wait; doubled each retry, with jitter",
    )
    max_backoff: PositiveDuration = Field(
        default=timedelta(minutes=2), description="the longest wait between retries"
    )
    requests_per_second: float = Field(
        default=2.0,
        ge=0.001,
        le=1000,
        allow_inf_nan=False,
        description="at most this many calls a second (0.001: one every 17 minutes)",
    )
    budget: int | None = Field(
        default=None,
        ge=1,
        description="at most this many rows (or units, where the API charges units) per "
        "poll; reaching it makes the snapshot partial",
    )
    confirm_after: int = Field(
        default=2, ge=1, le=1000, description="absent snapshots before a link is lost"
    )
    suspect_below: float = Field(
        default=0.5,
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="a snapshot smaller than this share of the previous one is suspect",
    )

    @field_validator("*")
    @classmethod
    def _secret_given(cls, value: Any) -> Any:
        return given_secret(value)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if "@" in parts.netloc or "@" in value.partition("/")[0]:
            # Never quoted: what is before the @ is a login and perhaps a password, which
            # `doctor` would print with the URL and requests would send as Basic auth.
            raise ValueError(
                "carries a user or password (user:password@host): give credentials in the "
                "source's own keys (a secret from the environment or a systemd credential), "
                "never in the URL"
            )
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"expected an http(s) URL like https://api.example.com/, got {value!r}"
            )
        if not parts.hostname:
            raise ValueError(f"expected an http(s) URL with a host, got {value!r}: no host")
        # Checked here, not at the first call: requests would refuse it there with a bare
        # InvalidURL, after `check` had passed the settings.
        host_port = parts.netloc.rpartition("]")[2]  # an IPv6 host's colons are in brackets
        # `host:` with nothing after it is the scheme's port (RFC 3986), as requests reads it.
        number = host_port.rpartition(":")[2] if ":" in host_port else ""
        if number:
            digits = number.isascii() and number.isdigit()
            if not (digits and 1 <= int(number) <= 65535):
                shown = number if digits else repr(number)
                raise ValueError(f"port {shown}: expected a port from 1 to 65535 (or none)")
        if parts.query or parts.fragment:
            raise ValueError("the base URL carries no query or fragment")
        # urljoin drops the last path segment without a trailing slash.
        return value if value.endswith("/") else value + "/"


@dataclass
class CallPolicy:
    """How one source's calls are timed out, retried and spaced."""

    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    retries: int = 5
    backoff: float = 2.0
    max_backoff: float = 120.0
    min_interval: float = 0.5
    max_retry_after: float = MAX_RETRY_AFTER.total_seconds()

    @classmethod
    def of(cls, settings: ApiSettings) -> CallPolicy:
        """The policy an API source's settings describe."""
        return cls(
            connect_timeout=settings.connect_timeout.total_seconds(),
            read_timeout=settings.read_timeout.total_seconds(),
            retries=settings.retries,
            backoff=settings.backoff.total_seconds(),
            max_backoff=settings.max_backoff.total_seconds(),
            min_interval=1.0 / settings.requests_per_second,
        )


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Seconds a `Retry-After` header asks for (delta seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


@dataclass
class Pace:
    """When a source last called its API: one per source, shared by all its polls, so
    polling many sites one after another keeps to `requests_per_second` too."""

    last_call: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class ApiClient:
    """A `requests` session with timeouts, a rate limit, and retries with backoff and jitter.

    `sleep` waits between calls; with a `stop` event (the daemon's) it waits on the event
    instead, and a stop ends the poll at once (PollStopped), even in the middle of a call
    that hangs. `clock` is monotonic time, `wall` the epoch time an HTTP date is read by.
    """

    source: str
    policy: CallPolicy
    session: requests.Session = field(default_factory=_new_session)
    sleep: Sleep = time.sleep
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    jitter: Callable[[], float] = random.random
    stop: threading.Event | None = None
    pace: Pace = field(default_factory=Pace)
    # The source's secret values: never quoted, even when an answer echoes them.
    secrets: tuple[str, ...] = ()
    calls: int = 0
    retried: int = 0
    # Set by close(): a call still to come (a page asked for ahead, a retry) is not made.
    closed: bool = False

    def call(
        self,
        method: str,
        url: str,
        *,
        auth_hint: str,
        error_text: Callable[[Any], str | None] = lambda body: None,
        check: Callable[[Any], object] | None = None,
        shaped: Callable[[bytes], Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """The decoded JSON answer of one call; ApiAuthError on 401/403 (with `auth_hint`:
        what to fix), ApiError once retries are spent or the answer is not JSON. `check`
        looks at a decoded answer: a RetryableAnswer it raises is retried with backoff.
        `shaped` decodes an answer of the expected shape faster (see `decode_json`)."""
        import requests

        self._learn(kwargs)
        attempt = 0
        while True:
            wait: float | None = None
            problem: str
            try:
                response = self._send(method, url, **kwargs)
            except requests.Timeout:
                problem = f"no answer within {self.policy.read_timeout:g}s"
            except requests.ConnectionError as exc:
                problem = f"cannot connect: {_reason(exc)}"
            except requests.exceptions.ChunkedEncodingError as exc:
                # The connection dropped while the answer came: a network error like any
                # other, retried (a truncated JSON body would fail to decode anyway).
                problem = f"the answer was cut short: {_reason(exc)}"
            except requests.RequestException as exc:
                raise ApiError(f"{self.source}: {method} {_path(url)}: {_reason(exc)}") from exc
            else:
                status = response.status_code
                if status < 400:
                    body = self._json(response, method, url, shaped)
                    try:
                        if check is not None:
                            check(body)
                    except RetryableAnswer as exc:
                        problem = self.scrub(str(exc))
                    else:
                        return body
                else:
                    said = _said(response, error_text, self.scrub)
                    refused: ApiError | None = None
                    if status in (401, 403):
                        refused = ApiAuthError(
                            f"{self.source}: the API refused the credentials (HTTP {status}"
                            f"{': ' + said if said else ''}); {auth_hint}"
                        )
                    elif status not in RETRIED_STATUSES:
                        refused = ApiError(
                            f"{self.source}: {method} {_path(url)}: HTTP {status}"
                            f"{': ' + said if said else ''}"
                        )
                    if refused is not None:
                        refused.status = status
                        raise refused
                    problem = f"HTTP {status}{': ' + said if said else ''}"
                    asked = retry_after_seconds(response.headers.get("Retry-After"), self.wall())
                    if asked is not None:
                        wait = min(asked, self.policy.max_retry_after)
            if attempt >= self.policy.retries:
                raise ApiError(
                    f"{self.source}: {method} {_path(url)}: {problem}"
                    f" (gave up after {attempt + 1} attempts)"
                )
            if wait is None:
                ceiling = min(self.policy.max_backoff, self.policy.backoff * 2**attempt)
                # "Equal jitter": never less than half the backoff, so a storm still slows us.
                wait = ceiling / 2 + self.jitter() * ceiling / 2
            if self.closed:
                raise PollStopped  # dropped while this call was out: nothing to retry for
            attempt += 1
            self.retried += 1
            log.info(
                "%s: %s %s: %s; retry %d of %d in %.1fs",
                self.source,
                method,
                _path(url),
                problem,
                attempt,
                self.policy.retries,
                wait,
            )
            self._wait(wait)

    def scrub(self, text: str) -> str:
        """`text` with every secret of the source (also URL-encoded, or escaped in a JSON
        string) masked."""
        for secret in self.secrets:
            # A JSON answer may escape `/` as `\/` (PHP's json_encode does), and a
            # base64 token holds `/`.
            escaped = json.dumps(secret)[1:-1]
            forms = {secret, quote(secret, safe=""), quote_plus(secret), escaped}
            forms |= {form.replace("/", "\\/") for form in (secret, escaped)}
            for form in sorted(forms, key=len, reverse=True):
                text = text.replace(form, "***")
        return text

    def _learn(self, kwargs: dict[str, Any]) -> None:
        """Mask also the credentials a call sends in a form of their own: an answer that
        echoes the request's `Authorization: Basic` header holds base64("login:password"),
        in which no form of the password alone appears."""
        tokens: list[str] = []
        auth = kwargs.get("auth")
        if isinstance(auth, tuple) and len(auth) == 2 and all(isinstance(a, str) for a in auth):
            pair = f"{auth[0]}:{auth[1]}"
            # requests encodes a str login and password as latin-1; UTF-8 is what a client
            # that cannot (a password outside latin-1) would send instead.
            for encoding in ("latin-1", "utf-8"):
                try:
                    tokens.append(base64.b64encode(pair.encode(encoding)).decode("ascii"))
                except UnicodeEncodeError:
                    continue
        headers = kwargs.get("headers")
        for name, value in headers.items() if isinstance(headers, dict) else ():
            if str(name).lower() == "authorization" and isinstance(value, str):
                # The value whole, and its credentials without the scheme (`Basic`, `Bearer`).
                tokens.extend(part for part in (value, value.partition(" ")[2]) if part)
        new = [token for token in dict.fromkeys(tokens) if token not in self.secrets]
        if new:
            # Longest first: a value whole is masked before the token it holds.
            self.secrets = tuple(sorted({*self.secrets, *new}, key=len, reverse=True))

    def _wait(self, seconds: float) -> None:
        if self.stop is None:
            self.sleep(seconds)
        elif self.stop.wait(seconds):
            raise PollStopped

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        if self.closed:
            # The poll was dropped (or read to its end) meanwhile: no call is paid for it.
            raise PollStopped
        with self.pace.lock:
            if self.pace.last_call is not None:
                gap = self.pace.last_call + self.policy.min_interval - self.clock()
                if gap > 0:
                    self._wait(gap)
            if self.closed:
                raise PollStopped
            self.pace.last_call = self.clock()
            self.calls += 1
        timeout = (self.policy.connect_timeout, self.policy.read_timeout)
        if self.stop is None:
            return self.session.request(method, url, timeout=timeout, **kwargs)
        return self._interruptible(method, url, timeout, kwargs)

    def _interruptible(
        self, method: str, url: str, timeout: tuple[float, float], kwargs: dict[str, Any]
    ) -> requests.Response:
        """The call, made in a helper thread so that a stop need not wait for a hung server
        (the abandoned thread ends with its timeout, or with the process)."""
        assert self.stop is not None
        done: dict[str, Any] = {}

        def run() -> None:
            try:
                done["response"] = self.session.request(method, url, timeout=timeout, **kwargs)
            except BaseException as exc:  # handed to the caller's thread
                done["error"] = exc

        worker = threading.Thread(target=run, name=f"{self.source} call", daemon=True)
        worker.start()
        # join returns as soon as the call ends; the stop is looked at between joins.
        worker.join(0.05)
        while worker.is_alive():
            if self.stop.is_set():
                raise PollStopped
            worker.join(0.05)
        if "error" in done:
            raise done["error"]
        response: requests.Response = done["response"]
        return response

    def _json(
        self,
        response: requests.Response,
        method: str,
        url: str,
        shaped: Callable[[bytes], Any] | None = None,
    ) -> Any:
        import requests

        try:
            return decode_json(response, shaped)
        except (ValueError, requests.JSONDecodeError) as exc:
            # Masked before it is cut: a secret cut in two would be masked by neither half.
            head = one_line(self.scrub(response.text)[:_QUOTED])
            raise ApiError(
                f"{self.source}: {method} {_path(url)}: the answer is not JSON ({exc}): {head!r}"
            ) from exc

    def close(self) -> None:
        """Close the session's connections; no call is made after this."""
        self.closed = True
        self.session.close()


def decode_json(response: requests.Response, shaped: Callable[[bytes], Any] | None = None) -> Any:
    """An answer's JSON, decoded by msgspec (four times the standard library's speed: in a
    poll of a million links, decoding was most of the fetch).

    `shaped` decodes the answer into the shape the adapter expects, reading only the
    fields it uses (four times faster again); an answer it refuses (msgspec's errors) is
    decoded as any JSON, so the adapter judges it as it would without `shaped`."""
    import msgspec

    if response.encoding is None or response.encoding.lower().replace("_", "-") in _UTF8:
        if shaped is not None:
            try:
                return shaped(response.content)
            except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
                pass
        try:
            return msgspec.json.decode(response.content)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            # What msgspec refuses but the standard library reads (NaN, an out-of-range
            # number as infinity, a lone surrogate, bytes that are not UTF-8 as U+FFFD)
            # reads as it always did; what neither reads gets the standard library's
            # message.
            pass
    return response.json()


_UTF8 = frozenset({"utf-8", "utf8"})


def _path(url: str) -> str:
    # Query strings may carry an API key (Majestic, Bing): never in a message or a log.
    return urlsplit(url).path or "/"


# The part of a requests/urllib3 error that says what happened, without the URL (whose
# query may carry a key) or the pool's internals.
_CAUSES = (
    re.compile(r"\[SSL: [A-Z_]+\] [^'\")]+"),
    re.compile(r"\[Errno -?\d+\] [^'\")]+"),
    re.compile(r"Remote end closed connection without response"),
    re.compile(r"Connection (?:reset|aborted|broken)[^'\")]*"),
    re.compile(r"(?:Read|Connect) timed out"),
)


def _reason(exc: Exception) -> str:
    """What a failed call ran into, briefly, never with its URL."""
    text = str(exc)
    for pattern in _CAUSES:
        if m := pattern.search(text):
            return m.group(0).strip()
    return type(exc).__name__


def _said(
    response: requests.Response,
    error_text: Callable[[Any], str | None],
    scrub: Callable[[str], str],
) -> str:
    """What an error answer says, briefly, its secrets masked by `scrub`: the API's own
    message if it has one."""
    import requests

    try:
        said = error_text(response.json())
    except (ValueError, requests.JSONDecodeError, AttributeError, TypeError, KeyError):
        said = None
    if said is None:
        said = response.text
    # Masked before it is cut: a secret cut in two would be masked by neither half.
    return one_line(scrub(str(said))[:_QUOTED]).strip()


@dataclass
class Page:
    """One page of an API's answer: its links and what it cost."""

    links: list[Backlink]
    # Units or money the call cost, as the API counts it (0 if it does not say).
    cost: float = 0.0
    # The total the API announced (first page), if it announces one.
    total: int | None = None
    # True when the API says there is nothing after this page.
    last: bool = False


@dataclass
class Budget:
    """What is left of a poll's budget, for a source to size its next call by."""

    limit: int | None
    used: float = 0.0

    def left(self) -> int | None:
        """Rows (or units) still allowed, None when there is no limit."""
        return None if self.limit is None else max(0, int(self.limit - self.used))

    def cap(self, page_size: int) -> int:
        """The largest page to ask for next: the page size, or less near the budget's end."""
        left = self.left()
        return page_size if left is None else max(1, min(page_size, left))


class ApiSource(ABC):
    """Base of every API source: pages to the end, within the budget, or the snapshot is partial.

    A subclass implements `pages(site)`, a generator of `Page`s, and `check_credentials()`.
    The first page is fetched when `fetch` is called, so a refused key or a dead server is
    an `error` snapshot (and source health says what to fix); a failure after it makes the
    snapshot partial.
    """

    kind = ""
    cost_unit = "units"
    Settings: type[ApiSettings] = ApiSettings

    def __init__(self, name: str, settings: ApiSettings) -> None:
        self.name = name
        self.settings = settings
        self.pace = Pace()

    def client(self, sleep: Sleep = time.sleep, stop: threading.Event | None = None) -> ApiClient:
        """A fresh client for one poll (or one credentials check)."""
        return ApiClient(
            f"source {self.name!r} ({self.kind})",
            CallPolicy.of(self.settings),
            sleep=sleep,
            stop=stop,
            pace=self.pace,
            secrets=tuple(
                value.get_secret_value()
                for _, value in self.settings
                if isinstance(value, SecretStr) and value.get_secret_value()
            ),
        )

    def url(self, path: str) -> str:
        """An endpoint under the configured base URL."""
        return urljoin(self.settings.base_url, path)

    @abstractmethod
    def pages(self, client: ApiClient, site: str, budget: Budget, now: datetime) -> Iterator[Page]:
        """The site's backlinks, page by page, in the API's own paging."""

    @abstractmethod
    def check_credentials(self, client: ApiClient) -> str:
        """Make the cheapest call that proves the credentials work; what it says (a balance)."""

    def fetch(
        self,
        site: str,
        now: datetime,
        sleep: Sleep = time.sleep,
        stop: threading.Event | None = None,
    ) -> SnapshotResult:
        """One poll of the site: a snapshot whose records page through the API lazily
        (PollStopped once `stop` is set)."""
        client = self.client(sleep, stop)
        budget = Budget(self.settings.budget)
        pages = self.pages(client, site, budget, now)
        try:
            first = next(pages, None)
        except SourceError as exc:
            client.close()
            raise type(exc)(client.scrub(str(exc))) from None
        except PollStopped:
            client.close()
            raise
        except Exception as exc:
            # A value the adapter could not read (a date, a number): the poll fails with the
            # source named, never with a bare traceback.
            client.close()
            raise ApiError(client.scrub(self._unreadable(exc))) from exc
        result = SnapshotResult(
            taken_at=now, records=iter(()), origin=f"{self.kind} API", format=self.kind
        )
        result.records = self._records(result, client, pages, first, budget)
        result.closer = client.close
        return result

    def _records(
        self,
        result: SnapshotResult,
        client: ApiClient,
        pages: Iterator[Page],
        first: Page | None,
        budget: Budget,
    ) -> Iterator[Backlink]:
        rows = 0
        spent = 0.0
        count = 0
        total: int | None = None
        page = first
        paging = PagingCheck(self.name)
        try:
            while page is not None:
                count += 1
                if not (math.isfinite(page.cost) and page.cost >= 0):
                    raise ApiError(f"{self.name}: the API reported a cost of {page.cost!r}")
                paging.check(page.links, count)
                spent += page.cost
                if page.total is not None and total is None:
                    total = page.total
                rows += len(page.links)
                if page.last:
                    yield from page.links
                    break
                budget.used = self.spent(rows, spent)
                over = budget.limit is not None and budget.used >= budget.limit
                # The next page is asked for while this one's rows are stored: the wait for
                # the API (a thread blocked on a socket) overlaps the ledger's work.
                ahead = None if over else _Ahead(pages, f"{self.name} next page")
                yield from page.links
                if ahead is None:
                    raise BudgetReached(
                        f"{self.name}: the budget of {budget.limit:,} {self.budget_unit} per"
                        f" poll was reached after {rows:,} rows; the snapshot is partial (raise"
                        f" sources.{self.name}.budget, or poll less often)"
                    )
                try:
                    page = ahead.take()
                except (SourceError, PollStopped):
                    raise
                except Exception as exc:
                    raise ApiError(self._unreadable(exc)) from exc
            if total is not None and rows < total:
                result.error = (
                    f"{self.name}: the API announced {total:,} links but paging ended after"
                    f" {rows:,}; the snapshot is partial"
                )
        except SourceError as exc:
            result.error = client.scrub(
                f"{exc} (after {rows:,} rows in {count} pages; the snapshot is partial)"
            )
            log.warning("%s", result.error)
        finally:
            result.notes.append(self.cost_note(rows, count, spent, client))
            client.close()

    def _unreadable(self, exc: Exception) -> str:
        return f"source {self.name!r} ({self.kind}): an answer it cannot read: {exc}"

    @property
    def budget_unit(self) -> str:
        """What the budget counts."""
        return "rows"

    def spent(self, rows: int, cost: float) -> float:
        """How much of the budget a poll has used: rows by default."""
        return rows

    def cost_note(self, rows: int, pages: int, cost: float, client: ApiClient) -> str:
        """What the poll cost, for the snapshot's note."""
        retried = f", {client.retried} retried" if client.retried else ""
        # Units read best whole with separators (1,300,000), money with its cents.
        amount = f"{cost:,.0f}" if cost >= 1000 else f"{cost:.4g}"
        spent = f", cost {amount} {self.cost_unit}" if cost else ""
        return f"{rows:,} rows in {pages} pages ({client.calls} calls{retried}){spent}"


class PagingCheck:
    """Refuses a page that repeats an earlier one: the API's paging went back, so rows
    after it may never come (and reading on may never end), while the repeated rows would
    pass for a whole listing."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._previous: frozenset[Backlink] = frozenset()
        self._pages: dict[int, int] = {}

    def check(self, links: list[Backlink], number: int) -> None:
        """ApiError when page `number` is an earlier page again, or repeats two or more rows
        of the page before it, at least half of its own (a lone row listed on both sides
        of a page break may be the API's duplicate or a list shifted by one row, even on a
        last page of one row; a page of them is paging)."""
        rows = frozenset(links)
        if not rows:
            return
        earlier = self._pages.setdefault(hash(rows), number)
        if earlier != number:
            raise ApiError(
                f"{self.name}: page {number} repeats page {earlier}: the API's paging went"
                " back, and rows after it may never come"
            )
        repeated = len(rows & self._previous)
        if repeated > 1 and repeated * 2 >= len(rows):
            raise ApiError(
                f"{self.name}: page {number} repeats {repeated:,} of its {len(rows):,} rows"
                f" from page {number - 1}: the API's paging went back, and rows after it may"
                " never come"
            )
        self._previous = rows


class _Ahead:
    """The next page of a paging generator, fetched in a thread from the moment it is made."""

    def __init__(self, pages: Iterator[Page], name: str) -> None:
        self._pages = pages
        self._page: Page | None = None
        self._error: BaseException | None = None
        # A daemon thread: a poll abandoned mid-call never holds the process open (the call
        # itself ends with its timeout or the poll's stop event).
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._page = next(self._pages, None)
        except BaseException as exc:  # handed to the consuming thread by take()
            self._error = exc

    def take(self) -> Page | None:
        """The page (None at the end), or what fetching it raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._page


def require_dict(value: Any, what: str) -> dict[str, Any]:
    """`value` if it is a JSON object, else an ApiError naming what was expected."""
    if not isinstance(value, dict):
        raise ApiError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


def require_list(value: Any, what: str, *, null_is_empty: bool = False) -> list[Any]:
    """`value` if it is a JSON array, else an ApiError; null counts as empty only where the
    API documents it so (a missing array is never "no more rows")."""
    if value is None and null_is_empty:
        return []
    if value is None:
        raise ApiError(f"{what}: missing from the answer")
    if not isinstance(value, list):
        raise ApiError(f"{what}: expected a JSON array, got {type(value).__name__}")
    return value


def as_text(value: Any) -> str | None:
    """A JSON value as text (None for null or empty)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value)
    return text or None


def as_number(value: Any) -> float | None:
    """A JSON number or numeric string as a float (None for null, empty or not a number)."""
    if type(value) in (int, float):
        return float(value)  # nearly every value: a JSON number, with no other test
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value.strip():
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def as_date(value: Any) -> datetime | None:
    """A JSON date or date-time string as a UTC datetime; None for null, empty, a number or
    text that is no date (an unreadable date is no date, never a failed poll)."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return parse_datetime(value)
    except (ValueError, OverflowError):
        return None


def scaled(value: float | None, top: float) -> float | None:
    """A provider metric on a scale of 0 to `top`, as 0 to 100 (clamped)."""
    if value is None:
        return None
    # max(0.0, min(100.0, x)) to the bit (a zero of either sign and NaN give 0.0 and
    # 100.0 alike), without two calls per metric of a million rows.
    x = value * 100.0 / top
    x = x if x < 100.0 else 100.0
    return x if x > 0.0 else 0.0
