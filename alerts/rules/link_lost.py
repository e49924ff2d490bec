"""link_lost rule: tells of individual links lost, those matching a filter, per site."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from alerts.rules.links import LinkRule, LinkRuleConfig


class LinkLostRuleConfig(LinkRuleConfig):
    """A `link_lost` rule file as written."""

    kind: Literal["link_lost"]


@dataclass(frozen=True, kw_only=True)
class LinkLostRule(LinkRule):
    """Fires for a site when at least `min_count` links matching the filter were lost in
    `window`, and names the strongest of them."""

    kind = "link_lost"
    change = "lost"
    metric = "lost_links"
    default_summary = "{site} lost {links} in {window}"
    default_filtered_summary = "{site} lost {links} ({filter}) in {window}"

    @classmethod
    def from_file(cls, name: str, raw: dict[str, Any]) -> LinkLostRule:
        """Validate a parsed rule file (pydantic ValidationError if it is wrong)."""
        return cls.from_config(name, LinkLostRuleConfig.model_validate(raw))

    @classmethod
    def from_config(cls, name: str, cfg: LinkLostRuleConfig) -> LinkLostRule:
        """Build the rule from its validated file."""
        return cls(**cls.common_fields(name, cfg))
