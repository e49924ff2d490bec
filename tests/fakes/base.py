"""What every API stand-in shares: a profile of links, recorded calls and injected faults.

A stand-in serves a profile in its provider's documented response shape and paging
(`../shared/reference/samples/api/`), so the adapter under test reads the same JSON it
would read from the real service. Faults are injected by call number: an HTTP status
(with headers), an answer that is not JSON, or a slow answer.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response


@dataclass(frozen=True)
class FakeLink:
    """One link of a stand-in's profile, in neutral terms each stand-in renders its own way."""

    url_from: str
    url_to: str
    anchor: str = ""
    nofollow: bool = False
    rating: float = 50.0  # 0-100, rendered on the provider's scale
    first_seen: str = "2025-01-02"
    lost: bool = False  # marked lost by the provider (served only when lost links are asked)


def profile(n: int, site: str = "example.com", start: int = 0) -> list[FakeLink]:
    """`n` distinct links to `site` from n distinct pages on a few hundred domains."""
    return [
        FakeLink(
            f"https://ref{i % 397}.example.org/page-{i}",
            f"https://{site}/p{i % 50}",
            f"anchor {i}",
            nofollow=i % 7 == 0,
            rating=float(i % 101),
        )
        for i in range(start, start + n)
    ]


@dataclass
class Fault:
    """What a stand-in answers to one call instead of the data."""

    status: int = 500
    body: str = '{"error": "internal error"}'
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    content_type: str = "application/json"


class FakeApi:
    """A backlink API on loopback: serves `links` in the provider's shape, with faults."""

    kind: ClassVar[str] = ""
    # The credentials the stand-in accepts; a settings block with others is refused.
    secret: ClassVar[str] = "s3cret-key"

    def __init__(self, server: HTTPServer, links: list[FakeLink], site: str = "example.com"):
        self.server = server
        self.links = links
        self.site = site
        self.calls: list[dict[str, Any]] = []
        self.faults: dict[int, Fault] = {}
        self.lock = threading.Lock()
        self.data_calls = 0
        self.refuse_auth = False
        # Data calls answered with the last answer of their endpoint instead: paging that
        # goes back (a cursor or page number the service ignored).
        self.replays: set[int] = set()
        self._last: dict[str, Response] = {}

    # --- what a provider module defines ------------------------------------------------

    def settings(self, **extra: Any) -> dict[str, Any]:
        """The settings block of a source pointing at this stand-in (TOML-ready values)."""
        raise NotImplementedError

    def install(self) -> None:
        """Register the provider's endpoints on the server."""
        raise NotImplementedError

    def largest_page(self) -> int:
        """The most links one call may return (for paging tests)."""
        raise NotImplementedError

    def expected_data_calls(self) -> int:
        """The data calls a whole poll of the served profile takes without faults: one per
        page of `largest_page()` links; a provider paged on two levels (Bing: pages of
        linked pages, then pages of each one's links) counts its own."""
        return max(1, math.ceil(len(self.serve_live()) / self.largest_page()))

    # --- shared machinery ----------------------------------------------------------------

    def base_url(self) -> str:
        """The server's root URL, with a trailing slash."""
        return self.server.url_for("/")

    def data(self, request: Request, answer: Any) -> Response:
        """Count a data call, apply any fault injected for it, else answer `answer()`."""
        with self.lock:
            self.data_calls += 1
            number = self.data_calls
            self.calls.append(
                {"path": request.path, "args": dict(request.args), "body": request.get_data()}
            )
            fault = self.faults.pop(number, None)
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            return Response(
                fault.body,
                status=fault.status,
                headers=fault.headers,
                content_type=fault.content_type,
            )
        if number in self.replays and request.path in self._last:
            last = self._last[request.path]
            return Response(last.get_data(), status=last.status, headers=list(last.headers))
        response = answer()
        self._last[request.path] = response
        return response

    @staticmethod
    def json(body: Any, status: int = 200) -> Response:
        """A JSON answer."""
        return Response(json.dumps(body), status=status, content_type="application/json")

    def serve_lost(self) -> list[FakeLink]:
        """The links the provider marks lost."""
        return [link for link in self.links if link.lost]

    def serve_live(self) -> list[FakeLink]:
        """The links the provider lists as live."""
        return [link for link in self.links if not link.lost]
