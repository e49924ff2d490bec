"""spike rule: fires while a window's count is a factor above or below its recent mean."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from alerts.metrics import WINDOW_METRICS
from alerts.rules.common import RuleBase, RuleConfig
from alerts.rules.context import Check, EvaluationContext, MetricNeed
from alerts.rules.links import number
from daemon.templates import Piece, check_template, parse_template, render_template
from daemon.timefmt import format_duration
from daemon.types import LONGEST, PositiveDuration

SUMMARY_FIELDS = frozenset(
    {
        "site",
        "rule",
        "metric",
        "value",
        "op",
        "threshold",
        "window",
        "severity",
        "baseline",
        "windows",
        "factor",
        "direction",
    }
)
DEFAULT_SUMMARY = (
    "{site}: {metric} is {value} over {window} against a mean of {baseline} over the"
    " {windows} windows before (spike {direction}: {op} {threshold})"
)
_SUMMARY_HINT = "use " + ", ".join("{" + n + "}" for n in sorted(SUMMARY_FIELDS))
MAX_REFERENCE = 1e9
# What `op` reads in messages for each direction; for "both" the threshold is the bound
# on the side the value moved to.
_OPS = {"up": ">=", "down": "<=", "both": "beyond"}


class SpikeRuleConfig(RuleConfig):
    """A `spike` rule file as written."""

    kind: Literal["spike"]
    metric: Literal[WINDOW_METRICS]  # type: ignore[valid-type]
    window: PositiveDuration
    baseline_windows: int = Field(default=4, ge=1, le=52)
    # Over 1: a factor of 1 would call every change a spike.
    factor: float = Field(gt=1, le=1000, allow_inf_nan=False)
    direction: Literal["up", "down", "both"] = "up"
    min_reference: float = Field(default=5, ge=0, le=MAX_REFERENCE, allow_inf_nan=False)
    summary: str | None = None

    @field_validator("summary")
    @classmethod
    def _known_placeholders(cls, v: str | None) -> str | None:
        return None if v is None else check_template(v, SUMMARY_FIELDS, hint=_SUMMARY_HINT)

    @model_validator(mode="after")
    def _history_bounded(self) -> SpikeRuleConfig:
        # The current window and its baseline together reach back at most 10 years.
        if self.window * (self.baseline_windows + 1) > LONGEST:
            raise ValueError(
                "window * (baseline_windows + 1) reaches back more than 10 years; use a"
                " shorter window or fewer baseline_windows"
            )
        return self


@dataclass(frozen=True)
class SpikeBounds:
    """The baseline mean and the values the current window must reach to be a spike."""

    mean: float
    upper: float
    lower: float


def spike_bounds(baseline: list[float], factor: float) -> SpikeBounds:
    """Mean of the baseline windows; `upper` is `factor` times it, `lower` that divided by
    `factor` — mirrored for a negative mean (net metrics), so that "up" and "down" mean
    the same for gains and losses: upper = max(f·mean, mean/f), lower = min(f·mean, mean/f)."""
    mean = sum(baseline) / len(baseline)
    a, b = mean * factor, mean / factor
    return SpikeBounds(mean=mean, upper=max(a, b), lower=min(a, b))


def spike_holds(
    current: float, bounds: SpikeBounds, direction: str, min_reference: float
) -> tuple[bool, float]:
    """Whether `current` is a spike, and the bound it is compared with.

    up: current >= upper and current > mean; down: current <= lower and current < mean;
    both: either. In each case max(|current|, |mean|) must reach `min_reference`: for
    counts that is the current value going up and the baseline mean going down, so a
    quiet site moving 1 -> 3 is no spike.
    """
    up = current >= bounds.upper and current > bounds.mean
    down = current <= bounds.lower and current < bounds.mean
    big_enough = max(abs(current), abs(bounds.mean)) >= min_reference
    if direction == "up":
        return up and big_enough, bounds.upper
    if direction == "down":
        return down and big_enough, bounds.lower
    bound = bounds.upper if current >= bounds.mean else bounds.lower
    return (up or down) and big_enough, bound


@dataclass(frozen=True, kw_only=True)
class SpikeRule(RuleBase):
    """Fires for a site while `metric` over the latest `window` is `factor` times above
    (or below) its mean over the `baseline_windows` windows before it."""

    metric: str
    window: timedelta
    baseline_windows: int
    factor: float
    direction: str
    min_reference: float
    summary_template: str
    _summary: tuple[Piece, ...] = field(init=False, repr=False, compare=False)

    kind = "spike"

    @property
    def op(self) -> str:
        """How the value is compared with the computed bound, as messages say it."""
        return _OPS[self.direction]

    @property
    def threshold(self) -> float:
        """No fixed threshold: each check computes its bound (Check.threshold)."""
        return self.factor

    @classmethod
    def from_file(cls, name: str, raw: dict[str, Any]) -> SpikeRule:
        """Validate a parsed rule file (pydantic ValidationError if it is wrong)."""
        return cls.from_config(name, SpikeRuleConfig.model_validate(raw))

    @classmethod
    def from_config(cls, name: str, cfg: SpikeRuleConfig) -> SpikeRule:
        """Build the rule from its validated file."""
        return cls(
            **RuleBase.common(name, cfg),
            metric=cfg.metric,
            window=cfg.window,
            baseline_windows=cfg.baseline_windows,
            factor=cfg.factor,
            direction=cfg.direction,
            min_reference=cfg.min_reference,
            summary_template=cfg.summary or DEFAULT_SUMMARY,
        )

    def __post_init__(self) -> None:
        pieces = parse_template(self.summary_template, SUMMARY_FIELDS, hint=_SUMMARY_HINT)
        object.__setattr__(self, "_summary", pieces)

    def metric_needs(self, ctx: EvaluationContext, site: str) -> tuple[MetricNeed, ...]:
        """The current window and the baseline windows before it."""
        return tuple(
            MetricNeed(site, self.window, ctx.at - k * self.window)
            for k in range(self.baseline_windows + 1)
        )

    def check(self, ctx: EvaluationContext, site: str) -> Check:
        """The current window against the mean of the windows before it; no data for any
        of them is no verdict."""
        values: list[float] = []
        for k in range(self.baseline_windows + 1):
            m = ctx.metrics(site, self.window, ctx.at - k * self.window)
            v = m.value(self.metric) if m is not None else None
            if v is None:
                return Check(None, None, self.summary(site, None, None, None))
            values.append(v)
        current, baseline = values[0], values[1:]
        bounds = spike_bounds(baseline, self.factor)
        holds, bound = spike_holds(current, bounds, self.direction, self.min_reference)
        return Check(
            current,
            holds,
            self.summary(site, current, bounds.mean, bound),
            with_lost_domains=self.metric in ("lost_links", "lost_refdomains"),
            threshold=bound,
        )

    def summary(
        self, site: str, value: float | None, mean: float | None, bound: float | None
    ) -> str:
        """The rule's summary line for one site."""

        def text(v: float | None) -> str:
            return "no data" if v is None else number(round(v, 2))

        values = dict(
            site=site,
            rule=self.name,
            metric=self.metric,
            value=text(value),
            op=self.op,
            threshold=text(bound),
            window=format_duration(self.window),
            severity=self.severity,
            baseline=text(mean),
            windows=str(self.baseline_windows),
            factor=number(self.factor),
            direction=self.direction,
        )
        return render_template(self._summary, values)
