"""slack notifier: posts Block Kit messages with a bot token through chat.postMessage."""

from __future__ import annotations

import http.client
import math
import re
from datetime import datetime
from typing import Literal
from urllib.error import URLError

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler

from alerts.message import AlertMessage, DeliveryError
from alerts.render import render_slack

# The metadata event type of linkwatch's posts; its payload's `key` is the outbox key.
EVENT_TYPE = "linkwatch_alert"
# A channel, private group or DM id, as conversations.history requires.
CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{6,}")
# Enough for a busy alert channel over the minutes a post can have been in flight.
HISTORY_PAGE = 200
HISTORY_PAGES = 5
LIST_PAGES = 20

# Errors that no retry can fix: the token or channel is wrong until a person acts.
_PERMANENT = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "no_permission",
        "missing_scope",
        "invalid_blocks",
        "msg_too_long",
        "too_many_attachments",
        "restricted_action",
    }
)


# Errors Slack may give after it has stored the post.
_MAYBE_POSTED = frozenset(
    {"internal_error", "fatal_error", "request_timeout", "service_unavailable"}
)


class SlackSettings(BaseModel):
    """Settings of a `slack` notifier."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["slack"]
    token: SecretStr = Field(description="bot token (xoxb-…), chat:write scope")
    channel: str = Field(
        min_length=1, max_length=80, description="channel name or id, e.g. #seo-alerts"
    )
    base_url: str = Field(
        default="https://slack.com/api/",
        pattern=r"^https?://[^/\s]+(/\S*)?$",
        description="Web API base URL (http or https)",
    )
    timeout: float = Field(
        default=10.0, gt=0, le=60, allow_inf_nan=False, description="seconds, at most 60"
    )


class SlackNotifier:
    """Posts each alert to a Slack channel with a bot token (Block Kit plus text fallback).

    Each post carries message metadata with the outbox key, so a post whose answer never
    came can be found again with conversations.history instead of being posted twice.
    """

    kind = "slack"
    Settings = SlackSettings

    def __init__(self, name: str, settings: SlackSettings) -> None:
        self.name = name
        self.settings = settings
        base_url = settings.base_url if settings.base_url.endswith("/") else settings.base_url + "/"
        self.client = WebClient(
            token=settings.token.get_secret_value(),
            base_url=base_url,
            timeout=max(1, math.ceil(settings.timeout)),
            # Only failures before the request went out (URLError) are retried here: after
            # a dropped answer Slack may have posted, and the outbox looks before resending.
            retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=1, error_types=[URLError])],
        )
        # conversations.history wants the channel's id; chat.postMessage answers with it.
        self.channel_id: str | None = (
            settings.channel if CHANNEL_ID.fullmatch(settings.channel) else None
        )

    def send(self, message: AlertMessage) -> None:
        """Post the alert; raise DeliveryError saying whether a retry can help."""
        text, blocks = render_slack(message)
        metadata = None
        if message.key:
            metadata = {
                "event_type": EVENT_TYPE,
                "event_payload": {
                    "key": message.key,
                    "rule": message.rule,
                    "site": message.site,
                    "transition": message.transition,
                },
            }
        try:
            response = self.client.chat_postMessage(
                channel=self.settings.channel,
                text=text,
                blocks=blocks,
                unfurl_links=False,
                metadata=metadata,
            )
        except SlackApiError as exc:
            failure = self._failure(exc, "")
            # A server error may come after the message was posted: look before re-sending.
            status = exc.response.status_code if exc.response is not None else 0
            error = str(exc.response.get("error", "")) if exc.response is not None else ""
            failure.unsure = status >= 500 or error in _MAYBE_POSTED
            raise failure from exc
        except (OSError, http.client.HTTPException) as exc:
            # No whole answer (timeout, dropped connection, a response cut short): the post
            # may have been made. A URLError means the request never went out whole.
            raise DeliveryError(
                f"slack {self.settings.channel}: {type(exc).__name__}: {exc}",
                unsure=not isinstance(exc, URLError),
            ) from exc
        channel = response.get("channel")
        if isinstance(channel, str) and channel:
            self.channel_id = channel

    def find_sent(self, message: AlertMessage, since: datetime) -> bool:
        """True when the channel holds a post of this message (by its key) made since
        `since`; DeliveryError when Slack cannot be asked (retryable: try again later)."""
        if not message.key:
            return False
        try:
            channel = self._channel_id()
            cursor: str | None = None
            for _ in range(HISTORY_PAGES):
                page = self.client.conversations_history(
                    channel=channel,
                    oldest=f"{since.timestamp():.6f}",
                    include_all_metadata=True,
                    limit=HISTORY_PAGE,
                    cursor=cursor,
                )
                for posted in page.get("messages") or []:
                    meta = posted.get("metadata") or {}
                    payload = meta.get("event_payload") or {}
                    if meta.get("event_type") == EVENT_TYPE and payload.get("key") == message.key:
                        return True
                cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
                if not page.get("has_more") or cursor is None:
                    return False
        except SlackApiError as exc:
            raise self._failure(exc, "conversations.history: ") from exc
        except OSError as exc:
            raise DeliveryError(
                f"slack {self.settings.channel}: conversations.history: {exc}"
            ) from exc
        raise DeliveryError(
            f"slack {self.settings.channel}: more than {HISTORY_PAGES * HISTORY_PAGE} posts"
            f" since {since.isoformat(timespec='seconds')}, not all searched",
            retryable=False,
        )

    def _channel_id(self) -> str:
        """The configured channel's id: as configured, as Slack last answered, or looked up
        by name with conversations.list (channels:read, groups:read for private ones)."""
        if self.channel_id is not None:
            return self.channel_id
        name = self.settings.channel.removeprefix("#")
        cursor: str | None = None
        for _ in range(LIST_PAGES):
            page = self.client.conversations_list(
                types="public_channel,private_channel",
                exclude_archived=True,
                limit=1000,
                cursor=cursor,
            )
            for channel in page.get("channels") or []:
                if channel.get("name") == name and isinstance(channel.get("id"), str):
                    self.channel_id = str(channel["id"])
                    return self.channel_id
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if cursor is None:
                break
        raise DeliveryError(
            f"slack {self.settings.channel}: conversations.list shows no such channel",
            retryable=False,
        )

    def _failure(self, exc: SlackApiError, what: str) -> DeliveryError:
        """Slack's error answer as a DeliveryError: permanent or not, Retry-After honoured."""
        error = str(exc.response.get("error", "")) if exc.response is not None else ""
        status = exc.response.status_code if exc.response is not None else 0
        retry_after: float | None = None
        if status == 429 or error == "ratelimited":
            header = (exc.response.headers or {}).get("Retry-After") or (
                exc.response.headers or {}
            ).get("retry-after")
            retry_after = float(header) if header and str(header).isdigit() else 30.0
        return DeliveryError(
            f"slack {self.settings.channel}: {what}{error or f'HTTP {status}'}",
            retryable=error not in _PERMANENT,
            retry_after=retry_after,
        )
