"""config_health: the daemon's built-in alert while its settings or rule files are refused."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from alerts.rules.common import DEFAULT_REPEAT
from alerts.rules.context import Check, EvaluationContext, MetricNeed, quote_note

# Alerts are kept per (rule, site); this one is about the service itself.
SERVICE = "linkwatch"
# The summary quotes this many problems, each clipped; the log has them all.
_SHOWN = 5


@dataclass(frozen=True)
class ConfigHealthRule:
    """Fires while the last reload of settings or rules was refused (the last good
    configuration keeps running); resolves once a reload succeeds."""

    problems: tuple[str, ...]
    notify: tuple[str, ...]

    name = "config_health"
    kind = "config_health"
    metric = "config_problems"
    op = ">"
    threshold = 0.0
    severity = "critical"
    send_resolved = True
    window = timedelta(0)
    for_ = timedelta(0)
    keep_firing_for = timedelta(0)
    repeat_interval = DEFAULT_REPEAT
    labels: tuple[tuple[str, str], ...] = ()
    definition = ""

    def sites_for(self, ctx: EvaluationContext) -> list[str]:
        """The service itself, not a site."""
        return [SERVICE]

    def inhibited_by(self, site: str) -> tuple[str, ...]:
        """Never held: it is about the service, not a site's data."""
        return ()

    def metric_needs(self, ctx: EvaluationContext, site: str) -> tuple[MetricNeed, ...]:
        """None: it reads no links."""
        return ()

    def check(self, ctx: EvaluationContext, site: str) -> Check:
        """How many problems the last refused reload had, and the first few of them."""
        if not self.problems:
            return Check(0.0, False, "settings and rules reloaded without problems")
        shown = "; ".join(quote_note(p) for p in self.problems[:_SHOWN])
        more = len(self.problems) - _SHOWN
        summary = f"configuration refused, the last good one keeps running: {shown}" + (
            f"; and {more} more (see the log)" if more > 0 else ""
        )
        return Check(float(len(self.problems)), True, summary)
