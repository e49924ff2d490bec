"""`linkwatch rules test`: unit tests of rule files, written in TOML (docs/rules-testing.md).

A test file names rule files and sites, then gives per test a timeline of snapshots and
the alerts expected at chosen instants. Each test runs against a fresh SQLite store in a
temporary folder: snapshots go through `Store.ingest` like any export, and the rules are
evaluated with the real engine into an in-memory alert book, so nothing is sent.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from alerts.backtest import quiet_transitions
from alerts.engine import MemoryAlertBook, evaluate
from alerts.rules import Rule, RulesError, load_rule_file
from alerts.rules.context import EvaluationContext
from daemon.settings import (
    DaemonSettings,
    Settings,
    SiteSettings,
    format_validation_error,
    hostname_problem,
)
from daemon.store import GuardSettings, Store
from daemon.timefmt import parse_instant
from sources.model import LOST_REASONS, Backlink, SnapshotResult
from sources.urls import normalize_target, normalize_url

# The one source each test site has; its series is named after the format below.
SOURCE = "test"
FORMAT = "rules-test"
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
# Bounds that keep a mistyped range ("{1..10000000}") from filling the disk.
MAX_RANGE = 10_000
MAX_LINKS = 100_000
MAX_SNAPSHOTS = 1_000
MAX_EVALS = 1_000
# What counts as an alert at an instant: active ones, and those that resolved then.
EXPECTABLE = ("pending", "firing", "resolved")

_OFFSET = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
_OFFSET_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")


class TestFileError(Exception):
    """A test file that cannot be run; `errors` holds one `file: key: message` line each."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


# --- the file format (pydantic at the boundary) -----------------------------------------


def _instant_or_offset(value: Any) -> Any:
    """An ISO 8601 instant (string or TOML datetime) or an offset from the test's start."""
    if isinstance(value, datetime):
        at = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        # The same years as a written instant: offsets from it must stay representable.
        if not 1970 <= at.year <= 2999:
            raise ValueError(f"expected a time between the years 1970 and 2999, got {value}")
        return at
    if isinstance(value, date):
        raise ValueError("expected an instant with a time (2026-01-02T00:00:00Z) or an offset")
    if not isinstance(value, str):
        raise ValueError("expected an offset like 1d or 2d12h, or an ISO 8601 instant")
    text = value.strip()
    if _OFFSET.fullmatch(text):
        seconds = sum(float(n) * _UNIT[u] for n, u in _OFFSET_PART.findall(text))
        if seconds > 3660 * 86400:
            raise ValueError(f"offset {text!r} is longer than 10 years")
        return timedelta(seconds=seconds)
    try:
        return parse_instant(text)
    except ValueError:
        raise ValueError(
            f"expected an offset like 1d or 2d12h, or an ISO 8601 instant, got {value!r}"
        ) from None


