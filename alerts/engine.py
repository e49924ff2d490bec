"""Evaluating rules into alert lifecycles: pending, firing, reminded, resolved — and why.

The rules are written down in docs/alerting.md; `decide` is the whole state machine.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from alerts.message import AlertMessage, LinkItem
from alerts.rules import Rule
from alerts.rules.context import Check, EvaluationContext, MetricNeed
from daemon.store import AlertState, Silence, Store, Tell
from daemon.store.alerts import ACTIVE
from daemon.store.reads import LostDomain
from daemon.timefmt import format_duration, format_elapsed

log = logging.getLogger(__name__)

# Lost referring domains a message lists; the rest are counted ("+N more").
MESSAGE_DOMAINS = 10
# What an alert remembers of its firing, to tell later which links came back.
EVIDENCE_LIMIT = 200
# Built in, governed by the daemon alone: never "removed" because a command that does
# not watch its configuration evaluates without it.
BUILT_IN = frozenset({"config_health"})

REASONS = {
    "restored": "links were restored",
    "window_passed": "the window moved past the losses",
    "rule_changed": "the rule was changed",
    "rule_removed": "the rule was removed",
    "condition_cleared": "the condition no longer holds",
}


@dataclass(frozen=True)
class Transition:
    """An alert that changed state (or was told again) and the notifiers it was queued for."""

    rule: str
    site: str
    state: str  # pending | firing | reminder | update | resolved | inactive
    value: float | None
    notifiers: tuple[str, ...]
    reason: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    silenced: bool = False


def fingerprint(rule: str, site: str, labels: Sequence[tuple[str, str]] = ()) -> str:
    """An alert's identity: its rule, site and labels, never its values."""
    key = f"{rule}\0{site}"
    if labels:
        key += "\0" + json.dumps(sorted(labels))
    return hashlib.sha256(key.encode()).hexdigest()[:24]


class AlertBook(Protocol):
    """Where alert states live: the database, or memory for what-ifs and backtests."""

    def get(self, fingerprint: str) -> AlertState | None:
        """One alert's state."""

    def alerts(self) -> list[AlertState]:
        """Every alert known."""

    def apply(
        self,
        expected: AlertState | None,
        new: AlertState,
        transitions: list[tuple[str, str | None]],
        tells: list[Tell],
        ctx: EvaluationContext,
    ) -> bool:
        """Record a decision; False when another evaluator changed the alert first."""


class StoredAlertBook:
    """Alert states in the database; decisions queue their messages in the outbox."""

    def __init__(self, store: Store, group_wait: timedelta = timedelta(0)) -> None:
        self.store = store
        self.group_wait = group_wait

    def get(self, fingerprint: str) -> AlertState | None:
        """One alert's state."""
        return self.store.alert_state(fingerprint)

    def alerts(self) -> list[AlertState]:
        """Every alert in the database."""
        return self.store.alert_states()

    def apply(
        self,
        expected: AlertState | None,
        new: AlertState,
        transitions: list[tuple[str, str | None]],
        tells: list[Tell],
        ctx: EvaluationContext,
    ) -> bool:
        """Persist the decision and its messages in one transaction."""
        return self.store.apply_alert(expected, new, transitions, tells, ctx.now, self.group_wait)


@dataclass
class MemoryAlertBook:
    """Alert states in memory: nothing is written and nothing is sent."""

    states: dict[str, AlertState] = field(default_factory=dict)
    told: list[Tell] = field(default_factory=list)

    @classmethod
    def copy_of(cls, store: Store) -> MemoryAlertBook:
        """A book starting from the database's states (for a what-if)."""
        return cls({a.fingerprint: a for a in store.alert_states()})

    def get(self, fingerprint: str) -> AlertState | None:
        """One alert's state."""
        return self.states.get(fingerprint)

    def alerts(self) -> list[AlertState]:
        """Every alert known, by site and rule."""
        return sorted(self.states.values(), key=lambda a: (a.site, a.rule, a.labels))

    def apply(
        self,
        expected: AlertState | None,
        new: AlertState,
        transitions: list[tuple[str, str | None]],
        tells: list[Tell],
        ctx: EvaluationContext,
    ) -> bool:
        """Keep the new state; remember what would have been told."""
        self.states[new.fingerprint] = new
        self.told.extend(tells)
        return True


