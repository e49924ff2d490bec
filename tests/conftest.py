"""Real servers on loopback for the tests: a Slack Web API stand-in and an SMTP server."""

from __future__ import annotations

import json
import os
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
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

SLACK_TOKEN = "xoxb-test-token"
SLACK_CHANNELS = {"#seo-alerts": "C0SEOALERTS"}


@dataclass
class SlackStandIn:
    """A loopback server answering chat.postMessage the way Slack's Web API does.

    It checks the bearer token and the channel, enforces Block Kit limits, and can be
    told to answer the next calls with rate limits or errors.
    """

    server: HTTPServer
    messages: list[dict[str, Any]] = field(default_factory=list)
    calls: int = 0
    failures: list[tuple[int, dict[str, Any], dict[str, str]]] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.server.url_for("/api/")

    def fail_next(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        self.failures.append((status, body, headers or {}))

    def handle(self, request: Request) -> Response:
        self.calls += 1
        if self.failures:
            status, body, headers = self.failures.pop(0)
            return Response(
                json.dumps(body), status=status, headers=headers, content_type="application/json"
            )
        if request.headers.get("Authorization") != f"Bearer {SLACK_TOKEN}":
            return _slack({"ok": False, "error": "invalid_auth"})
        if request.is_json:
            args = request.get_json()
        else:
            args = request.form.to_dict()
            if "blocks" in args:
                args["blocks"] = json.loads(args["blocks"])
        channel = args.get("channel")
        if channel not in SLACK_CHANNELS and channel not in SLACK_CHANNELS.values():
            return _slack({"ok": False, "error": "channel_not_found"})
        blocks = args.get("blocks") or []
        if not args.get("text") and not blocks:
            return _slack({"ok": False, "error": "no_text"})
        if len(blocks) > 50 or any(not _block_ok(b) for b in blocks):
            return _slack({"ok": False, "error": "invalid_blocks"})
        self.messages.append(args)
        ts = f"1764000000.{len(self.messages):06d}"
        return _slack(
            {
                "ok": True,
                "channel": SLACK_CHANNELS.get(channel, channel),
                "ts": ts,
                "message": {"type": "message", "text": args.get("text", ""), "ts": ts},
            }
        )


def _slack(body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status=200, content_type="application/json")


def _block_ok(block: dict[str, Any]) -> bool:
    kind = block.get("type")
    if kind == "header":
        text = block.get("text", {})
        return text.get("type") == "plain_text" and 0 < len(text.get("text", "")) <= 150
    if kind == "section":
        text = block.get("text", {})
        return (
            text.get("type") in ("mrkdwn", "plain_text") and 0 < len(text.get("text", "")) <= 3000
        )
    if kind == "context":
        return 0 < len(block.get("elements", [])) <= 10
    return kind in ("divider", "image", "actions")


@pytest.fixture
def slack(httpserver: HTTPServer) -> SlackStandIn:
    stand_in = SlackStandIn(httpserver)
    httpserver.expect_request("/api/chat.postMessage", method="POST").respond_with_handler(
        stand_in.handle
    )
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
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
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
    port = free_port()
    controller = Controller(
        handler, hostname="localhost", port=port, tls_context=server_ctx, require_starttls=True
    )
    controller.start()
    try:
        yield SmtpServer("localhost", port, handler, ca_file)
    finally:
        controller.stop()
