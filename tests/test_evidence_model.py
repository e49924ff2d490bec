"""The real ledger against the reference model (tests/model.py) on generated timelines.

Hypothesis builds random timelines — two sites, two to five series of different
coverage (complete, sample, referring domains), snapshots with additions, removals,
provider-marked losses, changed anchors and ratings, truncations, duplicates, malformed
rows and out-of-order files — and feeds each snapshot to the real store through its
public ingest API and to the model. After every step link states, anchors and ratings,
which series saw which link (and domain) when, every metric over several windows and the
lost-domain lists must agree, and no metric over a window ending before the snapshot may
change (the past is immutable).

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
from daemon.timefmt import to_db
from sources.model import Backlink, RefDomain, SnapshotResult
from sources.urls import link_key, normalize_target, normalize_url
from tests.model import DomainRow, Guards, ModelOutOfOrder, Row, SiteModel

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
    ("exports", "ahrefs_refdomains", "domains"),
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
    # What the export says of every link it lists (None: it does not say).
    anchor: str | None = None
    rating: float | None = None


steps = st.builds(
    Step,
    site=st.integers(0, len(SITES) - 1),
    series=st.integers(0, 4),
    dt=st.sampled_from([-1.0, 0.0, 0.5, 1.0, 1.0, 2.0, 3.0, 8.0]),
    links=st.frozensets(st.integers(0, len(LINKS) - 1), max_size=len(LINKS)),
    marked_lost=st.frozensets(st.integers(0, len(LINKS) - 1), max_size=4),
    page_only=st.frozensets(st.integers(0, len(PAGES) - 1), max_size=3),
    malformed=st.sampled_from([False] * 9 + [True]),
    repeat=st.sampled_from([False] * 4 + [True]),
    anchor=st.sampled_from([None, "a", "a", "b"]),
    rating=st.sampled_from([None, 10.0, 10.0, 20.0]),
)


# One to three complete series, a sample series in most timelines, and a referring domain
# series in some.
series_choices = st.tuples(
    st.lists(st.integers(0, 2), min_size=1, max_size=3, unique=True),
    st.sampled_from([True, True, True, False]),
    st.sampled_from([True, False, False]),
).map(lambda c: [*c[0], *([3] if c[1] else []), *([4] if c[2] else [])])


def _rows(site: str, step: Step, coverage: str) -> list[Row]:
    rows = []
    # Search Console gives neither anchors nor ratings.
    anchor, rating = (None, None) if coverage == "sample" else (step.anchor, step.rating)
    for n in sorted(step.links):
        i, j = LINKS[n]
        url_from, domain = PAGES[i]
        rows.append(
            Row(url_from, f"https://{site}{TARGETS[j]}", domain, anchor=anchor, rating=rating)
        )
    if coverage == "sample":
        # Search Console rows name the linking page only.
        rows += [Row(PAGES[i][0], None, PAGES[i][1]) for i in sorted(step.page_only)]
    else:
        for n in sorted(step.marked_lost - step.links):
            i, j = LINKS[n]
            rows.append(Row(PAGES[i][0], f"https://{site}{TARGETS[j]}", PAGES[i][1], lost=True))
    return rows


def _domain_rows(step: Step) -> list[DomainRow]:
    """A referring-domain export: the domains of the step's links, with their link counts."""
    counts: dict[str, int] = {}
    for n in sorted(step.links):
        domain = PAGES[LINKS[n][0]][1]
        counts[domain] = counts.get(domain, 0) + 1
    rows = [DomainRow(d, c, step.rating) for d, c in counts.items()]
    lost = {PAGES[LINKS[n][0]][1] for n in step.marked_lost} - set(counts)
    return rows + [DomainRow(d, lost=True) for d in sorted(lost)]


def _records(rows: list[Row], malformed: bool) -> list[Backlink]:
    records = [
        Backlink(
            r.url_from,
            r.url_to or "",
            anchor=r.anchor,
            domain_rating=r.rating,
            rating_metric=None if r.rating is None else "Test DR",
            lost=r.lost,
            lost_reason=r.reason if r.lost else None,
        )
        for r in rows
    ]
    if malformed:
        records.append(Backlink("not a url", "https://a.example/"))
    return records


def _domain_records(rows: list[DomainRow], malformed: bool) -> list[RefDomain]:
    records = [
        RefDomain(r.domain, r.links, r.rating, None if r.rating is None else "Test DR", lost=r.lost)
        for r in rows
    ]
    if malformed:
        records.append(RefDomain("not a domain/x"))
    return records


