"""The alert lifecycle (docs/alerting.md) against a plain reference model, and its invariants."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from alerts.engine import MemoryAlertBook, StoredAlertBook, evaluate
from alerts.rules.common import RuleBase
from alerts.rules.context import Check, EvaluationContext
from daemon.store import AlertState, Store

T0 = datetime(2026, 5, 1, tzinfo=UTC)
SITE = "example.com"


@dataclass(frozen=True, kw_only=True)
class ScriptedRule(RuleBase):
    """A rule whose verdict at each instant is given: True, False or None (no data)."""

    script: dict[datetime, bool | None]
    metric: str = "lost_links"
    op: str = ">="
    threshold: float = 1.0
    window: timedelta = timedelta(days=1)
    kind = "threshold"

    def check(self, ctx: EvaluationContext, site: str) -> Check:
        holds = self.script[ctx.at]
        value = None if holds is None else float(holds)
        return Check(value, holds, f"{site}: scripted {holds}")


def _rule(
    script: dict[datetime, bool | None],
    *,
    for_: timedelta = timedelta(0),
    keep: timedelta = timedelta(0),
    repeat: timedelta = timedelta(hours=24),
    send_resolved: bool = True,
) -> ScriptedRule:
    return ScriptedRule(
        name="scripted",
        sites=(SITE,),
        severity="warning",
        notify=("console",),
        for_=for_,
        keep_firing_for=keep,
        repeat_interval=repeat,
        send_resolved=send_resolved,
        definition="v1",
        script=script,
    )


@dataclass
class Model:
    """docs/alerting.md, written as plainly as possible (no persistence, one alert)."""

    for_: timedelta
    keep: timedelta
    repeat: timedelta
    send_resolved: bool
    state: str = "inactive"
    active_at: datetime | None = None
    held_at: datetime | None = None
    notified_at: datetime | None = None
    told: str | None = None
    sent: list[tuple[datetime, str]] = field(default_factory=list)
    recorded: list[tuple[datetime, str]] = field(default_factory=list)

    def tell(self, at: datetime, what: str, silenced: bool) -> bool:
        if silenced:
            # A transition under a silence is recorded, not sent.
            self.recorded.append((at, what))
        else:
            self.sent.append((at, what))
            if what == "resolved":
                self.told = "resolved"
            else:
                self.told, self.notified_at = "firing", at
        return True

    def step(self, at: datetime, holds: bool | None, silenced: bool) -> None:
        if holds is None:
            return
        told = self.transition(at, holds, silenced)
        # Whoever last heard "firing" hears the resolution once it no longer fires.
        if self.state != "firing" and self.told == "firing" and not told:
            if self.send_resolved:
                if not silenced:
                    self.tell(at, "resolved", silenced)
            else:
                self.told = "resolved"

    def transition(self, at: datetime, holds: bool, silenced: bool) -> bool:
        """Apply one verdict; True when it tried to tell something."""
        if holds:
            self.held_at = at
            if self.state in ("inactive", "resolved"):
                self.active_at = at
                self.state = "pending"
            if self.state == "pending":
                assert self.active_at is not None
                if at - self.active_at >= self.for_:
                    self.state = "firing"
                    return self.tell(at, "firing", silenced)
                return False
            if self.told != "firing":
                return not silenced and self.tell(at, "firing", silenced)
            if (
                self.repeat > timedelta(0)
                and self.notified_at is not None
                and at - self.notified_at >= self.repeat
            ):
                return not silenced and self.tell(at, "reminder", silenced)
            return False
        if self.state == "pending":
            self.state = "inactive"
        elif self.state == "firing":
            assert self.held_at is not None
            if self.keep > timedelta(0) and at - self.held_at < self.keep:
                return False
            self.state = "resolved"
            if self.told == "firing":
                if self.send_resolved:
                    return self.tell(at, "resolved", silenced)
                self.told = "resolved"
        return False


_durations = st.sampled_from([timedelta(0), timedelta(minutes=30), timedelta(hours=2)])
_steps = st.lists(
    st.tuples(
        st.sampled_from(
            [timedelta(minutes=10), timedelta(hours=1), timedelta(hours=3), timedelta(hours=7)]
        ),
        st.sampled_from([True, True, False, None]),
    ),
    min_size=1,
    max_size=25,
)


def _run(
    tmp_path: Path,
    steps: list[tuple[timedelta, bool | None]],
    for_: timedelta,
    keep: timedelta,
    repeat: timedelta,
    send_resolved: bool,
    silence: tuple[int, int] | None,
    stored: bool,
) -> tuple[list[tuple[datetime, str]], list[tuple[datetime, str]], list[str]]:
    """(model's messages, engine's messages, engine's states) over one timeline."""
    instants, at = [], T0
    for gap, _ in steps:
        at += gap
        instants.append(at)
    script = {t: holds for t, (_, holds) in zip(instants, steps, strict=True)}
    rule = _rule(script, for_=for_, keep=keep, repeat=repeat, send_resolved=send_resolved)
    model = Model(for_, keep, repeat, send_resolved)
    db = tmp_path / f"lifecycle-{len(list(tmp_path.iterdir()))}.db"
    store = Store(db)
    try:
        store.ensure_site(SITE, "own")
        window: tuple[datetime, datetime] | None = None
        if silence is not None:
            start = instants[min(silence[0], len(instants) - 1)]
            window = (start, start + timedelta(hours=silence[1]))
            store.add_silence("scripted", SITE, window[0], window[1], "test")
        book = StoredAlertBook(store) if stored else MemoryAlertBook()
        got: list[tuple[datetime, str]] = []
        states: list[str] = []
        for t in instants:
            silenced = window is not None and window[0] <= t < window[1]
            model.step(t, script[t], silenced)
            ctx = EvaluationContext(store, t, t, [SITE], [SITE])
            for tr in evaluate(store, [rule], ctx, book):
                if tr.notifiers and tr.state in ("firing", "reminder", "resolved"):
                    got.append((t, tr.state))
            # The row itself, whatever its state says (no filter by known states).
            if stored:
                row = store.conn.execute("SELECT state FROM alerts").fetchone()
                states.append(row[0] if row else "inactive")
            else:
                known = list(book.states.values())  # type: ignore[attr-defined]
                states.append(known[0].state if known else "inactive")
            assert states[-1] == model.state, (t, states, model.state)
        if stored:
            # What was queued is exactly what was told: one row per message (no grouping
            # outside the daemon), silenced ones recorded apart (never reminders).
            rows = store.conn.execute(
                "SELECT transition, status FROM outbox ORDER BY id"
            ).fetchall()
            assert [r[0] for r in rows if r[1] != "silenced"] == [w for _, w in got]
            assert [r[0] for r in rows if r[1] == "silenced"] == [w for _, w in model.recorded]
            # A reminder held back by a silence leaves no trace in the history either.
            reminders = [h[5] for h in store.alert_history() if h[2] == "reminder"]
            assert reminders == [at for at, w in got if w == "reminder"]
        return model.sent, got, states
    finally:
        store.close()


@given(
    steps=_steps,
    for_=_durations,
    keep=_durations,
    repeat=st.sampled_from([timedelta(0), timedelta(hours=3), timedelta(hours=24)]),
    send_resolved=st.booleans(),
    silence=st.none() | st.tuples(st.integers(0, 10), st.integers(1, 12)),
    stored=st.booleans(),
)
def test_engine_matches_the_reference_model(
    tmp_path_factory: object,
    steps: list[tuple[timedelta, bool | None]],
    for_: timedelta,
    keep: timedelta,
    repeat: timedelta,
    send_resolved: bool,
    silence: tuple[int, int] | None,
    stored: bool,
) -> None:
    tmp = tmp_path_factory.mktemp("lc")  # type: ignore[attr-defined]
    expected, got, _ = _run(tmp, steps, for_, keep, repeat, send_resolved, silence, stored)
    assert got == expected
    # Invariants: firing and resolved alternate, starting with firing; reminders only
    # while firing and at least repeat_interval apart.
    told = [w for _, w in got if w != "reminder"]
    if send_resolved and silence is None:
        assert told == ["firing", "resolved"] * (len(told) // 2) + ["firing"] * (len(told) % 2)
    elif send_resolved:
        # A resolution that fell in a silence is dropped when the alert fires again before
        # it could be told (docs/alerting.md): two firings may then follow each other,
        # never two resolutions, and the first message is a firing.
        assert told[:1] in ([], ["firing"])
        assert all(not (a == b == "resolved") for a, b in pairwise(told))
    else:
        assert set(told) <= {"firing"}
    last: datetime | None = None
    for at, what in got:
        if what in ("firing", "reminder"):
            if what == "reminder":
                assert last is not None and at - last >= repeat > timedelta(0)
            last = at


def _fire(store: Store, rule: ScriptedRule, at: datetime) -> None:
    ctx = EvaluationContext(store, at, at, [SITE], [SITE])
    [t] = evaluate(store, [rule], ctx)
    assert t.state in ("firing", "pending"), t


def _outbox(store: Store) -> list[dict[str, object]]:
    import json

    rows = store.conn.execute("SELECT notifier, payload FROM outbox ORDER BY id").fetchall()
    return [{"notifier": n, **a} for n, payload in rows for a in json.loads(payload)["alerts"]]


def test_a_removed_rule_resolves_its_firing_alert_with_what_it_remembers(tmp_path: Path) -> None:
    from dataclasses import replace

    store = Store(tmp_path / "lw.db")
    store.ensure_site(SITE, "own")
    t1, t2 = T0 + timedelta(hours=1), T0 + timedelta(hours=27, minutes=30)
    rule = replace(
        _rule({t1: True}),
        severity="critical",
        notify=("console", "team-email"),
        labels=(("team", "seo"),),
        threshold=5.0,
    )
    _fire(store, rule, t1)
    # The rule file is gone: the next evaluation has no rules at all.
    ctx = EvaluationContext(store, t2, t2, [SITE], [SITE])
    [t] = evaluate(store, [], ctx)
    assert (t.rule, t.site, t.state, t.reason, t.notifiers, t.labels) == (
        "scripted",
        SITE,
        "resolved",
        "rule_removed",
        ("console", "team-email"),
        (("team", "seo"),),
    )
    told = _outbox(store)
    assert [m["notifier"] for m in told] == ["console", "team-email", "console", "team-email"]
    message = told[-1]
    assert {
        k: message[k]
        for k in (
            "transition",
            "rule",
            "site",
            "severity",
            "metric",
            "op",
            "threshold",
            "window",
            "summary",
            "kind",
            "reason",
            "reason_text",
            "since",
            "firing_for",
            "at",
            "labels",
        )
    } == {
        "transition": "resolved",
        "rule": "scripted",
        "site": SITE,
        "severity": "critical",
        "metric": "lost_links",
        "op": ">=",
        "threshold": 5.0,
        "window": "1d",
        "summary": f"{SITE}: scripted True",
        "kind": "threshold",
        "reason": "rule_removed",
        "reason_text": "the rule was removed",
        "since": t1.isoformat(timespec="seconds"),
        "firing_for": "1d 2h",
        "at": t2.isoformat(timespec="seconds"),
        "labels": [["team", "seo"]],
    }
    assert message["fingerprint"] == told[0]["fingerprint"] != ""
    [alert] = store.alert_states()
    assert (alert.state, alert.reason, alert.since_at, alert.resolved_at, alert.told) == (
        "resolved",
        "rule_removed",
        t2,
        t2,
        "resolved",
    )
    assert store.alert_history()[-1] == ("scripted", SITE, "resolved", 1.0, "rule_removed", t2)
    # Resolved once: the next evaluation without the rule tells nothing more.
    t3 = t2 + timedelta(hours=1)
    assert evaluate(store, [], EvaluationContext(store, t3, t3, [SITE], [SITE])) == []
    store.close()


def test_a_removed_rule_drops_its_pending_alert_silently(tmp_path: Path) -> None:
    store = Store(tmp_path / "lw.db")
    store.ensure_site(SITE, "own")
    t1, t2 = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    _fire(store, _rule({t1: True}, for_=timedelta(hours=5)), t1)
    [t] = evaluate(store, [], EvaluationContext(store, t2, t2, [SITE], [SITE]))
    assert (t.state, t.reason, t.notifiers) == ("inactive", "rule_removed", ())
    [alert] = store.alert_states()
    assert (alert.state, alert.since_at, alert.evaluated_at) == ("inactive", t2, t2)
    assert store.alert_history()[-1][2:] == ("inactive", 1.0, "rule_removed", t2)
    assert _outbox(store) == []
    store.close()


def test_a_rule_that_stops_watching_a_site_resolves_it_as_a_change(tmp_path: Path) -> None:
    from dataclasses import replace

    store = Store(tmp_path / "lw.db")
    store.ensure_site(SITE, "own")
    store.ensure_site("other.example", "own")
    t1, t2 = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    rule = _rule({t1: True, t2: True})
    _fire(store, rule, t1)
    moved = replace(rule, sites=("other.example",))
    ctx = EvaluationContext(store, t2, t2, [SITE], [SITE, "other.example"])
    changes = evaluate(store, [moved], ctx)
    gone = [t for t in changes if t.site == SITE]
    assert [(t.state, t.reason) for t in gone] == [("resolved", "rule_changed")]
    assert _outbox(store)[-1]["reason_text"] == (
        "the rule was changed and no longer watches this site"
    )
    store.close()


def test_a_removed_rule_tells_nothing_it_was_not_told_or_asked_to(tmp_path: Path) -> None:
    from dataclasses import replace

    for case in ("send_resolved = false", "never told"):
        store = Store(tmp_path / f"{case}.db")
        store.ensure_site(SITE, "own")
        t1, t2 = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
        rule = _rule({t1: True})
        if case == "send_resolved = false":
            rule = replace(rule, send_resolved=False)
        else:
            store.add_silence("scripted", SITE, T0, t1 + timedelta(minutes=1), "quiet")
        _fire(store, rule, t1)
        before = len(_outbox(store))
        [t] = evaluate(store, [], EvaluationContext(store, t2, t2, [SITE], [SITE]))
        assert (t.state, t.reason, t.notifiers) == ("resolved", "rule_removed", ()), case
        assert len(_outbox(store)) == before, case
        store.close()


def test_config_health_is_never_resolved_by_a_command_that_does_not_watch_it(
    tmp_path: Path,
) -> None:
    from alerts.rules.config_health import ConfigHealthRule

    store = Store(tmp_path / "lw.db")
    t1, t2 = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    built_in = ConfigHealthRule(("rules.d/x.toml: kind: bad",), ("console",))
    ctx = EvaluationContext(store, t1, t1, [], [])
    assert [t.state for t in evaluate(store, [built_in], ctx)] == ["firing"]
    # `linkwatch evaluate` runs without it: the daemon's alert stays as it is.
    assert evaluate(store, [], EvaluationContext(store, t2, t2, [], [])) == []
    assert [a.state for a in store.alert_states()] == ["firing"]
    store.close()


def test_an_alert_row_reads_back_exactly_as_written(tmp_path: Path) -> None:
    from daemon.store import AlertState

    store = Store(tmp_path / "lw.db")
    t = [T0 + timedelta(minutes=i) for i in range(8)]
    alert = AlertState(
        fingerprint="fp",
        rule="r",
        kind="spike",
        site=SITE,
        labels=(("a", "1"), ("team", "seo")),
        state="firing",
        value=2.5,
        since_at=t[0],
        active_at=t[1],
        fired_at=t[2],
        resolved_at=t[3],
        held_at=t[4],
        notified_at=t[5],
        told="firing",
        definition="d1",
        evidence={"links": [], "notify": ["console"]},
        reason="restored",
        evaluated_at=t[6],
    )
    assert store.apply_alert(None, alert, [("firing", None)], [], t[7])
    back = store.alert_state("fp")
    assert back == alert and back is not None and back.evidence == alert.evidence
    # A second writer that decided from the state before this one cannot write.
    assert not store.apply_alert(None, alert, [], [], t[7])
    store.close()


def test_a_silence_covers_from_its_start_up_to_not_including_its_end() -> None:
    from daemon.store import Silence

    start, end = T0, T0 + timedelta(hours=1)
    both = Silence(1, "r", SITE, start, end, "", start)
    assert both.matches("r", SITE, start) and both.matches("r", SITE, end - timedelta(seconds=1))
    assert not both.matches("r", SITE, start - timedelta(seconds=1))
    assert not both.matches("r", SITE, end)
    assert not both.matches("other", SITE, start) and not both.matches("r", "x.example", start)
    any_rule = Silence(2, None, SITE, start, end, "", start)
    any_site = Silence(3, "r", None, start, end, "", start)
    assert any_rule.matches("other", SITE, start) and not any_rule.matches("r", "x", start)
    assert any_site.matches("r", "x.example", start) and not any_site.matches("q", SITE, start)


def test_a_resolution_silenced_then_overtaken_is_still_told(tmp_path: Path) -> None:
    # Fires after `for`, told; resolves while silenced; pending again, then inactive, still
    # silenced; once the silence ends the team, who last heard "firing", hears it resolved.
    hour = timedelta(hours=1)
    verdicts = [True, True, True, False, True, False, False]
    steps: list[tuple[timedelta, bool | None]] = [(hour, v) for v in verdicts]
    expected, got, states = _run(
        tmp_path, steps, 2 * hour, timedelta(0), timedelta(0), True, (3, 3), True
    )
    assert got == expected == [(T0 + 3 * hour, "firing"), (T0 + 7 * hour, "resolved")]
    [db] = tmp_path.glob("*.db")
    store = Store(db)
    try:
        # Told late, it says plainly that the condition no longer holds.
        told = _outbox(store)[-1]
        assert (told["transition"], told["reason"], told["reason_text"]) == (
            "resolved",
            "condition_cleared",
            "the condition no longer holds",
        )
    finally:
        store.close()
    assert states == ["pending", "pending", "firing", "resolved", "pending", "inactive", "inactive"]


def test_a_rule_removed_under_a_silence_is_told_resolved_when_the_silence_ends(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "lw.db")
    store.ensure_site(SITE, "own")
    t1, t2, t3 = (T0 + timedelta(hours=h) for h in (1, 2, 4))
    _fire(store, _rule({t1: True}), t1)
    store.add_silence("scripted", SITE, t1 + timedelta(minutes=30), t3, "maintenance")
    [t] = evaluate(store, [], EvaluationContext(store, t2, t2, [SITE], [SITE]))
    assert (t.state, t.reason, t.notifiers, t.silenced) == ("resolved", "rule_removed", (), True)
    assert [m["transition"] for m in _outbox(store)] == ["firing", "resolved"]
    statuses = [r[0] for r in store.conn.execute("SELECT status FROM outbox ORDER BY id")]
    assert statuses == ["pending", "silenced"]
    # Still silenced: nothing more.
    mid = t2 + timedelta(minutes=30)
    assert evaluate(store, [], EvaluationContext(store, mid, mid, [SITE], [SITE])) == []
    # The silence over, the resolution is told, once.
    [t] = evaluate(store, [], EvaluationContext(store, t3, t3, [SITE], [SITE]))
    assert (t.state, t.reason, t.notifiers, t.silenced) == (
        "resolved",
        "rule_removed",
        ("console",),
        False,
    )
    later = t3 + timedelta(hours=1)
    assert evaluate(store, [], EvaluationContext(store, later, later, [SITE], [SITE])) == []
    assert [m["reason_text"] for m in _outbox(store)][1:] == ["the rule was removed"] * 2
    store.close()


def _state(**kw: object) -> AlertState:
    base: dict[str, object] = dict(
        fingerprint="fp",
        rule="r",
        kind="spike",
        site=SITE,
        labels=(("team", "seo"),),
        state="firing",
        value=3.0,
        since_at=T0,
    )
    base.update(kw)
    return AlertState(**base)  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True)
class _SpikeLike(ScriptedRule):
    kind = "spike"


def test_a_message_carries_what_each_transition_needs() -> None:
    from dataclasses import replace

    from alerts.engine import Decision, build_message
    from alerts.message import LinkItem
    from daemon.store.reads import LostDomain

    base = replace(_rule({}, repeat=timedelta(hours=1)), labels=(("team", "seo"),))
    rule = _SpikeLike(**{f: getattr(base, f) for f in base.__dataclass_fields__})
    link = LinkItem("a.org", "https://a.org/", "https://example.com/")
    fresh = LinkItem("b.org", "https://b.org/", "https://example.com/")
    check = Check(3.0, True, "s", threshold=7.5, links=(link,), more_links=4)
    fired_at = T0 + timedelta(hours=1)
    at = T0 + timedelta(hours=3, minutes=5)
    new = _state(fired_at=fired_at, labels=rule.labels)
    d = Decision(new, [], None, "restored", "why", (link,), (fresh,))
    found = [LostDomain(f"d{i}.org", None, True, "u", "v", None, None) for i in range(11)]
    firing = build_message(rule, SITE, check, d, "firing", at, found[:10])
    assert (firing.threshold, firing.kind, firing.more_domains, firing.more_links) == (
        7.5,
        "spike",
        0,
        4,
    )
    assert firing.labels == (("team", "seo"),)
    assert (firing.since, firing.firing_for, firing.reason, firing.reason_text) == (
        fired_at.isoformat(timespec="seconds"),
        None,
        None,
        "",
    )
    assert firing.links == (link,) and len(firing.lost_domains) == 10
    reminder = build_message(rule, SITE, check, d, "reminder", at, found)
    assert (reminder.firing_for, reminder.more_domains, reminder.more_links) == ("2h 5m", 1, 4)
    update = build_message(rule, SITE, check, d, "update", at)
    assert (update.links, update.more_links, update.reason) == ((fresh,), 0, None)
    resolved = build_message(rule, SITE, check, d, "resolved", at)
    assert (resolved.links, resolved.reason, resolved.reason_text, resolved.restored) == (
        (),
        "restored",
        "why",
        (link,),
    )
    never = build_message(rule, SITE, check, Decision(_state(), [], None), "firing", at)
    assert (never.since, never.firing_for, never.threshold) == (None, None, 7.5)
    plain = build_message(rule, SITE, Check(1.0, True, "s"), d, "firing", at)
    assert plain.threshold == rule.threshold


def test_a_retired_alert_without_memory_still_reads_sensibly() -> None:
    from alerts.engine import _message_for_alert

    at = T0 + timedelta(hours=2)
    bare = _state()
    message = _message_for_alert(bare, "resolved", "rule_removed", "gone", at)
    assert {
        k: message[k]
        for k in (
            "severity",
            "metric",
            "op",
            "window",
            "summary",
            "threshold",
            "since",
            "firing_for",
            "kind",
            "value",
            "labels",
            "fingerprint",
        )
    } == {
        "severity": "warning",
        "metric": "",
        "op": "",
        "window": "",
        "summary": f"{SITE}: r",
        "threshold": None,
        "since": None,
        "firing_for": None,
        "kind": "spike",
        "value": 3.0,
        "labels": (("team", "seo"),),
        "fingerprint": "fp",
    }


def test_a_retired_alert_tells_its_kept_notifiers_unless_it_cannot(
    tmp_path: Path, caplog: object
) -> None:
    store = Store(tmp_path / "lw.db")
    at = T0 + timedelta(hours=2)
    ctx = EvaluationContext(store, at, at, [SITE], [SITE])
    # No send_resolved kept: resolutions are told (the default).
    told = _state(fingerprint="a", rule="gone-a", told="firing", evidence={"notify": ["x"]})
    # Nobody known to tell: resolved quietly, not owed forever.
    mute = _state(fingerprint="b", rule="gone-b", told="firing", evidence={})
    book = MemoryAlertBook({a.fingerprint: a for a in (told, mute)})
    changes = evaluate(store, [], ctx, book)
    assert [(t.rule, t.notifiers) for t in changes] == [("gone-a", ("x",)), ("gone-b", ())]
    assert [(t.notifier, t.message["rule"]) for t in book.told] == [("x", "gone-a")]
    assert {a.rule: a.told for a in book.alerts()} == {"gone-a": "resolved", "gone-b": "resolved"}
    assert evaluate(store, [], ctx, book) == []
    store.close()


@dataclass(frozen=True, kw_only=True)
class _BoundRule(ScriptedRule):
    """A scripted rule that computes its own threshold (as spike does) and a value."""

    values: dict[datetime, float] = field(default_factory=dict)

    def check(self, ctx: EvaluationContext, site: str) -> Check:
        holds = self.script[ctx.at]
        return Check(self.values[ctx.at], holds, "s", threshold=7.5)


def test_lifecycle_times_and_a_cleared_condition_read_exactly(tmp_path: Path) -> None:
    store = Store(tmp_path / "lw.db")
    store.ensure_site(SITE, "own")
    t1, t2, t3, t4 = (T0 + timedelta(hours=h) for h in (1, 2, 3, 4))
    rule = _BoundRule(
        name="bound",
        sites=(SITE,),
        severity="info",
        notify=("console",),
        for_=timedelta(hours=1),
        definition="v1",
        script={t1: True, t2: True, t3: False, t4: True, t4 + timedelta(hours=1): True},
        values={t1: 9.0, t2: 8.0, t3: 2.5, t4: 9.0, t4 + timedelta(hours=1): 9.0},
    )
    book = StoredAlertBook(store)

    def at(t: datetime) -> list[str]:
        return [
            x.state
            for x in evaluate(store, [rule], EvaluationContext(store, t, t, [SITE], [SITE]), book)
        ]

    assert at(t1) == ["pending"]
    assert at(t2) == ["firing"]
    [a] = store.alert_states()
    assert (a.active_at, a.since_at, a.fired_at, a.resolved_at, a.reason) == (
        t1,
        t2,
        t2,
        None,
        None,
    )
    assert at(t3) == ["resolved"]
    [a] = store.alert_states()
    assert (a.since_at, a.resolved_at, a.reason) == (t3, t3, "condition_cleared")
    assert _outbox(store)[-1]["reason_text"] == (
        "the condition no longer holds: lost_links is now 2.5 (threshold >= 7.5)"
    )
    assert at(t4) == ["pending"]
    [a] = store.alert_states()
    assert (a.active_at, a.resolved_at, a.reason, a.state) == (t4, t3, None, "pending")
    t5 = t4 + timedelta(hours=1)
    [fired] = evaluate(store, [rule], EvaluationContext(store, t5, t5, [SITE], [SITE]), book)
    assert (fired.state, fired.notifiers) == ("firing", ("console",))
    [a] = store.alert_states()
    assert (a.fired_at, a.resolved_at, a.since_at) == (t5, None, t5)
    store.close()


def test_a_removed_rule_is_retired_whatever_alerts_come_before_it(tmp_path: Path) -> None:
    from dataclasses import replace

    store = Store(tmp_path / "lw.db")
    store.ensure_site(SITE, "own")
    t1, t2 = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    first = replace(_rule({t1: True, t2: True}), name="a-kept")
    second = replace(_rule({t1: True}), name="b-removed")
    ctx1 = EvaluationContext(store, t1, t1, [SITE], [SITE])
    assert [t.state for t in evaluate(store, [first, second], ctx1)] == ["firing", "firing"]
    changes = evaluate(store, [first], EvaluationContext(store, t2, t2, [SITE], [SITE]))
    assert [(t.rule, t.state, t.reason) for t in changes] == [
        ("b-removed", "resolved", "rule_removed")
    ]
    store.close()


def test_a_gathering_row_is_due_only_after_group_wait(tmp_path: Path) -> None:
    store = Store(tmp_path / "lw.db")
    store.ensure_site(SITE, "own")
    t1 = T0 + timedelta(hours=1)
    book = StoredAlertBook(store, timedelta(seconds=30))
    evaluate(store, [_rule({t1: True})], EvaluationContext(store, t1, t1, [SITE], [SITE]), book)
    assert store.due_notifications(t1 + timedelta(seconds=29)) == []
    [row] = store.due_notifications(t1 + timedelta(seconds=30))
    assert row.payload["site"] == SITE and row.payload["recipients"] == []
    store.close()