@dataclass(frozen=True)
class Decision:
    """What one evaluation does to one alert."""

    new: AlertState
    # Recorded transitions (state, reason) and what is told: firing | reminder | update |
    # resolved, or None.
    transitions: list[tuple[str, str | None]]
    tell: str | None
    reason: str | None = None
    reason_text: str = ""
    restored: tuple[LinkItem, ...] = ()
    new_links: tuple[LinkItem, ...] = ()
    # Told late (a firing or resolution that went untold): under a silence it waits.
    late: bool = False


def evaluate(
    store: Store,
    rules: Sequence[Rule],
    ctx: EvaluationContext,
    book: AlertBook | None = None,
) -> list[Transition]:
    """Evaluate every rule for its sites at `ctx.at` and record what changed in `book`
    (default: the database, queueing notifications); alerts of rules or sites no longer
    watched resolve with that reason."""
    book = book if book is not None else StoredAlertBook(store)
    # Silences are made in real time ("for 24h from now"): matched at `now`, not `at`.
    silences = store.silences(ctx.now)
    transitions: list[Transition] = []
    watched: set[str] = set()
    _prepare(rules, ctx)
    for rule in rules:
        for site in rule.sites_for(ctx):
            fp = fingerprint(rule.name, site, rule.labels)
            watched.add(fp)
            try:
                check = _check(rule, ctx, site)
            except Exception:
                # One broken rule must not silence the others.
                log.exception("rule %s for %s could not be evaluated", rule.name, site)
                continue
            prev = book.get(fp)
            decision = decide(prev, rule, site, check, ctx, store)
            if decision is None:
                continue
            t = _record(book, prev, decision, rule, site, check, ctx, store, silences)
            if t is not None:
                transitions.append(t)
    names = {r.name for r in rules}
    for alert in book.alerts():
        if alert.fingerprint in watched:
            continue
        if alert.state not in ACTIVE and alert.told != "firing":
            continue
        if alert.rule in BUILT_IN and alert.rule not in names:
            continue
        removed = alert.rule not in names
        transitions.extend(
            _retire(book, alert, "rule_removed" if removed else "rule_changed", ctx, silences)
        )
    return transitions


def _prepare(rules: Sequence[Rule], ctx: EvaluationContext) -> None:
    """Compute every window the rules ask about, one pass per site: a rule added costs
    only the windows no other rule asks about."""
    needs: list[MetricNeed] = []
    for rule in rules:
        try:
            needs.extend(n for site in rule.sites_for(ctx) for n in rule.metric_needs(ctx, site))
        except Exception:
            # Its check fails too, and is logged there with its name; the others go on.
            continue
    ctx.prepare(needs)


def _check(rule: Rule, ctx: EvaluationContext, site: str) -> Check:
    """The rule's check, held (no data) while a source it depends on is unhealthy."""
    check = rule.check(ctx, site)
    if check.holds is None:
        return check
    held = [s for s in rule.inhibited_by(site) if ctx.unhealthy_sources(s)]
    if held:
        note = ", ".join(f"{s} ({', '.join(ctx.unhealthy_sources(s))})" for s in held)
        return replace(check, holds=None, summary=f"{check.summary} [held: unhealthy {note}]")
    return check


def decide(
    prev: AlertState | None,
    rule: Rule,
    site: str,
    check: Check,
    ctx: EvaluationContext,
    store: Store | None = None,
) -> Decision | None:
    """The state machine of docs/alerting.md for one alert at `ctx.at`; None: no change."""
    if check.holds is None:
        return None  # no data (or held by an unhealthy source): the alert keeps its state
    d = _step(prev, rule, site, check, ctx, store)
    new = d.new if d is not None else prev
    if (
        prev is not None
        and new is not None
        and new.state != "firing"
        and new.told == "firing"
        and (d is None or d.tell is None)
    ):
        # The team last heard "firing" but it no longer fires (its resolution was silenced,
        # say): the resolution is owed, whatever happened since.
        reason = new.reason or "condition_cleared"
        text = REASONS.get(reason, "")
        transitions = d.transitions if d is not None else []
        return Decision(new, transitions, "resolved", reason, text, late=True)
    return d


