"""Rule kinds: threshold filters, spike, link_lost, link_new and competitor_pace, on real
SQLite ledgers fed real exports; and a property proving filtered counts right."""

from __future__ import annotations

import re
import tempfile
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from alerts.engine import MemoryAlertBook, evaluate
from alerts.metrics import compute_metrics
from alerts.rules import RULE_KINDS, Rule
from alerts.rules.competitor_pace import CompetitorPaceRule
from alerts.rules.context import EvaluationContext
from alerts.rules.link_lost import LinkLostRule
from alerts.rules.link_new import LinkNewRule
from alerts.rules.links import MAX_LISTED, _domains, normalize_target_prefix
from alerts.rules.spike import SpikeBounds, SpikeRule, spike_bounds, spike_holds
from alerts.rules.threshold import ThresholdRule
from daemon.settings import ConfigError, load_settings
from daemon.store import GuardSettings, Store
from daemon.store.reads import LinkFilter, window_links
from sources.exports import ExportFile
from sources.model import Backlink, SnapshotResult
from tests.helpers import write_settings

ROOT = Path(__file__).resolve().parent.parent
SITE = "example.com"
T0 = datetime(2026, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)
NOTIFY = 'notify = ["console"]\n'


def day(n: float) -> datetime:
    return T0 + n * DAY


@dataclass(frozen=True)
class Link:
    """One backlink as an export lists it."""

    url_from: str
    url_to: str
    dr: float | None = 50
    nofollow: bool = False


