"""The `linkwatch` command line."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

# linkwatch uses no pydantic plugin, and looking for one reads the metadata of every
# installed package: 10-20 ms of every command's start (issue 9). Set it to an empty
# value in the environment to have pydantic look for plugins all the same.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from daemon.logs import configure_logging
from daemon.textsafe import one_line
from daemon.timefmt import format_duration, parse_instant
from sources.model import FormatError, SnapshotResult, SourceError

# Only what every command needs is imported here: `status`, `metrics` and `links` must
# start fast (issue 9), so rules, notifiers, sources, the scheduler and the doctor are
# imported by the commands that use them, and tests/test_cli_startup.py checks it.
if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

    from alerts.engine import Transition
    from daemon.service import Linkwatch
    from daemon.settings import Settings
    from daemon.settings_core import CoreSettings
    from daemon.store import Store

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2
# A row id as SQLite stores it: a larger number is a usage error, not an overflow.
ROW_ID = click.IntRange(min=1, max=2**63 - 1)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"linkwatch: {message}", err=True)
    sys.exit(code)


def utcnow() -> datetime:
    """The current instant, timezone-aware (as daemon.service.utcnow, without loading it)."""
    return datetime.now(UTC)


def _config_file(ctx: click.Context) -> Path:
    """The settings file to read; exit 2 naming the places looked at when there is none."""
    from daemon.settings_core import ConfigError, config_path

    try:
        return config_path(ctx.obj["config"])
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)


def _settings(ctx: click.Context) -> Settings:
    from daemon.settings import ConfigError, load_settings

    path = _config_file(ctx)
    try:
        return load_settings(path)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)


def _site(settings: CoreSettings, given: str) -> str:
    """The configured domain `--site` names, in any letter case; else exit 2 listing them."""
    domains = [s.domain for s in settings.sites]
    if given in domains:
        return given
    alike = [d for d in domains if d.lower() == given.lower()]
    if len(alike) == 1:
        return alike[0]
    known = ", ".join(domains) or "none in the settings"
    what = "matches more than one site" if alike else "is not a site"
    _fail(f"--site: {given!r} {what} (sites: {known})", EXIT_USAGE)


def _app(ctx: click.Context) -> Linkwatch:
    from alerts.rules import RulesError
    from daemon.service import Linkwatch
    from daemon.store import StoreError

    settings = _settings(ctx)
    try:
        return Linkwatch.open(settings)
    except RulesError as exc:
        _fail("rules have errors:\n" + str(exc), EXIT_USAGE)
    except StoreError as exc:
        _fail(str(exc), EXIT_RUNTIME)


def _reading(ctx: click.Context) -> tuple[CoreSettings, Store]:
    """The settings and the database for a command that only reads (status, metrics,
    links): the database is created or upgraded and the configured sites recorded, as at
    any start, but no rule, source or notifier is loaded, nor their settings blocks read,
    so they start fast (issue 9); `check` reads those."""
    from daemon.settings_core import ConfigError, load_core_settings
    from daemon.store import Store, StoreError

    try:
        settings = load_core_settings(_config_file(ctx))
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    try:
        store = Store(settings.storage.path, settings.storage.busy_timeout.total_seconds())
    except StoreError as exc:
        _fail(str(exc), EXIT_RUNTIME)
    try:
        store.register_sites((site.domain, site.role, site.sources) for site in settings.sites)
    except BaseException:
        store.close()
        raise
    return settings, store


def _instant(
    ctx: click.Context | None, param: click.Parameter | None, value: str | None
) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_instant(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value))


_VERBOSE = "linkwatch.verbose"


def _verbose(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    # Before the verb or after it: any -v turns debug logging on for the whole run.
    if value:
        ctx.meta[_VERBOSE] = True
        configure_logging(True)


def _add_verbose(params: list[click.Parameter]) -> None:
    params.append(
        click.Option(
            ["-v", "--verbose"],
            is_flag=True,
            expose_value=False,
            callback=_verbose,
            help="log debug detail",
        )
    )
    if not any(p.name == "version" for p in params):
        # `linkwatch status --version` answers too, as after any verb.
        params.append(
            click.Option(
                ["--version"],
                is_flag=True,
                expose_value=False,
                is_eager=True,
                callback=_print_version,
                help="print the version and exit",
            )
        )


class _Command(click.Command):
    """A linkwatch command: takes -v/--verbose after the verb as well."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _add_verbose(self.params)


def _stdout_gone() -> NoReturn:
    """Exit 0 quietly once the reader of stdout has gone (`linkwatch links | head -1`)."""
    # Python would flush the rest at exit and print "Exception ignored"; point the
    # descriptor at /dev/null so that flush succeeds.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # not a real descriptor (a test runner's buffer): nothing left to flush
    sys.exit(EXIT_OK)


class _Linkwatch(click.Group):
    """The command group; a database that is busy, full or unusable ends a command with
    exit 1 and one line, never a traceback. Every command and subgroup takes -v."""

    command_class = _Command
    group_class = type

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _add_verbose(self.params)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            try:
                return super().invoke(ctx)
            finally:
                # Buffered output (csv) must meet a closed pipe here, not at exit.
                sys.stdout.flush()
        except sqlite3.Error as exc:
            from daemon.store import database_problem

            _fail(database_problem(exc), EXIT_RUNTIME)
        except BrokenPipeError:
            _stdout_gone()


def _version() -> str:
    """The installed package's version."""
    import importlib.metadata

    try:
        return importlib.metadata.version("linkwatch")
    except importlib.metadata.PackageNotFoundError:
        # Run from a checkout that was never installed: say so rather than invent a number.
        return "unknown (not installed; pip install -e .)"


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"linkwatch {_version()}")
        ctx.exit()


@click.group("linkwatch", cls=_Linkwatch, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="settings file (default: $LINKWATCH_CONFIG, else ./settings.toml, else "
    "/etc/linkwatch/settings.toml)",
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="print the version and exit",
)
@click.pass_context
def main(ctx: click.Context, config: Path | None) -> None:
    """linkwatch: watch backlink profiles and alert on negative link velocity."""
    configure_logging(bool(ctx.meta.get(_VERBOSE)))
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


