"""Evaluating rules into alert transitions, each transition queued for its notifiers."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime

from alerts.message import AlertMessage
from alerts.rules import Rule
from alerts.rules.context import Check, EvaluationContext
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
    store: Store, rule: Rule, site: str, check: Check, transition: str, at: datetime
) -> AlertMessage:
    """The notification content for one alert transition."""
    lost = (
        store.lost_domains(site, at - rule.window, at, limit=10)
        if transition == "firing" and check.with_lost_domains
        else []
    )
    return AlertMessage(
        transition=transition,
        rule=rule.name,
        site=site,
        severity=rule.severity,
        metric=rule.metric,
        value=check.value,
        op=rule.op,
        threshold=rule.threshold,
        window=format_duration(rule.window),
        summary=check.summary,
        at=at.isoformat(timespec="seconds"),
        lost_domains=tuple(lost),
    )


def evaluate(store: Store, rules: list[Rule], ctx: EvaluationContext) -> list[Transition]:
    """Evaluate every rule for its sites at `ctx.at`; persist changes and queue notifications.

    A firing alert is notified once when it starts firing (and once when it resolves),
    not on every evaluation. A site without data keeps its alert state.
    """
    transitions: list[Transition] = []
    at = ctx.at
    for rule in rules:
        for site in rule.sites_for(ctx):
            try:
                check = rule.check(ctx, site)
            except Exception:
                # One broken rule must not silence the others.
                log.exception("rule %s for %s could not be evaluated", rule.name, site)
                continue
            value, holds = check.value, check.holds
            fp = fingerprint(rule.name, site)
            current = store.alert(fp)
            state = current.state if current is not None else "inactive"
            if holds is None:
                continue
            if holds:
                new_state = "firing"
            elif state == "firing":
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
                payload = build_message(store, rule, site, check, new_state, at).to_payload()
                notify = [(n, f"{fp}:{new_state}:{to_db(at)}:{n}", payload) for n in notifiers]
            saved = store.save_alert(
                fingerprint=fp,
                rule=rule.name,
                site=site,
                state=new_state,
                value=value,
                at=at,
                now=ctx.now,
                expected_state=state,
                notify=notify,
            )
            if not changed or not saved:
                continue
            log.info(
                "alert %s for %s: %s (%s = %s)", rule.name, site, new_state, rule.metric, value
            )
            transitions.append(Transition(rule.name, site, new_state, value, tuple(notifiers)))
    return transitions