When = Annotated[datetime | timedelta, BeforeValidator(_instant_or_offset)]
Url = Annotated[str, Field(min_length=1, max_length=2000)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class LinkSpec(_Model):
    """A link written as a table: its referring page, target and attributes."""

    from_: Url = Field(alias="from")
    to: Url | None = None
    anchor: str | None = Field(default=None, max_length=1000)
    nofollow: bool | None = None
    ugc: bool | None = None
    sponsored: bool | None = None
    domain_rating: float | None = Field(default=None, ge=0, le=100)


class LostSpec(_Model):
    """A link the snapshot marks lost, and the reason it gives."""

    from_: Url = Field(alias="from")
    to: Url | None = None
    reason: Literal[LOST_REASONS] = "removed"  # type: ignore[valid-type]


class SnapshotSpec(_Model):
    """One poll of a site's source: its changes to the previous snapshot, or a full list."""

    at: When
    site: str | None = None
    status: Literal["complete", "partial", "error"] = "complete"
    links: list[Url | LinkSpec] | None = Field(default=None, max_length=MAX_LINKS)
    add: list[Url | LinkSpec] = Field(default_factory=list, max_length=MAX_LINKS)
    remove: list[Url | LinkSpec] = Field(default_factory=list, max_length=MAX_LINKS)
    lost: list[Url | LostSpec] = Field(default_factory=list, max_length=MAX_LINKS)


class ExpectedAlert(_Model):
    """An alert expected at an instant."""

    rule: str = Field(min_length=1, max_length=200)
    site: str | None = None
    state: Literal["pending", "firing", "resolved"] = "firing"


class EvalSpec(_Model):
    """An evaluation of the rules, and every alert expected after it ([] is silence)."""

    at: When
    alerts: list[ExpectedAlert] = Field(max_length=1000)


class TestCase(_Model):
    """One test: a timeline of snapshots and the evaluations that check it."""

    name: str = Field(min_length=1, max_length=200)
    start: When | None = None
    snapshots: list[SnapshotSpec] = Field(default_factory=list, max_length=MAX_SNAPSHOTS)
    eval: list[EvalSpec] = Field(min_length=1, max_length=MAX_EVALS)


class SiteSpec(_Model):
    """A site of the test file, with the false-alarm guards of its one source."""

    domain: str = Field(min_length=3, max_length=253)
    role: Literal["own", "competitor"] = "own"
    competitors: list[str] = Field(default_factory=list, max_length=100)
    confirm_after: int = Field(default=2, ge=1, le=1000)
    suspect_below: float = Field(default=0.5, gt=0, le=1)


class TestFile(_Model):
    """A rule test file as written."""

    rules: list[str] = Field(min_length=1, max_length=100)
    start: When = DEFAULT_START
    sites: list[SiteSpec] = Field(min_length=1, max_length=100)
    tests: list[TestCase] = Field(min_length=1, max_length=1000)


# --- the timeline, resolved ----------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """One snapshot to ingest: its instant, status, live links and links marked lost."""

    site: str
    at: datetime
    status: str
    records: tuple[Backlink, ...]
    key: str


@dataclass(frozen=True)
class Expectation:
    """The alerts expected after one evaluation."""

    at: datetime
    label: str
    alerts: frozenset[tuple[str, str, str]]


@dataclass(frozen=True)
class Case:
    """One test, ready to run."""

    name: str
    snapshots: tuple[Snapshot, ...]
    evals: tuple[Expectation, ...]
    # Snapshots later than the last evaluation: never seen by a rule.
    unseen: int = 0


@dataclass(frozen=True)
class Site:
    """A site of the test file as the runner uses it."""

    domain: str
    role: str
    competitors: tuple[str, ...]
    guards: GuardSettings


@dataclass(frozen=True)
class Suite:
    """A whole test file, loaded and checked."""

    path: Path
    rules: tuple[Rule, ...]
    sites: tuple[Site, ...]
    cases: tuple[Case, ...]


def _expand(text: str) -> list[str]:
    """`https://ref{1..3}.example/` as three URLs (one range per text)."""
    m = _RANGE.search(text)
    if m is None:
        return [text]
    lo, hi = int(m.group(1)), int(m.group(2))
    if hi < lo or hi - lo + 1 > MAX_RANGE:
        raise ValueError(f"range {m.group(0)} must count up, at most {MAX_RANGE} numbers")
    return [text[: m.start()] + str(n) + text[m.end() :] for n in range(lo, hi + 1)]


def _identity(url_from: str, url_to: str) -> tuple[str, str]:
    """A link's identity as the ledger sees it (normalised page and target)."""
    page = normalize_url(url_from)
    target = normalize_target(url_to)
    if page is None:
        raise ValueError(f"referring page {url_from!r} is not a URL")
    if target is None:
        raise ValueError(f"target {url_to!r} is not a URL")
    return page, target


class _Bad(Exception):
    """A problem with one entry of a snapshot: the key below the snapshot, and what."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


def _links(
    items: list[str | LinkSpec], name: str, default_to: str
) -> Iterator[tuple[tuple[str, str], Backlink]]:
    """(identity, link) for each link a list names, ranges expanded; _Bad names the entry."""
    for i, item in enumerate(items):
        spec = item if isinstance(item, LinkSpec) else LinkSpec.model_validate({"from": item})
        try:
            for url_from in _expand(spec.from_):
                link = Backlink(
                    url_from=url_from,
                    url_to=spec.to or default_to,
                    anchor=spec.anchor,
                    nofollow=spec.nofollow,
                    ugc=spec.ugc,
                    sponsored=spec.sponsored,
                    domain_rating=spec.domain_rating,
                )
                yield _identity(link.url_from, link.url_to), link
        except ValueError as exc:
            raise _Bad(f"{name}[{i}]", str(exc)) from None


def _at(when: datetime | timedelta, start: datetime) -> datetime:
    return start + when if isinstance(when, timedelta) else when


def _label(when: datetime | timedelta, at: datetime) -> str:
    """How an instant is shown: as written (an offset) and as a time."""
    stamp = at.isoformat().replace("+00:00", "Z")
    if isinstance(when, timedelta):
        return f"{_offset_text(when)} ({stamp})"
    return stamp


def _offset_text(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    parts: list[str] = []
    for unit in ("d", "h", "m", "s"):
        size = _UNIT[unit]
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


class _Problems:
    """Collects `file: key: message` lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.lines.append(f"{self.path}: {key}: {message}")


def _site_of(
    given: str | None, sites: dict[str, Site], key: str, problems: _Problems
) -> str | None:
    """The site an entry names, or the only site; None (with a problem) if neither."""
    if given is None:
        if len(sites) == 1:
            return next(iter(sites))
        problems.add(f"{key}.site", f"required: the file has {len(sites)} sites")
        return None
    if given not in sites:
        problems.add(f"{key}.site", f"unknown site {given!r} (sites: {', '.join(sites)})")
        return None
    return given


def _case(
    i: int,
    case: TestCase,
    start: datetime,
    sites: dict[str, Site],
    rule_names: set[str],
    problems: _Problems,
) -> Case:
    """One test's timeline, every link list applied to the previous one."""
    start = _at(case.start, start) if case.start is not None else start
    current: dict[str, dict[tuple[str, str], Backlink]] = {d: {} for d in sites}
    last_at: dict[str, datetime] = {}
    snapshots: list[Snapshot] = []
    for j, snap in enumerate(case.snapshots):
        key = f"tests[{i}].snapshots[{j}]"
        site = _site_of(snap.site, sites, key, problems)
        if site is None:
            continue
        at = _at(snap.at, start)
        if site in last_at and at <= last_at[site]:
            problems.add(
                f"{key}.at",
                f"{_label(snap.at, at)} is not after the previous snapshot of {site}",
            )
            continue
        last_at[site] = at
        try:
            records = _apply(snap, current, site)
        except _Bad as exc:
            problems.add(f"{key}.{exc.key}", exc.message)
            continue
        snapshots.append(Snapshot(site, at, snap.status, records, key))
    evals: list[Expectation] = []
    for j, ev in enumerate(case.eval):
        key = f"tests[{i}].eval[{j}]"
        at = _at(ev.at, start)
        if evals and at <= evals[-1].at:
            problems.add(f"{key}.at", f"{_label(ev.at, at)} is not after the previous eval")
            continue
        expected: set[tuple[str, str, str]] = set()
        for k, alert in enumerate(ev.alerts):
            akey = f"{key}.alerts[{k}]"
            if alert.rule not in rule_names:
                problems.add(
                    f"{akey}.rule",
                    f"no rule {alert.rule!r} under test (rules: {', '.join(sorted(rule_names))})",
                )
                continue
            site = _site_of(alert.site, sites, akey, problems)
            if site is None:
                continue
            if any((r, s) == (alert.rule, site) for r, s, _ in expected):
                problems.add(akey, f"{alert.rule} {site} is expected twice at this instant")
                continue
            expected.add((alert.rule, site, alert.state))
        evals.append(Expectation(at, _label(ev.at, at), frozenset(expected)))
    last = evals[-1].at if evals else None
    unseen = sum(1 for s in snapshots if last is not None and s.at > last)
    # Sites interleave in time: ingested in time order, file order breaking ties.
    snapshots.sort(key=lambda s: s.at)
    return Case(case.name, tuple(snapshots), tuple(evals), unseen)


def _apply(
    snap: SnapshotSpec, current: dict[str, dict[tuple[str, str], Backlink]], site: str
) -> tuple[Backlink, ...]:
    """Apply one snapshot's changes to the site's link list; the records it lists."""
    default_to = f"https://{site}/"
    links = current[site]
    if snap.status == "error":
        if snap.links is not None or snap.add or snap.remove or snap.lost:
            raise _Bad("status", 'a snapshot with status "error" lists no links')
        return ()
    if snap.links is not None:
        if snap.add or snap.remove:
            raise _Bad("links", "give either the full list or `add`/`remove`, not both")
        links.clear()
        for ident, link in _links(snap.links, "links", default_to):
            links[ident] = link
            _bounded(links)
    for i, (ident, link) in enumerate(_links(snap.remove, "remove", default_to)):
        if links.pop(ident, None) is None:
            raise _Bad(f"remove[{i}]", f"{_shown(link)} is not in {site}'s links at this point")
    for ident, link in _links(snap.add, "add", default_to):
        links[ident] = link
        _bounded(links)
    lost: list[Backlink] = []
    for i, item in enumerate(snap.lost):
        spec = item if isinstance(item, LostSpec) else LostSpec.model_validate({"from": item})
        as_link = LinkSpec.model_validate({"from": spec.from_, "to": spec.to})
        for ident, link in _links([as_link], f"lost[{i}]", default_to):
            if links.pop(ident, None) is None:
                raise _Bad(f"lost[{i}]", f"{_shown(link)} is not in {site}'s links at this point")
            lost.append(link._replace(lost=True, lost_reason=spec.reason))
    return (*links.values(), *lost)


def _bounded(links: dict[tuple[str, str], Backlink]) -> None:
    """Stop a snapshot that grows past MAX_LINKS (ranges multiply quickly)."""
    if len(links) > MAX_LINKS:
        raise _Bad("links", f"more than {MAX_LINKS} links in one snapshot")


def _shown(link: Backlink) -> str:
    return f"{link.url_from} -> {link.url_to}"


def _stand_in_settings(sites: tuple[Site, ...], rule_paths: list[Path]) -> Settings:
    """Settings that know the test's sites and a console stand-in for every notifier the
    rules name: a rule under test need not match any real settings file."""
    from alerts.notifiers.console import ConsoleSettings

    names: set[str] = set()
    for path in rule_paths:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
            continue  # the rule loader says what is wrong with it
        notify = raw.get("notify")
        if isinstance(notify, list):
            names.update(n for n in notify if isinstance(n, str))
    return Settings.model_construct(
        daemon=DaemonSettings(),
        sites=[
            SiteSettings.model_construct(
                domain=s.domain, role=s.role, sources=[SOURCE], competitors=list(s.competitors)
            )
            for s in sites
        ],
        sources={},
        notifiers={n: ConsoleSettings(kind="console") for n in sorted(names)},
        config_path=None,
    )


def load_suite(path: Path) -> Suite:
    """Read and check a test file and the rule files it names; TestFileError if bad."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise TestFileError([f"{path}: not valid TOML: {exc}"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TestFileError([f"{path}: cannot read: {exc}"]) from None
    try:
        spec = TestFile.model_validate(raw)
    except ValidationError as exc:
        raise TestFileError(format_validation_error(path, exc).splitlines()) from None
    problems = _Problems(path)
    sites: dict[str, Site] = {}
    for i, s in enumerate(spec.sites):
        why = hostname_problem(s.domain)
        if why is not None:
            problems.add(f"sites[{i}].domain", f"{s.domain!r} {why}")
        if s.domain in sites:
            problems.add(f"sites[{i}].domain", f"{s.domain!r} is listed twice")
        guards = GuardSettings(confirm_after=s.confirm_after, suspect_below=s.suspect_below)
        sites[s.domain] = Site(s.domain, s.role, tuple(s.competitors), guards)
    for i, s in enumerate(spec.sites):
        for other in s.competitors:
            if other not in sites or other == s.domain:
                problems.add(
                    f"sites[{i}].competitors", f"{other!r} is not another site of this file"
                )
    rule_paths: list[Path] = []
    for i, name in enumerate(spec.rules):
        rule_path = (path.parent / name) if not Path(name).is_absolute() else Path(name)
        if not rule_path.is_file():
            problems.add(f"rules[{i}]", f"{rule_path}: no such rule file")
        else:
            rule_paths.append(rule_path)
    settings = _stand_in_settings(tuple(sites.values()), rule_paths)
    rules: dict[str, Rule] = {}
    for rule_path in rule_paths:
        try:
            rule = load_rule_file(rule_path, settings)
        except RulesError as exc:
            problems.lines.extend(f"{path}: rules: {line}" for line in exc.errors)
            continue
        if rule.name in rules:
            problems.add("rules", f"two rule files are named {rule.name!r}")
        rules[rule.name] = rule
    cases = [
        _case(
            i,
            case,
            spec.start if isinstance(spec.start, datetime) else DEFAULT_START,
            sites,
            set(rules),
            problems,
        )
        for i, case in enumerate(spec.tests)
    ]
    if isinstance(spec.start, timedelta):
        problems.add("start", "expected an ISO 8601 instant, not an offset")
    names = [c.name for c in cases]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.add("tests", f"two tests are named {dup!r}")
    if problems.lines:
        raise TestFileError(problems.lines)
    return Suite(path, tuple(rules.values()), tuple(sites.values()), tuple(cases))


# --- running -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mismatch:
    """What differed from the expectation at one evaluation of one test."""

    test: str
    at: str
    lines: tuple[str, ...]


@dataclass
class SuiteReport:
    """The outcome of one test file."""

    path: Path
    passed: list[str] = field(default_factory=list)
    failed: list[Mismatch] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class _Errors(logging.Handler):
    """Collects error log lines (a rule that could not be evaluated) during a test."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text += f": {type(exc).__name__}: {exc}"
        self.lines.append(text)


def run_suite(suite: Suite) -> SuiteReport:
    """Run every test of a loaded file, each against a fresh store."""
    report = SuiteReport(suite.path)
    for case in suite.cases:
        mismatches = _run_case(suite, case)
        if case.unseen:
            report.notes.append(
                f"{suite.path}: test {case.name!r}: {case.unseen} snapshot(s) after the last "
                "eval are never evaluated"
            )
        if mismatches:
            report.failed.extend(mismatches)
        else:
            report.passed.append(case.name)
    return report


def _run_case(suite: Suite, case: Case) -> list[Mismatch]:
    """Run one test; a failure to run at all is a mismatch too, never a traceback."""
    try:
        return _run_timeline(suite, case)
    except (sqlite3.Error, OSError, ValueError) as exc:
        return [Mismatch(case.name, "-", (f"error: the test could not run: {exc}",))]


def _run_timeline(suite: Suite, case: Case) -> list[Mismatch]:
    own = [s.domain for s in suite.sites if s.role == "own"]
    every = [s.domain for s in suite.sites]
    competitors = {s.domain: s.competitors for s in suite.sites if s.competitors}
    guards = {s.domain: s.guards for s in suite.sites}
    mismatches: list[Mismatch] = []
    errors = _Errors()
    watched = logging.getLogger("alerts")
    with quiet_transitions(), tempfile.TemporaryDirectory(prefix="linkwatch-rules-test-") as tmp:
        store = Store(Path(tmp) / "rules-test.db")
        watched.addHandler(errors)
        try:
            for s in suite.sites:
                store.ensure_site(s.domain, s.role)
            book = MemoryAlertBook()
            pending = list(case.snapshots)
            for ev in case.evals:
                while pending and pending[0].at <= ev.at:
                    _ingest(store, pending.pop(0), guards)
                errors.lines.clear()
                ctx = EvaluationContext(store, ev.at, ev.at, own, every, competitors)
                transitions = evaluate(store, list(suite.rules), ctx, book=book)
                actual = {
                    (a.rule, a.site): (a.state, a.value)
                    for a in book.alerts()
                    if a.state in ("pending", "firing")
                }
                for t in transitions:
                    if t.state == "resolved":
                        actual[(t.rule, t.site)] = ("resolved", t.value)
                lines = _diff(ev.alerts, actual) + [f"error: {line}" for line in errors.lines]
                if lines:
                    mismatches.append(Mismatch(case.name, ev.label, tuple(lines)))
        finally:
            watched.removeHandler(errors)
            store.close()
    return mismatches


def _ingest(store: Store, snap: Snapshot, guards: dict[str, GuardSettings]) -> None:
    """Store one snapshot as a poll of the site's test source would."""
    if snap.status == "error":
        store.record_failure(
            snap.site, SOURCE, snap.at, snap.key, "rules test: the poll failed", snap.at
        )
        return
    result = SnapshotResult(
        taken_at=snap.at,
        records=iter(snap.records),
        origin=snap.key,
        format=FORMAT,
        error="rules test: a partial snapshot" if snap.status == "partial" else None,
    )
    store.ingest(snap.site, SOURCE, result, guards[snap.site], snap.at)


def _diff(
    expected: frozenset[tuple[str, str, str]],
    actual: dict[tuple[str, str], tuple[str, float | None]],
) -> list[str]:
    """Readable lines for every alert missing, unexpected or in another state."""
    want = {(rule, site): state for rule, site, state in expected}
    lines = []
    for rule, site in sorted(want.keys() | actual.keys()):
        w = want.get((rule, site))
        got = actual.get((rule, site))
        value = f" (value {_number(got[1])})" if got is not None else ""
        if got is None:
            lines.append(f"missing:     {rule} {site} {w}")
        elif w is None:
            lines.append(f"unexpected:  {rule} {site} {got[0]}{value}")
        elif w != got[0]:
            lines.append(f"wrong state: {rule} {site}: expected {w}, got {got[0]}{value}")
    return lines


def _number(v: float | None) -> str:
    if v is None:
        return "none"
    return str(int(v)) if v == int(v) else f"{v:g}"


__all__ = [
    "Mismatch",
    "Suite",
    "SuiteReport",
    "TestFileError",
    "load_suite",
    "run_suite",
]
