"""The alert lifecycle (docs/alerting.md) against a plain reference model, and its invariants."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from alerts.engine import MemoryAlertBook, StoredAlertBook, evaluate
from alerts.rules.common import RuleBase
from alerts.rules.context import Check, EvaluationContext
from daemon.store import Store

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

    def tell(self, at: datetime, what: str, silenced: bool) -> None:
        if silenced:
            return
        self.sent.append((at, what))
        if what == "resolved":
            self.told = "resolved"
        else:
            self.told, self.notified_at = "firing", at

    def step(self, at: datetime, holds: bool | None, silenced: bool) -> None:
        if holds is None:
            return
        if holds:
            self.held_at = at
            if self.state in ("inactive", "resolved"):
                self.active_at = at
                self.state = "pending"
            if self.state == "pending":
                assert self.active_at is not None
                if at - self.active_at >= self.for_:
                    self.state = "firing"
                    self.tell(at, "firing", silenced)
                return
            if self.told != "firing":
                self.tell(at, "firing", silenced)
            elif (
                self.repeat > timedelta(0)
                and self.notified_at is not None
                and at - self.notified_at >= self.repeat
            ):
                self.tell(at, "reminder", silenced)
            return
        if self.state == "pending":
            self.state = "inactive"
        elif self.state == "firing":
            assert self.held_at is not None
            if self.keep > timedelta(0) and at - self.held_at < self.keep:
                return
            self.state = "resolved"
            if self.told == "firing":
                if self.send_resolved:
                    self.tell(at, "resolved", silenced)
                else:
                    self.told = "resolved"
        elif self.state == "resolved" and self.told == "firing":
            self.tell(at, "resolved", silenced)


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
            known = book.alerts()
            states.append(known[0].state if known else "inactive")
            assert states[-1] == model.state, (t, states, model.state)
        if stored:
            # What was queued is exactly what was told: one row per message (no grouping
            # outside the daemon), silenced ones recorded apart.
            rows = store.conn.execute(
                "SELECT transition, status FROM outbox ORDER BY id"
            ).fetchall()
            assert [r[0] for r in rows if r[1] != "silenced"] == [w for _, w in got]
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
    if send_resolved:
        assert told == ["firing", "resolved"] * (len(told) // 2) + ["firing"] * (len(told) % 2)
    else:
        assert set(told) <= {"firing"}
    last: datetime | None = None
    for at, what in got:
        if what in ("firing", "reminder"):
            if what == "reminder":
                assert last is not None and at - last >= repeat > timedelta(0)
            last = at
