"""slack notifier: posts Block Kit messages with a bot token through chat.postMessage."""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.error import URLError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from alerts.message import AlertMessage, DeliveryError, Notification
from daemon.types import given_secret

if TYPE_CHECKING:
    # slack_sdk is imported where a client is made or its errors are caught: loading the
    # settings (every command does) must not pay for it (issue 9).
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web import SlackResponse

log = logging.getLogger(__name__)

# The metadata event type of linkwatch's posts; its payload's `key` is the outbox key.
EVENT_TYPE = "linkwatch_alert"
# A channel, private group or DM id, as conversations.history requires.
CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{6,}")
# A message's ts: seconds, a dot, a sequence number.
MESSAGE_TS = re.compile(r"\d{1,12}\.\d{1,9}")
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


# Errors of a reply whose thread (or the channel it was in) is no longer there: the reply
# goes to the top of the configured channel instead.
_THREAD_GONE = frozenset(
    {"thread_not_found", "message_not_found", "channel_not_found", "is_archived", "not_in_channel"}
)


class _ThreadGone(Exception):
    """The thread a reply was meant for cannot take it."""


def make_ref(channel: str, ts: str) -> str:
    """A thread reference: the post's channel id and ts, as JSON."""
    return json.dumps({"channel": channel, "ts": ts}, separators=(",", ":"), sort_keys=True)


def parse_ref(ref: str | None) -> tuple[str, str] | None:
    """(channel id, ts) of a thread reference; None for none, or one that is not ours."""
    if not ref:
        return None
    try:
        data = json.loads(ref)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    channel, ts = data.get("channel"), data.get("ts")
    if not isinstance(channel, str) or not isinstance(ts, str):
        return None
    if not CHANNEL_ID.fullmatch(channel) or not MESSAGE_TS.fullmatch(ts):
        return None
    return channel, ts


def thread_of(notification: Notification) -> tuple[str, str] | None:
    """Where a notification goes: None (the top of the channel) when it tells an alert
    newly firing or is a test; else the thread of its first alert that has one."""
    if notification.starts_thread:
        return None
    for msg in notification.alerts:
        ref = parse_ref(notification.threads.get(msg.fingerprint))
        if ref is not None:
            return ref
    return None


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

    @field_validator("*")
    @classmethod
    def _secret_given(cls, value: Any) -> Any:
        return given_secret(value)