@main.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run the daemon: poll sources on their intervals, evaluate rules, deliver alerts."""
    from daemon.scheduler import run as run_daemon

    app = _app(ctx)
    try:
        run_daemon(app)
    finally:
        app.close()


@main.command()
@click.option("--site", help="poll only this site")
@click.pass_context
def poll(ctx: click.Context, site: str | None) -> None:
    """Run one cycle now: fetch, ingest, evaluate, deliver."""
    from daemon.progress import Progress
    from daemon.service import describe

    app = _app(ctx)
    try:
        if site is not None:
            site = _site(app.settings, site)
        # app.cycle, one site at a time, so that a terminal is told how far it has got.
        domains = [s.domain for s in app.settings.sites if site is None or s.domain == site]
        now = utcnow()
        outcomes = []
        with Progress("polling", "site", len(domains)) as progress:
            app.on_snapshot = progress.watch
            for domain in domains:
                progress.next(domain)
                outcomes.extend(app.poll(now, domain))
        transitions = app.evaluate(now)
        report = app.deliver(now)
        # A source another poll was polling was not polled by this one: a failure to
        # do what was asked, as a busy database is.
        failed = ("error", "partial", "suspect", "busy")
        troubled = [o for o in outcomes if o.status in failed]
        for o in outcomes:
            # A fetch a newer poll overtook stored nothing; the source is fine, yet the
            # user should know this poll's fetch was for nothing.
            if o.status in failed or not o.snapshot_id:
                click.echo(describe(o))
        stored = sum(1 for o in outcomes if o.snapshot_id)
        click.echo(
            f"{stored} snapshots, {len(transitions)} alert changes, "
            f"{report.sent} notifications sent, {report.retrying} to retry, {report.dead} failed"
        )
        if troubled or report.dead or report.retrying:
            sys.exit(EXIT_RUNTIME)
    finally:
        app.close()


class _FormatKind(click.ParamType[str]):
    """An export format's kind, as `click.Choice` of them; the formats are loaded only when
    `import` reads the option or prints its help, not at every command's start."""

    name = "format"

    def _choice(self) -> click.Choice[str]:
        from sources.formats import FORMATS

        return click.Choice(sorted(FORMATS))

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str | None:
        return self._choice().get_metavar(param, ctx)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        return self._choice().convert(value, param, ctx)

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        return self._choice().shell_complete(ctx, param, incomplete)


@main.command("import")
@click.option("--site", required=True, help="the site these exports are of")
@click.option("--format", "format_kind", type=_FormatKind(), help="force an export format")
@click.option(
    "--taken-at",
    callback=_instant,
    help="when the export was taken (ISO 8601); default: the date in the file name, else "
    "the file's modification time",
)
@click.option(
    "--source", help="source to file the snapshots under (default: the site's first source)"
)
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.pass_context
def import_(
    ctx: click.Context,
    site: str,
    format_kind: str | None,
    taken_at: datetime | None,
    source: str | None,
    files: tuple[Path, ...],
) -> None:
    """Import backlink export files as snapshots of a site."""
    from daemon.progress import Progress
    from daemon.service import describe
    from daemon.store import ChangedMeanwhileError

    at = taken_at
    if at is not None and len(files) > 1:
        _fail("--taken-at names one time; import one file at a time with it", EXIT_USAGE)
    app = _app(ctx)
    try:
        site = _site(app.settings, site)
        # Filing under the site's own source keeps one timeline: a separate source would
        # keep every imported link live for as long as that source is not polled again.
        site_sources = app.settings.site(site).sources
        if source is not None and source not in site_sources:
            _fail(
                f"--source: {source!r} is not a source of {site} "
                f"(its sources: {', '.join(site_sources)})",
                EXIT_USAGE,
            )
        source = source or site_sources[0]
        try:
            # Opened first, so each snapshot's report can say how its file was recognised.
            opened = app.open_exports(site, files, format_kind)
            with Progress("importing", "file", len(opened)) as progress:

                def told(result: SnapshotResult) -> None:
                    progress.next(result.origin)
                    progress.watch(result)

                app.on_snapshot = told
                outcomes = app.import_exports(
                    site,
                    files,
                    source=source,
                    format_kind=format_kind,
                    taken_at=at,
                    now=utcnow(),
                    opened=opened,
                )
        except FormatError as exc:
            _fail(f"{exc}\nnothing was stored", EXIT_USAGE)
        except ChangedMeanwhileError as exc:
            # Not the file's fault nor the command's: the same command will work.
            _fail(str(exc), EXIT_RUNTIME)
        except (SourceError, ValueError) as exc:
            _fail(str(exc), EXIT_USAGE)
        exports = {f.origin: f for f in opened}
        partial = False
        for o in outcomes:
            click.echo(describe(o))
            export = exports.get(o.origin)
            if export is not None:
                click.echo(f"  {o.origin}: {export.detection.describe()}")
                for note in export.notes:
                    # A note names the member it is about; one the ingest line told is not
                    # repeated.
                    if note not in (o.note or ""):
                        click.echo(f"  {note}")
            if o.status != "duplicate":
                # Rows read are the rows parsed (and refused); a row naming a link (or
                # domain) an earlier row named is folded into it.
                line = (
                    f"  {o.origin}: filed under series {o.series or source}:"
                    f" {o.read + o.malformed} rows read, {o.malformed} refused"
                )
                if o.read > o.listed:
                    key = "referring domain" if o.coverage == "domains" else "link"
                    line += (
                        f"; {o.read - o.listed} repeated an earlier row's {key}:"
                        f" {o.listed} {key}s listed"
                    )
                click.echo(line)
            for example in o.examples:
                click.echo(f"  {o.origin}: {example}")
            partial = partial or o.status in ("partial", "suspect")
        if partial:
            sys.exit(EXIT_RUNTIME)
    finally:
        app.close()


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> timedelta:
    from daemon.types import to_duration

    try:
        window: timedelta = to_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    if window <= timedelta(0):
        raise click.BadParameter("must be a positive duration")
    return window