def _step(
    prev: AlertState | None,
    rule: Rule,
    site: str,
    check: Check,
    ctx: EvaluationContext,
    store: Store | None,
) -> Decision | None:
    """One evaluation's transition, before any owed resolution."""
    at = ctx.at
    state = prev.state if prev is not None else "inactive"
    base = prev or AlertState(
        fingerprint=fingerprint(rule.name, site, rule.labels),
        rule=rule.name,
        kind=rule.kind,
        site=site,
        labels=rule.labels,
        state="inactive",
        value=None,
        since_at=at,
    )
    cur = replace(base, value=check.value, evaluated_at=at, kind=rule.kind)
    if check.holds:
        # The rule as it holds now: an edit it survives is no reason for a later resolve.
        cur = replace(cur, held_at=at, definition=rule.definition)
        if state not in ACTIVE:
            cur = replace(cur, active_at=at, reason=None)
            if rule.for_ <= timedelta(0):
                return _fire(cur, check)
            return Decision(replace(cur, state="pending", since_at=at), [("pending", None)], None)
        if state == "pending":
            assert cur.active_at is not None
            if at - cur.active_at >= rule.for_:
                return _fire(cur, check)
            return Decision(cur, [], None)
        # firing: told late if its firing went untold (silenced), else updates, reminders
        if cur.told != "firing":
            return Decision(cur, [], "firing", late=True)
        told = set(cur.evidence.get("told", ()))
        fresh = tuple(link for link in check.links if _link_id(link) not in told)
        if fresh:
            evidence = dict(cur.evidence)
            evidence["told"] = sorted(told | {_link_id(link) for link in fresh})
            evidence["links"] = _merge_links(evidence.get("links", []), fresh)
            return Decision(
                replace(cur, evidence=evidence), [("update", None)], "update", new_links=fresh
            )
        if (
            rule.repeat_interval > timedelta(0)
            and cur.notified_at is not None
            and at - cur.notified_at >= rule.repeat_interval
        ):
            return Decision(cur, [("reminder", None)], "reminder")
        return Decision(cur, [], None)
    # the condition does not hold
    if state == "pending":
        return Decision(replace(cur, state="inactive", since_at=at), [("inactive", None)], None)
    if state == "firing":
        if (
            rule.keep_firing_for > timedelta(0)
            and prev is not None
            and prev.held_at is not None
            and at - prev.held_at < rule.keep_firing_for
        ):
            return Decision(cur, [], None)
        reason, text, restored = _why_resolved(prev, rule, check, store, at)
        resolved = replace(cur, state="resolved", since_at=at, resolved_at=at, reason=reason)
        return Decision(resolved, [("resolved", reason)], "resolved", reason, text, restored)
    return None  # inactive or resolved: nothing to write


def _fire(cur: AlertState, check: Check) -> Decision:
    evidence: dict[str, Any] = {
        "links": [_link_row(link) for link in check.links[:EVIDENCE_LIMIT]],
        "told": sorted(_link_id(link) for link in check.links),
    }
    fired = replace(
        cur,
        state="firing",
        since_at=cur.evaluated_at or cur.since_at,
        fired_at=cur.evaluated_at,
        resolved_at=None,
        reason=None,
        evidence=evidence,
    )
    return Decision(fired, [("firing", None)], "firing")


def _link_id(link: LinkItem) -> str:
    return f"{link.url_from}\0{link.url_to}"


def _link_row(link: LinkItem) -> dict[str, Any]:
    return {
        "refdomain": link.refdomain,
        "url_from": link.url_from,
        "url_to": link.url_to,
        "anchor": link.anchor,
        "domain_rating": link.domain_rating,
        "reason": link.reason,
    }


def _merge_links(known: list[dict[str, Any]], fresh: tuple[LinkItem, ...]) -> list[dict[str, Any]]:
    return [*known, *(_link_row(link) for link in fresh)][:EVIDENCE_LIMIT]


def _why_resolved(
    prev: AlertState | None, rule: Rule, check: Check, store: Store | None, at: datetime
) -> tuple[str, str, tuple[LinkItem, ...]]:
    """The reason code, a sentence saying it, and the links that came back."""
    value = _number(check.value)
    threshold = check.threshold if check.threshold is not None else rule.threshold
    now_text = f"{rule.metric} is now {value} (threshold {rule.op} {_number(threshold)})"
    if prev is not None and prev.definition and prev.definition != rule.definition:
        return "rule_changed", f"the rule was changed; under it {now_text}", ()
    evidence = [LinkItem(**row) for row in (prev.evidence.get("links", []) if prev else [])]
    # Only a later window can have moved past the losses (a what-if may look earlier).
    later = prev is not None and prev.fired_at is not None and at > prev.fired_at
    if evidence and store is not None and prev is not None and later:
        # As of the evaluated instant: a replay or what-if must not cite later returns.
        back = set(store.live_at(prev.site, [_triple(link) for link in evidence], at))
        restored = tuple(link for link in evidence if _triple(link) in back)
        if restored:
            names = ", ".join(dict.fromkeys(link.refdomain for link in restored))
            return (
                "restored",
                f"links were restored ({len(restored)} of {len(evidence)}: {names}); {now_text}",
                restored,
            )
        window = format_duration(rule.window)
        return (
            "window_passed",
            f"the {window} window moved past the losses: the {len(evidence)} lost links "
            "have not come back; the losses stand",
            (),
        )
    return "condition_cleared", f"the condition no longer holds: {now_text}", ()


