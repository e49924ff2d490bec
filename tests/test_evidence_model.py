"""The real ledger against the reference model (tests/model.py) on generated timelines.

Hypothesis builds random timelines — two sites, two to four series of different
coverage, snapshots with additions, removals, provider-marked losses, truncations,
duplicates, malformed rows and out-of-order files — and feeds each snapshot to the real
store through its public ingest API and to the model. After every step link states,
every metric over several windows and the lost-domain lists must agree, and no metric
over a window ending before the snapshot may change (the past is immutable).

`pytest --hypothesis-profile=deep tests/test_evidence_model.py` runs 2,000 examples.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from alerts.metrics import METRICS, compute_metrics
from daemon.store import GuardSettings, OutOfOrderError, Store
from sources.model import Backlink, SnapshotResult
from tests.model import Guards, ModelOutOfOrder, Row, SiteModel

T0 = datetime(2026, 2, 1, tzinfo=UTC)
DAY = timedelta(days=1)
SITES = ("a.example", "b.example")
# Referring pages over four registrable domains; two pages share each of two domains.
PAGES = (
    ("https://alpha.com/p1", "alpha.com"),
    ("https://blog.alpha.com/p2", "alpha.com"),
    ("https://beta.org/links", "beta.org"),
    ("https://news.beta.org/x", "beta.org"),
    ("https://gamma.net/a", "gamma.net"),
    ("https://delta.io/b", "delta.io"),
)
TARGETS = ("/", "/pricing")
LINKS = [(i, j) for i in range(len(PAGES)) for j in range(len(TARGETS))]
# (source, format, coverage) a series can be.
SERIES = (
    ("exports", "ahrefs", "complete"),
    ("exports", "semrush", "complete"),
    ("import", "generic", "complete"),
    ("exports", "gsc", "sample"),
)
WINDOWS = (DAY, 3 * DAY, 7 * DAY)


@dataclass(frozen=True)
class Step:
    site: int
    series: int
    dt: float
    links: frozenset[int]
    marked_lost: frozenset[int]
    page_only: frozenset[int]
    malformed: bool
    repeat: bool


steps = st.builds(
    Step,
    site=st.integers(0, len(SITES) - 1),
    series=st.integers(0, 3),
    dt=st.sampled_from([-1.0, 0.0, 0.5, 1.0, 1.0, 2.0, 3.0, 8.0]),
    links=st.frozensets(st.integers(0, len(LINKS) - 1), max_size=len(LINKS)),
    marked_lost=st.frozensets(st.integers(0, len(LINKS) - 1), max_size=4),
    page_only=st.frozensets(st.integers(0, len(PAGES) - 1), max_size=3),
    malformed=st.sampled_from([False] * 9 + [True]),
    repeat=st.sampled_from([False] * 4 + [True]),
)


def _rows(site: str, step: Step, coverage: str) -> list[Row]:
    rows = []
    for n in sorted(step.links):
        i, j = LINKS[n]
        url_from, domain = PAGES[i]
        rows.append(Row(url_from, f"https://{site}{TARGETS[j]}", domain))
    if coverage == "sample":
        # Search Console rows name the linking page only.
        rows += [Row(PAGES[i][0], None, PAGES[i][1]) for i in sorted(step.page_only)]
    else:
        for n in sorted(step.marked_lost - step.links):
            i, j = LINKS[n]
            rows.append(Row(PAGES[i][0], f"https://{site}{TARGETS[j]}", PAGES[i][1], lost=True))
    return rows


def _records(rows: list[Row], malformed: bool) -> list[Backlink]:
    records = [
        Backlink(r.url_from, r.url_to or "", lost=r.lost, lost_reason=r.reason if r.lost else None)
        for r in rows
    ]
    if malformed:
        records.append(Backlink("not a url", "https://a.example/"))
    return records


def _digest(name: str, rows: list[Row], malformed: bool) -> str:
    return hashlib.sha256(repr((name, rows, malformed)).encode()).hexdigest()


def _real_states(store: Store, site: str) -> dict[tuple[str, str], str]:
    return {(r["url_from"], r["url_to"]): r["state"] for r in store.links(site)}


def _real_window(store: Store, site: str, end: datetime, window: timedelta) -> dict[str, object]:
    metrics = compute_metrics(store, site, window, end)
    if metrics is None:
        return {"no data": True}
    values: dict[str, object] = {k: getattr(metrics, k) for k in METRICS}
    listed = store.lost_domains(site, end - window, end, limit=1000)
    values["domains_lost"] = {d.refdomain for d in listed if d.domain_lost}
    values["domains_with_losses"] = {d.refdomain for d in listed}
    return values


def _model_window(model: SiteModel, end: datetime, window: timedelta) -> dict[str, object]:
    if not model.has_data(end):
        return {"no data": True}
    return model.window(end - window, end)


@dataclass
class Timeline:
    """The real store and the model, fed the same snapshots, checked after each."""

    store: Store
    chosen: list[int]
    guards: GuardSettings
    model_guards: Guards
    models: dict[str, SiteModel] = field(default_factory=lambda: {s: SiteModel() for s in SITES})
    clock: datetime = T0
    last: dict[tuple[int, int], tuple[list[Row], bool, datetime]] = field(default_factory=dict)
    accepted: dict[str, set[datetime]] = field(default_factory=lambda: {s: set() for s in SITES})
    memo: dict[tuple[str, datetime, timedelta], dict[str, object]] = field(default_factory=dict)

    def step(self, number: int, step: Step) -> tuple[str, datetime]:
        """Ingest one snapshot into both; return its status and time."""
        site = SITES[step.site]
        source, fmt, coverage = SERIES[self.chosen[step.series % len(self.chosen)]]
        name = f"{source}/{fmt}"
        if step.repeat and (step.site, step.series) in self.last:
            # The same file again: at the same time (a duplicate) or later (re-observed).
            rows, malformed, taken = self.last[(step.site, step.series)]
            if step.dt > 0:
                taken = self.clock = self.clock + step.dt * DAY
        else:
            rows, malformed = _rows(site, step, coverage), step.malformed
            # A negative step is an export older than the latest one.
            taken = self.clock + step.dt * DAY
            self.clock = max(self.clock, taken)
        self.last[(step.site, step.series)] = (rows, malformed, taken)
        digest = _digest(name, rows, malformed)
        result = SnapshotResult(
            taken_at=taken,
            records=iter(_records(rows, malformed)),
            origin=f"{number}.csv",
            format=fmt,
            digest=digest,
            sample=coverage == "sample",
        )
        try:
            model_status = self.models[site].ingest(
                name,
                coverage,
                taken,
                rows,
                malformed=malformed,
                digest=digest,
                guards=self.model_guards,
            )
        except ModelOutOfOrder:
            model_status = "out of order"
        try:
            real_status = self.store.ingest(site, source, result, self.guards, taken).status
        except OutOfOrderError:
            real_status = "out of order"
        assert real_status == model_status, (number, step)
        event(f"{coverage} snapshot: {real_status}")
        if real_status in ("baseline", "complete"):
            self.accepted[site].add(taken)
        if real_status != "out of order":
            self.check_past(site, taken)
        return real_status, taken

    def check_past(self, site: str, taken: datetime) -> None:
        """Nothing ingested with a time after T moves a window ending at T."""
        for key, before in list(self.memo.items()):
            m_site, end, window = key
            if m_site != site:
                continue
            if end < taken:
                after = _real_window(self.store, site, end, window)
                assert after == before, ("the past changed", end, window)
            else:
                del self.memo[key]  # this snapshot may move it

    def check_now(self) -> None:
        """Link states, metrics and lost-domain lists agree with the model."""
        for site in SITES:
            model = self.models[site]
            want = {(lk.url_from, lk.url_to): lk.state for lk in model.links.values()}
            assert _real_states(self.store, site) == want, site
            for end in [*sorted(self.accepted[site])[-3:], self.clock + DAY / 2]:
                for window in WINDOWS:
                    real = _real_window(self.store, site, end, window)
                    assert real == _model_window(model, end, window), (site, end, window)
                    self.memo[(site, end, window)] = real


def run_timeline(
    chosen: list[int], timeline: list[Step], confirm_after: int, ttl_days: int
) -> None:
    ttl = timedelta(days=ttl_days)
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "linkwatch.db")
        try:
            for site in SITES:
                store.ensure_site(site, "own")
            t = Timeline(
                store,
                chosen,
                GuardSettings(confirm_after=confirm_after, sample_ttl=ttl),
                Guards(confirm_after=confirm_after, sample_ttl=ttl),
            )
            for number, step in enumerate(timeline):
                t.step(number, step)
                t.check_now()
            for model in t.models.values():
                for kind in {e.kind for e in model.events}:
                    event(f"event {kind}")
        finally:
            store.close()


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    # One to three complete series, and a sample series in most timelines.
    chosen=st.tuples(
        st.lists(st.integers(0, 2), min_size=1, max_size=3, unique=True),
        st.sampled_from([True, True, True, False]),
    ).map(lambda c: [*c[0], 3] if c[1] else c[0]),
    timeline=st.lists(steps, min_size=1, max_size=20),
    confirm_after=st.integers(1, 3),
    ttl_days=st.sampled_from([4, 90]),
)
def test_ledger_agrees_with_the_reference_model(
    chosen: list[int], timeline: list[Step], confirm_after: int, ttl_days: int
) -> None:
    run_timeline(chosen, timeline, confirm_after, ttl_days)