def real_key(key: tuple[str, str]) -> int:
    """The ledger's key of a model link (or, with an empty target, of a page)."""
    url_from, url_to = key
    norm_from = normalize_url(url_from) or url_from
    return link_key(norm_from, normalize_target(url_to) or "" if url_to else "")


def real_sightings(store: Store, site: str) -> set[tuple[object, ...]]:
    """(series, key, values, first, last, ended) of each sighting of a site."""
    rows = store.conn.execute(
        """SELECT se.source || '/' || se.format, si.link_key, si.anchor, si.domain_rating,
               si.first_at, si.last_at, en.taken_at
        FROM sightings si JOIN series se ON se.id = si.series_id
        JOIN sites s ON s.id = si.site_id LEFT JOIN snapshots en ON en.id = si.ended_snapshot_id
        WHERE s.domain = ?""",
        (site,),
    ).fetchall()
    return {(r[0], r[1], (r[2], r[3]), r[4], r[5], r[6]) for r in rows}


def seen_by_disagreements(store: Store) -> int:
    """Links whose seen_by bit of a complete series disagrees with the series' open
    sightings, plus open sightings of a complete series with no link: always 0."""
    bits, orphans = store.conn.execute(
        """SELECT
            (SELECT count(*) FROM links l JOIN series se ON se.site_id = l.site_id
             WHERE se.coverage = 'complete' AND ((l.seen_by & se.bit) != 0) != EXISTS (
                SELECT 1 FROM sightings o WHERE o.series_id = se.id
                  AND o.link_key = l.link_key AND o.ended_snapshot_id IS NULL)),
            (SELECT count(*) FROM sightings o JOIN series se ON se.id = o.series_id
             WHERE se.coverage = 'complete' AND o.ended_snapshot_id IS NULL
               AND NOT EXISTS (SELECT 1 FROM links l WHERE l.site_id = o.site_id
                               AND l.link_key = o.link_key))"""
    ).fetchone()
    return int(bits) + int(orphans)


def model_sightings(model: SiteModel) -> set[tuple[object, ...]]:
    return {
        (
            x.series,
            real_key(x.key),  # type: ignore[arg-type]
            x.values,
            to_db(x.first_at),
            to_db(x.last_at) if x.last_at else None,
            to_db(x.ended_at) if x.ended_at else None,
        )
        for x in model.sightings
    }


def real_domain_sightings(store: Store, site: str) -> set[tuple[object, ...]]:
    rows = store.conn.execute(
        """SELECT se.source || '/' || se.format, ds.domain, ds.links, ds.domain_rating,
               ds.first_at, ds.last_at, en.taken_at
        FROM domain_sightings ds JOIN series se ON se.id = ds.series_id
        JOIN sites s ON s.id = ds.site_id LEFT JOIN snapshots en ON en.id = ds.ended_snapshot_id
        WHERE s.domain = ?""",
        (site,),
    ).fetchall()
    return {(r[0], r[1], (r[2], r[3]), r[4], r[5], r[6]) for r in rows}


def model_domain_sightings(model: SiteModel) -> set[tuple[object, ...]]:
    return {
        (
            x.series,
            x.key,
            x.values,
            to_db(x.first_at),
            to_db(x.last_at) if x.last_at else None,
            to_db(x.ended_at) if x.ended_at else None,
        )
        for x in model.domain_sightings
    }


def _digest(name: str, rows: list[Row], malformed: bool) -> str:
    return hashlib.sha256(repr((name, rows, malformed)).encode()).hexdigest()


def _real_states(store: Store, site: str) -> dict[tuple[str, str], tuple[object, ...]]:
    return {
        (r["url_from"], r["url_to"]): (r["state"], r["anchor"], r["domain_rating"])
        for r in store.links(site)
    }


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


