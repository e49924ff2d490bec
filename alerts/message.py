"""The content of one notification, frozen when the alert changes state."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from daemon.store.reads import LostDomain


@dataclass(frozen=True)
class AlertMessage:
    """What a notifier tells: which rule, which site, the value against the threshold."""

    transition: str  # "firing" | "resolved"
    rule: str
    site: str
    severity: str
    metric: str
    value: float | None
    op: str
    threshold: float
    window: str
    summary: str
    at: str
    lost_domains: tuple[LostDomain, ...] = ()
    # Only these recipients still wait for the message (empty: all configured ones).
    recipients: tuple[str, ...] = ()
    # The outbox row's idempotency key, set at delivery (empty outside the outbox, as in
    # notify-test): a notifier that can search its past posts recognises its own by it.
    key: str = ""

    def to_payload(self) -> dict[str, Any]:
        """A JSON-ready dict, as stored in the outbox (the key is the row's own column)."""
        data = asdict(self)
        del data["key"]
        return data

    @classmethod
    def from_payload(cls, payload: dict[str, Any], key: str = "") -> AlertMessage:
        """Rebuild a message from its outbox payload (and the row's idempotency key)."""
        # The outbox keeps its delivery bookkeeping (`_unsure_since`) next to the message.
        data = {k: v for k, v in payload.items() if not k.startswith("_")}
        data["lost_domains"] = tuple(LostDomain(**d) for d in data.get("lost_domains", ()))
        data["recipients"] = tuple(data.get("recipients", ()))
        return cls(**data, key=key)


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