def _triple(link: LinkItem) -> tuple[str, str, str]:
    return (link.refdomain, link.url_from, link.url_to)


def _number(value: float | None) -> str:
    if value is None:
        return "no data"
    return str(int(value)) if value == int(value) else f"{value:g}"


def _retire(
    book: AlertBook,
    alert: AlertState,
    reason: str,
    ctx: EvaluationContext,
    silences: list[Silence],
) -> list[Transition]:
    """Resolve (or, if only pending, drop) an alert its rule no longer makes, and tell the
    resolution to whoever heard it fire (once no silence covers it)."""
    at = ctx.at
    new = alert
    recorded: list[tuple[str, str | None]] = []
    if alert.state == "pending":
        new = replace(alert, state="inactive", since_at=at, evaluated_at=at)
        recorded = [("inactive", reason)]
    elif alert.state == "firing":
        new = replace(
            alert, state="resolved", since_at=at, resolved_at=at, reason=reason, evaluated_at=at
        )
        recorded = [("resolved", reason)]
    why = new.reason or reason
    text = (
        "the rule was removed"
        if why == "rule_removed"
        else "the rule was changed and no longer watches this site"
    )
    tells: list[Tell] = []
    notifiers: tuple[str, ...] = ()
    silenced = any(s.matches(alert.rule, alert.site, ctx.now) for s in silences)
    if new.told == "firing":
        # A removed rule's notifiers and send_resolved are those it had, kept with the alert.
        kept = tuple(str(n) for n in new.evidence.get("notify", []))
        if not new.evidence.get("send_resolved", True) or not kept:
            if not kept:
                log.warning(
                    "alert %s for %s resolved (%s): no notifier is known to tell",
                    alert.rule,
                    alert.site,
                    why,
                )
            new = replace(new, told="resolved")
        elif not silenced or recorded:
            message = _message_for_alert(alert, "resolved", why, text, at)
            tells = [Tell(n, message, silenced=silenced) for n in kept]
            if not silenced:
                notifiers = kept
                new = replace(new, told="resolved")
    if not recorded and not notifiers and new == alert:
        return []  # nothing changes: its resolution waits for the silence to end
    if not book.apply(alert, new, recorded, tells, ctx):
        return []
    state = recorded[0][0] if recorded else "resolved"
    log.info("alert %s for %s: %s (%s)", alert.rule, alert.site, state, why)
    return [
        Transition(
            alert.rule,
            alert.site,
            state,
            alert.value,
            notifiers,
            why,
            alert.labels,
            silenced and bool(tells),
        )
    ]


def _message_for_alert(
    alert: AlertState, transition: str, reason: str, text: str, at: datetime
) -> dict[str, Any]:
    """A resolved message built from what the alert remembers (its rule is gone)."""
    shown = alert.evidence.get("shown", {})
    return AlertMessage(
        transition=transition,
        rule=alert.rule,
        site=alert.site,
        severity=str(shown.get("severity", "warning")),
        metric=str(shown.get("metric", "")),
        value=alert.value,
        op=str(shown.get("op", "")),
        threshold=shown.get("threshold"),
        window=str(shown.get("window", "")),
        summary=str(shown.get("summary", f"{alert.site}: {alert.rule}")),
        at=at.isoformat(timespec="seconds"),
        kind=alert.kind,
        fingerprint=alert.fingerprint,
        labels=alert.labels,
        since=alert.fired_at.isoformat(timespec="seconds") if alert.fired_at else None,
        firing_for=format_elapsed(at - alert.fired_at) if alert.fired_at else None,
        reason=reason,
        reason_text=text,
    ).to_payload()


