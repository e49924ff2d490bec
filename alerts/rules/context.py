"""What a rule sees when it is evaluated, and what it answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from alerts.metrics import Metrics, compute_metrics
from daemon.store import Store


@dataclass(frozen=True)
class Check:
    """A rule's verdict for one site: the value, whether the condition holds, a summary.

    `holds` is None when there is no data: the alert keeps the state it had.
    """

    value: float | None
    holds: bool | None
    summary: str
    # Whether the message should list the strongest lost referring domains.
    with_lost_domains: bool = False


@dataclass
class EvaluationContext:
    """One evaluation pass at `at` (real time `now`): the store, the sites, and metrics
    computed once each."""

    store: Store
    at: datetime
    now: datetime
    own_sites: list[str]
    all_sites: list[str]
    _metrics: dict[tuple[str, timedelta], Metrics | None] = field(default_factory=dict)

    def metrics(self, site: str, window: timedelta) -> Metrics | None:
        """The site's metrics over `window` ending at `at` (None without data)."""
        key = (site, window)
        if key not in self._metrics:
            self._metrics[key] = compute_metrics(self.store, site, window, self.at)
        return self._metrics[key]


# Error text can hold anything a file or server said: an alert quotes only its start.
NOTE_LIMIT = 300


def quote_note(note: str | None) -> str:
    """Third-party or error text for an alert summary: one line, at most NOTE_LIMIT long."""
    text = " ".join((note or "").split())
    return text if len(text) <= NOTE_LIMIT else text[: NOTE_LIMIT - 1] + "…"
