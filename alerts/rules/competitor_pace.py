"""competitor_pace rule: fires while a competitor gains referring domains much faster."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, field_validator

from alerts.rules.common import RuleBase, RuleConfig
from alerts.rules.context import Check, EvaluationContext, MetricNeed
from alerts.rules.links import MAX_COUNT, number
from daemon.templates import Piece, check_template, parse_template, render_template
from daemon.timefmt import format_duration
from daemon.types import PositiveDuration

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
        "own",
        "ahead",
        "factor",
    }
)
DEFAULT_SUMMARY = "{site} gained {own} referring domains in {window}; ahead: {ahead}"
_SUMMARY_HINT = "use " + ", ".join("{" + n + "}" for n in sorted(SUMMARY_FIELDS))


class CompetitorPaceRuleConfig(RuleConfig):
    """A `competitor_pace` rule file as written."""

    kind: Literal["competitor_pace"]
    window: PositiveDuration = timedelta(days=30)
    # 1: a competitor merely as fast is ahead (with min_new).
    factor: float = Field(default=2, ge=1, le=1000, allow_inf_nan=False)
    min_new: int = Field(default=5, ge=1, le=MAX_COUNT)
    summary: str | None = None

    @field_validator("summary")
    @classmethod
    def _known_placeholders(cls, v: str | None) -> str | None:
        return None if v is None else check_template(v, SUMMARY_FIELDS, hint=_SUMMARY_HINT)


@dataclass(frozen=True)
class Pace:
    """One competitor's new referring domains over the window, and whether it is ahead;
    `count` None: no data, or not ahead while its own sources have a gap."""

    competitor: str
    count: int | None
    ahead: bool


@dataclass(frozen=True, kw_only=True)
class CompetitorPaceRule(RuleBase):
    """Fires for an own site while a competitor named in its settings gained at least
    `factor` times as many referring domains over `window`, and at least `min_new`."""

    window: timedelta
    factor: float
    min_new: int
    summary_template: str
    _summary: tuple[Piece, ...] = field(init=False, repr=False, compare=False)

    kind = "competitor_pace"
    metric = "new_refdomains"
    op = ">="

    @property
    def threshold(self) -> float:
        """The least a competitor must gain; each check raises it to factor * own."""
        return float(self.min_new)

    @classmethod
    def from_file(cls, name: str, raw: dict[str, Any]) -> CompetitorPaceRule:
        """Validate a parsed rule file (pydantic ValidationError if it is wrong)."""
        return cls.from_config(name, CompetitorPaceRuleConfig.model_validate(raw))

    @classmethod
    def from_config(cls, name: str, cfg: CompetitorPaceRuleConfig) -> CompetitorPaceRule:
        """Build the rule from its validated file."""
        return cls(
            **RuleBase.common(name, cfg),
            window=cfg.window,
            factor=cfg.factor,
            min_new=cfg.min_new,
            summary_template=cfg.summary or DEFAULT_SUMMARY,
        )

    def __post_init__(self) -> None:
        pieces = parse_template(self.summary_template, SUMMARY_FIELDS, hint=_SUMMARY_HINT)
        object.__setattr__(self, "_summary", pieces)

    def bar(self, own: int) -> float:
        """What a competitor must gain to be ahead of a site that gained `own`."""
        return max(float(self.min_new), self.factor * own)

    def metric_needs(self, ctx: EvaluationContext, site: str) -> tuple[MetricNeed, ...]:
        """The window of the site and of each of its competitors."""
        competitors = ctx.competitors.get(site, ())
        if not competitors:
            return ()
        return tuple(MetricNeed(s, self.window) for s in (site, *competitors))

    def check(self, ctx: EvaluationContext, site: str) -> Check:
        """Each competitor's new referring domains against the site's own.

        value: the most any competitor gained (among those ahead, if any); threshold: the
        bar, max(min_new, factor * own). A competitor without data, or one not ahead while
        one of its sources failed (its count may be short), leaves the verdict open unless
        another competitor is ahead.
        """
        competitors = ctx.competitors.get(site, ())
        if not competitors:
            # Nothing to compare with: never fires (and resolves if competitors were removed).
            return Check(None, False, f"{site}: no competitors configured")
        m = ctx.metrics(site, self.window)
        if m is None:
            return Check(None, None, self.summary(site, None, None, None, ()))
        own = m.new_refdomains
        bar = self.bar(own)
        paces = []
        for competitor in competitors:
            cm = ctx.metrics(competitor, self.window)
            count = cm.new_refdomains if cm is not None else None
            ahead = count is not None and count >= bar
            if not ahead and ctx.unhealthy_sources(competitor):
                count = None
            paces.append(Pace(competitor, count, ahead))
        ahead_ones = [p for p in paces if p.ahead]
        known = [p.count for p in paces if p.count is not None]
        if ahead_ones:
            holds: bool | None = True
            value: float | None = float(max(p.count or 0 for p in ahead_ones))
        else:
            holds = None if len(known) < len(paces) else False
            value = float(max(known)) if known else None
        return Check(
            value,
            holds,
            self.summary(site, value, own, bar, tuple(ahead_ones)),
            threshold=bar,
        )

    def summary(
        self,
        site: str,
        value: float | None,
        own: int | None,
        bar: float | None,
        ahead: tuple[Pace, ...],
    ) -> str:
        """The rule's summary line for one site."""
        ranked = sorted(ahead, key=lambda p: (-(p.count or 0), p.competitor))
        values = dict(
            site=site,
            rule=self.name,
            metric=self.metric,
            value="no data" if value is None else number(value),
            op=self.op,
            threshold="no data" if bar is None else number(bar),
            window=format_duration(self.window),
            severity=self.severity,
            own="no data" if own is None else str(own),
            ahead=", ".join(f"{p.competitor} +{p.count}" for p in ranked) or "none",
            factor=number(self.factor),
        )
        return render_template(self._summary, values)