def _record(
    book: AlertBook,
    prev: AlertState | None,
    d: Decision,
    rule: Rule,
    site: str,
    check: Check,
    ctx: EvaluationContext,
    store: Store,
    silences: list[Silence],
) -> Transition | None:
    """Apply one decision: its state, history and messages; the transition, if any."""
    new = d.new
    transitions = list(d.transitions)
    tells: list[Tell] = []
    notifiers: tuple[str, ...] = ()
    silenced = any(s.matches(rule.name, site, ctx.now) for s in silences)
    tell = d.tell
    if tell == "resolved" and (new.told != "firing" or not rule.send_resolved):
        # Nobody heard it fire (silenced throughout), or resolutions are not wanted: either
        # way nothing more is owed.
        new = replace(new, told="resolved")
        tell = None
    if silenced and tell is not None and (tell == "reminder" or d.late):
        # Reminders and late tellings wait for the silence to end.
        transitions = [t for t in transitions if t[0] != "reminder"]
        tell = None
    lost: list[LostDomain] = []
    if tell in ("firing", "reminder") and check.with_lost_domains:
        # From the pass that computed the metric: the list and the count agree.
        lost = ctx.lost_domains(
            site, rule.window, getattr(rule, "link_filter", None), limit=EVIDENCE_LIMIT
        )
    if transitions and transitions[0][0] == "firing" and lost:
        new = replace(new, evidence={**new.evidence, "links": _lost_evidence(lost)})
    if tell is not None:
        message = build_message(rule, site, check, d, tell, ctx.at, lost)
        tells = [Tell(n, message.to_payload(), silenced=silenced) for n in rule.notify]
        notifiers = () if silenced else rule.notify
        if not silenced:
            new = replace(new, told="resolved" if tell == "resolved" else "firing")
            if tell != "resolved":
                new = replace(new, notified_at=ctx.at)
    if new.state in ACTIVE:
        # What a later resolution needs if the rule is gone by then.
        new = replace(
            new,
            evidence={
                **new.evidence,
                "notify": list(rule.notify),
                "send_resolved": rule.send_resolved,
                "shown": {
                    "severity": rule.severity,
                    "metric": rule.metric,
                    "op": rule.op,
                    "threshold": (
                        check.threshold if check.threshold is not None else rule.threshold
                    ),
                    "window": format_duration(rule.window),
                    "summary": check.summary,
                },
            },
        )
    if not book.apply(prev, new, transitions, tells, ctx):
        return None
    shown = tell or (transitions[-1][0] if transitions else None)
    if shown is None:
        return None
    log.info(
        "alert %s for %s: %s%s (%s = %s)",
        rule.name,
        site,
        shown,
        " (silenced: recorded, not sent)" if silenced and tell else "",
        rule.metric,
        check.value,
    )
    return Transition(
        rule.name,
        site,
        shown,
        check.value,
        notifiers,
        d.reason,
        rule.labels,
        silenced and tell is not None,
    )


def _lost_evidence(lost: list[LostDomain]) -> list[dict[str, Any]]:
    """What to look for later to tell whether the losses came back: a wholly lost domain
    comes back with any live link, a partly lost one with the very link named."""
    rows = []
    for d in lost:
        whole = d.domain_lost
        rows.append(
            _link_row(
                LinkItem(
                    refdomain=d.refdomain,
                    url_from="" if whole else d.url_from,
                    url_to="" if whole else d.url_to,
                    anchor=d.anchor,
                    domain_rating=d.domain_rating,
                    reason=d.reason,
                )
            )
        )
    return rows


def build_message(
    rule: Rule,
    site: str,
    check: Check,
    d: Decision,
    transition: str,
    at: datetime,
    found: Sequence[LostDomain] = (),
) -> AlertMessage:
    """The notification content of one alert transition."""
    lost, more = found[:MESSAGE_DOMAINS], max(len(found) - MESSAGE_DOMAINS, 0)
    fired_at = d.new.fired_at
    links = d.new_links if transition == "update" else check.links
    return AlertMessage(
        transition=transition,
        rule=rule.name,
        site=site,
        severity=rule.severity,
        metric=rule.metric,
        value=check.value,
        op=rule.op,
        threshold=check.threshold if check.threshold is not None else rule.threshold,
        window=format_duration(rule.window),
        summary=check.summary,
        at=at.isoformat(timespec="seconds"),
        kind=rule.kind,
        fingerprint=d.new.fingerprint,
        labels=rule.labels,
        since=fired_at.isoformat(timespec="seconds") if fired_at else None,
        firing_for=(format_elapsed(at - fired_at) if fired_at and transition != "firing" else None),
        reason=d.reason if transition == "resolved" else None,
        reason_text=d.reason_text if transition == "resolved" else "",
        lost_domains=tuple(lost),
        more_domains=more,
        links=links if transition != "resolved" else (),
        more_links=check.more_links if transition in ("firing", "reminder") else 0,
        restored=d.restored,
    )