@dataclass(frozen=True)
class Snapshot:
    """One generated snapshot, to feed to the real store and to the model alike."""

    number: int
    site: str
    source: str
    fmt: str
    coverage: str
    rows: tuple[Row | DomainRow, ...]
    malformed: bool
    taken: datetime

    @property
    def name(self) -> str:
        return f"{self.source}/{self.fmt}"

    @property
    def origin(self) -> str:
        return f"{self.number}.csv"

    def result(self) -> SnapshotResult:
        """A fresh SnapshotResult of this snapshot (its records can be read once)."""
        result = SnapshotResult(
            taken_at=self.taken,
            records=iter(()),
            origin=self.origin,
            format=self.fmt,
            digest=_digest(self.name, list(self.rows), self.malformed),
            sample=self.coverage == "sample",
        )
        if self.coverage == "domains":
            rows = [r for r in self.rows if isinstance(r, DomainRow)]
            result.domain_records = iter(_domain_records(rows, self.malformed))
        else:
            links = [r for r in self.rows if isinstance(r, Row)]
            result.records = iter(_records(links, self.malformed))
        return result

    def ingest(self, store: Store, guards: GuardSettings) -> str:
        """Ingest into the real store; its status, or "out of order"."""
        try:
            return store.ingest(self.site, self.source, self.result(), guards, self.taken).status
        except OutOfOrderError:
            return "out of order"

    def model(self, model: SiteModel, guards: Guards) -> str:
        """Apply to the model; its status, or "out of order"."""
        digest = _digest(self.name, list(self.rows), self.malformed)
        try:
            if self.coverage == "domains":
                return model.ingest_domains(
                    self.name,
                    self.taken,
                    [r for r in self.rows if isinstance(r, DomainRow)],
                    malformed=self.malformed,
                    digest=digest,
                    guards=guards,
                )
            return model.ingest(
                self.name,
                self.coverage,
                self.taken,
                [r for r in self.rows if isinstance(r, Row)],
                malformed=self.malformed,
                digest=digest,
                guards=guards,
            )
        except ModelOutOfOrder:
            return "out of order"


@dataclass
class Snapshots:
    """Turns steps into snapshots: the series each names, its rows, when it was taken."""

    chosen: list[int]
    clock: datetime = T0
    last: dict[tuple[int, int], tuple[tuple[Row | DomainRow, ...], bool, datetime]] = field(
        default_factory=dict
    )

    def make(self, number: int, step: Step) -> Snapshot:
        """The snapshot a step makes (moving the clock)."""
        site = SITES[step.site]
        source, fmt, coverage = SERIES[self.chosen[step.series % len(self.chosen)]]
        rows: tuple[Row | DomainRow, ...]
        if step.repeat and (step.site, step.series) in self.last:
            # The same file again: at the same time (a duplicate) or later (re-observed).
            rows, malformed, taken = self.last[(step.site, step.series)]
            if step.dt > 0:
                taken = self.clock = self.clock + step.dt * DAY
        else:
            if coverage == "domains":
                rows = tuple(_domain_rows(step))
            else:
                rows = tuple(_rows(site, step, coverage))
            malformed = step.malformed
            # A negative step is an export older than the latest one.
            taken = self.clock + step.dt * DAY
            self.clock = max(self.clock, taken)
        self.last[(step.site, step.series)] = (rows, malformed, taken)
        return Snapshot(number, site, source, fmt, coverage, rows, malformed, taken)


@dataclass
class Timeline:
    """The real store and the model, fed the same snapshots, checked after each."""

    store: Store
    snapshots: Snapshots
    guards: GuardSettings
    model_guards: Guards
    models: dict[str, SiteModel] = field(default_factory=lambda: {s: SiteModel() for s in SITES})
    accepted: dict[str, set[datetime]] = field(default_factory=lambda: {s: set() for s in SITES})
    memo: dict[tuple[str, datetime, timedelta], dict[str, object]] = field(default_factory=dict)

    @property
    def clock(self) -> datetime:
        return self.snapshots.clock

    def step(self, number: int, step: Step) -> tuple[str, datetime]:
        """Ingest one snapshot into both; return its status and time."""
        snap = self.snapshots.make(number, step)
        model_status = snap.model(self.models[snap.site], self.model_guards)
        real_status = snap.ingest(self.store, self.guards)
        assert real_status == model_status, (number, step)
        event(f"{snap.coverage} snapshot: {real_status}")
        if real_status in ("baseline", "complete"):
            self.accepted[snap.site].add(snap.taken)
        if real_status != "out of order":
            self.check_past(snap.site, snap.taken)
        return real_status, snap.taken

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
        """Link states, sightings, metrics and lost-domain lists agree with the model."""
        assert seen_by_disagreements(self.store) == 0
        for site in SITES:
            model = self.models[site]
            want = {
                (lk.url_from, lk.url_to): (lk.state, lk.anchor, lk.rating)
                for lk in model.links.values()
            }
            assert _real_states(self.store, site) == want, site
            assert real_sightings(self.store, site) == model_sightings(model), site
            assert real_domain_sightings(self.store, site) == model_domain_sightings(model)
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
                Snapshots(chosen),
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
    chosen=series_choices,
    timeline=st.lists(steps, min_size=1, max_size=20),
    confirm_after=st.integers(1, 3),
    ttl_days=st.sampled_from([4, 90]),
)
def test_ledger_agrees_with_the_reference_model(
    chosen: list[int], timeline: list[Step], confirm_after: int, ttl_days: int
) -> None:
    run_timeline(chosen, timeline, confirm_after, ttl_days)