class SlackNotifier:
    """Posts notifications to a Slack channel, each alert's follow-ups in its thread."""

    # Threads: a notification telling any alert newly firing (or a test) is posted at the
    # top of the channel, and its reference (`{"channel": id, "ts": ts}`, JSON) becomes the
    # thread of every alert it told. A notification of reminders, updates or resolutions
    # only is a reply in the thread of its first alert that has one: a grouped message is
    # one post, so it can sit in one thread only (the other alerts' originals are still
    # marked resolved). A resolution also edits the original post (chat.update) to say so;
    # that edit is best effort, logged when it fails, and never makes the reply be posted
    # again.
    #
    # Each post carries message metadata with the outbox key, so a post whose answer never
    # came can be found again (conversations.history, or .replies in a thread) instead of
    # being posted twice.
    kind = "slack"
    Settings = SlackSettings

    def __init__(self, name: str, settings: SlackSettings) -> None:
        from slack_sdk import WebClient
        from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler

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

    def send(self, notification: Notification) -> str:
        """Post the notification and answer its thread reference, or raise DeliveryError."""
        from alerts.render import render_slack

        text, blocks = render_slack(notification)
        metadata = None
        if notification.key:
            first = notification.alerts[0] if notification.alerts else None
            metadata = {
                "event_type": EVENT_TYPE,
                "event_payload": {
                    "key": notification.key,
                    "rule": first.rule if first else "",
                    "site": notification.site,
                    "transition": first.transition if first else "",
                },
            }
        # Before the reply: a retry of this notification marks again (idempotently), so a
        # crash between the two calls cannot leave the original unmarked.
        self._mark_originals(notification)
        thread = thread_of(notification)
        try:
            response = self._post(text, blocks, metadata, thread)
        except _ThreadGone as gone:
            log.warning(
                "slack %s: thread %s is gone (%s); posting at the top of the channel",
                self.settings.channel,
                thread,
                gone,
            )
            thread = None
            response = self._post(text, blocks, metadata, None)
        channel = response.get("channel")
        if isinstance(channel, str) and channel and thread is None:
            self.channel_id = channel
        ts = str(response.get("ts") or "")
        if thread is not None:
            return make_ref(*thread)
        return make_ref(str(channel or self.settings.channel), ts)

    def _post(
        self,
        text: str,
        blocks: list[dict[str, Any]],
        metadata: dict[str, Any] | None,
        thread: tuple[str, str] | None,
    ) -> SlackResponse:
        """chat.postMessage, at the top of the channel or in a thread."""
        import http.client

        from slack_sdk.errors import SlackApiError

        channel = thread[0] if thread else self.settings.channel
        try:
            return self.client.chat_postMessage(
                channel=channel,
                text=text,
                blocks=blocks,
                unfurl_links=False,
                metadata=metadata,
                thread_ts=thread[1] if thread else None,
            )
        except SlackApiError as exc:
            error = str(exc.response.get("error", "")) if exc.response is not None else ""
            if thread is not None and error in _THREAD_GONE:
                raise _ThreadGone(error) from exc
            failure = self._failure(exc, "")
            # A server error may come after the message was posted: look before re-sending.
            status = exc.response.status_code if exc.response is not None else 0
            failure.unsure = status >= 500 or error in _MAYBE_POSTED
            raise failure from exc
        except (OSError, http.client.HTTPException) as exc:
            # No whole answer (timeout, dropped connection, a response cut short): the post
            # may have been made. A URLError means the request never went out whole.
            raise DeliveryError(
                f"slack {channel}: {type(exc).__name__}: {exc}",
                unsure=not isinstance(exc, URLError),
            ) from exc

    def _mark_originals(self, notification: Notification) -> None:
        """Mark the original post of each resolved alert resolved, as best it can."""
        import http.client

        from slack_sdk.errors import SlackApiError

        from alerts.render import mark_resolved

        # The resolution itself is the reply: a failed edit is logged, never retried.
        originals: dict[tuple[str, str], list[AlertMessage]] = {}
        for msg in notification.alerts:
            ref = parse_ref(notification.threads.get(msg.fingerprint))
            if msg.transition == "resolved" and ref is not None:
                originals.setdefault(ref, []).append(msg)
        for (channel, ts), resolved in originals.items():
            try:
                page = self.client.conversations_history(
                    channel=channel, latest=ts, oldest=ts, inclusive=True, limit=1
                )
                original = next((m for m in page.get("messages") or [] if m.get("ts") == ts), None)
                if original is None:
                    log.warning(
                        "slack %s: original post %s not found; not marked resolved",
                        channel,
                        ts,
                    )
                    continue
                old_text = str(original.get("text") or "")
                old_blocks = list(original.get("blocks") or [])
                text, blocks = mark_resolved(old_text, old_blocks, resolved)
                if (text, blocks) != (old_text, old_blocks):
                    self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)
            except SlackApiError as exc:
                error = exc.response.get("error", "") if exc.response is not None else ""
                log.warning(
                    "slack %s: could not mark post %s resolved: %s", channel, ts, error or exc
                )
            except (OSError, http.client.HTTPException) as exc:
                log.warning("slack %s: could not mark post %s resolved: %s", channel, ts, exc)

    def find_sent(self, notification: Notification, since: datetime) -> str | None:
        """The thread reference of Slack's post of this notification (by its key) made
        since `since` — in the thread it would go to, or at the top of the channel — or
        None; DeliveryError when Slack cannot be asked (retryable: try again later)."""
        import http.client

        from slack_sdk.errors import SlackApiError

        if not notification.key:
            return None
        oldest = f"{since.timestamp():.6f}"
        thread = thread_of(notification)
        try:
            if thread is not None:
                channel, ts = thread
                try:
                    if (
                        self._search(
                            notification.key,
                            lambda cursor: self.client.conversations_replies(
                                channel=channel,
                                ts=ts,
                                oldest=oldest,
                                include_all_metadata=True,
                                limit=HISTORY_PAGE,
                                cursor=cursor,
                            ),
                            since,
                        )
                        is not None
                    ):
                        return make_ref(channel, ts)
                except SlackApiError as exc:
                    error = exc.response.get("error", "") if exc.response is not None else ""
                    if error not in _THREAD_GONE:
                        raise
                # The thread may have been gone when the post was made: then it went to
                # the top of the channel.
            top = self._channel_id()
            found = self._search(
                notification.key,
                lambda cursor: self.client.conversations_history(
                    channel=top,
                    oldest=oldest,
                    include_all_metadata=True,
                    limit=HISTORY_PAGE,
                    cursor=cursor,
                ),
                since,
            )
            return make_ref(top, found) if found is not None else None
        except SlackApiError as exc:
            raise self._failure(exc, "conversations.history: ") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise DeliveryError(
                f"slack {self.settings.channel}: conversations.history: {exc}"
            ) from exc

    def _search(
        self, key: str, fetch: Callable[[str | None], SlackResponse], since: datetime
    ) -> str | None:
        """Page through posts (history or a thread's replies) for one with this key: its
        ts, or None."""
        cursor: str | None = None
        for _ in range(HISTORY_PAGES):
            page = fetch(cursor)
            for posted in page.get("messages") or []:
                meta = posted.get("metadata") or {}
                payload = meta.get("event_payload") or {}
                if meta.get("event_type") == EVENT_TYPE and payload.get("key") == key:
                    return str(posted.get("ts") or "")
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if not page.get("has_more") or cursor is None:
                return None
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
