"""The content of notifications, frozen when alerts change state."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from daemon.store.reads import LostDomain

# What an alert message tells: it started firing, it still fires (a reminder), new links
# joined a firing alert (link rules), it resolved — or it is a test of the notifier.
TRANSITIONS = ("firing", "reminder", "update", "resolved", "test")


@dataclass(frozen=True)
class LinkItem:
    """One backlink named in a message: lost, new or restored."""

    refdomain: str
    url_from: str
    url_to: str
    anchor: str | None = None
    domain_rating: float | None = None
    reason: str | None = None


@dataclass(frozen=True)
class AlertMessage:
    """One alert's transition: which rule, which site, the value against the threshold,
    since when it fires and, once resolved, why."""

    transition: str  # one of TRANSITIONS
    rule: str
    site: str
    severity: str
    metric: str
    value: float | None
    op: str
    threshold: float | None
    window: str
    summary: str
    at: str
    kind: str = "threshold"
    fingerprint: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    # When the alert started firing (ISO 8601), and for how long it has fired (a
    # reminder) or fired (resolved), as readable text.
    since: str | None = None
    firing_for: str | None = None
    # Why a resolved alert resolved: restored | window_passed | rule_changed |
    # rule_removed | condition_cleared; `reason_text` says it in a sentence.
    reason: str | None = None
    reason_text: str = ""
    # The strongest lost referring domains (from the same computation as the metric),
    # and how many more there are beyond those listed.
    lost_domains: tuple[LostDomain, ...] = ()
    more_domains: int = 0
    # Individual links (link_lost / link_new rules; restored links of a resolved alert).
    links: tuple[LinkItem, ...] = ()
    more_links: int = 0
    restored: tuple[LinkItem, ...] = ()

    def to_payload(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> AlertMessage:
        """Rebuild a message from its stored dict (older rows lack the newer fields)."""
        names = cls.__dataclass_fields__
        data = {k: v for k, v in payload.items() if k in names}
        data["lost_domains"] = tuple(LostDomain(**d) for d in data.get("lost_domains", ()))
        for key in ("links", "restored"):
            data[key] = tuple(LinkItem(**d) for d in data.get(key, ()))
        data["labels"] = tuple((str(k), str(v)) for k, v in data.get("labels", ()))
        return cls(**data)


@dataclass(frozen=True)
class Notification:
    """What one notifier is told at once: every alert transition of one site gathered
    within `group_wait`, as one message."""

    site: str
    alerts: tuple[AlertMessage, ...]
    # Only these recipients still wait for the message (empty: all configured ones).
    recipients: tuple[str, ...] = ()
    # The outbox row's idempotency key, set at delivery (empty outside the outbox, as in
    # notify-test): a notifier that can search its past posts recognises its own by it.
    key: str = ""
    # Per alert fingerprint: what the notifier answered when it told that alert was
    # firing (a Slack post's channel and ts, an e-mail's Message-ID), so later messages
    # of the same alert go in its thread. Filled at delivery, never stored in the row.
    threads: dict[str, str] = field(default_factory=dict)

    @property
    def test(self) -> bool:
        """True for a notifier test, which tells of no real alert."""
        return any(a.transition == "test" for a in self.alerts)

    @property
    def starts_thread(self) -> bool:
        """True when the message must start a thread of its own rather than reply in an
        earlier one: it tells an alert newly firing (or is a test). Only follow-ups
        (reminders, updates, resolutions) go in the thread of an alert told before."""
        return self.test or any(a.transition == "firing" for a in self.alerts)

    def to_payload(self) -> dict[str, Any]:
        """A JSON-ready dict, as stored in the outbox (key and threads are not)."""
        return {
            "site": self.site,
            "alerts": [a.to_payload() for a in self.alerts],
            "recipients": list(self.recipients),
        }

    @classmethod
    def from_payload(
        cls, payload: dict[str, Any], key: str = "", threads: dict[str, str] | None = None
    ) -> Notification:
        """Rebuild a notification from its outbox payload (and the row's key)."""
        recipients = tuple(payload.get("recipients", ()))
        if "alerts" in payload:
            alerts = tuple(AlertMessage.from_payload(a) for a in payload["alerts"])
            site = str(payload.get("site", alerts[0].site if alerts else ""))
        else:
            # A row queued by an earlier version holds one alert's fields at its top.
            alerts = (AlertMessage.from_payload(payload),)
            site = alerts[0].site
        return cls(site, alerts, recipients, key, dict(threads or {}))

    def with_recipients(self, recipients: tuple[str, ...]) -> Notification:
        """The same notification for fewer recipients."""
        return replace(self, recipients=recipients)


class DeliveryError(Exception):
    """A notifier could not deliver; `retryable` says whether trying again can help."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
        retry_recipients: tuple[str, ...] = (),
        unsure: bool = False,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        # When some recipients got the message: only these are to be tried again.
        self.retry_recipients = retry_recipients
        # No answer came (a timeout, a dropped connection): the message may be out anyway,
        # so a notifier that can look for it does so before sending it again.
        self.unsure = unsure
