"""threshold rule: fires while a metric over a window compares to a value."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from alerts.metrics import METRICS
from alerts.rules.context import Check, EvaluationContext
from daemon.templates import Piece, check_template, parse_template, render_template
from daemon.timefmt import format_duration
from daemon.types import PositiveDuration

OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
SUMMARY_FIELDS = frozenset(
    {"site", "rule", "metric", "value", "op", "threshold", "window", "severity"}
)
DEFAULT_SUMMARY = "{site}: {metric} is {value} ({op} {threshold}) over {window}"
_SUMMARY_HINT = "use " + ", ".join("{" + n + "}" for n in sorted(SUMMARY_FIELDS))
MAX_VALUE = 1e12


class ThresholdRuleConfig(BaseModel):
    """A `threshold` rule file as written."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["threshold"]
    metric: Literal[METRICS]  # type: ignore[valid-type]
    window: PositiveDuration
    op: Literal[">", ">=", "<", "<=", "==", "!="]
    # Finite and within any count or percentage a site can have: `inf` or `nan` would
    # make the rule always or never hold without saying so.
    value: float = Field(ge=-MAX_VALUE, le=MAX_VALUE, allow_inf_nan=False)
    sites: list[str] | None = None
    severity: Literal["info", "warning", "critical"] = "warning"
    notify: list[str] = Field(min_length=1)
    summary: str | None = None
    send_resolved: bool = True

    @field_validator("summary")
    @classmethod
    def _known_placeholders(cls, v: str | None) -> str | None:
        return None if v is None else check_template(v, SUMMARY_FIELDS, hint=_SUMMARY_HINT)


def _number(v: float) -> str:
    return str(int(v)) if v == int(v) else f"{v:g}"


@dataclass(frozen=True)
class ThresholdRule:
    """Fires for a site while `metric` over `window` satisfies `op value`."""

    name: str
    metric: str
    window: timedelta
    op: str
    threshold: float
    sites: tuple[str, ...] | None
    severity: str
    notify: tuple[str, ...]
    summary_template: str
    send_resolved: bool
    # The summary, parsed once: rendering reads only these names, never attributes.
    _summary: tuple[Piece, ...] = field(init=False, repr=False, compare=False)

    kind = "threshold"

    @classmethod
    def from_file(cls, name: str, raw: dict[str, Any]) -> ThresholdRule:
        """Validate a parsed rule file (pydantic ValidationError if it is wrong)."""
        return cls.from_config(name, ThresholdRuleConfig.model_validate(raw))

    @classmethod
    def from_config(cls, name: str, cfg: ThresholdRuleConfig) -> ThresholdRule:
        """Build the rule from its validated file."""
        return cls(
            name=name,
            metric=cfg.metric,
            window=cfg.window,
            op=cfg.op,
            threshold=cfg.value,
            sites=tuple(cfg.sites) if cfg.sites is not None else None,
            severity=cfg.severity,
            notify=tuple(cfg.notify),
            summary_template=cfg.summary or DEFAULT_SUMMARY,
            send_resolved=cfg.send_resolved,
        )

    def sites_for(self, ctx: EvaluationContext) -> list[str]:
        """The sites this rule watches: those it names, else every own site."""
        return list(self.sites) if self.sites is not None else ctx.own_sites

    def check(self, ctx: EvaluationContext, site: str) -> Check:
        """Compare the site's metric over the window with the threshold."""
        m = ctx.metrics(site, self.window)
        value = m.value(self.metric) if m is not None else None
        return Check(value, self.holds(value), self.summary(site, value), with_lost_domains=True)

    def holds(self, value: float | None) -> bool | None:
        """Whether the condition holds; None when there is no value (no data is not zero)."""
        if value is None:
            return None
        return OPS[self.op](value, self.threshold)

    def __post_init__(self) -> None:
        pieces = parse_template(self.summary_template, SUMMARY_FIELDS, hint=_SUMMARY_HINT)
        object.__setattr__(self, "_summary", pieces)

    def summary(self, site: str, value: float | None) -> str:
        """The rule's summary line for one site and value."""
        values = dict(
            site=site,
            rule=self.name,
            metric=self.metric,
            value="no data" if value is None else _number(value),
            op=self.op,
            threshold=_number(self.threshold),
            window=format_duration(self.window),
            severity=self.severity,
        )
        return render_template(self._summary, values)
