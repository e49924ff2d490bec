"""Real servers on loopback for the tests: a Slack Web API stand-in and an SMTP server."""

from __future__ import annotations

import errno
import json
import os
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from hypothesis import settings
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

# CI runs a modest number of examples; `--hypothesis-profile=deep` runs the long search.
# bench/mutation.sh runs every test once per mutant: fewer examples, always the same.
settings.register_profile("ci", max_examples=150, deadline=None)
settings.register_profile("deep", max_examples=2000, deadline=None)
settings.register_profile("mutation", max_examples=40, deadline=None, derandomize=True)
settings.load_profile(os.environ.get("LINKWATCH_HYPOTHESIS_PROFILE", "ci"))


def _serve_until_stopped(self: HTTPServer) -> None:
    # pytest-httpserver's documented override point. socketserver looks for a stop request
    # every 0.5 s by default, so each test that stops a server of its own waited up to half
    # a second in teardown (a minute over the suite); a stop now takes at most 20 ms.
    assert self.server is not None
    self.server.serve_forever(poll_interval=0.02)


HTTPServer.thread_target = _serve_until_stopped  # type: ignore[method-assign]

SLACK_TOKEN = "xoxb-test-token"
SLACK_CHANNELS = {"#seo-alerts": "C0SEOALERTS"}


# The epoch of the stand-in's message timestamps when it is given no clock.
SLACK_EPOCH = 1764000000


