"""slack notifier: posts Block Kit messages with a bot token through chat.postMessage."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler

from alerts.message import AlertMessage, DeliveryError
from alerts.render import render_slack

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


class SlackSettings(BaseModel):
    """Settings of a `slack` notifier."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["slack"]
    token: SecretStr = Field(description="bot token (xoxb-…), chat:write scope")
    channel: str = Field(description="channel name or id, e.g. #seo-alerts")
    base_url: str = Field(
        default="https://slack.com/api/",
        pattern=r"^https?://[^/\s]+(/\S*)?$",
        description="Web API base URL (http or https)",
    )
    timeout: float = Field(default=10.0, gt=0)


class SlackNotifier:
    """Posts each alert to a Slack channel with a bot token (Block Kit plus text fallback)."""

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
            retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=1)],
        )

    def send(self, message: AlertMessage) -> None:
        """Post the alert; raise DeliveryError saying whether a retry can help."""
        text, blocks = render_slack(message)
        try:
            self.client.chat_postMessage(
                channel=self.settings.channel, text=text, blocks=blocks, unfurl_links=False
            )
        except SlackApiError as exc:
            error = str(exc.response.get("error", "")) if exc.response is not None else ""
            status = exc.response.status_code if exc.response is not None else 0
            retry_after: float | None = None
            if status == 429 or error == "ratelimited":
                header = (exc.response.headers or {}).get("Retry-After") or (
                    exc.response.headers or {}
                ).get("retry-after")
                retry_after = float(header) if header and str(header).isdigit() else 30.0
            raise DeliveryError(
                f"slack {self.settings.channel}: {error or f'HTTP {status}'}",
                retryable=error not in _PERMANENT,
                retry_after=retry_after,
            ) from exc
        except OSError as exc:
            raise DeliveryError(f"slack: {exc}") from exc
