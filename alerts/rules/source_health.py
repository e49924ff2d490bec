"""source_health rule: fires while a site's source fails, is partial or suspect, or goes stale."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from alerts.rules.context import Check, EvaluationContext, quote_note
from daemon.timefmt import format_duration
from daemon.types import PositiveDuration

_BAD = ("error", "partial", "suspect")


class SourceHealthRuleConfig(BaseModel):
    """A `source_health` rule file as written."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["source_health"]
    max_age: PositiveDuration | None = Field(
        default=None, description="unhealthy when no complete snapshot is newer than this"
    )
    sites: list[str] | None = None
    severity: Literal["info", "warning", "critical"] = "warning"
    notify: list[str] = Field(min_length=1)
    send_resolved: bool = True


@dataclass(frozen=True)
class SourceHealthRule:
    """Fires for a site while any of its sources' latest poll failed, was partial or
    suspect, or (with `max_age`) has had no complete snapshot for that long."""

    name: str
    max_age: timedelta | None
    sites: tuple[str, ...] | None
    severity: str
    notify: tuple[str, ...]
    send_resolved: bool

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
            name=name,
            max_age=cfg.max_age,
            sites=tuple(cfg.sites) if cfg.sites is not None else None,
            severity=cfg.severity,
            notify=tuple(cfg.notify),
            send_resolved=cfg.send_resolved,
        )

    def sites_for(self, ctx: EvaluationContext) -> list[str]:
        """The sites this rule watches: those it names, else every site."""
        return list(self.sites) if self.sites is not None else ctx.all_sites

    def check(self, ctx: EvaluationContext, site: str) -> Check:
        """Count the site's unhealthy sources and say what is wrong with each."""
        problems = []
        for src in ctx.store.source_health(site, ctx.at):
            if src.latest_status in _BAD:
                problems.append(
                    f"{src.source}: last poll {src.latest_status}: {quote_note(src.latest_note)}"
                )
            elif self.max_age is not None and (
                src.last_accepted_at is None or ctx.at - src.last_accepted_at > self.max_age
            ):
                since = (
                    src.last_accepted_at.isoformat(timespec="seconds")
                    if src.last_accepted_at
                    else "never"
                )
                problems.append(
                    f"{src.source}: no complete snapshot for over "
                    f"{format_duration(self.max_age)} (last {since})"
                )
        if problems:
            summary = f"{site}: {len(problems)} unhealthy source(s): " + "; ".join(problems)
        else:
            summary = f"{site}: all sources healthy"
        return Check(float(len(problems)), bool(problems), summary)
