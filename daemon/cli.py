"""The `linkwatch` command line."""

from __future__ import annotations

import json
import sqlite3
import sys
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import click
from pydantic import SecretStr

from alerts.message import AlertMessage, DeliveryError
from alerts.rules import Rule, RulesError, load_rules
from daemon.doctor import ca_file_problems, diagnose, folder_problems
from daemon.logs import configure_logging
from daemon.service import Linkwatch, describe, utcnow
from daemon.settings import SECRET_STAND_IN, ConfigError, Settings, config_path, load_settings
from daemon.store import StoreError, database_problem
from daemon.store.check import check_database
from daemon.timefmt import format_duration, parse_instant
from daemon.types import to_duration
from sources.formats import FORMATS
from sources.model import FormatError, SourceError

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"linkwatch: {message}", err=True)
    sys.exit(code)


def _settings(ctx: click.Context) -> Settings:
    path = config_path(ctx.obj["config"])
    try:
        return load_settings(path)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)


def _app(ctx: click.Context) -> Linkwatch:
    settings = _settings(ctx)
    try:
        return Linkwatch.open(settings)
    except RulesError as exc:
        _fail("rules have errors:\n" + str(exc), EXIT_USAGE)
    except StoreError as exc:
        _fail(str(exc), EXIT_RUNTIME)


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


class _Linkwatch(click.Group):
    """The command group; a database that is busy, full or unusable ends a command with
    exit 1 and one line, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except sqlite3.Error as exc:
            _fail(database_problem(exc), EXIT_RUNTIME)


@click.group(cls=_Linkwatch)
@click.option(
    "-c",
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="settings file (default: $LINKWATCH_CONFIG, else ./settings.toml)",
)
@click.option("-v", "--verbose", is_flag=True, help="log debug detail")
@click.pass_context
def main(ctx: click.Context, config: Path | None, verbose: bool) -> None:
    """linkwatch: watch backlink profiles and alert on negative link velocity."""
    configure_logging(verbose)
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
    app = _app(ctx)
    try:
        if site is not None and site not in {s.domain for s in app.settings.sites}:
            _fail(f"--site: unknown site {site!r}", EXIT_USAGE)
        outcomes, transitions, report = app.cycle(utcnow(), site)
        troubled = [o for o in outcomes if o.status in ("error", "partial", "suspect")]
        for o in troubled:
            click.echo(describe(o))
        click.echo(
            f"{len(outcomes)} snapshots, {len(transitions)} alert changes, "
            f"{report.sent} notifications sent, {report.retrying} to retry, {report.dead} failed"
        )
        if troubled or report.dead or report.retrying:
            sys.exit(EXIT_RUNTIME)
    finally:
        app.close()


@main.command("import")
@click.option("--site", required=True, help="the site these exports are of")
@click.option(
    "--format", "format_kind", type=click.Choice(sorted(FORMATS)), help="force an export format"
)
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
    at = taken_at
    if at is not None and len(files) > 1:
        _fail("--taken-at names one time; import one file at a time with it", EXIT_USAGE)
    app = _app(ctx)
    try:
        if site not in {s.domain for s in app.settings.sites}:
            _fail(f"--site: {site!r} is not a site in the settings", EXIT_USAGE)
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
            outcomes = app.import_exports(
                site, files, source=source, format_kind=format_kind, taken_at=at, now=utcnow()
            )
        except FormatError as exc:
            _fail(f"{exc}\nnothing was stored", EXIT_USAGE)
        except (SourceError, ValueError) as exc:
            _fail(str(exc), EXIT_USAGE)
        partial = False
        for o in outcomes:
            click.echo(describe(o))
            for example in o.examples:
                click.echo(f"  {o.origin}: {example}")
            partial = partial or o.status in ("partial", "suspect")
        if partial:
            sys.exit(EXIT_RUNTIME)
    finally:
        app.close()


@main.command()
@click.option(
    "--at", callback=_instant, help="evaluate as of this instant (ISO 8601); default: now"
)
@click.pass_context
def evaluate(ctx: click.Context, at: datetime | None) -> None:
    """Evaluate the rules, then deliver what they raised before exiting."""
    app = _app(ctx)
    try:
        now = utcnow()
        transitions = app.evaluate(at or now, now)
        for t in transitions:
            click.echo(f"{t.rule} {t.site}: {t.state} (value {t.value})")
        report = app.deliver(now)
        click.echo(
            f"{len(transitions)} alert changes; {report.sent} notifications sent, "
            f"{report.retrying} to retry, {report.dead} failed"
        )
        if report.dead or report.retrying:
            sys.exit(EXIT_RUNTIME)
    finally:
        app.close()


@main.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show each site's live links and referring domains."""
    app = _app(ctx)
    try:
        rows = app.store.status()
        if as_json:
            click.echo(json.dumps([asdict(r) for r in rows], default=_json_default, indent=2))
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
                f"{unconfirmed}; {last}"
            )
    finally:
        app.close()


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> timedelta:
    try:
        window: timedelta = to_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    if window <= timedelta(0):
        raise click.BadParameter("must be a positive duration")
    return window


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
    app = _app(ctx)
    try:
        if site not in {s.domain for s in app.settings.sites}:
            known = ", ".join(s.domain for s in app.settings.sites) or "none"
            _fail(f"--site: unknown site {site!r} (sites: {known})", EXIT_USAGE)
        values = compute_metrics(app.store, site, window, at)
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
        app.close()