@main.command()
@click.option(
    "--at",
    callback=_instant,
    help="what if the clock read this instant (ISO 8601): print what would change, change "
    "nothing, send nothing",
)
@click.option(
    "--commit",
    is_flag=True,
    help="with --at: act as if the clock read it (replays, tests); refused before the last "
    "committed evaluation",
)
@click.pass_context
def evaluate(ctx: click.Context, at: datetime | None, commit: bool) -> None:
    """Evaluate the rules now and deliver what they raised; with --at, a what-if."""
    from alerts.engine import MemoryAlertBook

    if commit and at is None:
        _fail("--commit needs --at (a plain evaluate already acts now)", EXIT_USAGE)
    app = _app(ctx)
    try:
        now = utcnow()
        if at is not None and not commit:
            book = MemoryAlertBook.copy_of(app.store)
            changes = app.evaluate(at, now, book=book)
            stamp = at.isoformat(timespec="seconds")
            click.echo(f"what-if at {stamp}: nothing is changed and nothing is sent")
            for t in changes:
                click.echo(f"  would be {_transition_line(t)}")
            if not changes:
                click.echo("  no alert would change")
            active = [a for a in book.alerts() if a.state in ("pending", "firing")]
            click.echo(f"then {len(active)} alerts pending or firing" + (":" if active else ""))
            for a in active:
                click.echo(f"  {a.state:8} {a.rule} {a.site} (value {_shown(a.value)})")
            return
        if commit:
            assert at is not None
            if at > now + timedelta(minutes=1):
                _fail(
                    f"--at {at.isoformat(timespec='seconds')} is in the future: a committed "
                    "evaluation there would hold every alert's clock until then; use --at "
                    "without --commit for a what-if",
                    EXIT_USAGE,
                )
            last = app.store.last_evaluation()
            if last is not None and at < last:
                _fail(
                    f"--at {at.isoformat(timespec='seconds')} is before the last committed "
                    f"evaluation ({last.isoformat(timespec='seconds')}): alert states cannot "
                    "go back in time; use --at without --commit for a what-if",
                    EXIT_USAGE,
                )
        transitions = app.evaluate(at or now, now)
        for t in transitions:
            click.echo(_transition_line(t))
        report = app.deliver(now)
        click.echo(
            f"{len(transitions)} alert changes; {report.sent} notifications sent, "
            f"{report.retrying} to retry, {report.dead} failed"
        )
        if report.dead or report.retrying:
            sys.exit(EXIT_RUNTIME)
    finally:
        app.close()


def _shown(value: float | None) -> str:
    if value is None:
        return "no data"
    return str(int(value)) if value == int(value) else f"{value:g}"


def _transition_line(t: Transition) -> str:
    """One line per alert change."""
    from alerts.engine import REASONS

    line = f"{t.state}: {t.rule} {t.site} (value {_shown(t.value)})"
    if t.reason:
        line += f", because {REASONS.get(t.reason, t.reason)}"
    if t.silenced:
        line += " [silenced: recorded, not sent]"
    return line


_ALERT_STATES = {
    "active": ("pending", "firing"),
    "firing": ("firing",),
    "pending": ("pending",),
    "resolved": ("resolved",),
    "inactive": ("inactive",),
    "all": ("pending", "firing", "resolved", "inactive"),
}


@main.command("alerts")
@click.option(
    "--state",
    type=click.Choice(sorted(_ALERT_STATES)),
    default="active",
    show_default=True,
    help="which alerts (active: pending or firing)",
)
@click.option("--site", help="only this site's alerts")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object per line")
@click.pass_context
def alerts_(ctx: click.Context, state: str, site: str | None, as_json: bool) -> None:
    """List alerts: rule, site, state, value, since when, last notified."""
    from alerts.engine import REASONS

    app = _app(ctx)
    try:
        if site is not None:
            site = _site(app.settings, site)
        rows = app.store.alert_states(_ALERT_STATES[state], site)
        for a in rows:
            record = {
                "rule": a.rule,
                "site": a.site,
                "labels": dict(a.labels),
                "state": a.state,
                "value": a.value,
                "since": a.since_at.isoformat(timespec="seconds"),
                "fired_at": a.fired_at.isoformat(timespec="seconds") if a.fired_at else None,
                "resolved_at": (
                    a.resolved_at.isoformat(timespec="seconds") if a.resolved_at else None
                ),
                "reason": a.reason,
                "last_notified": (
                    a.notified_at.isoformat(timespec="seconds") if a.notified_at else None
                ),
            }
            if as_json:
                click.echo(json.dumps(record))
                continue
            labels = ",".join(f"{k}={v}" for k, v in a.labels)
            click.echo(
                f"{a.state:8} {a.rule} {a.site}{' {' + labels + '}' if labels else ''}"
                f" value {_shown(a.value)} since {record['since']}"
                f" last notified {record['last_notified'] or 'never'}"
                + (f" ({REASONS.get(a.reason, a.reason)})" if a.reason else "")
            )
        if not rows and not as_json:
            click.echo(f"no {state} alerts")
    finally:
        app.close()


@main.group()
def silence() -> None:
    """Mute alerts of a rule, a site or both for a while (recorded, not sent)."""


@silence.command("add")
@click.option("--rule", help="the rule to mute (default: every rule)")
@click.option("--site", help="the site to mute (default: every site)")
@click.option("--for", "duration", required=True, callback=_duration, help="how long, e.g. 24h")
@click.option("--comment", default="", help="why, for the team")
@click.pass_context
def silence_add(
    ctx: click.Context, rule: str | None, site: str | None, duration: timedelta, comment: str
) -> None:
    """Mute a rule and/or a site from now for --for."""
    if rule is None and site is None:
        _fail(
            "give --rule, --site or both: a silence of everything would hide every alert",
            EXIT_USAGE,
        )
    if len(comment) > 500:
        _fail("--comment: at most 500 characters", EXIT_USAGE)
    app = _app(ctx)
    try:
        if site is not None:
            site = _site(app.settings, site)
        names = {r.name for r in app.rulebook.rules} | {"config_health"}
        if rule is not None and rule not in names:
            _fail(f"--rule: unknown rule {rule!r} (rules: {', '.join(sorted(names))})", EXIT_USAGE)
        now = utcnow()
        silence_id = app.store.add_silence(rule, site, now, now + duration, comment)
        click.echo(
            f"silence {silence_id}: {rule or 'every rule'} on {site or 'every site'} until "
            f"{(now + duration).isoformat(timespec='seconds')}"
        )
    finally:
        app.close()


