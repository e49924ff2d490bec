"""link_new rule: tells of individual links gained, those matching a filter, per site."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from alerts.rules.links import LinkRule, LinkRuleConfig


class LinkNewRuleConfig(LinkRuleConfig):
    """A `link_new` rule file as written."""

    kind: Literal["link_new"]


@dataclass(frozen=True, kw_only=True)
class LinkNewRule(LinkRule):
    """Fires for a site when at least `min_count` links matching the filter were gained
    (new, or back after they were lost) in `window`, and names the strongest of them."""

    kind = "link_new"
    change = "gained"
    metric = "new_links"
    default_summary = "{site} gained {links} in {window}"
    default_filtered_summary = "{site} gained {links} ({filter}) in {window}"

    @classmethod
    def from_file(cls, name: str, raw: dict[str, Any]) -> LinkNewRule:
        """Validate a parsed rule file (pydantic ValidationError if it is wrong)."""
        return cls.from_config(name, LinkNewRuleConfig.model_validate(raw))

    @classmethod
    def from_config(cls, name: str, cfg: LinkNewRuleConfig) -> LinkNewRule:
        """Build the rule from its validated file."""
        return cls(**cls.common_fields(name, cfg))
