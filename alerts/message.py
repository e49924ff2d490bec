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

    def to_payload(self) -> dict[str, Any]:
        """A JSON-ready dict, as stored in the outbox."""
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> AlertMessage:
        """Rebuild a message from its outbox payload."""
        data = dict(payload)
        data["lost_domains"] = tuple(LostDomain(**d) for d in data.get("lost_domains", ()))
        data["recipients"] = tuple(data.get("recipients", ()))
        return cls(**data)


class DeliveryError(Exception):
    """A notifier could not deliver; `retryable` says whether trying again can help."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
        retry_recipients: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        # When some recipients got the message: only these are to be tried again.
        self.retry_recipients = retry_recipients
