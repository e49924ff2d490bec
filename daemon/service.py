"""One linkwatch instance: settings, store, rules, sources and notifiers working together."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alerts.delivery import DeliveryWorkers
from alerts.engine import AlertBook, StoredAlertBook, Transition, evaluate
from alerts.notifiers import Notifier, build_notifier
from alerts.outbox import DeliveryReport, dead_letter_unconfigured, deliver_due
from alerts.rules import ConfigHealthRule, Rule, RuleBook, RulesError, load_rules, rules_signature
from alerts.rules.context import EvaluationContext
from daemon.settings import ConfigError, Settings, load_settings
from daemon.store import (
    ChangedMeanwhileError,
    FutureSnapshotError,
    GuardSettings,
    IngestOutcome,
    MaintenanceReport,
    OutOfOrderError,
    PollBusyError,
    Store,
    database_problem,
)
from daemon.store.retention import reach_of
from daemon.textsafe import shown_path
from daemon.timefmt import format_duration, from_db
from sources.api import ApiSource, PollStopped
from sources.exports import ExportFile, export_time, open_export_files
from sources.model import Backlink, SnapshotResult, SourceError
from sources.registry import Source, build_source

log = logging.getLogger(__name__)

# Statuses of a poll that stored no snapshot (its outcome's snapshot_id is 0).
SUPERSEDED, BUSY = "superseded", "busy"
# Two polls of a source overlap by at most a poll's length (a `poll` of many sites reads
# its clock once); a stored snapshot further ahead of now means the clock went back.
CLOCK_SET_BACK = timedelta(days=1)


def utcnow() -> datetime:
    """The current instant, timezone-aware; only the CLI and scheduler call it."""
    return datetime.now(UTC)


def describe(o: IngestOutcome) -> str:
    """One log line for an ingest."""
    series = o.series or o.source
    head = f"{o.site}/{series}: {o.origin or '-'} taken {o.taken_at.isoformat(timespec='seconds')}"
    if not o.snapshot_id:
        # Nothing was stored: there are no counts to tell, only why.
        return f"{head}: {o.status}: {o.note}"
    rows = f"{o.listed} rows"
    if o.read > o.listed:
        # Rows naming a link (or domain) an earlier row named were folded into it.
        key = "domain" if o.coverage == "domains" else "link"
        rows += f" ({o.read} read: {o.read - o.listed} repeated an earlier row's {key})"
    if o.coverage == "domains":
        # A domains series counts referring domains, and never touches a link.
        text = (
            f"{head}: {o.status}, {rows}, {o.seen} referring domains, {o.new} new,"
            f" {o.missing} no longer listed, {o.restored} listed again"
        )
    else:
        text = (
            f"{head}: {o.status}, {rows}, {o.seen} seen, {o.new} new,"
            f" {o.missing} missing, {o.restored} restored, {o.lost} lost, {o.changed} changed"
        )
    if o.unconfirmed:
        text += f", {o.unconfirmed} unconfirmed"
    if o.malformed:
        text += f", {o.malformed} malformed rows"
    if o.note:
        text += f" ({o.note})"
    return text


@dataclass
class Linkwatch:
    """The running parts of one linkwatch configuration."""

    settings: Settings
    store: Store
    rulebook: RuleBook
    notifiers: dict[str, Notifier] = field(default_factory=dict)
    sources: dict[str, Source] = field(default_factory=dict)
    # The daemon's delivery threads, one per notifier (None: deliver() in the caller).
    delivery: DeliveryWorkers | None = None
    # The daemon watches its own configuration (config_health); one-shot commands don't.
    watch_config: bool = False
    # Why the last reload of the settings file was refused (empty: it was not).
    config_problems: list[str] = field(default_factory=list)
    # Set on SIGTERM: an export still being read is dropped (read again at the next start).
    stopping: threading.Event = field(default_factory=threading.Event)
    # Told of each snapshot just before it is ingested; it may wrap the snapshot's record
    # iterators in place (the CLI counts rows for its progress line).
    on_snapshot: Callable[[SnapshotResult], None] | None = None

    @classmethod
    def open(cls, settings: Settings) -> Linkwatch:
        """Open the store, load rules (RulesError if they are bad) and build plugins."""
        rulebook = RuleBook.load(settings)
        store = Store(settings.storage.path, settings.storage.busy_timeout.total_seconds())
        app = cls(settings, store, rulebook, *_plugins(settings))
        app.register_sites()
        return app

    def register_sites(self, settings: Settings | None = None) -> None:
        """Record the configured sites in the store; warn about retired sources."""
        self.store.register_sites(
            (site.domain, site.role, site.sources) for site in (settings or self.settings).sites
        )

    def reload(self) -> bool:
        """Re-read the settings file and the rules; on any problem keep the running
        configuration whole (config_health fires) and return False."""
        path = self.settings.config_path
        if path is None:
            return self.rulebook.reload()
        settings_problems: list[str] = []
        rule_problems: list[str] = []
        try:
            settings = load_settings(path)
            if settings.storage.path != self.settings.storage.path:
                log.warning(
                    "storage.path changed to %s: the daemon keeps %s until it is restarted",
                    settings.storage.path,
                    self.store.path,
                )
                settings = settings.model_copy(update={"storage": self.settings.storage})
            # Taken before the files are read: an edit made meanwhile is noticed later.
            signature = rules_signature(settings.daemon.rules_dir)
            rules = load_rules(settings)
            notifiers, sources = _plugins(settings)
            # The last step that can fail (it writes): nothing is swapped before it.
            self.register_sites(settings)
        except ConfigError as exc:
            settings_problems = str(exc).splitlines()
        except RulesError as exc:
            rule_problems = exc.errors
        except sqlite3.Error as exc:
            settings_problems = [f"{path}: not reloaded: {database_problem(exc)}"]
        except Exception as exc:
            # Whatever a new configuration does wrong, the running one must survive it.
            log.exception("reloading %s failed", path)
            settings_problems = [f"{path}: cannot be loaded: {type(exc).__name__}: {exc}"]
        if settings_problems or rule_problems:
            # Rule problems stay with the rule book: mending the file clears them at the
            # next evaluation, as any rule edit; settings problems wait for a reload.
            self.config_problems = settings_problems
            if rule_problems:
                self.rulebook.last_errors = rule_problems
            for line in settings_problems + rule_problems:
                log.error("configuration not reloaded, the running one stays: %s", line)
            return False
        self.settings = settings
        self.rulebook = RuleBook(settings, rules, [], signature)
        self.notifiers, self.sources = notifiers, sources
        self.config_problems = []
        log.info(
            "configuration reloaded: %d sites, %d rules, %d notifiers",
            len(settings.sites),
            len(rules),
            len(notifiers),
        )
        return True

    def config_health(self) -> ConfigHealthRule:
        """The built-in alert on refused settings or rule files, told to every notifier."""
        problems = tuple(dict.fromkeys((*self.config_problems, *self.rulebook.last_errors)))
        return ConfigHealthRule(problems, tuple(self.settings.notifiers))

    def close(self) -> None:
        """Close the store."""
        self.store.close()

    def maintain(
        self, now: datetime, *, dry_run: bool = False, vacuum_now: bool | None = None
    ) -> MaintenanceReport:
        """The daily maintenance: prune history past `[storage] keep` (never what a rule in
        force reads), ANALYZE, VACUUM when a quarter of the file is free (docs/storage.md)."""
        report = self.store.maintain(
            self.settings.storage.keep,
            now,
            reach=reach_of(self.rulebook.rules),
            dry_run=dry_run,
            vacuum_now=vacuum_now,
        )
        if not dry_run:
            gone = report.retention
            log.info(
                "maintenance: %d old rows pruned%s; database %.1f MB -> %.1f MB%s",
                gone.total,
                f" (history before {gone.horizon.isoformat(timespec='seconds')})"
                if gone.horizon
                else " (storage.keep = all)",
                report.size_before / 1e6,
                report.size_after / 1e6,
                ", vacuumed" if report.vacuumed else "",
            )
            if not report.log_emptied:
                log.info("maintenance: a reader kept the -wal log; it is emptied later")
        return report

    def _told(self, result: SnapshotResult) -> None:
        """Hand a snapshot about to be ingested to `on_snapshot`, if there is one."""
        if self.on_snapshot is not None:
            self.on_snapshot(result)

    def guards(self, source: str) -> GuardSettings:
        """The false-alarm guards of a configured source (defaults for ad-hoc imports)."""
        cfg = self.settings.sources.get(source)
        if cfg is None:
            return GuardSettings()
        return GuardSettings(
            confirm_after=cfg.confirm_after,
            suspect_below=cfg.suspect_below,
            sample_ttl=getattr(cfg, "sample_ttl", GuardSettings.sample_ttl),
        )

    # --- polling -----------------------------------------------------------------------

    def poll_source(self, site: str, source: str, now: datetime) -> list[IngestOutcome]:
        """Fetch and ingest what one source has for one site; failures are recorded. A
        (site, source) another poll is polling is skipped (status `busy`)."""
        try:
            with self.store.poll_lock(site, source):
                return self._poll_source(site, source, now)
        except PollBusyError as exc:
            # Two polls of one source would pay twice, and the one that finished last
            # would be refused as out of time order; the running one will store it.
            log.warning("%s/%s: %s", site, source, exc)
            return [IngestOutcome(0, site, source, "", now, status=BUSY, note=str(exc))]

    def _poll_source(self, site: str, source: str, now: datetime) -> list[IngestOutcome]:
        src = self.sources[source]
        if isinstance(src, ApiSource):
            return self._poll_api(src, site, now)
        outcomes: list[IngestOutcome] = []
        try:
            pending = src.pending(
                site, self.store.known_exports(site, source), now, sleep=self.stopping.wait
            )
        except (SourceError, OSError) as exc:
            log.error("%s/%s: %s", site, source, exc)
            return [self._failure(site, source, now, "", str(exc), now)]
        for export in pending:
            if self.stopping.is_set():
                break
            # Stored and logged as shown: a name's bytes need not be UTF-8 or printable.
            name = shown_path(export.path.name)
            if export.problem is not None:
                log.error("%s/%s: %s", site, source, export.problem)
                outcomes.append(
                    self._failure(site, source, now, name, export.problem, now, export.stamp)
                )
                continue
            try:
                result = src.open(site, export)
                result.records = _until(self.stopping, result.records)
                self._told(result)
                outcome = self.store.ingest(site, source, result, self.guards(source), now)
            except Stopping:
                log.info("%s/%s: %s not read to the end: stopping", site, source, name)
                break
            except Exception as exc:
                # Whatever went wrong with this file is recorded (and so raises source
                # health); the files after it are still read.
                if isinstance(exc, SourceError | OutOfOrderError):
                    log.error("%s/%s: %s", site, source, exc)
                elif isinstance(exc, sqlite3.Error):
                    log.error("%s/%s: %s: %s", site, source, name, database_problem(exc))
                else:
                    log.exception("%s/%s: %s failed", site, source, name)
                # A file's content or place in time is judged once, until the file
                # changes; anything else (a locked or full database, a file from the
                # future while the clock catches up, a bug) is tried again next poll.
                final = (
                    isinstance(exc, SourceError | OutOfOrderError)
                    and not isinstance(exc, FutureSnapshotError | ChangedMeanwhileError)
                    # A file that could not be opened (permissions) may be readable later
                    # without changing its size or mtime.
                    and not isinstance(exc.__cause__, OSError)
                )
                stamp = export.stamp if final else "retry"
                outcomes.append(
                    self._failure(site, source, export.taken_at, name, str(exc), now, stamp)
                )
                continue
            log.info("%s", describe(outcome))
            outcomes.append(outcome)
        return outcomes

    def _poll_api(self, src: ApiSource, site: str, now: datetime) -> list[IngestOutcome]:
        """One API poll: a refused or failed first call is an error snapshot, a failure
        after it a partial one; a stop drops the fetch (nothing stored)."""
        origin = f"{src.kind} API"
        # A snapshot already stored that was taken after `now` (a poll that began later
        # and finished first, or a clock set back) would refuse this one: never pay for it.
        newer = self.store.latest_accepted_at(site, src.name, src.kind)
        if newer is not None and newer > now:
            return [self._overtaken(site, src.name, origin, now, newer, fetched=False)]
        try:
            result = src.fetch(site, now, stop=self.stopping)
            result.records = _until(self.stopping, result.records)
            self._told(result)
            try:
                outcome = self.store.ingest(site, src.name, result, self.guards(src.name), now)
            finally:
                result.close()
        except (Stopping, PollStopped):
            log.info("%s/%s: poll not finished: stopping (nothing of it stored)", site, src.name)
            return []
        except OutOfOrderError as exc:
            if isinstance(exc, FutureSnapshotError) or exc.latest is None:
                log.error("%s/%s: %s", site, src.name, exc)
                return [self._failure(site, src.name, now, origin, str(exc), now)]
            # No newer snapshot was there before the fetch: another poll of this source
            # stored one while this one was fetching.
            newer = from_db(exc.latest.taken_at)
            return [self._overtaken(site, src.name, origin, now, newer, fetched=True)]
        except Exception as exc:
            if isinstance(exc, SourceError):
                log.error("%s/%s: %s", site, src.name, exc)
            elif isinstance(exc, sqlite3.Error):
                log.error("%s/%s: %s", site, src.name, database_problem(exc))
            else:
                log.exception("%s/%s: poll failed", site, src.name)
            return [self._failure(site, src.name, now, origin, str(exc), now)]
        log.info("%s", describe(outcome))
        return [outcome]

    def _overtaken(
        self,
        site: str,
        source: str,
        origin: str,
        now: datetime,
        newer: datetime,
        *,
        fetched: bool,
    ) -> IngestOutcome:
        """A poll that comes after a newer snapshot of its series: superseded, unless that
        snapshot is further ahead than any poll lasts — then the clock went back, and
        every poll would be skipped until it caught up: an error, so source health tells."""
        if newer - now <= CLOCK_SET_BACK:
            return self._superseded(site, source, origin, now, newer, fetched=fetched)
        problem = (
            f"the latest snapshot of this source was taken at"
            f" {newer.isoformat(timespec='seconds')}, more than"
            f" {format_duration(CLOCK_SET_BACK)} after now ({now.isoformat(timespec='seconds')}):"
            f" was the clock set back? {'Nothing stored' if fetched else 'Not fetched'}; polls"
            " resume once the clock passes it"
        )
        log.error("%s/%s: %s", site, source, problem)
        return self._failure(site, source, now, origin, problem, now)

    def _superseded(
        self,
        site: str,
        source: str,
        origin: str,
        taken_at: datetime,
        newer: datetime,
        *,
        fetched: bool,
    ) -> IngestOutcome:
        """A poll overtaken by a newer snapshot of its series: nothing is stored, and the
        source is not failing, so no error snapshot (it would raise source health)."""
        note = (
            f"superseded by a newer snapshot taken at {newer.isoformat(timespec='seconds')};"
            f" {'nothing stored' if fetched else 'not fetched, nothing stored'}"
        )
        log.warning("%s/%s: %s", site, source, note)
        return IngestOutcome(0, site, source, origin, taken_at, status=SUPERSEDED, note=note)

    def _failure(
        self,
        site: str,
        source: str,
        taken_at: datetime,
        origin: str,
        error: str,
        now: datetime,
        origin_stamp: str | None = None,
    ) -> IngestOutcome:
        """Record a poll that produced no snapshot, as an outcome with status `error`."""
        snapshot_id = self.store.record_failure(
            site, source, taken_at, origin, error, now, origin_stamp
        )
        return IngestOutcome(
            snapshot_id, site, source, origin, taken_at, status="error", note=error
        )

    def poll(self, now: datetime, site: str | None = None) -> list[IngestOutcome]:
        """Poll every source of every site (or of one site)."""
        outcomes: list[IngestOutcome] = []
        for s in self.settings.sites:
            if site is None or s.domain == site:
                for source in s.sources:
                    outcomes.extend(self.poll_source(s.domain, source, now))
        return outcomes

    def open_exports(
        self, site: str, files: Sequence[Path], format_kind: str | None
    ) -> list[ExportFile]:
        """Open and identify every file, and every usable table of a zip archive, before
        anything is stored (FormatError on an unknown file or one that holds no links)."""
        opened: list[ExportFile] = []
        try:
            for path in files:
                opened.extend(open_export_files(path, site, format_kind))
        except BaseException:
            for f in opened:
                f.close()
            raise
        return opened

    def import_exports(
        self,
        site: str,
        files: Sequence[Path],
        *,
        source: str,
        format_kind: str | None,
        taken_at: datetime | None,
        now: datetime,
        opened: Sequence[ExportFile] | None = None,
    ) -> list[IngestOutcome]:
        """Ingest export files for a site, oldest first; nothing is stored if one is unknown,
        or would be refused (out of order, from the future, another coverage).

        `opened`: the files as `open_exports` opened them, when the caller looked at them
        first (the `import` command reports how each was recognised)."""
        if opened is None:
            opened = self.open_exports(site, files, format_kind)
        try:
            results: list[SnapshotResult] = [
                f.snapshot(taken_at or export_time(f.path, f.path.stat().st_mtime)) for f in opened
            ]
            results.sort(key=lambda r: r.taken_at)
            # Every file is judged first: one refused (from the future, out of order in
            # its series, another coverage) stores none of them.
            problems = self.store.ingest_problems(site, source, results, now)
            if problems:
                first = problems[0]
                told = "\n".join(str(p) for p in problems)
                raise type(first)(told + ("\nnothing was stored" if len(results) > 1 else ""))
            outcomes = []
            for r in results:
                self._told(r)
                try:
                    outcomes.append(self.store.ingest(site, source, r, self.guards(source), now))
                except (SourceError, ValueError) as exc:
                    if not outcomes:
                        raise
                    # Refused only once read (another site's export): say what the files
                    # before it stored.
                    stored = "\n".join(f"  {describe(o)}" for o in outcomes)
                    told = f"{exc}\nstored before it:\n{stored}"
                    if isinstance(exc, SourceError):
                        raise SourceError(told) from exc
                    raise ValueError(told) from exc
                log.info("%s", describe(outcomes[-1]))
        finally:
            # Files not read to the end (an ingest failed) are closed here.
            for f in opened:
                f.close()
        return outcomes

    # --- alerts ------------------------------------------------------------------------

    def evaluate(
        self,
        at: datetime,
        now: datetime | None = None,
        *,
        book: AlertBook | None = None,
        group: bool | None = None,
    ) -> list[Transition]:
        """Evaluate the rules in force as of `at` (reloading them first if their files
        changed); notifications are queued at `now` (default: `at`).

        With a `book` (a MemoryAlertBook) nothing is written or sent: a what-if. Else the
        evaluation is committed; transitions of one site are gathered for `group_wait`
        in the daemon (`group`, default: when it watches its configuration).
        """
        self.rulebook.reload_if_changed()
        ctx = EvaluationContext(
            self.store,
            at,
            now or at,
            self.settings.own_sites(),
            [s.domain for s in self.settings.sites],
            competitors={
                s.domain: tuple(getattr(s, "competitors", ()) or ()) for s in self.settings.sites
            },
        )
        rules: list[Rule] = list(self.rulebook.rules)
        if self.watch_config:
            rules.append(self.config_health())
        if book is not None:
            return evaluate(self.store, rules, ctx, book)
        grouping = self.watch_config if group is None else group
        wait = self.settings.daemon.group_wait if grouping else timedelta(0)
        transitions = evaluate(self.store, rules, ctx, StoredAlertBook(self.store, wait))
        self.store.mark_evaluated(at)
        return transitions

    def rules_changed(self) -> bool:
        """True when a rule file was added, removed or edited since the rules were loaded."""
        return rules_signature(self.settings.daemon.rules_dir) != self.rulebook.signature

    def deliver(self, now: datetime) -> DeliveryReport:
        """Deliver due notifications."""
        return deliver_due(
            self.store, self.notifiers, now, self.settings.daemon.delivery_ttl, clock=utcnow
        )

    def wake_delivery(self, now: datetime) -> None:
        """The daemon's delivery: wake each notifier's worker (started, or replaced after a
        reload, here) and never wait on a notifier; rows of removed notifiers go dead."""
        if self.delivery is None:
            self.delivery = DeliveryWorkers(self.store.path, utcnow)
        self.delivery.configure(self.notifiers, self.settings.daemon.delivery_ttl)
        dead_letter_unconfigured(self.store, self.notifiers, now)
        self.delivery.wake()

    def stop_delivery(self) -> None:
        """Let the delivery workers take no more rows; never waits."""
        if self.delivery is not None:
            self.delivery.stop()

    def join_delivery(self) -> list[str]:
        """Wait for the stopped workers, at most their grace; the notifiers abandoned."""
        if self.delivery is None:
            return []
        self.delivery.stop()  # workers a job started since stop_delivery stop too
        return self.delivery.join()

    def cycle(
        self, now: datetime, site: str | None = None
    ) -> tuple[list[IngestOutcome], list[Transition], DeliveryReport]:
        """One full cycle: poll, evaluate, deliver."""
        outcomes = self.poll(now, site)
        transitions = self.evaluate(now)
        return outcomes, transitions, self.deliver(now)


class Stopping(Exception):
    """The daemon is stopping: the export being read is dropped, nothing of it stored."""


def _until(stopping: threading.Event, records: Iterator[Backlink]) -> Iterator[Backlink]:
    """The records, cut short (Stopping) once `stopping` is set."""
    for i, record in enumerate(records):
        if i % 4096 == 0 and stopping.is_set():
            raise Stopping
        yield record


def _plugins(settings: Settings) -> tuple[dict[str, Notifier], dict[str, Source]]:
    """The notifiers and sources a settings file describes."""
    notifiers = {name: build_notifier(name, cfg) for name, cfg in settings.notifiers.items()}
    sources = {name: build_source(name, cfg) for name, cfg in settings.sources.items()}
    return notifiers, sources
