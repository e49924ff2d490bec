"""threshold rule: fires while a metric over a window compares to a value."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, StrictBool, field_validator

from alerts.metrics import METRICS
from alerts.rules.common import RuleBase, RuleConfig
from alerts.rules.context import Check, EvaluationContext, MetricNeed
from alerts.rules.links import Domains, Rating, TargetPrefix, describe_filter, make_filter
from daemon.store.reads import LinkFilter
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
    {"site", "rule", "metric", "value", "op", "threshold", "window", "severity", "filter"}
)
DEFAULT_SUMMARY = "{site}: {metric} is {value} ({op} {threshold}) over {window}"
DEFAULT_FILTERED_SUMMARY = "{site}: {metric} ({filter}) is {value} ({op} {threshold}) over {window}"
# {filter} last: it only says something for rules with link filters.
_SUMMARY_HINT = (
    "use " + ", ".join("{" + n + "}" for n in sorted(SUMMARY_FIELDS - {"filter"})) + ", {filter}"
)
MAX_VALUE = 1e12


class ThresholdRuleConfig(RuleConfig):
    """A `threshold` rule file as written."""

    kind: Literal["threshold"]
    metric: Literal[METRICS]  # type: ignore[valid-type]
    window: PositiveDuration
    op: Literal[">", ">=", "<", "<=", "==", "!="]
    # Finite and within any count or percentage a site can have: `inf` or `nan` would
    # make the rule always or never hold without saying so.
    value: float = Field(ge=-MAX_VALUE, le=MAX_VALUE, allow_inf_nan=False)
    summary: str | None = None
    # Link filters (docs/rules.md): with any, every metric counts only matching links.
    dofollow_only: StrictBool = False
    min_domain_rating: Rating | None = None
    watch_domains: Domains | None = None
    target_prefix: TargetPrefix | None = None

    @field_validator("summary")
    @classmethod
    def _known_placeholders(cls, v: str | None) -> str | None:
        return None if v is None else check_template(v, SUMMARY_FIELDS, hint=_SUMMARY_HINT)


def _number(v: float) -> str:
    return str(int(v)) if v == int(v) else f"{v:g}"


@dataclass(frozen=True, kw_only=True)
class ThresholdRule(RuleBase):
    """Fires for a site while `metric` over `window` satisfies `op value`, counting only
    the links its filters (if any) let through."""

    metric: str
    window: timedelta
    op: str
    threshold: float
    summary_template: str
    # Only links matching this count towards the metric (None: every link).
    link_filter: LinkFilter | None = None
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
        link_filter = make_filter(
            dofollow_only=cfg.dofollow_only,
            min_domain_rating=cfg.min_domain_rating,
            domains=cfg.watch_domains,
            target_prefix=cfg.target_prefix,
        )
        default = DEFAULT_SUMMARY if link_filter is None else DEFAULT_FILTERED_SUMMARY
        return cls(
            **RuleBase.common(name, cfg),
            metric=cfg.metric,
            window=cfg.window,
            op=cfg.op,
            threshold=cfg.value,
            summary_template=cfg.summary or default,
            link_filter=link_filter,
        )

    def metric_needs(self, ctx: EvaluationContext, site: str) -> tuple[MetricNeed, ...]:
        """The rule's window of the site, over its filter."""
        return (MetricNeed(site, self.window, link_filter=self.link_filter),)

    def check(self, ctx: EvaluationContext, site: str) -> Check:
        """Compare the site's metric over the window with the threshold."""
        m = ctx.metrics(site, self.window, link_filter=self.link_filter)
        value = m.value(self.metric) if m is not None else None
        # The engine lists lost domains over the rule's `link_filter`: the same links as
        # the metric.
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
            filter=describe_filter(self.link_filter),
        )
        return render_template(self._summary, values)
