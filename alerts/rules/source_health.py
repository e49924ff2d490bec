"""source_health rule: fires while a site's source fails, is partial or suspect, or goes stale."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, field_validator

from alerts.rules.common import RuleBase, RuleConfig
from alerts.rules.context import UNHEALTHY, Check, EvaluationContext, quote_note
from daemon.templates import Piece, check_template, parse_template, render_template
from daemon.timefmt import format_duration
from daemon.types import PositiveDuration

SUMMARY_FIELDS = frozenset({"site", "rule", "value", "problems", "severity"})
DEFAULT_SUMMARY = "{site}: {value} unhealthy source(s): {problems}"
_SUMMARY_HINT = "use " + ", ".join("{" + n + "}" for n in sorted(SUMMARY_FIELDS))


class SourceHealthRuleConfig(RuleConfig):
    """A `source_health` rule file as written."""

    kind: Literal["source_health"]
    max_age: PositiveDuration | None = Field(
        default=None, description="unhealthy when no complete snapshot is newer than this"
    )
    summary: str | None = None

    @field_validator("summary")
    @classmethod
    def _known_placeholders(cls, v: str | None) -> str | None:
        return None if v is None else check_template(v, SUMMARY_FIELDS, hint=_SUMMARY_HINT)


@dataclass(frozen=True, kw_only=True)
class SourceHealthRule(RuleBase):
    """Fires for a site while any of its sources' latest poll failed, was partial or
    suspect, or (with `max_age`) has had no complete snapshot for that long."""

    max_age: timedelta | None
    summary_template: str = DEFAULT_SUMMARY
    # The summary, parsed once: rendering reads only these names, never attributes.
    _summary: tuple[Piece, ...] = field(init=False, repr=False, compare=False)

    kind = "source_health"
    metric = "unhealthy_sources"
    op = ">"
    threshold = 0.0

    @property
    def window(self) -> timedelta:
        """The staleness limit (zero without one)."""
        return self.max_age or timedelta(0)

    @classmethod
    def from_file(cls, name: str, raw: dict[str, Any]) -> SourceHealthRule:
        """Validate a parsed rule file (pydantic ValidationError if it is wrong)."""
        return cls.from_config(name, SourceHealthRuleConfig.model_validate(raw))

    @classmethod
    def from_config(cls, name: str, cfg: SourceHealthRuleConfig) -> SourceHealthRule:
        """Build the rule from its validated file."""
        return cls(
            **RuleBase.common(name, cfg),
            max_age=cfg.max_age,
            summary_template=cfg.summary or DEFAULT_SUMMARY,
        )

    def __post_init__(self) -> None:
        pieces = parse_template(self.summary_template, SUMMARY_FIELDS, hint=_SUMMARY_HINT)
        object.__setattr__(self, "_summary", pieces)

    def sites_for(self, ctx: EvaluationContext) -> list[str]:
        """The sites this rule watches: those it names, else every site, own or competitor."""
        return list(self.sites) if self.sites is not None else ctx.all_sites

    def inhibited_by(self, site: str) -> tuple[str, ...]:
        """Never held: this rule is what tells of the gap."""
        return ()

    def check(self, ctx: EvaluationContext, site: str) -> Check:
        """Count the site's unhealthy sources and say what is wrong with each; no data
        (no source had polled by then) is not "healthy"."""
        problems = []
        sources = ctx.store.source_health(site, ctx.at)
        if not sources:
            return Check(None, None, f"{site}: no source has polled yet")
        for src in sources:
            # A source's link snapshots and its referring-domains snapshots are judged
            # apart (see Store.source_health); only a source that delivers nothing but
            # referring domains is held to `max_age` by those.
            what = "referring domains " if src.domains else ""
            if src.latest_status in UNHEALTHY:
                problems.append(
                    f"{src.source}: last {what}poll {src.latest_status}:"
                    f" {quote_note(src.latest_note)}"
                )
            elif (
                self.max_age is not None
                and (not src.domains or not src.has_links)
                and (src.last_accepted_at is None or ctx.at - src.last_accepted_at > self.max_age)
            ):
                since = (
                    src.last_accepted_at.isoformat(timespec="seconds")
                    if src.last_accepted_at
                    else "never"
                )
                problems.append(
                    f"{src.source}: no complete {what}snapshot for over "
                    f"{format_duration(self.max_age)} (last {since})"
                )
        if problems:
            values = dict(
                site=site,
                rule=self.name,
                value=str(len(problems)),
                problems="; ".join(problems),
                severity=self.severity,
            )
            summary = render_template(self._summary, values)
        else:
            summary = f"{site}: all sources healthy"
        return Check(float(len(problems)), bool(problems), summary)