@dataclass
class SlackStandIn:
    """A loopback server answering Slack's Web API the way Slack does, for the methods
    linkwatch calls: chat.postMessage (top level or in a thread), chat.update,
    conversations.history (top-level posts) and conversations.replies.

    It checks the bearer token and the channel, enforces Block Kit limits, keeps every post
    (edited in place by chat.update, as Slack does), and can be told to answer the next
    calls, of any method or of one, with rate limits or errors.
    """

    server: HTTPServer
    # The arguments of every accepted chat.postMessage (thread replies included), in order.
    messages: list[dict[str, Any]] = field(default_factory=list)
    # The arguments of every accepted chat.update, in order.
    updates: list[dict[str, Any]] = field(default_factory=list)
    calls: int = 0
    failures: list[tuple[str | None, int, dict[str, Any], dict[str, str]]] = field(
        default_factory=list
    )
    # Slack's clock for new posts' ts (None: a fixed epoch); the ts sequence is the count
    # of posts, so a subclass stamping ts from the same clock agrees with the store here.
    now: datetime | None = None
    # (channel id, ts) -> the post as conversations.history shows it.
    posts: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.server.url_for("/api/")

    def fail_next(
        self,
        status: int,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
        method: str | None = None,
    ) -> None:
        """Answer the next call (of `method` only, if given) with this status and body."""
        self.failures.append((method, status, body, headers or {}))

    def register(self) -> None:
        """Route the methods to this stand-in."""
        routes = {
            "chat.postMessage": self.handle,
            "chat.update": self.update,
            "conversations.history": self.history,
            "conversations.replies": self.replies,
        }
        for method, handler in routes.items():
            self.server.expect_request(f"/api/{method}").respond_with_handler(handler)

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """A thread's posts, its parent first."""
        return sorted(
            (p for (c, _), p in self.posts.items() if c == channel and p.get("thread_ts") == ts),
            key=lambda p: float(p["ts"]),
        )

    def _begin(self, request: Request, method: str) -> tuple[dict[str, Any], Response | None]:
        """The call's arguments, or the answer to give at once (a queued failure, bad auth)."""
        self.calls += 1
        for i, (only, status, body, headers) in enumerate(self.failures):
            if only is None or only == method:
                del self.failures[i]
                return {}, Response(
                    json.dumps(body),
                    status=status,
                    headers=headers,
                    content_type="application/json",
                )
        if request.headers.get("Authorization") != f"Bearer {SLACK_TOKEN}":
            return {}, _slack({"ok": False, "error": "invalid_auth"})
        # slack_sdk posts chat.* as JSON and sends conversations.* as a query string.
        args: dict[str, Any] = request.get_json() if request.is_json else request.values.to_dict()
        for key in ("blocks", "metadata"):
            if isinstance(args.get(key), str):
                args[key] = json.loads(args[key])
        return args, None

    def _content_error(self, args: dict[str, Any]) -> str | None:
        blocks = args.get("blocks") or []
        if not args.get("text") and not blocks:
            return "no_text"
        if len(str(args.get("text") or "")) > 4000:
            return "msg_too_long"
        if len(blocks) > 50 or any(not _block_ok(b) for b in blocks):
            return "invalid_blocks"
        ids = [b["block_id"] for b in blocks if "block_id" in b]
        if len(ids) != len(set(ids)):
            return "invalid_blocks"
        return None

    def handle(self, request: Request) -> Response:
        """chat.postMessage."""
        args, answer = self._begin(request, "chat.postMessage")
        if answer is not None:
            return answer
        channel = args.get("channel")
        if channel not in SLACK_CHANNELS and channel not in SLACK_CHANNELS.values():
            return _slack({"ok": False, "error": "channel_not_found"})
        channel_id = SLACK_CHANNELS.get(channel, channel)
        error = self._content_error(args)
        if error:
            return _slack({"ok": False, "error": error})
        thread_ts = args.get("thread_ts")
        if thread_ts is not None:
            parent = self.posts.get((channel_id, str(thread_ts)))
            if parent is None:
                return _slack({"ok": False, "error": "thread_not_found"})
            # A reply to a reply joins the parent's thread.
            thread_ts = parent.get("thread_ts") or parent["ts"]
            self.posts[(channel_id, thread_ts)]["thread_ts"] = thread_ts
        self.messages.append(args)
        clock = int(self.now.timestamp()) if self.now is not None else SLACK_EPOCH
        ts = f"{clock}.{len(self.messages):06d}"
        post: dict[str, Any] = {
            "type": "message",
            "ts": ts,
            "text": args.get("text", ""),
            "blocks": args.get("blocks") or [],
            "bot_id": "B0LW",
        }
        if args.get("metadata"):
            post["metadata"] = args["metadata"]
        if thread_ts is not None:
            post["thread_ts"] = thread_ts
        self.posts[(channel_id, ts)] = post
        return _slack(
            {
                "ok": True,
                "channel": channel_id,
                "ts": ts,
                "message": {k: v for k, v in post.items() if k != "metadata"},
            }
        )

    def update(self, request: Request) -> Response:
        """chat.update: the channel (an id) and ts must name a post; it is edited in place."""
        args, answer = self._begin(request, "chat.update")
        if answer is not None:
            return answer
        channel = args.get("channel")
        if channel not in SLACK_CHANNELS.values():
            return _slack({"ok": False, "error": "channel_not_found"})
        post = self.posts.get((channel, str(args.get("ts"))))
        if post is None:
            return _slack({"ok": False, "error": "message_not_found"})
        error = self._content_error(args)
        if error:
            return _slack({"ok": False, "error": error})
        self.updates.append(args)
        if "text" in args:
            post["text"] = args["text"]
        if "blocks" in args:
            post["blocks"] = args["blocks"]
        post["edited"] = {"user": "U0BOT", "ts": post["ts"]}
        return _slack(
            {
                "ok": True,
                "channel": channel,
                "ts": post["ts"],
                "text": post["text"],
                "message": post,
            }
        )

    def history(self, request: Request) -> Response:
        """conversations.history: top-level posts (thread parents too), newest first."""
        args, answer = self._begin(request, "conversations.history")
        if answer is not None:
            return answer
        channel = args.get("channel")
        if channel not in SLACK_CHANNELS.values():
            return _slack({"ok": False, "error": "channel_not_found"})
        top = [
            p
            for (c, ts), p in self.posts.items()
            if c == channel and p.get("thread_ts") in (None, ts)
        ]
        return self._page(args, top, newest_first=True)

    def replies(self, request: Request) -> Response:
        """conversations.replies: a thread's parent, then its replies, oldest first."""
        args, answer = self._begin(request, "conversations.replies")
        if answer is not None:
            return answer
        channel = args.get("channel")
        if channel not in SLACK_CHANNELS.values():
            return _slack({"ok": False, "error": "channel_not_found"})
        parent = self.posts.get((channel, str(args.get("ts"))))
        if parent is None:
            return _slack({"ok": False, "error": "thread_not_found"})
        root = parent.get("thread_ts") or parent["ts"]
        thread = self.thread(channel, root) or [parent]
        # The parent comes first whatever `oldest` says, as on Slack.
        return self._page(args, thread, newest_first=False, keep_first=True)

    def _page(
        self,
        args: dict[str, Any],
        posts: list[dict[str, Any]],
        *,
        newest_first: bool,
        keep_first: bool = False,
    ) -> Response:
        inclusive = str(args.get("inclusive", "")).lower() in ("1", "true")
        oldest = float(args.get("oldest") or 0)
        latest = float(args["latest"]) if args.get("latest") else float("inf")

        def within(p: dict[str, Any]) -> bool:
            ts = float(p["ts"])
            if inclusive:
                return oldest <= ts <= latest
            return oldest < ts < latest

        ordered = sorted(posts, key=lambda p: float(p["ts"]), reverse=newest_first)
        chosen = [p for i, p in enumerate(ordered) if (keep_first and i == 0) or within(p)]
        start = int(args.get("cursor") or 0)
        limit = int(args.get("limit") or 100)
        page = chosen[start : start + limit]
        metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        shown = [{k: v for k, v in p.items() if k != "metadata" or metadata} for p in page]
        more = start + limit < len(chosen)
        return _slack(
            {
                "ok": True,
                "messages": shown,
                "has_more": more,
                "response_metadata": {"next_cursor": str(start + limit) if more else ""},
            }
        )


