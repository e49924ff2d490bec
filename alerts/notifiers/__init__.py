"""Notifiers, registered by kind."""

from __future__ import annotations

from typing import Protocol

from alerts.message import AlertMessage
from alerts.notifiers.console import ConsoleNotifier, ConsoleSettings
from alerts.notifiers.email import EmailNotifier, EmailSettings
from alerts.notifiers.slack import SlackNotifier, SlackSettings


class Notifier(Protocol):
    """Something that delivers an alert message, or raises DeliveryError."""

    name: str

    def send(self, message: AlertMessage) -> None:
        """Deliver one message."""


NotifierSettings = SlackSettings | EmailSettings | ConsoleSettings

NOTIFIER_KINDS: dict[str, type[SlackNotifier] | type[EmailNotifier] | type[ConsoleNotifier]] = {
    cls.kind: cls for cls in (SlackNotifier, EmailNotifier, ConsoleNotifier)
}


def build_notifier(name: str, settings: NotifierSettings) -> Notifier:
    """The notifier a settings block describes."""
    cls = NOTIFIER_KINDS[settings.kind]
    return cls(name, settings)  # type: ignore[arg-type]


__all__ = ["NOTIFIER_KINDS", "Notifier", "NotifierSettings", "build_notifier"]
