"""Evaluating rules into alert transitions, each transition queued for its notifiers."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from alerts.message import AlertMessage
from alerts.metrics import Metrics, compute_metrics
from alerts.rules import Rule
from daemon.store import Store
from daemon.timefmt import format_duration, to_db

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Transition:
    """An alert that changed state and the notifiers it was queued for."""

    rule: str
    site: str
    state: str
    value: float | None
    notifiers: tuple[str, ...]


def fingerprint(rule: str, site: str) -> str:
    """An alert's identity: its rule and site, never its values."""
    return hashlib.sha256(f"{rule}\0{site}".encode()).hexdigest()[:24]


def build_message(
    store: Store, rule: Rule, site: str, value: float | None, transition: str, at: datetime
) -> AlertMessage:
    """The notification content for one alert transition."""
    lost = (
        store.lost_domains(site, at - rule.window, at, limit=10) if transition == "firing" else []
    )
    return AlertMessage(
        transition=transition,
        rule=rule.name,
        site=site,
        severity=rule.severity,
        metric=rule.metric,
        value=value,
        op=rule.op,
        threshold=rule.threshold,
        window=format_duration(rule.window),
        summary=rule.summary(site, value),
        at=at.isoformat(timespec="seconds"),
        lost_domains=tuple(lost),
    )


def evaluate(
    store: Store, rules: list[Rule], own_sites: list[str], at: datetime
) -> list[Transition]:
    """Evaluate every rule for its sites at `at`; persist state changes and queue notifications.

    A firing alert is notified once when it starts firing (and once when it resolves),
    not on every evaluation. A site without data keeps its alert state.
    """
    metrics: dict[tuple[str, timedelta], Metrics | None] = {}
    transitions: list[Transition] = []
    for rule in rules:
        for site in rule.sites or own_sites:
            key = (site, rule.window)
            if key not in metrics:
                metrics[key] = compute_metrics(store, site, rule.window, at)
            m = metrics[key]
            value = m.value(rule.metric) if m is not None else None
            holds = rule.holds(value)
            fp = fingerprint(rule.name, site)
            current = store.alert(fp)
            state = current.state if current is not None else "inactive"
            if holds is None:
                continue
            if holds and state != "firing":
                new_state = "firing"
            elif not holds and state == "firing":
                new_state = "resolved"
            else:
                new_state = state
            changed = new_state != state
            if not changed and current is None:
                continue
            notifiers = (
                rule.notify if changed and (new_state == "firing" or rule.send_resolved) else ()
            )
            notify = []
            if notifiers:
                payload = build_message(store, rule, site, value, new_state, at).to_payload()
                notify = [(n, f"{fp}:{new_state}:{to_db(at)}:{n}", payload) for n in notifiers]
            store.save_alert(
                fingerprint=fp,
                rule=rule.name,
                site=site,
                state=new_state,
                value=value,
                at=at,
                notify=notify,
            )
            if not changed:
                continue
            log.info(
                "alert %s for %s: %s (%s = %s)", rule.name, site, new_state, rule.metric, value
            )
            transitions.append(Transition(rule.name, site, new_state, value, tuple(notifiers)))
    return transitions
