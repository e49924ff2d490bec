"""Window metrics computed from a ledger built by ingesting small generic CSV exports."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerts.metrics import METRICS, Metrics, compute_metrics
from daemon.store import GuardSettings, IngestOutcome, Store
from sources.exports import ExportFile

SITE = "example.com"
T0 = datetime(2026, 3, 1, tzinfo=UTC)
GUARDS = GuardSettings(confirm_after=2, suspect_below=0.5)
DAY = timedelta(days=1)


def day(n: float) -> datetime:
    return T0 + n * DAY


# Referring pages; A and B share the registrable domain example.org.
A = "https://blog.example.org/post-1"
B = "https://www.example.org/links"
C = "https://news.example.io/partners"
D = "https://forum.example.net/t/1"
E = "https://reviews.example.co.uk/r"
F = "https://new.example.info/x"

# (day, referring pages in that day's export); confirm_after = 2.
TIMELINE: list[tuple[float, list[str]]] = [
    (0, [A, B, C, D]),  # baseline: 4 links, 3 domains
    (1, [A, B, C, D, E]),  # E new (new domain example.co.uk)
    (2, [B, C, D, E]),  # A missing
    (3, [B, C, D, E, F]),  # A lost (example.org lives on through B); F new (example.info)
    (4, [C, D, E, F]),  # B missing
    (5, [C, E, F]),  # B lost: example.org lost; D missing
    (6, [C, D, E, F]),  # D restored
    (7, [B, C, D, E, F]),  # B back from lost: a new link, example.org regained
]


def write_generic(path: Path, pages: Sequence[str], anchors: dict[str, str] | None = None) -> Path:
    lines = ["url_from,url_to,anchor,nofollow"]
    for page in pages:
        anchor = (anchors or {}).get(page, "Example")
        lines.append(f"{page},https://{SITE}/,{anchor},false")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def ingest_file(
    store: Store, tmp_path: Path, when: float, pages: Sequence[str], source: str = "csv"
) -> IngestOutcome:
    path = write_generic(tmp_path / f"{source}-{when}.csv", pages)
    result = ExportFile(path, SITE).snapshot(day(when))
    return store.ingest(SITE, source, result, GUARDS, day(when) + timedelta(minutes=3))


def open_store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "linkwatch.db")
    store.ensure_site(SITE, "own")
    return store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path)
    yield s
    s.close()


@pytest.fixture(scope="module")
def timeline_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """The whole TIMELINE ingested, for evaluating at past instants."""
    tmp_path = tmp_path_factory.mktemp("timeline")
    s = open_store(tmp_path)
    for when, pages in TIMELINE:
        outcome = ingest_file(s, tmp_path, when, pages)
        assert outcome.status in ("baseline", "complete"), outcome
    yield s
    s.close()


@dataclass(frozen=True)
class Case:
    """Metrics expected over (at - window, at]."""

    name: str
    at: float
    window: float
    expect: dict[str, Any] = field(default_factory=dict)


def m(
    new: int,
    lost: int,
    new_rd: int,
    lost_rd: int,
    pct: float | None,
    live: int,
    live_rd: int,
) -> dict[str, Any]:
    return {
        "new_links": new,
        "lost_links": lost,
        "net_links": new - lost,
        "new_refdomains": new_rd,
        "lost_refdomains": lost_rd,
        "net_refdomains": new_rd - lost_rd,
        "lost_refdomains_pct": pct,
        "live_links": live,
        "live_refdomains": live_rd,
    }


CASES = [
    Case("baseline is silent", at=0, window=1, expect=m(0, 0, 0, 0, 0.0, 4, 3)),
    Case("new link from a new domain", at=1, window=1, expect=m(1, 0, 1, 0, 0.0, 5, 4)),
    Case("a missing link is not lost", at=2, window=1, expect=m(0, 0, 0, 0, 0.0, 4, 4)),
    Case(
        "first of two links of a domain lost: domain kept",
        at=3,
        window=1,
        expect=m(1, 1, 1, 0, 0.0, 5, 5),
    ),
    Case("second link missing", at=4, window=1, expect=m(0, 0, 0, 0, 0.0, 4, 4)),
    Case(
        "last link of a domain lost: domain lost",
        at=5,
        window=1,
        expect=m(0, 1, 0, 1, 20.0, 3, 3),
    ),
    Case("restored is not new", at=6, window=1, expect=m(0, 0, 0, 0, 0.0, 4, 4)),
    Case(
        "week window from before the baseline",
        at=5,
        window=7,
        expect=m(2, 2, 2, 1, 33.33, 3, 3),
    ),
    Case("whole history at the end", at=6, window=6, expect=m(2, 2, 2, 1, 33.33, 4, 4)),
    Case("start boundary is exclusive", at=3, window=2, expect=m(1, 1, 1, 0, 0.0, 5, 5)),
    Case("end boundary is inclusive", at=1, window=0.5, expect=m(1, 0, 1, 0, 0.0, 5, 4)),
    Case("between snapshots, no events", at=2.5, window=0.4, expect=m(0, 0, 0, 0, 0.0, 4, 4)),
    Case("just before a snapshot", at=3 - 1e-5, window=1, expect=m(0, 0, 0, 0, 0.0, 4, 4)),
    Case("window over two losses", at=5.5, window=3, expect=m(1, 2, 1, 1, 25.0, 3, 3)),
    Case("back from lost counts as new", at=7, window=1, expect=m(1, 0, 1, 0, 0.0, 5, 5)),
    Case("long after the last snapshot", at=30, window=7, expect=m(0, 0, 0, 0, 0.0, 5, 5)),
    Case("everything", at=30, window=30, expect=m(3, 2, 2, 0, 0.0, 5, 5)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_metrics_at_past_instants(timeline_store: Store, case: Case) -> None:
    metrics = compute_metrics(timeline_store, SITE, case.window * DAY, day(case.at))
    assert metrics is not None
    assert {k: getattr(metrics, k) for k in METRICS} == case.expect
    assert (metrics.site, metrics.window, metrics.at) == (SITE, case.window * DAY, day(case.at))


def test_metrics_evaluated_live_equal_metrics_evaluated_later(
    tmp_path: Path, timeline_store: Store
) -> None:
    """Right after each ingest, the metrics are what a later backtest says about that instant."""
    store = open_store(tmp_path)
    try:
        for when, pages in TIMELINE:
            ingest_file(store, tmp_path, when, pages)
            for window in (1, 2, 7):
                live = compute_metrics(store, SITE, window * DAY, day(when))
                later = compute_metrics(timeline_store, SITE, window * DAY, day(when))
                assert live == later, (when, window)
    finally:
        store.close()


@pytest.mark.parametrize("at", [-1, -1e-5])
def test_no_metrics_before_the_first_snapshot(timeline_store: Store, at: float) -> None:
    assert compute_metrics(timeline_store, SITE, 7 * DAY, day(at)) is None


def test_no_metrics_without_any_snapshot(store: Store) -> None:
    assert compute_metrics(store, SITE, 7 * DAY, day(10)) is None


def test_no_metrics_when_only_unaccepted_snapshots_exist(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "url_from,url_to,anchor,nofollow\n"
        f"{A},https://{SITE}/,x,false\n"
        f"{C},https://{SITE}/,x,sometimes\n",
        encoding="utf-8",
    )
    outcome = store.ingest(SITE, "csv", ExportFile(path, SITE).snapshot(day(0)), GUARDS, day(0))
    assert outcome.status == "partial"
    store.record_failure(SITE, "csv", day(1), "api", "HTTP 503", day(1))
    assert compute_metrics(store, SITE, 7 * DAY, day(2)) is None
    # The first accepted snapshot is the baseline; metrics start there.
    ingest_file(store, tmp_path, 3, [A, C])
    assert compute_metrics(store, SITE, 7 * DAY, day(2)) is None
    metrics = compute_metrics(store, SITE, 7 * DAY, day(3))
    assert metrics is not None
    assert (metrics.live_links, metrics.live_refdomains, metrics.new_links) == (2, 2, 0)


def test_suspect_snapshot_moves_no_metric(store: Store, tmp_path: Path) -> None:
    ingest_file(store, tmp_path, 0, [A, B, C, D, E, F])
    ingest_file(store, tmp_path, 1, [A, B, C, D, E, F])
    assert ingest_file(store, tmp_path, 2, [C, D]).status == "suspect"
    metrics = compute_metrics(store, SITE, 7 * DAY, day(2))
    assert metrics is not None
    assert {k: getattr(metrics, k) for k in METRICS} == m(0, 0, 0, 0, 0.0, 6, 5)


def test_an_empty_export_is_no_baseline_and_no_data(store: Store, tmp_path: Path) -> None:
    assert ingest_file(store, tmp_path, 0, []).status == "suspect"
    assert compute_metrics(store, SITE, DAY, day(0)) is None
    assert ingest_file(store, tmp_path, 1, [A, B, C]).status == "baseline"
    metrics = compute_metrics(store, SITE, DAY, day(1))
    assert metrics is not None
    # The baseline's links were there before history began: 2 domains at the start.
    assert {k: getattr(metrics, k) for k in METRICS} == m(0, 0, 0, 0, 0.0, 3, 2)


def test_confirm_after_one_loses_a_domain_in_one_snapshot(store: Store, tmp_path: Path) -> None:
    guards = GuardSettings(confirm_after=1, suspect_below=0.5)
    for when, pages in ((0, [A, B, C, D]), (1, [C, D])):
        path = write_generic(tmp_path / f"{when}.csv", pages)
        store.ingest(SITE, "csv", ExportFile(path, SITE).snapshot(day(when)), guards, day(when))
    metrics = compute_metrics(store, SITE, DAY, day(1))
    assert metrics is not None
    assert {k: getattr(metrics, k) for k in METRICS} == m(0, 2, 0, 1, 33.33, 2, 2)


def test_lost_domains_names_the_wholly_lost_domain_first(timeline_store: Store) -> None:
    lost = timeline_store.lost_domains(SITE, day(2), day(5), limit=10)
    assert [(d.refdomain, d.domain_lost) for d in lost] == [("example.org", True)]
    assert lost[0].url_from in (A, B)
    assert lost[0].reason == "dropped"
    partly = timeline_store.lost_domains(SITE, day(2), day(3), limit=10)
    assert [(d.refdomain, d.domain_lost, d.url_from) for d in partly] == [("example.org", False, A)]


def test_window_counts_match_metrics(timeline_store: Store) -> None:
    counts = timeline_store.window_counts(SITE, day(4), day(5))
    metrics = compute_metrics(timeline_store, SITE, DAY, day(5))
    assert isinstance(metrics, Metrics)
    assert counts.refdomains_at_start == 5
    assert (counts.new_links, counts.lost_links) == (metrics.new_links, metrics.lost_links)
    assert (counts.lost_refdomains, counts.live_links) == (1, 3)


def test_second_source_baseline_does_not_rewrite_the_past(store: Store, tmp_path: Path) -> None:
    """Links a second source first reports at day 3 were not live at day 1."""
    ingest_file(store, tmp_path, 0, [A, C], source="ahrefs")
    before = compute_metrics(store, SITE, DAY, day(1))
    assert before is not None
    assert (before.live_links, before.live_refdomains) == (2, 2)
    assert ingest_file(store, tmp_path, 3, [A, C, F], source="gsc").status == "baseline"
    after = compute_metrics(store, SITE, DAY, day(1))
    assert after == before
    # Nor is what it revealed a gain: its baseline is as silent as the first one.
    now = compute_metrics(store, SITE, 7 * DAY, day(3))
    assert now is not None
    assert (now.new_links, now.new_refdomains, now.live_links) == (0, 0, 3)


def test_value_reads_one_metric_and_keeps_none() -> None:
    metrics = Metrics(
        site=SITE,
        window=DAY,
        at=day(1),
        new_links=3,
        lost_links=1,
        net_links=2,
        new_refdomains=1,
        lost_refdomains=0,
        net_refdomains=1,
        lost_refdomains_pct=None,
        live_links=5,
        live_refdomains=4,
    )
    assert metrics.value("lost_refdomains_pct") is None
    assert metrics.value("net_links") == 2.0 and isinstance(metrics.value("net_links"), float)


def test_a_domain_that_loses_one_link_and_gains_another_is_neither_lost_nor_new(
    store: Store, tmp_path: Path
) -> None:
    # A and B share example.org: A is lost while B arrives in the same window.
    guards = GuardSettings(confirm_after=1)
    for when, pages in ((0, [A, C, D]), (1, [B, C, D])):
        path = write_generic(tmp_path / f"{when}.csv", pages)
        store.ingest(SITE, "csv", ExportFile(path, SITE).snapshot(day(when)), guards, day(when))
    metrics = compute_metrics(store, SITE, DAY, day(1))
    assert metrics is not None
    assert {k: getattr(metrics, k) for k in METRICS} == m(1, 1, 0, 0, 0.0, 3, 3)


def test_windows_over_many_domains_count_every_one(store: Store, tmp_path: Path) -> None:
    # More than a thousand domains move: their current counts are read in chunks.
    pages = [f"https://site{i}.example{i}.org/p" for i in range(2400)]
    guards = GuardSettings(confirm_after=1)
    for when, kept in ((0, pages), (1, pages[:1200])):
        path = write_generic(tmp_path / f"{when}.csv", kept)
        store.ingest(SITE, "csv", ExportFile(path, SITE).snapshot(day(when)), guards, day(when))
    metrics = compute_metrics(store, SITE, DAY, day(1))
    assert metrics is not None
    assert (metrics.lost_refdomains, metrics.live_refdomains, metrics.live_links) == (
        1200,
        1200,
        1200,
    )
    assert metrics.lost_refdomains_pct == 50.0


def test_lost_domains_rank_wholly_lost_then_by_rating_and_respect_the_limit(
    store: Store, tmp_path: Path
) -> None:
    # Domain ratings: none, 0, 0.5 and 7 (two pages of one domain, one kept).
    rows = [
        ("https://a.norating.org/1", None),
        ("https://zero.org/1", 0.0),
        ("https://half.org/1", 0.5),
        ("https://big.org/1", 7.0),
        ("https://two.big.org/1", 7.0),
    ]
    lines = ["url_from,url_to,anchor,domain_rating"] + [
        f"{u},https://{SITE}/x,a,{'' if r is None else r}" for u, r in rows
    ]
    guards = GuardSettings(confirm_after=1, suspect_below=0.1)
    (tmp_path / "0.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "1.csv").write_text("\n".join(lines[:1] + lines[-1:]) + "\n", encoding="utf-8")
    for when in (0, 1):
        path = tmp_path / f"{when}.csv"
        store.ingest(SITE, "csv", ExportFile(path, SITE).snapshot(day(when)), guards, day(when))
    lost = store.lost_domains(SITE, day(0), day(1), limit=10)
    assert [(d.refdomain, d.domain_lost) for d in lost] == [
        ("half.org", True),
        ("zero.org", True),
        ("norating.org", True),
        ("big.org", False),
    ]
    assert lost[0].url_to == f"https://{SITE}/x" and lost[0].anchor == "a"
    assert [d.refdomain for d in store.lost_domains(SITE, day(0), day(1), limit=2)] == [
        "half.org",
        "zero.org",
    ]