@silence.command("list")
@click.option("--all", "show_all", is_flag=True, help="also silences that have ended")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object per line")
@click.pass_context
def silence_list(ctx: click.Context, show_all: bool, as_json: bool) -> None:
    """List silences in force (with --all, every one)."""
    app = _app(ctx)
    try:
        now = utcnow()
        rows = app.store.silences(None if show_all else now)
        for s in rows:
            record = {
                "id": s.id,
                "rule": s.rule,
                "site": s.site,
                "starts_at": s.starts_at.isoformat(timespec="seconds"),
                "ends_at": s.ends_at.isoformat(timespec="seconds"),
                "active": s.starts_at <= now < s.ends_at,
                "comment": s.comment,
            }
            if as_json:
                click.echo(json.dumps(record))
            else:
                click.echo(
                    f"{s.id:4} {'active' if record['active'] else 'ended ':6} "
                    f"{s.rule or '*'} on {s.site or '*'} until {record['ends_at']}"
                    + (f" — {one_line(s.comment)}" if s.comment else "")
                )
        if not rows and not as_json:
            click.echo("no silences" if show_all else "no silences in force")
    finally:
        app.close()


@silence.command("expire")
@click.argument("silence_id", type=ROW_ID)
@click.pass_context
def silence_expire(ctx: click.Context, silence_id: int) -> None:
    """End a silence now."""
    app = _app(ctx)
    try:
        if not app.store.expire_silence(silence_id, utcnow()):
            _fail(f"no silence {silence_id} in force (see `linkwatch silence list`)", EXIT_USAGE)
        click.echo(f"silence {silence_id} ended")
    finally:
        app.close()


def _warn_stopped(site: str, stopped: list[tuple[str, str, datetime, int]]) -> None:
    """Warn (on stderr: listings stay machine-readable) about each series whose files now
    file elsewhere (after an upgrade) and so holds its links live for ever."""
    from daemon.store.reads import stopped_series_note

    for stop in stopped:
        found, fix = stopped_series_note(site, *stop)
        click.echo(f"linkwatch: warning: {found}. {fix[0].upper()}{fix[1:]}", err=True)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show each site's live links, referring domains and firing alerts."""
    _, store = _reading(ctx)
    try:
        rows = store.status()
        for r in rows:
            _warn_stopped(r.site, store.stopped_series(r.site))
        firing: dict[str, int] = {}
        for a in store.alert_states(("firing",)):
            firing[a.site] = firing.get(a.site, 0) + 1
        if as_json:
            records = [asdict(r) | {"alerts_firing": firing.get(r.site, 0)} for r in rows]
            click.echo(json.dumps(records, default=_json_default, indent=2))
            return
        for r in rows:
            if r.last_ingested_at is None or r.last_snapshot_at is None:
                last = "no snapshot yet"
            else:
                last = (
                    f"last snapshot ingested {r.last_ingested_at.isoformat(timespec='seconds')}"
                    f" (taken {r.last_snapshot_at.isoformat(timespec='seconds')}):"
                    f" {r.last_snapshot_status}"
                )
            unconfirmed = f", {r.unconfirmed_links} unconfirmed" if r.unconfirmed_links else ""
            click.echo(
                f"{r.site} ({r.role}): {r.live_links} live links from {r.live_refdomains} "
                f"referring domains, {r.missing_links} missing, {r.lost_links} lost"
                f"{unconfirmed}; {last}; {firing.get(r.site, 0)} alerts firing"
            )
        if firing.get("linkwatch"):
            click.echo(f"linkwatch (service): {firing['linkwatch']} alerts firing")
    finally:
        store.close()


@main.command()
@click.option("--site", required=True, help="the site whose metrics to show")
@click.option(
    "--at",
    callback=_instant,
    help="end of the window (ISO 8601); default: now",
)
@click.option("--window", default="7d", show_default=True, callback=_duration, help="length")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@click.pass_context
def metrics(
    ctx: click.Context, site: str, at: datetime | None, window: timedelta, as_json: bool
) -> None:
    """Print every metric of a site over the window ending at an instant; changes nothing."""
    from alerts.metrics import METRICS, compute_metrics

    at = at or utcnow()
    settings, store = _reading(ctx)
    try:
        site = _site(settings, site)
        values = compute_metrics(store, site, window, at)
        result = {name: None if values is None else getattr(values, name) for name in METRICS}
        if as_json:
            click.echo(json.dumps(result))
            return
        click.echo(
            f"{site}: window {format_duration(window)} ending {at.isoformat(timespec='seconds')}"
            + ("" if values is not None else " (no data: no accepted snapshot by then)")
        )
        for name, value in result.items():
            shown = "-" if value is None else (f"{value:g}" if isinstance(value, float) else value)
            click.echo(f"  {name:20} {shown}")
    finally:
        store.close()


_REL_FLAGS = ("nofollow", "ugc", "sponsored")
# The keys of `links --format json`, exactly: scripts read them.
_LINK_KEYS = (
    "url_from url_to anchor state lost_reason domain_rating first_seen last_seen sources"
    " rating_metric toxicity sightings"
)
_TABLE_HEADER = (
    "STATE", "DR", "METRIC", "TOX", "FIRST SEEN", "LAST SEEN", "REL", "URL_FROM", "URL_TO",
)  # fmt: skip
_TEXTS = ("url_from", "url_to", "anchor", "lost_reason")
# New columns go at the end: scripts that read the csv by position keep working.
_CSV_HEADER = (
    "state domain_rating first_seen last_seen rel " + " ".join(_TEXTS) + " sources"
    " rating_metric toxicity seen_by"
)
# Column widths come from this many rows; later rows stream out without being held.
_TABLE_SAMPLE = 500


def _rel(row: dict[str, Any]) -> str:
    """`nofollow ugc …` as the stored flags say; dofollow when all known are false."""
    flags = [f for f in _REL_FLAGS if row[f]]
    if flags:
        return " ".join(flags)
    # A NULL flag is one the export did not give: no flag known is no answer at all.
    return "dofollow" if any(row[f] is not None for f in _REL_FLAGS) else ""


def _when(at: datetime | None, table: bool = False) -> str:
    if at is None:
        return ""
    return at.strftime("%Y-%m-%d %H:%M") if table else at.isoformat(timespec="seconds")


