"""console notifier: prints alerts to standard output (quick start, dry runs)."""

from __future__ import annotations

import sys
from typing import Literal

from pydantic import BaseModel, ConfigDict

from alerts.message import Notification


class ConsoleSettings(BaseModel):
    """Settings of a `console` notifier (none besides its kind)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["console"]


class ConsoleNotifier:
    """Prints each notification to standard output."""

    kind = "console"
    Settings = ConsoleSettings

    def __init__(self, name: str, settings: ConsoleSettings) -> None:
        self.name = name

    def send(self, notification: Notification) -> None:
        """Print the notification's text form (a terminal has no threads to refer to)."""
        # Imported when sending: loading the settings (every command does) must not.
        from alerts.render import render_text

        sys.stdout.write(render_text(notification) + "\n\n")
        sys.stdout.flush()