def _slack(body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status=200, content_type="application/json")


def _text_ok(text: Any, limit: int) -> bool:
    return (
        isinstance(text, dict)
        and text.get("type") in ("mrkdwn", "plain_text")
        and 0 < len(text.get("text", "")) <= limit
    )


def _block_ok(block: dict[str, Any]) -> bool:
    """Block Kit's limits for the blocks linkwatch uses."""
    if len(str(block.get("block_id", ""))) > 255:
        return False
    kind = block.get("type")
    if kind == "header":
        text = block.get("text", {})
        return text.get("type") == "plain_text" and 0 < len(text.get("text", "")) <= 150
    if kind == "section":
        fields = block.get("fields")
        if "text" not in block and not fields:
            return False
        if "text" in block and not _text_ok(block["text"], 3000):
            return False
        return fields is None or (0 < len(fields) <= 10 and all(_text_ok(f, 2000) for f in fields))
    if kind == "context":
        elements = block.get("elements", [])
        return 0 < len(elements) <= 10 and all(
            e.get("type") == "image" or _text_ok(e, 3000) for e in elements
        )
    return kind in ("divider", "image", "actions")


@pytest.fixture
def slack(httpserver: HTTPServer) -> SlackStandIn:
    stand_in = SlackStandIn(httpserver)
    stand_in.register()
    return stand_in


class _Collect:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            (envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content))
        )
        return "250 OK"


def free_port() -> int:
    """A loopback port that was free a moment ago: another process (a parallel test worker)
    may bind it before the caller does; start_smtp retries, refused_port never frees its."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_smtp(make: Callable[[int], Controller]) -> tuple[Controller, int]:
    """Start the controller `make(port)` builds on a free port, with another port if the one
    picked was taken in the meantime (aiosmtpd binds the port it is given, not port 0)."""
    for attempt in range(5):
        port = free_port()
        controller = make(port)
        try:
            controller.start()
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or attempt == 4:
                raise
            continue
        return controller, port
    raise AssertionError("unreachable")


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port where a connection is refused: bound by this fixture but never
    listening, so no other process can start listening there during the test."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


@dataclass
class SmtpServer:
    host: str
    port: int
    handler: _Collect
    ca_file: Path | None = None

    @property
    def messages(self) -> list[tuple[str, list[str], Message]]:
        return self.handler.messages


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A plain SMTP server (aiosmtpd) on loopback."""
    handler = _Collect()
    controller, port = start_smtp(lambda p: Controller(handler, hostname="127.0.0.1", port=p))
    try:
        yield SmtpServer("127.0.0.1", port, handler)
    finally:
        controller.stop()


@pytest.fixture
def tls_smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    """An SMTP server requiring STARTTLS, with a certificate for `localhost` from a test CA."""
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    ca_file = tmp_path / "test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    handler = _Collect()
    controller, port = start_smtp(
        lambda p: Controller(
            handler, hostname="localhost", port=p, tls_context=server_ctx, require_starttls=True
        )
    )
    try:
        yield SmtpServer("localhost", port, handler, ca_file)
    finally:
        controller.stop()