def write_generic(path: Path, links: Sequence[Link]) -> Path:
    """A generic CSV export with domain rating and nofollow columns."""
    lines = ["url_from,url_to,anchor,nofollow,domain_rating"]
    for lk in links:
        dr = "" if lk.dr is None else f"{lk.dr:g}"
        lines.append(f"{lk.url_from},{lk.url_to},anchor,{str(lk.nofollow).lower()},{dr}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Ledger:
    """A real store in a temporary folder, fed exports day by day."""

    def __init__(self, folder: Path, sites: Sequence[str] = (SITE,), confirm_after: int = 1):
        self.folder = folder
        self.store = Store(folder / "linkwatch.db")
        # No size guard: these timelines drop most of a profile on purpose.
        self.guards = GuardSettings(confirm_after=confirm_after, suspect_below=0.0)
        for site in sites:
            self.store.ensure_site(site, "own")
        self.n = 0

    def ingest(self, site: str, when: float, links: Sequence[Link]) -> str:
        self.n += 1
        path = write_generic(self.folder / f"{site}-{self.n}.csv", links)
        result = ExportFile(path, site).snapshot(day(when))
        outcome = self.store.ingest(site, "exports", result, self.guards, day(when))
        assert outcome.status in ("baseline", "complete"), outcome
        return outcome.status

    def ctx(
        self,
        at: float,
        own: Sequence[str] = (SITE,),
        competitors: dict[str, tuple[str, ...]] | None = None,
    ) -> EvaluationContext:
        return EvaluationContext(
            self.store,
            day(at),
            day(at),
            list(own),
            list(own),
            competitors=competitors or {},
        )


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    lg = Ledger(tmp_path, sites=(SITE, "rival.example", "other.example"))
    yield lg
    lg.store.close()


def rule(kind: str, body: str, name: str = "r") -> Rule:
    raw = tomllib.loads(f'kind = "{kind}"\n{NOTIFY}{body}')
    return RULE_KINDS[kind].from_file(name, raw)


# --- threshold filters ------------------------------------------------------------------

L1 = Link("https://blog.alpha.com/a", "https://example.com/blog/post", dr=70)
L2 = Link("https://alpha.com/b", "https://example.com/", dr=70, nofollow=True)
L3 = Link("https://beta.org/x", "https://www.example.com/blog/other", dr=30)
L4 = Link("https://gamma.net/y", "https://example.com/pricing", dr=None)
L5 = Link("https://news.delta.io/z", "https://example.com/blog/x", dr=55)


@pytest.fixture(scope="module")
def filtered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    """Day 0 baseline L1-L4; day 1: L1 and L4 lost, L5 new (confirm_after = 1)."""
    lg = Ledger(tmp_path_factory.mktemp("filters"))
    lg.ingest(SITE, 0, [L1, L2, L3, L4])
    lg.ingest(SITE, 1, [L2, L3, L5])
    yield lg
    lg.store.close()


def counts(
    new: int, lost: int, new_rd: int, lost_rd: int, live: int, live_rd: int, pct: float | None
) -> dict[str, Any]:
    return {
        "new_links": new,
        "lost_links": lost,
        "net_links": new - lost,
        "new_refdomains": new_rd,
        "lost_refdomains": lost_rd,
        "net_refdomains": new_rd - lost_rd,
        "live_links": live,
        "live_refdomains": live_rd,
        "lost_refdomains_pct": pct,
    }


FILTER_CASES = [
    # (filter keys, expected metrics over (day 0, day 1])
    ("", counts(1, 2, 1, 1, 3, 3, 33.33)),
    # Without nofollow L2, alpha.com's only link L1 is lost: the domain is lost.
    ("dofollow_only = true", counts(1, 2, 1, 2, 2, 2, 66.67)),
    # Unknown rating (L4) is not "at least 50".
    ("min_domain_rating = 50", counts(1, 1, 1, 0, 2, 2, 0.0)),
    ('watch_domains = ["alpha.com"]', counts(0, 1, 0, 0, 1, 1, 0.0)),
    # A listed subdomain: only blog.alpha.com (and its subdomains), not alpha.com itself.
    ('watch_domains = ["Blog.Alpha.com"]', counts(0, 1, 0, 1, 0, 0, 100.0)),
    ('watch_domains = ["org", "delta.io"]', counts(1, 0, 1, 0, 2, 2, 0.0)),
    # `www.` and the scheme are normalised away, as in stored target URLs.
    ('target_prefix = "https://www.example.com/blog/"', counts(1, 1, 1, 1, 2, 2, 50.0)),
    ('target_prefix = "/blog/"', counts(1, 1, 1, 1, 2, 2, 50.0)),
    ('target_prefix = "example.com/blog/post"', counts(0, 1, 0, 1, 0, 0, 100.0)),
    ('target_prefix = "https://other.example/"', counts(0, 0, 0, 0, 0, 0, None)),
    (
        'dofollow_only = true\nmin_domain_rating = 50\ntarget_prefix = "/blog"',
        counts(1, 1, 1, 1, 1, 1, 100.0),
    ),
]


@pytest.mark.parametrize(("keys", "expect"), FILTER_CASES, ids=[c[0] for c in FILTER_CASES])
def test_threshold_filters_count_only_matching_links(
    filtered: Ledger, keys: str, expect: dict[str, Any]
) -> None:
    r = rule("threshold", f'metric = "lost_links"\nwindow = "1d"\nop = ">="\nvalue = 1\n{keys}\n')
    assert isinstance(r, ThresholdRule)
    assert (r.link_filter is None) == (keys == "")
    ctx = filtered.ctx(1)
    m = ctx.metrics(SITE, DAY, link_filter=r.link_filter)
    assert m is not None
    assert {k: getattr(m, k) for k in expect} == expect
    check = r.check(ctx, SITE)
    assert check.value == expect["lost_links"]
    assert check.holds is (expect["lost_links"] >= 1)
    # The message lists lost domains, over the rule's filter (next test).
    assert check.with_lost_domains


def test_filtered_summary_names_the_filter_and_lost_domains_follow_it(filtered: Ledger) -> None:
    r = rule(
        "threshold",
        'metric = "lost_refdomains"\nwindow = "1d"\nop = ">="\nvalue = 1\n'
        "dofollow_only = true\nmin_domain_rating = 60\n",
    )
    assert isinstance(r, ThresholdRule)
    check = r.check(filtered.ctx(1), SITE)
    assert check.summary == (
        "example.com: lost_refdomains (dofollow, DR >= 60) is 1 (>= 1) over 1d"
    )
    listed = filtered.store.lost_domains(SITE, day(0), day(1), 10, link_filter=r.link_filter)
    assert [(d.refdomain, d.domain_lost) for d in listed] == [("alpha.com", True)]
    # The firing message lists exactly these: the same links as the metric.
    book = MemoryAlertBook()
    [fired] = evaluate(filtered.store, [r], filtered.ctx(1), book)
    assert fired.state == "firing"
    [told] = book.told
    assert [d["refdomain"] for d in told.message["lost_domains"]] == ["alpha.com"]
    # Unfiltered, alpha.com keeps its nofollow link and gamma.net is the lost domain.
    listed = filtered.store.lost_domains(SITE, day(0), day(1), 10)
    assert [(d.refdomain, d.domain_lost) for d in listed] == [
        ("gamma.net", True),
        ("alpha.com", False),
    ]


def test_metrics_are_cached_per_filter(filtered: Ledger) -> None:
    ctx = filtered.ctx(1)
    dofollow = LinkFilter(dofollow_only=True)
    a = ctx.metrics(SITE, DAY, link_filter=dofollow)
    b = ctx.metrics(SITE, DAY)
    assert a is not None and b is not None and a.live_links == 2 and b.live_links == 3
    assert ctx.metrics(SITE, DAY, link_filter=LinkFilter(dofollow_only=True)) is a
    # A filter that lets everything through is no filter.
    assert ctx.metrics(SITE, DAY, link_filter=LinkFilter()) is b


BAD_THRESHOLD = [
    ("min_domain_rating = 101", "min_domain_rating"),
    ("min_domain_rating = -1", "min_domain_rating"),
    ("min_domain_rating = nan", "min_domain_rating"),
    ("watch_domains = []", "watch_domains"),
    ('watch_domains = ["http://alpha.com/x"]', "watch_domains"),
    ('watch_domains = ["a..b"]', "watch_domains"),
    (f"watch_domains = [{', '.join(repr(f'd{i}.com') for i in range(501))}]", "watch_domains"),
    ('target_prefix = "no host here"', "target_prefix"),
    ('target_prefix = ""', "target_prefix"),
    (f'target_prefix = "/{"x" * 2048}"', "target_prefix"),
    ('summary = "{site} {nope}"', "summary"),
    ('domains = ["alpha.com"]', "domains"),  # link rules' key, not threshold's
]


@pytest.mark.parametrize(("keys", "field"), BAD_THRESHOLD, ids=[c[1] for c in BAD_THRESHOLD])
def test_threshold_filter_keys_are_bounded(keys: str, field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        rule("threshold", f'metric = "lost_links"\nwindow = "1d"\nop = ">="\nvalue = 1\n{keys}\n')
    assert any(err["loc"][0] == field for err in exc.value.errors())


def test_filter_values_are_normalised_as_stored_urls_are() -> None:
    assert _domains(["WWW.Alpha.com", "bücher.de", "alpha.com."]) == [
        "alpha.com",
        "xn--bcher-kva.de",
    ]
    assert normalize_target_prefix("HTTPS://www.Example.com:443/Blog/%7euser") == (
        "example.com/Blog/~user"
    )
    assert normalize_target_prefix("example.com") == "example.com/"
    assert normalize_target_prefix("/blog/%c3%bc") == "/blog/%C3%BC"


# --- the property: filtered counts equal those of a ledger holding only matching links ---

# Referring pages: (url, domain rating); two share alpha.com and two beta.org.
PAGES = (
    ("https://alpha.com/p1", 70.0),
    ("https://blog.alpha.com/p2", 40.0),
    ("https://beta.org/links", 55.0),
    ("https://news.beta.org/x", None),
    ("https://gamma.net/a", 20.0),
    ("https://www.delta.io/b", 90.0),
)
TARGETS = ("https://a.example/", "https://a.example/blog/a", "https://www.a.example/pricing")
UNIVERSE = [(i, j) for i in range(len(PAGES)) for j in range(len(TARGETS))]
PROP_SITE = "a.example"
SERIES_FORMATS = ("ahrefs", "semrush")


def _record(n: int, lost: bool = False) -> Backlink:
    i, j = UNIVERSE[n]
    url, dr = PAGES[i]
    # Fixed per link: a filter reads each link's attributes as last reported.
    return Backlink(
        url,
        TARGETS[j],
        anchor=f"a{n}",
        nofollow=(i + j) % 3 == 0,
        sponsored=n % 7 == 5,
        domain_rating=dr,
        lost=lost,
        lost_reason="removed" if lost else None,
    )


def _matches(f: LinkFilter, rec: Backlink) -> bool:
    """The filter restated over an export row, independently of the SQL."""
    if f.dofollow_only and (rec.nofollow or rec.ugc or rec.sponsored):
        return False
    if f.min_domain_rating is not None and (
        rec.domain_rating is None or rec.domain_rating < f.min_domain_rating
    ):
        return False
    host = rec.url_from.split("/")[2].removeprefix("www.")
    if f.domains and not any(host == d or host.endswith("." + d) for d in f.domains):
        return False
    if f.target_prefix is not None:
        target = rec.url_to.split("://", 1)[1].removeprefix("www.")
        path = target[target.index("/") :]
        if not (target if not f.target_prefix.startswith("/") else path).startswith(
            f.target_prefix
        ):
            return False
    return True


def _anchor(f: LinkFilter) -> Backlink:
    """A link every snapshot lists and the filter lets through: a filtered snapshot is
    then never empty (an empty export is suspect and would not be believed)."""
    host = f"anchor.{f.domains[0]}" if f.domains else "anchor.net"
    prefix = f.target_prefix or "/"
    target = f"https://a.example{prefix}" if prefix.startswith("/") else f"https://{prefix}"
    return Backlink(f"https://{host}/always", target + "anchor", domain_rating=100.0)


filters = st.builds(
    LinkFilter,
    dofollow_only=st.booleans(),
    min_domain_rating=st.sampled_from([None, 0.0, 40.0, 55.0, 70.0]),
    domains=st.sampled_from(
        [(), ("alpha.com",), ("blog.alpha.com",), ("beta.org", "delta.io"), ("org",)]
    ),
    target_prefix=st.sampled_from(
        [None, "/", "/blog/", "/pricing", "a.example/blog/a", "a.example/", "a.example/p"]
    ),
)


@dataclass(frozen=True)
class Snap:
    series: int
    dt: float
    links: frozenset[int]
    marked_lost: frozenset[int]


snaps = st.builds(
    Snap,
    series=st.integers(0, len(SERIES_FORMATS) - 1),
    dt=st.sampled_from([0.5, 1.0, 1.0, 2.0, 3.0]),
    links=st.frozensets(st.integers(0, len(UNIVERSE) - 1)),
    marked_lost=st.frozensets(st.integers(0, len(UNIVERSE) - 1), max_size=3),
)


def _snapshot(records: list[Backlink], taken: datetime, fmt: str, origin: str) -> SnapshotResult:
    return SnapshotResult(
        taken_at=taken, records=iter(records), origin=origin, format=fmt, digest=origin
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(f=filters, timeline=st.lists(snaps, min_size=1, max_size=10), confirm=st.integers(1, 2))
def test_filtered_counts_equal_a_ledger_of_only_the_matching_links(
    f: LinkFilter, timeline: list[Snap], confirm: int
) -> None:
    # Size guards off: a filtered export is often much smaller than the one before it.
    guards = GuardSettings(confirm_after=confirm, suspect_below=0.0)
    anchor = _anchor(f)
    with tempfile.TemporaryDirectory() as folder:
        full, only = Store(Path(folder) / "full.db"), Store(Path(folder) / "only.db")
        try:
            for store in (full, only):
                store.ensure_site(PROP_SITE, "own")
            clock = T0
            ends: list[datetime] = []
            for n, snap in enumerate(timeline):
                clock += snap.dt * DAY
                records = [anchor, *(_record(k) for k in sorted(snap.links))]
                records += [_record(k, lost=True) for k in sorted(snap.marked_lost - snap.links)]
                matching = [r for r in records if _matches(f, r)]
                fmt = SERIES_FORMATS[snap.series]
                a = full.ingest(
                    PROP_SITE, "exports", _snapshot(records, clock, fmt, f"{n}"), guards, clock
                )
                b = only.ingest(
                    PROP_SITE, "exports", _snapshot(matching, clock, fmt, f"{n}"), guards, clock
                )
                assert a.status == b.status, (n, a, b)
                ends += [clock, clock - DAY / 2]
                for end in ends[-6:]:
                    for window in (DAY, 3 * DAY, 7 * DAY):
                        start = end - window
                        assert full.window_counts(PROP_SITE, start, end, f) == only.window_counts(
                            PROP_SITE, start, end
                        ), (n, end, window)
                        assert full.lost_domains(
                            PROP_SITE, start, end, 100, link_filter=f
                        ) == only.lost_domains(PROP_SITE, start, end, 100)
                        for change in ("lost", "gained"):
                            assert _links(full, start, end, change, f) == _links(
                                only, start, end, change, None
                            )
        finally:
            full.close()
            only.close()


def _links(
    store: Store, start: datetime, end: datetime, change: str, f: LinkFilter | None
) -> object:
    return window_links(store.conn, store.site_id(PROP_SITE), start, end, change, f, 1000)


def test_empty_filter_changes_nothing(filtered: Ledger) -> None:
    for start, end in ((day(-1), day(1)), (day(0), day(1)), (day(0.5), day(2))):
        assert filtered.store.window_counts(SITE, start, end) == filtered.store.window_counts(
            SITE, start, end, LinkFilter()
        )


# --- spike ------------------------------------------------------------------------------


def spike_ledger(folder: Path, new_per_day: Sequence[int]) -> Ledger:
    """Day 0: a baseline of one link; day d adds new_per_day[d - 1] links, each from a
    new domain."""
    lg = Ledger(folder)
    links = [Link("https://base.org/p", "https://example.com/")]
    lg.ingest(SITE, 0, links)
    for d, n in enumerate(new_per_day, start=1):
        links = links + [Link(f"https://d{d}-{k}.org/p", "https://example.com/") for k in range(n)]
        lg.ingest(SITE, d, links)
    return lg


SPIKE_CASES = [
    # (new links per day 1..5, rule keys, at, expected (value, holds, threshold))
    ([2, 2, 2, 2, 10], "factor = 3", 5, (10, True, 6)),
    ([2, 2, 2, 2, 5], "factor = 3", 5, (5, False, 6)),
    ([2, 2, 2, 2, 6], "factor = 3", 5, (6, True, 6)),
    # Quiet site: 1 -> 3 is three times the mean, but 3 is under min_reference (5).
    ([1, 1, 1, 1, 3], "factor = 2", 5, (3, False, 2)),
    ([1, 1, 1, 1, 3], "factor = 2\nmin_reference = 3", 5, (3, True, 2)),
    # From nothing: the mean is 0, so the current value alone decides (with min_reference).
    ([0, 0, 0, 0, 5], "factor = 2", 5, (5, True, 0)),
    ([0, 0, 0, 0, 0], "factor = 2\nmin_reference = 0", 5, (0, False, 0)),
    ([10, 10, 10, 10, 2], 'factor = 3\ndirection = "down"', 5, (2, True, 10 / 3)),
    ([10, 10, 10, 10, 4], 'factor = 3\ndirection = "down"', 5, (4, False, 10 / 3)),
    # Down needs the baseline mean to reach min_reference: 2 -> 0 on a quiet site is no drop.
    ([2, 2, 2, 2, 0], 'factor = 2\ndirection = "down"', 5, (0, False, 1)),
    ([10, 10, 10, 10, 2], 'factor = 3\ndirection = "up"', 5, (2, False, 30)),
    ([10, 10, 10, 10, 2], 'factor = 3\ndirection = "both"', 5, (2, True, 10 / 3)),
    ([10, 10, 10, 10, 40], 'factor = 3\ndirection = "both"', 5, (40, True, 30)),
    ([10, 10, 10, 10, 20], 'factor = 3\ndirection = "both"', 5, (20, False, 30)),
    # Two baseline windows of 2 days each: (1, 3] and (-1, 1] against (3, 5].
    ([1, 1, 1, 1, 9], 'factor = 2\nwindow = "2d"\nbaseline_windows = 2', 5, (10, True, 3)),
    # The oldest baseline window ends before the first snapshot: no data, no verdict.
    ([2, 2, 2, 2, 10], "factor = 3\nbaseline_windows = 5", 4.5, (None, None, None)),
]


@pytest.mark.parametrize(("per_day", "keys", "at", "expect"), SPIKE_CASES)
def test_spike(
    tmp_path: Path,
    per_day: list[int],
    keys: str,
    at: float,
    expect: tuple[float | None, bool | None, float | None],
) -> None:
    lg = spike_ledger(tmp_path, per_day)
    body = f'metric = "new_links"\n{keys}\n'
    if "window =" not in keys:
        body += 'window = "1d"\n'
    r = rule("spike", body)
    check = r.check(lg.ctx(at), SITE)
    value, holds, threshold = expect
    assert (check.value, check.holds) == (value, holds)
    if threshold is not None:
        assert check.threshold == pytest.approx(threshold)
    if holds is not None:
        assert "example.com: new_links is " in check.summary
    else:
        assert check.threshold is None and "no data" in check.summary
    lg.store.close()


def test_spike_summary_and_refdomain_metric(tmp_path: Path) -> None:
    lg = spike_ledger(tmp_path, [2, 2, 2, 2, 10])
    r = rule("spike", 'metric = "new_refdomains"\nwindow = "1d"\nfactor = 4\n')
    assert isinstance(r, SpikeRule) and r.op == ">="
    check = r.check(lg.ctx(5), SITE)
    assert check.summary == (
        "example.com: new_refdomains is 10 over 1d against a mean of 2 over the 4 windows"
        " before (spike up: >= 8)"
    )
    assert not check.with_lost_domains
    lg.store.close()


BOUNDS = [
    # (baseline, factor, direction, min_reference, current, holds, bound)
    ([4.0], 2.0, "up", 5.0, 8.0, True, 8.0),
    ([4.0], 2.0, "up", 5.0, 7.9, False, 8.0),
    # Net metrics below zero mirror: "down" is a net loss growing by the factor.
    ([-10.0, -10.0], 3.0, "down", 5.0, -30.0, True, -30.0),
    ([-10.0, -10.0], 3.0, "down", 5.0, -29.0, False, -30.0),
    # "up" from a net loss: the loss shrank to a third of the mean, or turned into a gain.
    ([-9.0], 3.0, "up", 5.0, -3.0, True, -3.0),
    ([-9.0], 3.0, "up", 5.0, 4.0, True, -3.0),
    ([-9.0], 3.0, "up", 5.0, -4.0, False, -3.0),
    ([-9.0], 3.0, "both", 5.0, -27.0, True, -27.0),
    ([0.0], 2.0, "down", 0.0, 0.0, False, 0.0),
    ([0.0], 2.0, "up", 0.0, 1.0, True, 0.0),
    ([0.0], 2.0, "down", 5.0, -5.0, True, 0.0),
]


@pytest.mark.parametrize(
    ("baseline", "factor", "direction", "ref", "current", "holds", "bound"), BOUNDS
)
def test_spike_bounds(
    baseline: list[float],
    factor: float,
    direction: str,
    ref: float,
    current: float,
    holds: bool,
    bound: float,
) -> None:
    bounds = spike_bounds(baseline, factor)
    assert isinstance(bounds, SpikeBounds)
    got, computed = spike_holds(current, bounds, direction, ref)
    assert got is holds and computed == pytest.approx(bound)


BAD_SPIKE = [
    ('metric = "live_links"\nwindow = "1d"\nfactor = 2', "metric"),
    ('metric = "lost_refdomains_pct"\nwindow = "1d"\nfactor = 2', "metric"),
    ('metric = "new_links"\nwindow = "1d"\nfactor = 1', "factor"),
    ('metric = "new_links"\nwindow = "1d"\nfactor = 1001', "factor"),
    ('metric = "new_links"\nwindow = "1d"\nfactor = inf', "factor"),
    ('metric = "new_links"\nwindow = "1d"\nfactor = 2\nbaseline_windows = 0', "baseline_windows"),
    ('metric = "new_links"\nwindow = "1d"\nfactor = 2\nbaseline_windows = 53', "baseline_windows"),
    ('metric = "new_links"\nwindow = "1d"\nfactor = 2\ndirection = "sideways"', "direction"),
    ('metric = "new_links"\nwindow = "1d"\nfactor = 2\nmin_reference = -1', "min_reference"),
    ('metric = "new_links"\nfactor = 2', "window"),
    ('metric = "new_links"\nwindow = "1d"', "factor"),
    ('metric = "new_links"\nwindow = "1d"\nfactor = 2\nsummary = "{nope}"', "summary"),
]


@pytest.mark.parametrize(("keys", "field"), BAD_SPIKE)
def test_spike_keys_are_bounded(keys: str, field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        rule("spike", keys + "\n")
    assert any(err["loc"] and err["loc"][0] == field for err in exc.value.errors())


def test_spike_history_reaches_back_at_most_ten_years() -> None:
    with pytest.raises(ValidationError, match="10 years"):
        rule("spike", 'metric = "new_links"\nwindow = "1000d"\nfactor = 2\nbaseline_windows = 4\n')
    rule("spike", 'metric = "new_links"\nwindow = "700d"\nfactor = 2\nbaseline_windows = 4\n')


# --- link_lost and link_new -------------------------------------------------------------

# 25 referring domains, DR 4 * k (k = 1..25); odd k nofollow; targets alternate.
PROFILE = [
    Link(
        f"https://www.ref{k:02d}.org/page",
        "https://example.com/blog/post" if k % 2 else "https://example.com/",
        dr=4.0 * k,
        nofollow=k % 2 == 1,
    )
    for k in range(1, 26)
]


@pytest.fixture(scope="module")
def churn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    """Day 0: the 25-link profile; day 1: 23 of them lost (all but ref01, ref02) and two
    new; day 2: ref25 back after its loss."""
    lg = Ledger(tmp_path_factory.mktemp("churn"), sites=(SITE, "quiet.example"))
    lg.ingest(SITE, 0, PROFILE)
    fresh = [
        Link("https://fresh.io/a", "https://example.com/", dr=88),
        Link("https://new.fresh.io/b", "https://example.com/blog/x", dr=None),
    ]
    lg.ingest(SITE, 1, PROFILE[:2] + fresh)
    lg.ingest(SITE, 2, [*PROFILE[:2], *fresh, PROFILE[24]])
    yield lg
    lg.store.close()


LINK_CASES = [
    # (kind, keys, at, expected count, expected listed domains in order)
    (
        "link_lost",
        "",
        1,
        23,
        [f"ref{k:02d}.org" for k in range(25, 5, -1)],
    ),
    ("link_lost", "min_domain_rating = 80", 1, 6, [f"ref{k:02d}.org" for k in range(25, 19, -1)]),
    (
        "link_lost",
        "min_domain_rating = 80\ndofollow_only = true",
        1,
        3,
        ["ref24.org", "ref22.org", "ref20.org"],
    ),
    ("link_lost", 'domains = ["ref03.org", "www.ref04.org"]', 1, 2, ["ref04.org", "ref03.org"]),
    (
        "link_lost",
        'target_prefix = "/blog/"\nmin_domain_rating = 85',
        1,
        2,
        ["ref25.org", "ref23.org"],
    ),
    ("link_lost", "min_count = 24", 1, 23, None),
    # At day 2 a 1d window is (1, 2]: the losses at day 1 are out of it.
    ("link_lost", "", 2, 0, []),
    ("link_lost", 'window = "2d"', 2, 23, None),
    ("link_new", "", 1, 2, ["fresh.io", "fresh.io"]),
    ("link_new", "min_domain_rating = 50", 1, 1, ["fresh.io"]),
    ("link_new", 'target_prefix = "https://example.com/blog"', 1, 1, ["fresh.io"]),
    # Back after it was lost counts as gained, and says so.
    ("link_new", "", 2, 1, ["ref25.org"]),
    ("link_new", "", 0, 0, []),
]


@pytest.mark.parametrize(("kind", "keys", "at", "count", "domains"), LINK_CASES)
def test_link_rules(
    churn: Ledger, kind: str, keys: str, at: float, count: int, domains: list[str] | None
) -> None:
    r = rule(kind, keys + "\n")
    assert isinstance(r, LinkLostRule | LinkNewRule)
    check = r.check(churn.ctx(at), SITE)
    assert check.value == count
    assert check.holds is (count >= r.min_count)
    assert len(check.links) == min(count, MAX_LISTED)
    assert check.more_links == count - len(check.links)
    if domains is not None:
        assert [lk.refdomain for lk in check.links] == domains
    ratings = [lk.domain_rating if lk.domain_rating is not None else -1 for lk in check.links]
    assert ratings == sorted(ratings, reverse=True)


def test_link_items_carry_what_a_message_names(churn: Ledger) -> None:
    lost = rule("link_lost", 'domains = ["ref24.org"]\n').check(churn.ctx(1), SITE)
    assert [
        (lk.url_from, lk.url_to, lk.anchor, lk.domain_rating, lk.reason) for lk in lost.links
    ] == [
        # As the export wrote them: messages show what the user's tool shows.
        ("https://www.ref24.org/page", "https://example.com/", "anchor", 96.0, "dropped")
    ]
    assert lost.summary == "example.com lost 1 link (from ref24.org) in 1d"
    back = rule("link_new", "").check(churn.ctx(2), SITE)
    assert [(lk.refdomain, lk.reason) for lk in back.links] == [("ref25.org", "restored")]
    assert back.summary == "example.com gained 1 link in 1d"
    gained = rule("link_new", "").check(churn.ctx(1), SITE)
    assert [lk.reason for lk in gained.links] == [None, None]
    assert gained.summary == "example.com gained 2 links in 1d"


def test_link_rules_without_data_keep_their_state(churn: Ledger) -> None:
    for kind in ("link_lost", "link_new"):
        check = rule(kind, "").check(churn.ctx(1), "quiet.example")
        assert (check.value, check.holds, check.links) == (None, None, ())
        # Before the first snapshot, too.
        assert rule(kind, "").check(churn.ctx(-1), SITE).holds is None


def test_link_rule_defaults_and_bounds() -> None:
    r = rule("link_lost", "")
    assert isinstance(r, LinkLostRule)
    assert (r.window, r.min_count, r.link_filter, r.metric, r.op, r.threshold) == (
        DAY,
        1,
        None,
        "lost_links",
        ">=",
        1.0,
    )
    for keys, field in (
        ("min_count = 0", "min_count"),
        ("min_count = 1000001", "min_count"),
        ("min_domain_rating = 100.5", "min_domain_rating"),
        ('domains = ["bad domain"]', "domains"),
        ('target_prefix = "nohost"', "target_prefix"),
        ('window = "0s"', "window"),
        ('watch_domains = ["a.org"]', "watch_domains"),
        ('summary = "{site} {count}"', "summary"),
    ):
        for kind in ("link_lost", "link_new"):
            with pytest.raises(ValidationError) as exc:
                rule(kind, keys + "\n")
            assert any(err["loc"][0] == field for err in exc.value.errors()), (kind, keys)


# --- competitor_pace --------------------------------------------------------------------


def pace_ledger(folder: Path, gains: dict[str, int | None]) -> Ledger:
    """Each site: a one-link baseline on day 0, then `gains[site]` new referring domains
    on day 3 (None: the site has no snapshot at all)."""
    lg = Ledger(folder, sites=(SITE, "rival.example", "other.example"))
    for site, n in gains.items():
        if n is None:
            continue
        slug = site.replace(".", "-")
        base = [Link(f"https://base-{slug}.org/p", f"https://{site}/")]
        lg.ingest(site, 0, base)
        lg.ingest(
            site,
            3,
            base + [Link(f"https://n{k}-{slug}.org/p", f"https://{site}/") for k in range(n)],
        )
    return lg


RIVALS: dict[str, tuple[str, ...]] = {SITE: ("rival.example", "other.example")}
PACE_CASES = [
    # (gains, keys, expected (value, holds, threshold), expected `ahead` text)
    ({SITE: 3, "rival.example": 12, "other.example": 1}, "", (12, True, 6), "rival.example +12"),
    (
        {SITE: 3, "rival.example": 6, "other.example": 9},
        "",
        (9, True, 6),
        "other.example +9, rival.example +6",
    ),
    ({SITE: 3, "rival.example": 5, "other.example": 1}, "", (5, False, 6), "none"),
    # Own site gained nothing: min_new is the bar.
    ({SITE: 0, "rival.example": 5, "other.example": 0}, "", (5, True, 5), "rival.example +5"),
    ({SITE: 0, "rival.example": 4, "other.example": 0}, "", (4, False, 5), "none"),
    (
        {SITE: 2, "rival.example": 4, "other.example": 0},
        "factor = 1.5\nmin_new = 1",
        (4, True, 3),
        "rival.example +4",
    ),
    # A competitor without data leaves the verdict open, unless another one is ahead.
    ({SITE: 3, "rival.example": None, "other.example": 1}, "", (1, None, 6), "none"),
    ({SITE: 3, "rival.example": None, "other.example": 7}, "", (7, True, 6), "other.example +7"),
    # The own site without data: no verdict.
    ({SITE: None, "rival.example": 9, "other.example": 9}, "", (None, None, None), "none"),
]


@pytest.mark.parametrize(("gains", "keys", "expect", "ahead"), PACE_CASES)
def test_competitor_pace(
    tmp_path: Path,
    gains: dict[str, int | None],
    keys: str,
    expect: tuple[float | None, bool | None, float | None],
    ahead: str,
) -> None:
    lg = pace_ledger(tmp_path, gains)
    r = rule("competitor_pace", keys + '\nwindow = "7d"\nsummary = "{ahead}"\n')
    check = r.check(lg.ctx(4, competitors=RIVALS), SITE)
    assert (check.value, check.holds, check.threshold) == expect
    assert check.summary == (ahead if expect[2] is not None else "none")
    lg.store.close()


def test_competitor_pace_summary_sites_and_gaps(tmp_path: Path) -> None:
    lg = pace_ledger(tmp_path, {SITE: 3, "rival.example": 5, "other.example": 12})
    r = rule("competitor_pace", 'window = "7d"\n')
    assert isinstance(r, CompetitorPaceRule) and r.inhibited_by(SITE) == (SITE,)
    ctx = lg.ctx(4, own=[SITE], competitors=RIVALS)
    assert r.sites_for(ctx) == [SITE]
    check = r.check(ctx, SITE)
    assert check.summary == "example.com gained 3 referring domains in 7d; ahead: other.example +12"
    # A site that names no competitors never fires.
    assert r.check(ctx, "rival.example").holds is False
    # A failing poll of a competitor that is not ahead: its count may be short, so no
    # verdict; one that is ahead despite the gap still counts.
    lg.store.record_failure("rival.example", "exports", day(3.5), "x.csv", "boom", day(3.5))
    assert r.check(lg.ctx(4, competitors=RIVALS), SITE).holds is True
    lg.store.record_failure("other.example", "exports", day(3.5), "y.csv", "boom", day(3.5))
    check = r.check(lg.ctx(4, competitors=RIVALS), SITE)
    assert (check.value, check.holds) == (12, True)
    lone: dict[str, tuple[str, ...]] = {SITE: ("rival.example",)}
    assert r.check(lg.ctx(4, competitors=lone), SITE).holds is None
    lg.store.close()


def test_competitor_pace_bounds() -> None:
    r = rule("competitor_pace", "")
    assert isinstance(r, CompetitorPaceRule)
    assert (r.window, r.factor, r.min_new, r.metric, r.op, r.threshold) == (
        30 * DAY,
        2.0,
        5,
        "new_refdomains",
        ">=",
        5.0,
    )
    for keys, field in (
        ("factor = 0.5", "factor"),
        ("factor = 1001", "factor"),
        ("min_new = 0", "min_new"),
        ('window = "11000d"', "window"),
        ('competitors = ["a.org"]', "competitors"),
    ):
        with pytest.raises(ValidationError) as exc:
            rule("competitor_pace", keys + "\n")
        assert any(err["loc"][0] == field for err in exc.value.errors()), keys


SITES_WITH_RIVALS = (
    '[[sites]]\ndomain = "example.com"\nsources = ["exports"]\n'
    'competitors = ["rival.example"]\n'
    '[[sites]]\ndomain = "rival.example"\nrole = "competitor"\nsources = ["exports"]\n'
)


def test_settings_competitors(tmp_path: Path) -> None:
    settings = load_settings(write_settings(tmp_path, sites=SITES_WITH_RIVALS))
    assert settings.competitors() == {"example.com": ("rival.example",)}
    assert settings.site("rival.example").competitors == []


@pytest.mark.parametrize(
    ("competitors", "message"),
    [
        ('["nowhere.example"]', "sites[0].competitors[0]: unknown site 'nowhere.example'"),
        ('["example.com"]', "sites[0].competitors[0]: 'example.com' is the site itself"),
        (
            '["rival.example", "rival.example"]',
            "sites[0].competitors[1]: 'rival.example' is listed twice",
        ),
    ],
)
def test_settings_competitors_are_checked(tmp_path: Path, competitors: str, message: str) -> None:
    sites = SITES_WITH_RIVALS.replace('["rival.example"]', competitors)
    with pytest.raises(ConfigError) as exc:
        load_settings(write_settings(tmp_path, sites=sites))
    assert message in str(exc.value)


# --- examples: rules.example and README -------------------------------------------------

NEW_KINDS = ("spike", "link_lost", "link_new", "competitor_pace")


def test_every_new_kind_has_an_example_rule_that_loads() -> None:
    kinds = {}
    for path in sorted((ROOT / "rules.example").glob("*.toml")):
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        assert raw["notify"] == ["console"], path
        kinds[raw["kind"]] = RULE_KINDS[raw["kind"]].from_file(path.stem, raw)
    assert set(NEW_KINDS) <= set(kinds)


def test_readme_rule_kinds_examples_load() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Rule kinds", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```toml\n(.+?)```", section, flags=re.S)
    kinds = []
    for block in blocks:
        raw = tomllib.loads(block)
        kinds.append(RULE_KINDS[raw["kind"]].from_file("example", raw).kind)
    assert set(kinds) >= {"threshold", *NEW_KINDS, "source_health"}


def test_docs_list_every_key_of_every_new_kind() -> None:
    page = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    from alerts.rules.competitor_pace import CompetitorPaceRuleConfig
    from alerts.rules.link_lost import LinkLostRuleConfig
    from alerts.rules.link_new import LinkNewRuleConfig
    from alerts.rules.spike import SpikeRuleConfig
    from alerts.rules.threshold import ThresholdRuleConfig

    missing = [
        f"{model.__name__}.{key}"
        for model in (
            ThresholdRuleConfig,
            SpikeRuleConfig,
            LinkLostRuleConfig,
            LinkNewRuleConfig,
            CompetitorPaceRuleConfig,
        )
        for key, info in model.model_fields.items()
        if f"`{info.alias or key}`" not in page
    ]
    assert missing == []


def test_filtered_metrics_through_compute_metrics(filtered: Ledger) -> None:
    m = compute_metrics(filtered.store, SITE, DAY, day(1), LinkFilter(domains=("gamma.net",)))
    assert m is not None and (m.lost_links, m.lost_refdomains, m.live_links) == (1, 1, 0)
    assert compute_metrics(filtered.store, SITE, DAY, day(-1), LinkFilter()) is None


def test_filters_compare_canonical_urls_whatever_the_export_spelling(tmp_path: Path) -> None:
    # URLs are stored as the export wrote them; filters compare their canonical forms.
    lg = Ledger(tmp_path)
    odd = [
        Link("HTTPS://WWW.Blog.Alpha.COM:443/a", "HTTP://WWW.EXAMPLE.COM/Blog/%7euser/x"),
        Link("https://bücher.de/b", "https://example.com/blog/%C3%BC"),
        Link("https://alpha.com.evil.net/c", "https://example.com/Blog/~user"),
    ]
    lg.ingest(SITE, 0, odd)
    cases = [
        (LinkFilter(domains=("blog.alpha.com",)), 1),
        (LinkFilter(domains=("alpha.com",)), 1),
        (LinkFilter(domains=("xn--bcher-kva.de",)), 1),
        (LinkFilter(target_prefix="example.com/Blog/~user"), 2),
        (LinkFilter(target_prefix="/Blog/~"), 2),
        (LinkFilter(target_prefix="/blog/%C3%BC"), 1),
        # A rule file's prefix is made canonical on load; a raw one would not match.
        (LinkFilter(target_prefix="/blog/ü"), 0),
        (LinkFilter(target_prefix=normalize_target_prefix("/blog/ü")), 1),
    ]
    for f, live in cases:
        assert lg.store.window_counts(SITE, day(-1), day(0), f).live_links == live, f
    lg.store.close()
