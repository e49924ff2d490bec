"""Notifiers, registered by kind."""

from __future__ import annotations

from typing import Protocol

from alerts.message import Notification
from alerts.notifiers.console import ConsoleNotifier, ConsoleSettings
from alerts.notifiers.email import EmailNotifier, EmailSettings
from alerts.notifiers.slack import SlackNotifier, SlackSettings


class Notifier(Protocol):
    """Something that delivers a notification, or raises DeliveryError."""

    # `send` answers with an opaque thread reference (a Slack post's channel and ts, an
    # e-mail's Message-ID) or None; the outbox keeps it for each alert the notification told
    # was firing and hands it back in `Notification.threads` with that alert's later messages.
    name: str

    def send(self, notification: Notification) -> str | None:
        """Deliver one notification; the reference its alerts' follow-ups thread under."""


NotifierSettings = SlackSettings | EmailSettings | ConsoleSettings

NOTIFIER_KINDS: dict[str, type[SlackNotifier] | type[EmailNotifier] | type[ConsoleNotifier]] = {
    cls.kind: cls for cls in (SlackNotifier, EmailNotifier, ConsoleNotifier)
}


def build_notifier(name: str, settings: NotifierSettings) -> Notifier:
    """The notifier a settings block describes."""
    cls = NOTIFIER_KINDS[settings.kind]
    return cls(name, settings)  # type: ignore[arg-type]


__all__ = ["NOTIFIER_KINDS", "Notifier", "NotifierSettings", "build_notifier"]