def _seen_by(row: dict[str, Any], table: bool = False) -> str:
    """`series first..last` per series that listed the link; `*` when it still does."""

    def day(at: datetime | None) -> str:
        if at is None:
            return "?"
        return at.strftime("%Y-%m-%d") if table else at.isoformat(timespec="seconds")

    return ("," if table else ";").join(
        f"{s['series']} {day(s['first_seen'])}..{day(s['last_seen'])}{'*' if s['seeing'] else ''}"
        for s in row["sightings"]
    )


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _csv_row(row: dict[str, Any]) -> list[Any]:
    first, last = _when(row["first_seen"]), _when(row["last_seen"])
    texts = [row[k] for k in _TEXTS]
    sources = " ".join(row["sources"])
    return [
        *(row["state"], row["domain_rating"], first, last, _rel(row), *texts, sources),
        *(row["rating_metric"], row["toxicity"], _seen_by(row)),
    ]


def _table_row(row: dict[str, Any]) -> list[str]:
    first, last = _when(row["first_seen"], table=True), _when(row["last_seen"], table=True)
    return [
        *(row["state"], _number(row["domain_rating"]), _cell(row["rating_metric"] or "")),
        *(_number(row["toxicity"]), first, last, _rel(row)),
        *(_cell(row[k] or "") for k in _TEXTS),
        _cell(_seen_by(row, table=True)),
    ]


def _cell(text: str) -> str:
    """Third-party text made safe for one table cell: control characters shown escaped
    (the same helper the alert text uses); csv and json carry such text exactly."""
    return one_line(text)


def _print_table(header: Iterable[str], rows: Iterator[list[str]]) -> None:
    """Aligned columns, widths taken from the first rows; the last column is not padded."""
    head = [*header]
    sample = [head]
    for row in rows:
        sample.append(row)
        if len(sample) > _TABLE_SAMPLE:
            break
    widths = [max(len(r[i]) for r in sample) for i in range(len(head) - 1)]
    for row in [*sample, *rows]:
        padded = [v.ljust(w) for v, w in zip(row, widths, strict=False)]
        click.echo("  ".join([*padded, row[-1]]).rstrip())


@main.command()
@click.option("--site", required=True, help="the site whose links to list (any letter case)")
@click.option("--state", type=click.Choice(["live", "missing", "lost", "unconfirmed"]))
@click.option(
    "--format",
    "output",
    type=click.Choice(["table", "csv", "json"]),
    help="table (default), csv with a header row, or json: one object per line",
)
@click.option("--json", "as_json", is_flag=True, help="deprecated alias of --format json")
@click.pass_context
def links(
    ctx: click.Context, site: str, state: str | None, output: str | None, as_json: bool
) -> None:
    """List a site's links from the ledger.

    DR is the provider's rating of the referring domain (0-100) and METRIC which rating it
    is (Ahrefs DR, Moz DA, …; empty when the export did not say); TOX the provider's
    toxicity or spam score (0-100). FIRST SEEN is when linkwatch first saw the link: the
    snapshot that added it (for links already there at the site's first snapshot, that
    snapshot). LAST SEEN is, for a live link, the latest accepted snapshot of a source
    still seeing it; otherwise the last snapshot that saw it before it went missing. Times
    are UTC. REL is dofollow, or the nofollow / ugc / sponsored flags the exports gave
    (empty when they gave none). SEEN BY names each series (source/format) that listed the
    link, with the first and last day it did; `*` marks a series that still lists it.
    --format json gives each series' own rating, metric and toxicity too.
    """
    if as_json and output not in (None, "json"):
        _fail(f"--json and --format {output} disagree; give --format alone", EXIT_USAGE)
    output = "json" if as_json else (output or "table")
    settings, store = _reading(ctx)
    try:
        site = _site(settings, site)
        rows = store.link_listing(site, state)
        if output == "json":
            for row in rows:
                record = {key: row[key] for key in _LINK_KEYS.split()}
                click.echo(json.dumps(record, default=_json_default, ensure_ascii=False))
        elif output == "csv":
            writer = csv.writer(sys.stdout)
            writer.writerow(_CSV_HEADER.split())
            writer.writerows(_csv_row(row) for row in rows)
        else:
            header = [*_TABLE_HEADER, "ANCHOR", "LOST REASON", "SEEN BY"]
            _print_table(header, (_table_row(row) for row in rows))
    finally:
        store.close()


_SNAPSHOT_COUNTS = ("listed", "seen", "new", "missing", "restored", "lost", "changed", "malformed")


@main.group(invoke_without_command=True)
@click.option("--site", help="the site whose snapshots to list (any letter case)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object per line")
@click.pass_context
def snapshots(ctx: click.Context, site: str | None, as_json: bool) -> None:
    """List a site's snapshots in the order they were stored; `snapshots delete ID`
    removes a mistaken one.

    STATUS is baseline or complete (the snapshot was applied), or suspect, partial,
    duplicate or error (it changed no link). The counts are what the snapshot listed and
    did: rows listed (live and marked lost), live rows seen, and new, missing, restored,
    lost and changed links (referring domains, for a domains series), malformed rows.
    """
    from daemon.store import Store, StoreError

    if ctx.invoked_subcommand is not None:
        return
    if site is None:
        _fail("give --site SITE to list its snapshots (or: snapshots delete ID)", EXIT_USAGE)
    _, settings = _settings_without_secrets(ctx.find_root())
    site = _site(settings, site)
    try:
        store = Store.read_only(settings.storage.path)
    except StoreError as exc:
        _fail(str(exc), EXIT_RUNTIME)
    try:
        try:
            listed = store.snapshot_listing(site)
            stopped = store.stopped_series(site)
        except KeyError:
            listed, stopped = [], []  # configured, never polled
    finally:
        store.close()
    _warn_stopped(site, stopped)
    if as_json:
        for snap in listed:
            record = asdict(snap)
            click.echo(json.dumps(record, default=_json_default, ensure_ascii=False))
        return
    if not listed:
        click.echo(f"{site}: no snapshots yet")
        return
    header = ["ID", "SERIES", "COVERAGE", "TAKEN", "INGESTED", "STATUS"]
    header += [c.upper() for c in _SNAPSHOT_COUNTS]
    rows = (
        [
            str(s.id),
            _cell(s.series),
            s.coverage,
            _when(s.taken_at, True),
            _when(s.ingested_at, True),
            s.status,
            *(str(getattr(s, c)) for c in _SNAPSHOT_COUNTS),
            _cell(" ".join((s.note or "").split())),
        ]
        for s in listed
    )
    _print_table([*header, "NOTE"], rows)