@main.command()
@click.option("--site", required=True)
@click.option("--state", type=click.Choice(["live", "missing", "lost", "unconfirmed"]))
@click.option("--json", "as_json", is_flag=True, help="print JSON lines")
@click.pass_context
def links(ctx: click.Context, site: str, state: str | None, as_json: bool) -> None:
    """List a site's links from the ledger."""
    app = _app(ctx)
    try:
        try:
            rows = app.store.links(site, state)
            for row in rows:
                if as_json:
                    click.echo(json.dumps(row))
                else:
                    click.echo(
                        f"{row['state']:8} {row['url_from']} -> {row['url_to']}"
                        f" [{row['anchor'] or ''}] {row['lost_reason'] or ''}".rstrip()
                    )
        except KeyError:
            _fail(f"--site: unknown site {site!r}", EXIT_USAGE)
    finally:
        app.close()


@main.group()
def rules() -> None:
    """Check rule files."""


@rules.command("check")
@click.pass_context
def rules_check(ctx: click.Context) -> None:
    """Validate every rule file; print `file: key: message` per error, exit 2 on any."""
    # Rules name notifiers, not their secrets: a missing token is `check`'s business.
    _, settings = _settings_without_secrets(ctx.find_root())
    try:
        loaded = load_rules(settings)
    except RulesError as exc:
        for line in exc.errors:
            click.echo(line, err=True)
        sys.exit(EXIT_USAGE)
    click.echo(f"{len(loaded)} rules OK in {settings.daemon.rules_dir}")


def _settings_without_secrets(ctx: click.Context) -> tuple[Path, Settings]:
    """The settings file and its settings, a missing secret standing in (check, doctor);
    every problem one `file: key: message` line and exit 2."""
    path = config_path(ctx.obj["config"])
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
    for name, notifier in settings.notifiers.items():
        for key, value in notifier:
            if isinstance(value, SecretStr) and value.get_secret_value() == SECRET_STAND_IN:
                click.echo(
                    f"{path}: notifiers.{name}.{key}: not set here; the daemon must get it "
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
    app = _app(ctx)
    try:
        notifier = app.notifiers.get(name)
        if notifier is None:
            _fail(
                f"unknown notifier {name!r} (settings define: "
                f"{', '.join(sorted(app.notifiers)) or 'none'})",
                EXIT_USAGE,
            )
        message = AlertMessage(
            transition="firing",
            rule="notify-test",
            site="linkwatch",
            severity="info",
            metric="test",
            value=1,
            op="==",
            threshold=1,
            window="0s",
            summary=f"Test message from linkwatch to notifier {name}",
            at=utcnow().isoformat(timespec="seconds"),
        )
        try:
            notifier.send(message)
        except DeliveryError as exc:
            _fail(f"notifier {name}: {exc}", EXIT_RUNTIME)
        click.echo(f"sent a test message through {name}")
    finally:
        app.close()


if __name__ == "__main__":
    main()
