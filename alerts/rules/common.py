"""What every rule kind has: where it looks, who hears, and its alert lifecycle."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from alerts.rules.context import EvaluationContext, MetricNeed
from daemon.types import Duration

# Rule names come from file names and label keys are written by users: both end up in
# commands (`silence add --rule`), fingerprints and messages, so both are kept plain.
RULE_NAME = re.compile(r"[a-z0-9_-]+")
LABEL_KEY = re.compile(r"[a-z_][a-z0-9_]{0,39}")
MAX_LABELS = 20
MAX_LABEL_VALUE = 200
# A `for` or `keep_firing_for` beyond this would hide an alert for longer than any window.
LONGEST_HOLD = timedelta(days=90)
DEFAULT_REPEAT = timedelta(hours=24)


class RuleConfig(BaseModel):
    """The keys every rule file may set besides its kind's own."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    sites: list[str] | None = None
    severity: Literal["info", "warning", "critical"] = "warning"
    notify: list[str] = Field(min_length=1)
    for_: Duration = Field(default=timedelta(0), alias="for")
    keep_firing_for: Duration = timedelta(0)
    # 0s: never remind.
    repeat_interval: Duration = DEFAULT_REPEAT
    send_resolved: StrictBool = True
    labels: dict[str, str] = Field(default_factory=dict, max_length=MAX_LABELS)

    @field_validator("for_", "keep_firing_for")
    @classmethod
    def _bounded_hold(cls, v: timedelta) -> timedelta:
        if v > LONGEST_HOLD:
            raise ValueError("expected a duration between 0s and 90d")
        return v

    @field_validator("repeat_interval")
    @classmethod
    def _sane_repeat(cls, v: timedelta) -> timedelta:
        if timedelta(0) < v < timedelta(minutes=1):
            raise ValueError("expected 0s (never remind) or at least 1m")
        return v

    @field_validator("labels")
    @classmethod
    def _plain_labels(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not LABEL_KEY.fullmatch(key):
                raise ValueError(
                    f"label {key!r}: names are lowercase letters, digits and _ (at most 40),"
                    " starting with a letter or _"
                )
            if len(value) > MAX_LABEL_VALUE or "\n" in value:
                raise ValueError(f"label {key!r}: one line of at most {MAX_LABEL_VALUE} characters")
        return v


def definition_of(raw: dict[str, Any]) -> str:
    """A short digest of a rule file's meaning: an edited rule has another one."""
    text = json.dumps(raw, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, kw_only=True)
class RuleBase:
    """The fields and behaviour every rule kind shares; each kind adds its own `check`."""

    name: str
    sites: tuple[str, ...] | None
    severity: str
    notify: tuple[str, ...]
    for_: timedelta = timedelta(0)
    keep_firing_for: timedelta = timedelta(0)
    repeat_interval: timedelta = DEFAULT_REPEAT
    send_resolved: bool = True
    labels: tuple[tuple[str, str], ...] = ()
    # Digest of the rule file as validated: tells "the rule was changed" apart.
    definition: str = ""

    @staticmethod
    def common(name: str, cfg: RuleConfig) -> dict[str, Any]:
        """The shared fields of a rule built from its validated file."""
        return dict(
            name=name,
            sites=tuple(cfg.sites) if cfg.sites is not None else None,
            severity=cfg.severity,
            notify=tuple(cfg.notify),
            for_=cfg.for_,
            keep_firing_for=cfg.keep_firing_for,
            repeat_interval=cfg.repeat_interval,
            send_resolved=cfg.send_resolved,
            labels=tuple(sorted(cfg.labels.items())),
            definition=definition_of(cfg.model_dump(mode="json", by_alias=True)),
        )

    def sites_for(self, ctx: EvaluationContext) -> list[str]:
        """The sites this rule watches: those it names, else every own site."""
        return list(self.sites) if self.sites is not None else ctx.own_sites

    def inhibited_by(self, site: str) -> tuple[str, ...]:
        """Sites whose unhealthy source holds this rule's alert for `site` in its state:
        a gap in the data must not read as links lost."""
        return (site,)

    def metric_needs(self, ctx: EvaluationContext, site: str) -> tuple[MetricNeed, ...]:
        """The windows `check` will ask about for `site`: computed ahead, together."""
        return ()