@snapshots.command("delete")
@click.argument("snapshot_id", metavar="ID", type=ROW_ID)
@click.pass_context
def snapshots_delete(ctx: click.Context, snapshot_id: int) -> None:
    """Delete a mistaken snapshot; the site's links are rebuilt from the rest.

    One that changed no link (suspect, partial, duplicate, error) just goes. For an
    applied one, the site's links, events and sightings are rebuilt from the remaining
    snapshots, in one transaction, exactly as if it had never been ingested; when that
    would need a snapshot linkwatch did not keep, nothing is changed and the message says
    what to delete first. Alerts already sent are not taken back. Its file stays known, so
    a csv_dir source does not read it again until it changes. With `snapshots --site S`,
    a snapshot of another site is refused.
    """
    from daemon.store import DeleteRefusedError, Store, StoreError, UnknownSnapshotError

    _, settings = _settings_without_secrets(ctx.find_root())
    # `snapshots --site S delete ID` deletes only a snapshot of S.
    given = ctx.parent.params.get("site") if ctx.parent is not None else None
    site = _site(settings, given) if given is not None else None
    if not settings.storage.path.is_file():
        _fail(f"no snapshot {snapshot_id}: {settings.storage.path} holds nothing yet", EXIT_USAGE)
    try:
        store = Store(settings.storage.path, settings.storage.busy_timeout.total_seconds())
    except StoreError as exc:
        _fail(str(exc), EXIT_RUNTIME)
    try:
        try:
            done = store.delete_snapshot(snapshot_id, utcnow(), site)
        except UnknownSnapshotError:
            _fail(f"no snapshot {snapshot_id} (see `linkwatch snapshots --site SITE`)", EXIT_USAGE)
        except DeleteRefusedError as exc:
            _fail(f"snapshot {snapshot_id} was not deleted: {exc}; nothing was changed", EXIT_USAGE)
    finally:
        store.close()
    taken = done.taken_at.isoformat(timespec="seconds")
    click.echo(
        f"deleted snapshot {done.snapshot_id} of {done.site}"
        f" ({done.series}, taken {taken}, {done.status})"
    )
    for r in done.rejudged:
        click.echo(f"  snapshot {r.snapshot_id} is {r.after} now (was {r.before})")
    if done.rebuilt:
        what = "referring domains" if done.coverage == "domains" else "links"
        click.echo(
            f"  rebuilt {done.site}'s {what} by applying its {done.replayed} accepted"
            " snapshots again"
        )
    else:
        click.echo("  it had changed no link: nothing else to rebuild")


@main.command()
@click.option("--dry-run", is_flag=True, help="only say what would be deleted; change nothing")
@click.option(
    "--keep",
    "keep_text",
    metavar="DURATION",
    help="keep this much history instead of [storage] keep (2y, 400d, all)",
)
@click.pass_context
def compact(ctx: click.Context, dry_run: bool, keep_text: str | None) -> None:
    """Prune history past [storage] keep, refresh statistics and VACUUM the database.

    Deletes what no rule can read any more (docs/storage.md): link events, lost links,
    ended sightings and snapshot rows from before the horizon (`keep` ago, or further
    back when a rule in force reads further), old alert history and delivered messages;
    then ANALYZE and VACUUM, which shrinks the file (ingests wait meanwhile). The daemon
    does the same each day at [storage] maintenance_at, VACUUM only when a quarter of the
    file is free. Prints what was (or, with --dry-run, would be) deleted, and the size.
    """
    from alerts.rules import RulesError, load_rules
    from daemon.store import Store, StoreError, database_problem
    from daemon.store.retention import reach_of
    from daemon.timefmt import format_duration
    from daemon.types import to_keep

    _, settings = _settings_without_secrets(ctx.find_root())
    keep = settings.storage.keep
    if keep_text is not None:
        try:
            keep = to_keep(keep_text)
        except ValueError as exc:
            _fail(f"--keep: {exc}", EXIT_USAGE)
    try:
        reach = reach_of(load_rules(settings))
    except RulesError as exc:
        _fail("rules have errors (their windows bound what is pruned):\n" + str(exc), EXIT_USAGE)
    db = settings.storage.path
    if not db.is_file():
        click.echo(f"{db}: no database yet: nothing to compact")
        return
    try:
        store = Store(db, settings.storage.busy_timeout.total_seconds())
    except StoreError as exc:
        _fail(str(exc), EXIT_RUNTIME)
    try:
        done = store.maintain(keep, utcnow(), reach=reach, dry_run=dry_run, vacuum_now=True)
    except sqlite3.Error as exc:
        _fail(f"{db}: {database_problem(exc)}", EXIT_RUNTIME)
    finally:
        store.close()
    gone = done.retention
    if gone.horizon is None:
        click.echo("storage.keep = all: no history is pruned")
    else:
        click.echo(
            f"history before {gone.horizon.isoformat(timespec='seconds')}"
            f" ({'--keep' if keep_text is not None else 'storage.keep'}"
            f" {format_duration(keep) if keep else 'all'}"
            + (f", rules read back {format_duration(reach)}" if keep and reach > keep else "")
            + ")"
        )
        verb = "would delete" if dry_run else "deleted"
        for table, n in gone.deleted.items():
            click.echo(f"  {table:17} {n:>10} rows {verb}")
        click.echo(f"  {'in all':17} {gone.total:>10} rows {verb}")
    mb = 1024 * 1024
    if dry_run:
        click.echo(
            f"{db}: {done.size_before / mb:.1f} MiB, {done.free_before:.0%} free pages"
            " (dry run: nothing changed)"
        )
    else:
        click.echo(
            f"{db}: {done.size_before / mb:.1f} MiB -> {done.size_after / mb:.1f} MiB"
            + (
                " (analyzed, vacuumed)"
                if done.log_emptied
                else " (analyzed, vacuumed; another process is reading, so the rewritten"
                " pages stay in the -wal log: the space comes back once it has finished)"
            )
        )


@main.group()
def rules() -> None:
    """Check and test rule files."""


@rules.command("check")
@click.pass_context
def rules_check(ctx: click.Context) -> None:
    """Validate every rule file; print `file: key: message` per error, exit 2 on any."""
    from alerts.rules import RulesError, load_rules

    # Rules name notifiers, not their secrets: a missing token is `check`'s business.
    _, settings = _settings_without_secrets(ctx.find_root())
    try:
        loaded = load_rules(settings)
    except RulesError as exc:
        for line in exc.errors:
            click.echo(line, err=True)
        sys.exit(EXIT_USAGE)
    if not loaded:
        # Not an error (a fresh install), but a daemon without rules never alerts.
        click.echo(
            f"linkwatch: warning: {settings.daemon.rules_dir}: no rule files (*.toml): "
            "nothing will ever alert",
            err=True,
        )
    click.echo(f"{len(loaded)} rules OK in {settings.daemon.rules_dir}")


@rules.command("test")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
def rules_test(files: tuple[Path, ...]) -> None:
    """Run rule unit tests (TOML files, docs/rules-testing.md); exit 1 on a failed test,
    2 on a bad test file. Needs no settings: sites and notifiers come from the test."""
    from alerts.rules.testing import TestFileError, load_suite, run_suite

    bad = passed = failed = 0
    for path in files:
        try:
            suite = load_suite(path)
        except TestFileError as exc:
            for line in exc.errors:
                click.echo(line, err=True)
            bad += 1
            continue
        report = run_suite(suite)
        for note in report.notes:
            click.echo(f"linkwatch: warning: {note}", err=True)
        for m in report.failed:
            click.echo(f"FAIL {path}: test {m.test!r}: at {m.at}:")
            for line in m.lines:
                click.echo(f"  {line}")
        tests = len(suite.cases)
        failing = len({m.test for m in report.failed})
        passed += tests - failing
        failed += failing
        if not failing:
            click.echo(f"ok   {path}: {tests} tests passed")
    summary = (
        f"{passed + failed} tests in {len(files) - bad} file(s): {passed} passed, {failed} failed"
    )
    if bad:
        summary += f"; {bad} test file(s) with errors, not run"
    click.echo(summary)
    if bad:
        sys.exit(EXIT_USAGE)
    if failed:
        sys.exit(EXIT_RUNTIME)


@main.command()
@click.option(
    "--since",
    default="90d",
    show_default=True,
    callback=_duration,
    help="how far back to replay, e.g. 30d",
)
@click.option("--rule", "rule_name", help="replay only this rule")
@click.option("--site", help="only this site's alerts (any letter case)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@click.pass_context
def backtest(
    ctx: click.Context, since: timedelta, rule_name: str | None, site: str | None, as_json: bool
) -> None:
    """Replay stored history through the current rules: when each alert would have fired
    and resolved. Reads the database read-only; sends and writes nothing."""
    from alerts.backtest import replay
    from alerts.rules import RulesError, load_rules
    from daemon.store import Store, StoreError

    _, settings = _settings_without_secrets(ctx.find_root())
    try:
        rules_in_force = load_rules(settings)
    except RulesError as exc:
        _fail("rules have errors:\n" + str(exc), EXIT_USAGE)
    if rule_name is not None:
        rules_in_force = [r for r in rules_in_force if r.name == rule_name]
        if not rules_in_force:
            known = ", ".join(r.name for r in load_rules(settings)) or "none"
            where = settings.daemon.rules_dir
            _fail(f"--rule: no rule {rule_name!r} in {where} (rules: {known})", EXIT_USAGE)
    sites = [s.domain for s in settings.sites]
    if site is not None:
        site = _site(settings, site)
        sites = [site]
    own = [d for d in settings.own_sites() if d in sites]
    try:
        store = Store.read_only(settings.storage.path)
    except StoreError as exc:
        _fail(str(exc), EXIT_RUNTIME)
    try:
        end = utcnow()
        result = replay(
            store,
            rules_in_force,
            start=end - since,
            end=end,
            every=settings.daemon.evaluate_every,
            own_sites=own,
            all_sites=sites,
            competitors={s.domain: tuple(s.competitors) for s in settings.sites},
        )
    finally:
        store.close()
    episodes = [e for e in result.episodes if site is None or e.site == site]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "start": result.start.isoformat(),
                    "end": result.end.isoformat(),
                    "passes": result.passes,
                    "regular_step": format_duration(result.step),
                    "alerts": [e.as_json() for e in episodes],
                }
            )
        )
        return
    click.echo(
        f"backtest {_when(result.start, True)} to {_when(result.end, True)} UTC: "
        f"{len(rules_in_force)} rules, {result.passes} evaluation passes (at each snapshot, "
        f"window edges and `for` ends, and every {format_duration(result.step)}); "
        "nothing was written or sent"
    )
    if not episodes:
        click.echo("no alert would have fired")
        return
    rows = []
    for e in episodes:
        fired = _when(e.fired_at, True) + ("*" if e.at_start else "")
        resolved = _when(e.resolved_at, True) if e.resolved_at else "still firing"
        peak = "" if e.peak is None else _shown(e.peak)
        rows.append([e.rule, e.site, fired, resolved, peak, e.reason or ""])
    _print_table(["RULE", "SITE", "FIRED AT", "RESOLVED AT", "PEAK", "REASON"], iter(rows))
    if any(e.at_start for e in episodes):
        click.echo("* already firing when the period starts: it may have fired earlier")


@main.group(invoke_without_command=True)
@click.option("--dead", is_flag=True, help="only dead-lettered notifications")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object per line")
@click.pass_context
def outbox(ctx: click.Context, dead: bool, as_json: bool) -> None:
    """List notifications (newest first); `outbox retry` sends dead ones again."""
    from daemon.store import Store, StoreError

    if ctx.invoked_subcommand is not None:
        return
    _, settings = _settings_without_secrets(ctx.find_root())
    try:
        store = Store.read_only(settings.storage.path)
    except StoreError as exc:
        _fail(str(exc), EXIT_RUNTIME)
    try:
        entries = store.outbox_entries("dead" if dead else None)
    finally:
        store.close()
    if as_json:
        for e in entries:
            click.echo(json.dumps(asdict(e), default=_json_default, ensure_ascii=False))
        return
    if not entries:
        click.echo("no dead notifications" if dead else "the outbox is empty")
        return
    header = ["ID", "NOTIFIER", "SITE", "TRANSITIONS", "STATUS", "ATTEMPTS", "CREATED"]
    rows = (
        [
            str(e.id),
            e.notifier,
            e.site or "",
            ", ".join(e.transitions),
            e.status,
            str(e.attempts),
            _when(e.created_at, True),
            _cell(" ".join((e.last_error or "").split())),
        ]
        for e in entries
    )
    _print_table([*header, "LAST ERROR"], rows)


@outbox.command("retry")
@click.argument("ids", nargs=-1, type=ROW_ID)
@click.option("--all", "every", is_flag=True, help="every dead notification")
@click.pass_context
def outbox_retry(ctx: click.Context, ids: tuple[int, ...], every: bool) -> None:
    """Put dead notifications back in the queue, due now (their attempts are kept)."""
    from daemon.store import OutboxRetryError, Store, StoreError

    if every == bool(ids):
        _fail("give the ids of dead notifications, or --all (not both)", EXIT_USAGE)
    _, settings = _settings_without_secrets(ctx.find_root())
    try:
        store = Store(settings.storage.path, settings.storage.busy_timeout.total_seconds())
    except StoreError as exc:
        _fail(str(exc), EXIT_RUNTIME)
    try:
        try:
            retried = store.retry_dead(None if every else ids, utcnow())
        except OutboxRetryError as exc:
            for line in exc.problems:
                click.echo(f"linkwatch: {line}", err=True)
            click.echo("nothing was changed", err=True)
            sys.exit(EXIT_USAGE)
        entries = {e.id: e for e in store.outbox_entries("pending")}
    finally:
        store.close()
    if not retried:
        click.echo("no dead notifications to retry")
        return
    click.echo(
        f"{len(retried)} notifications queued again: {', '.join(map(str, retried))}; the "
        "daemon delivers them at its next delivery pass (`linkwatch poll` does it now)"
    )
    owners = {entries[i].notifier for i in retried if i in entries}
    unknown = sorted(owners - set(settings.notifiers))
    for name in unknown:
        click.echo(
            f"linkwatch: warning: notifier {name!r} is not in the settings: its notifications "
            "go dead again until it is configured",
            err=True,
        )


def _settings_without_secrets(ctx: click.Context) -> tuple[Path, Settings]:
    """The settings file and its settings, a missing secret standing in (check, doctor);
    every problem one `file: key: message` line and exit 2."""
    from daemon.settings import ConfigError, load_settings

    path = _config_file(ctx)
    try:
        return path, load_settings(path, require_secrets=False)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            click.echo(line, err=True)
        sys.exit(EXIT_USAGE)


@main.command("check")
@click.pass_context
def check(ctx: click.Context) -> None:
    """Check settings, rules, database and export folders read-only; exit 2 on any problem."""
    from alerts.rules import Rule, RulesError, load_rules
    from daemon.doctor import ca_file_problems, folder_problems, missing_secrets
    from daemon.store.check import check_database

    # Every problem is one `file: key: message` line; nothing is created or written, so
    # systemd runs this as ExecReload before signalling the daemon.
    path, settings = _settings_without_secrets(ctx)
    problems: list[str] = []
    rules_dir = settings.daemon.rules_dir
    loaded: list[Rule] = []
    if not rules_dir.is_dir():
        problems.append(f"{path}: daemon.rules_dir: {rules_dir} does not exist or is not a folder")
    else:
        try:
            loaded = load_rules(settings)
        except RulesError as exc:
            problems.extend(exc.errors)
    db = check_database(settings.storage.path)
    if db.problem is not None:
        problems.append(f"{path}: storage.path: {db.problem}")
    problems.extend(folder_problems(path, settings))
    problems.extend(ca_file_problems(path, settings))
    for line in problems:
        click.echo(line, err=True)
    if problems:
        sys.exit(EXIT_USAGE)
    for block in ("notifiers", "sources"):
        for name, key in missing_secrets(settings, block):
            click.echo(
                f"{path}: {block}.{name}.{key}: not set here; the daemon must get it "
                "from its environment or systemd credentials"
            )
    click.echo(
        f"{path}: OK: {len(settings.sites)} sites, {len(settings.sources)} sources, "
        f"{len(settings.notifiers)} notifiers, {len(loaded)} rules; {db.note}"
    )


@main.command()
@click.pass_context
def doctor(ctx: click.Context) -> None:
    """Try everything live (database, notifiers, folders, clock); print a fix per problem."""
    from daemon.doctor import diagnose

    # Loaded as `check` does, so a missing secret is one FAIL line naming where to put it
    # rather than a load error that hides every other finding.
    path, settings = _settings_without_secrets(ctx)
    counts = {"ok": 0, "warn": 0, "FAIL": 0}
    for finding in diagnose(path, settings, utcnow()):
        click.echo(finding.line())
        counts[finding.status] += 1
    click.echo(f"{counts['ok']} ok, {counts['warn']} warn, {counts['FAIL']} FAIL")
    if counts["FAIL"]:
        sys.exit(EXIT_RUNTIME)


@main.command("notify-test")
@click.argument("name")
@click.pass_context
def notify_test(ctx: click.Context, name: str) -> None:
    """Send a test message through one notifier."""
    from alerts.message import AlertMessage, DeliveryError, Notification

    app = _app(ctx)
    try:
        notifier = app.notifiers.get(name)
        if notifier is None:
            _fail(
                f"unknown notifier {name!r} (settings define: "
                f"{', '.join(sorted(app.notifiers)) or 'none'})",
                EXIT_USAGE,
            )
        # A "test" transition: every rendering says TEST and that no alert is firing.
        test = AlertMessage(
            transition="test",
            rule="notify-test",
            site="linkwatch",
            severity="info",
            metric="",
            value=None,
            op="",
            threshold=None,
            window="",
            summary=f"Test message from linkwatch to notifier {name}",
            at=utcnow().isoformat(timespec="seconds"),
        )
        try:
            notifier.send(Notification(site=test.site, alerts=(test,)))
        except DeliveryError as exc:
            _fail(f"notifier {name}: {exc}", EXIT_RUNTIME)
        click.echo(f"sent a test message through {name}")
    finally:
        app.close()


if __name__ == "__main__":
    main()
