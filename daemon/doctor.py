"""`linkwatch doctor`: checks a whole setup, live, and prints one line per check with a fix.

`linkwatch check` is the fast read-only subset systemd runs before a reload; its folder and
CA-file checks live here so both verbs say the same thing.
"""

from __future__ import annotations

import math
import os
import shutil
import smtplib
import sqlite3
import ssl
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, SecretStr
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlite_utils import Database

from alerts.notifiers.email import EmailSettings
from alerts.notifiers.slack import CHANNEL_ID, SlackSettings
from alerts.rules import RulesError, load_rules
from daemon.settings import SECRET_STAND_IN, Settings
from daemon.settings_core import variable_for
from daemon.store import dialect
from daemon.store.check import check_database
from daemon.store.reads import stopped_series, stopped_series_note
from daemon.store.schema import MIGRATIONS
from daemon.timefmt import from_db
from sources.api import ApiAuthError, ApiSource
from sources.csv_dir import CsvDirSource
from sources.model import SourceError
from sources.registry import build_source

Status = Literal["ok", "warn", "FAIL"]

# SQLite needs room for the WAL, temp files and a migration's copy of a table; a nearly
# full disk shows up as "database or disk is full" at the worst moment.
MIN_FREE_BYTES = 1 << 30
# A stored snapshot a little ahead of the clock is jitter between threads, not a problem.
CLOCK_SLACK = timedelta(minutes=1)
# This code was written after this day: a clock before it is certainly wrong.
EARLIEST_PLAUSIBLE = datetime(2025, 1, 1, tzinfo=UTC)
_BAD_TOKEN = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
)


@dataclass(frozen=True)
class Finding:
    """One check's outcome: its status, what was checked, what was found and what to fix."""

    status: Status
    subject: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        """The finding as one printed line."""
        text = f"{self.subject}: {self.detail}"
        if self.fix:
            text += f"; fix: {self.fix}"
        # SQLite and SMTP error texts can hold newlines: one check stays one line.
        return f"{self.status:<4} " + " ".join(text.split())


# --- shared with `linkwatch check` ------------------------------------------------------


def _folder_issue(folder: Path, site: str) -> tuple[str, str] | None:
    """Why an export folder cannot be read, and what to do about it; None if it can."""
    try:
        if not folder.exists():
            return (
                f"folder {folder} does not exist for site {site}",
                f"create it (mkdir -p {folder}) and have the export job write there, "
                "or correct the source's path",
            )
        if not folder.is_dir():
            return (
                f"{folder} is not a folder (site {site})",
                "move the file away and create the folder, or correct the source's path",
            )
        if not os.access(folder, os.R_OK | os.X_OK):
            return (
                f"folder {folder} is not readable by this user (site {site})",
                "give the daemon's user read and search access (chmod or an ACL)",
            )
    except OSError as exc:
        return (
            f"folder {folder} cannot be checked: {exc} (site {site})",
            "make the folder's parents reachable by the daemon's user",
        )
    return None


def folder_problems(path: Path, settings: Settings) -> list[str]:
    """Every (site, csv_dir source) whose export folder is missing or unreadable."""
    problems = []
    for site in settings.sites:
        for name in site.sources:
            source = build_source(name, settings.sources[name])
            if not isinstance(source, CsvDirSource):
                continue
            folder = source.folder(site.domain)
            issue = _folder_issue(folder, site.domain)
            if issue is not None:
                problems.append(f"{path}: sources.{name}.path: {issue[0]}")
    return problems


def _ca_file_problem(notifier: object) -> str | None:
    """Why a notifier's extra CA bundle cannot be used, or None (also when it has none)."""
    ca_file: Path | None = getattr(notifier, "ca_file", None)
    if ca_file is not None and not (ca_file.is_file() and os.access(ca_file, os.R_OK)):
        return f"{ca_file} is not a readable file"
    return None


def ca_file_problems(path: Path, settings: Settings) -> list[str]:
    """Every notifier whose extra CA bundle is not a readable file."""
    problems = []
    for name, notifier in settings.notifiers.items():
        problem = _ca_file_problem(notifier)
        if problem is not None:
            problems.append(f"{path}: notifiers.{name}.ca_file: {problem}")
    return problems


def missing_secrets(settings: Settings, block: str = "notifiers") -> list[tuple[str, str]]:
    """(notifier or source, field) of every required secret neither the file, the
    environment nor systemd credentials supplied (loaded with `require_secrets=False`)."""
    plugins: dict[str, BaseModel] = dict(
        settings.notifiers if block == "notifiers" else settings.sources
    )
    return [
        (name, key)
        for name, plugin in plugins.items()
        for key, value in plugin
        if isinstance(value, SecretStr) and value.get_secret_value() == SECRET_STAND_IN
    ]


def secret_sources(name: str, key: str, block: str = "notifiers") -> str:
    """Where the daemon looks for a notifier's or source's secret, as a fix to print."""
    # As daemon/settings.py reads them: LINKWATCH_ + `__`-nested keys, and credential files
    # named by the same keys in $CREDENTIALS_DIRECTORY.
    return (
        f"set {variable_for(block, name, key)} in the daemon's environment, "
        f"or a systemd credential file {block}__{name}__{key} (LoadCredential=), or {key} in "
        f"[{block}.{name}]"
    )


# --- doctor -----------------------------------------------------------------------------


def diagnose(path: Path, settings: Settings, now: datetime) -> Iterator[Finding]:
    """Every check, in order, one Finding each; network checks run as they are reached."""
    yield from _guarded("settings", partial(_settings, path, settings))
    yield from _guarded("rules", partial(_rules, settings))
    yield from _guarded("secrets", partial(_secrets, settings))
    database = settings.storage.path
    try:
        db = _database(database)
    except Exception as exc:
        db = _DatabaseReport((_crashed(f"database {database}", exc),), readable=False)
    yield from db.findings
    if db.readable and database.exists():
        yield from _guarded("series", partial(_series, database, settings))
    for name, notifier in settings.notifiers.items():
        subject = f"notifier {name} ({notifier.kind})"
        yield from _guarded(subject, partial(_notifier, name, notifier, subject, settings))
    yield from _guarded("sources", partial(_sources, settings, now))
    yield from _guarded("clock", partial(_clock, now, db))


def _guarded(subject: str, check: Callable[[], list[Finding]]) -> list[Finding]:
    """Run one check; an unexpected error becomes a FAIL line, never a traceback."""
    try:
        return check()
    except Exception as exc:
        return [_crashed(subject, exc)]


def _crashed(subject: str, exc: Exception) -> Finding:
    return Finding("FAIL", subject, f"the check itself failed: {type(exc).__name__}: {exc}")


def _settings(path: Path, settings: Settings) -> list[Finding]:
    unused = sorted(set(settings.sources) - {s for site in settings.sites for s in site.sources})
    found = [
        Finding(
            "ok",
            "settings",
            f"{path}: {len(settings.sites)} sites, {len(settings.sources)} sources, "
            f"{len(settings.notifiers)} notifiers",
        )
    ]
    if unused:
        found.append(
            Finding(
                "warn",
                "settings",
                f"sources not used by any site: {', '.join(unused)}",
                "add them to a site's sources, or remove them",
            )
        )
    return found


def _rules(settings: Settings) -> list[Finding]:
    rules_dir = settings.daemon.rules_dir
    if not rules_dir.is_dir():
        return [
            Finding(
                "FAIL",
                "rules",
                f"{rules_dir} does not exist or is not a folder",
                "create it and add rule files, or correct daemon.rules_dir",
            )
        ]
    try:
        loaded = load_rules(settings)
    except RulesError as exc:
        return [
            Finding("FAIL", "rules", error, "correct the rule file (the daemon will not start)")
            for error in exc.errors
        ]
    if not loaded:
        return [
            Finding(
                "warn",
                "rules",
                f"no rules in {rules_dir}: nothing will ever alert",
                "add rule files (see rules.example)",
            )
        ]
    return [Finding("ok", "rules", f"{len(loaded)} rules load from {rules_dir}")]


def _secrets(settings: Settings) -> list[Finding]:
    found = [
        Finding(
            "FAIL",
            f"notifier {name}",
            f"secret {key} is not set (the daemon will not start)",
            secret_sources(name, key),
        )
        for name, key in missing_secrets(settings)
    ]
    found.extend(
        Finding(
            "FAIL",
            f"source {name}",
            f"secret {key} is not set (the source cannot poll)",
            secret_sources(name, key, "sources"),
        )
        for name, key in missing_secrets(settings, "sources")
    )
    for name, notifier in settings.notifiers.items():
        if isinstance(notifier, EmailSettings) and notifier.username and not notifier.password:
            found.append(
                Finding(
                    "warn",
                    f"notifier {name}",
                    f"username {notifier.username} is set but no password: mail is sent "
                    "without logging in",
                    secret_sources(name, "password") + "; or remove username",
                )
            )
    if not found:
        plugins: list[BaseModel] = [*settings.notifiers.values(), *settings.sources.values()]
        count = sum(isinstance(value, SecretStr) for plugin in plugins for _, value in plugin)
        found.append(Finding("ok", "secrets", f"all {count} notifier and source secrets are set"))
    return found


# --- database ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Contents:
    """What doctor reads from a healthy database: schema state and the newest snapshot."""

    applied: int
    pending: int
    newest: datetime | None


@dataclass(frozen=True)
class _DatabaseReport:
    """The database's findings, and for the clock check its newest snapshot's created_at."""

    findings: tuple[Finding, ...]
    readable: bool
    newest: datetime | None = None


def _database(path: Path) -> _DatabaseReport:
    """Integrity, size, free disk space and pending migrations."""
    subject = f"database {path}"
    disk = _disk(path)
    if not path.exists():
        missing = Finding(
            "warn",
            subject,
            "does not exist yet",
            "start the daemon (or run `linkwatch poll`) to create it, or correct "
            "storage.path if the database is elsewhere",
        )
        return _DatabaseReport((missing, disk), readable=True)
    # No time budget: doctor is run by hand and should look at every page.
    db = check_database(path, budget_s=math.inf)
    if db.problem is not None:
        damaged = Finding(
            "FAIL",
            subject,
            # check_database names the file first; the subject already does.
            db.problem.removeprefix(f"{path}: "),
            "restore the database from a backup, or move the file away to start afresh; "
            "or correct storage.path if it names another program's file",
        )
        return _DatabaseReport((damaged, disk), readable=False)
    contents = _read_contents(path)
    if contents.applied == 0:
        empty = Finding(
            "warn", subject, "is empty", "start the daemon (or run `linkwatch poll`) to set it up"
        )
        return _DatabaseReport((empty, disk), readable=True)
    if contents.pending:
        schema = Finding(
            "warn",
            subject,
            f"{contents.pending} schema upgrade(s) not applied yet: the running daemon is "
            "older than the installed linkwatch, or has not been started since",
            "back up the database, then restart the daemon to apply them",
        )
    else:
        schema = Finding("ok", subject, f"schema up to date ({contents.applied} migrations)")
    integrity = Finding("ok", subject, "PRAGMA quick_check passed")
    return _DatabaseReport((integrity, disk, schema), readable=True, newest=contents.newest)


def _read_contents(path: Path) -> _Contents:
    """Schema state and newest snapshot, read through a read-only connection."""
    # mode=ro: SQLite refuses every write, so doctor never creates or migrates the file.
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        db = Database(conn)
        applied = len(MIGRATIONS.applied(db))
        pending = len(MIGRATIONS.pending(db)) if applied else 0
        latest: datetime | None = None
        if db["snapshots"].exists():
            row = conn.execute("SELECT max(created_at) FROM snapshots").fetchone()
            if row is not None and row[0] is not None:
                latest = from_db(str(row[0]))
        return _Contents(applied, pending, latest)
    finally:
        conn.close()


def _series(path: Path, settings: Settings) -> list[Finding]:
    """Each configured site's series that stopped while a later one of its source goes on,
    still keeping links live (as `status` and `snapshots` warn)."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        if not dialect.has_table(conn, "series"):
            return []  # not set up, or older than series: the database check says so
        found: list[Finding] = []
        for site in settings.sites:
            row = conn.execute("SELECT id FROM sites WHERE domain = ?", (site.domain,)).fetchone()
            for stop in stopped_series(conn, int(row[0])) if row is not None else []:
                detail, fix = stopped_series_note(site.domain, *stop)
                found.append(Finding("warn", f"site {site.domain}", detail, fix))
        return found or [Finding("ok", "series", "no series stopped while holding live links")]
    finally:
        conn.close()


def _disk(path: Path) -> Finding:
    """Size of the database and its WAL, and free space on their filesystem."""
    subject = f"database {path}"
    try:
        size = sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
        folder = next(p for p in (path.parent, *path.parents) if p.exists())
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        return Finding("FAIL", subject, f"cannot measure its size or free space: {exc}")
    detail = f"{_bytes(size)} with its WAL; {_bytes(free)} free on its filesystem"
    if free < MIN_FREE_BYTES or free < 2 * size:
        return Finding(
            "warn",
            subject,
            detail + f" (less than {'1 GiB' if free < MIN_FREE_BYTES else 'twice its size'})",
            f"free space on the filesystem holding {folder}, or move storage.path to a bigger one",
        )
    return Finding("ok", subject, detail)


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


# --- notifiers --------------------------------------------------------------------------


def _notifier(name: str, notifier: object, subject: str, settings: Settings) -> list[Finding]:
    missing = [key for owner, key in missing_secrets(settings) if owner == name]
    if missing:
        return [Finding("warn", subject, f"not tried: {', '.join(missing)} not set (see above)")]
    problem = _ca_file_problem(notifier)
    if problem is not None:
        return [
            Finding(
                "FAIL",
                subject,
                f"ca_file: {problem}",
                f"correct notifiers.{name}.ca_file or make it readable by the daemon's user",
            )
        ]
    if isinstance(notifier, SlackSettings):
        return _slack(name, notifier, subject)
    if isinstance(notifier, EmailSettings):
        return [_email(name, notifier, subject)]
    return [Finding("ok", subject, "prints to standard output; nothing to try")]


def _slack(name: str, s: SlackSettings, subject: str) -> list[Finding]:
    """auth.test with the notifier's token, then conversations.info for a channel id."""
    base_url = s.base_url if s.base_url.endswith("/") else s.base_url + "/"
    # As SlackNotifier builds its client, minus the retry: one failed try is the answer.
    client = WebClient(
        token=s.token.get_secret_value(),
        base_url=base_url,
        timeout=max(1, math.ceil(s.timeout)),
        retry_handlers=[],
    )
    try:
        auth = client.auth_test()
    except SlackApiError as exc:
        error = _slack_error(exc)
        if error in _BAD_TOKEN:
            fix = "the bot token is wrong or revoked: " + secret_sources(name, "token")
        else:
            fix = f"check base_url ({base_url}) and Slack's status"
        return [Finding("FAIL", subject, f"auth.test answered {error}", fix)]
    except Exception as exc:
        return [
            Finding(
                "FAIL",
                subject,
                f"auth.test at {base_url} failed: {exc}",
                "check network access to Slack from this host (DNS, proxy, firewall) and base_url",
            )
        ]
    who = f"{auth.get('user') or '?'} in workspace {auth.get('team') or '?'}"
    found = [Finding("ok", subject, f"auth.test: the token works ({who})")]
    scopes = _scopes(auth.headers)
    if scopes is not None and "chat:write" not in scopes:
        found.append(
            Finding(
                "FAIL",
                subject,
                f"the token lacks the chat:write scope (it has: {', '.join(sorted(scopes))})",
                "add chat:write under OAuth & Permissions, reinstall the app, use the new token",
            )
        )
    is_id = CHANNEL_ID.fullmatch(s.channel) is not None
    if scopes is not None:
        found.extend(_lookup_scopes(scopes, subject, is_id))
    if is_id:
        found.append(_slack_channel(client, s.channel, subject, scopes))
    return found


def _lookup_scopes(scopes: frozenset[str], subject: str, is_id: bool) -> list[Finding]:
    """Scopes the notifier needs besides chat:write to find a post whose answer was lost."""
    # conversations.history finds such a post instead of posting it twice; a channel given
    # by name is first looked up with conversations.list.
    wanted = [("channels:history", "groups:history", "conversations.history")]
    if not is_id:
        wanted.append(("channels:read", "groups:read", "conversations.list"))
    return [
        Finding(
            "warn",
            subject,
            f"the token has neither {public} nor {private}: {method} fails, so a post whose "
            "answer was lost may be posted twice",
            f"add {public} ({private} for a private channel) under OAuth & Permissions",
        )
        for public, private, method in wanted
        if public not in scopes and private not in scopes
    ]


def _slack_channel(
    client: WebClient, channel: str, subject: str, scopes: frozenset[str] | None
) -> Finding:
    """Whether the channel exists, is not archived and has the bot as a member."""
    try:
        info = client.conversations_info(channel=channel)
    except SlackApiError as exc:
        error = _slack_error(exc)
        data = exc.response.data if exc.response is not None else {}
        if error == "missing_scope" and isinstance(data, dict):
            needed = data.get("needed") or "channels:read (groups:read for a private channel)"
            return Finding(
                "warn",
                subject,
                f"conversations.info for {channel}: missing scope {needed}; channel not checked",
                f"add {needed} under OAuth & Permissions to let doctor check the channel",
            )
        if error == "channel_not_found":
            return Finding(
                "FAIL",
                subject,
                f"channel {channel}: Slack shows the bot no such channel",
                "use the id from the channel's details, and invite the bot to a private "
                "channel (/invite @bot)",
            )
        return Finding("FAIL", subject, f"conversations.info for {channel} answered {error}")
    except Exception as exc:
        return Finding("FAIL", subject, f"conversations.info for {channel} failed: {exc}")
    data = info.get("channel") or {}
    label = f"channel {channel} (#{data.get('name') or '?'})"
    if data.get("is_archived"):
        return Finding("FAIL", subject, f"{label} is archived", "unarchive it or pick another")
    public = not data.get("is_private") and not data.get("is_im")
    if data.get("is_member") is False and not (public and scopes and "chat:write.public" in scopes):
        return Finding(
            "FAIL",
            subject,
            f"{label}: the bot is not a member, so it cannot post there",
            "invite it: /invite @bot in the channel",
        )
    return Finding("ok", subject, f"{label} exists and the bot can post there")


def _slack_error(exc: SlackApiError) -> str:
    response = exc.response
    if response is None:
        return str(exc)
    error = response.get("error") if isinstance(response.data, dict) else None
    return str(error) if error else f"HTTP {response.status_code}"


def _scopes(headers: dict[str, Any]) -> frozenset[str] | None:
    """The token's scopes from auth.test's x-oauth-scopes header, if Slack sent it."""
    for key, value in headers.items():
        if key.lower() == "x-oauth-scopes":
            text = value[0] if isinstance(value, list) and value else value
            return frozenset(part.strip() for part in str(text).split(",") if part.strip())
    return None


def _email(name: str, s: EmailSettings, subject: str) -> Finding:
    """Connect, EHLO, STARTTLS or TLS as configured, log in if configured, QUIT: no mail."""
    where = f"{s.host}:{s.port}"
    steps = [f"connected to {where}"]
    try:
        smtp: smtplib.SMTP
        if s.security == "ssl":
            smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=_tls(s))
            steps.append("TLS")
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        # Leaving the block sends QUIT.
        with smtp:
            smtp.ehlo()
            if s.security == "starttls":
                if not smtp.has_extn("starttls"):
                    return Finding(
                        "FAIL",
                        subject,
                        f"{where} does not offer STARTTLS",
                        'use security = "ssl" if it speaks TLS from the start (port 465), or '
                        "another server",
                    )
                smtp.starttls(context=_tls(s))
                smtp.ehlo()
                steps.append("STARTTLS")
            if s.username is not None and s.password is not None:
                smtp.login(s.username, s.password.get_secret_value())
                steps.append(f"logged in as {s.username}")
    except smtplib.SMTPAuthenticationError as exc:
        return Finding(
            "FAIL",
            subject,
            f"{where} refused the login of {s.username}: {exc.smtp_code} {_text(exc.smtp_error)}",
            "check username and the password: " + secret_sources(name, "password"),
        )
    except ssl.SSLCertVerificationError as exc:
        return Finding(
            "FAIL",
            subject,
            f"{where}: the server's certificate is not trusted: {exc.verify_message or exc}",
            "set host to the name on its certificate, or ca_file to the CA bundle that signed it",
        )
    except ssl.SSLError as exc:
        return Finding(
            "FAIL",
            subject,
            f"{where}: TLS failed: {exc}",
            'security = "ssl" is TLS from the start (usually port 465), "starttls" upgrades '
            "a plain connection (usually port 587)",
        )
    except smtplib.SMTPResponseException as exc:
        return Finding(
            "FAIL",
            subject,
            f"{where} answered {exc.smtp_code} {_text(exc.smtp_error)}",
            "see the server's answer; check host, port and security",
        )
    except (smtplib.SMTPException, OSError) as exc:
        return Finding(
            "FAIL",
            subject,
            f"cannot talk to {where}: {exc or type(exc).__name__}",
            "check host and port, and that the SMTP server runs and is reachable from here",
        )
    return Finding("ok", subject, ", ".join(steps) + "; nothing sent")


def _text(answer: bytes | str) -> str:
    return answer.decode(errors="replace") if isinstance(answer, bytes) else answer


def _tls(s: EmailSettings) -> ssl.SSLContext:
    # As EmailNotifier verifies: the system's CAs plus the optional ca_file.
    ctx = ssl.create_default_context()
    if s.ca_file is not None:
        ctx.load_verify_locations(cafile=str(s.ca_file))
    return ctx


# --- sources ----------------------------------------------------------------------------


def _sources(settings: Settings, now: datetime) -> list[Finding]:
    found = []
    missing = {name for name, _ in missing_secrets(settings, "sources")}
    for name, cfg in settings.sources.items():
        source = build_source(name, cfg)
        if isinstance(source, ApiSource) and name not in missing:
            found.extend(_guarded(f"source {name}", partial(_credentials, source)))
    for site in settings.sites:
        for name in site.sources:
            source = build_source(name, settings.sources[name])
            if not isinstance(source, CsvDirSource):
                continue
            # One folder's error (a file vanishing mid-count) leaves the others checked.
            found.extend(
                _guarded(
                    f"source {name} for {site.domain}", partial(_folder, source, site.domain, now)
                )
            )
    return found


def _credentials(source: ApiSource) -> list[Finding]:
    """An API source's credentials, tested with its cheapest call (one try, no retries)."""
    subject = f"source {source.name}"
    client = source.client()
    client.policy.retries = 0
    try:
        said = source.check_credentials(client)
    except ApiAuthError as exc:
        # The message says what to change: the key, the login, or the account's balance.
        return [Finding("FAIL", subject, str(exc), "do what it says; the source cannot poll")]
    except SourceError as exc:
        unreachable = getattr(exc, "status", None) is None and any(
            words in str(exc) for words in ("cannot connect", "no answer within")
        )
        fix = (
            f"check sources.{source.name}.base_url and the network; polls fail until it answers"
            if unreachable
            else "the API answered with an error (above); polls fail while it does"
        )
        return [Finding("FAIL", subject, str(exc), fix)]
    finally:
        client.close()
    return [Finding("ok", subject, f"{source.settings.base_url}: {said}")]


def _folder(source: CsvDirSource, site: str, now: datetime) -> list[Finding]:
    """A source's export folder for a site: readable, with how many exports, how old."""
    subject = f"source {source.name} for {site}"
    folder = source.folder(site)
    issue = _folder_issue(folder, site)
    if issue is not None:
        # A missing folder is a FAIL: every poll records an error snapshot until it exists.
        return [Finding("FAIL", subject, issue[0], issue[1])]
    patterns = source.settings.patterns
    count, latest = 0, None
    seen: set[Path] = set()
    for pattern in patterns:
        for path in folder.glob(pattern):
            if path in seen:
                continue
            seen.add(path)
            st = path.lstat()
            # The source reads only regular files: a symlink is refused, so not counted.
            if stat.S_ISREG(st.st_mode):
                count += 1
                latest = st.st_mtime if latest is None else max(latest, st.st_mtime)
    shown = ", ".join(patterns)
    if latest is None:
        return [
            Finding(
                "warn",
                subject,
                f"{folder}: no export files matching {shown} yet",
                "check that the export job writes files matching the source's patterns here",
            )
        ]
    newest = datetime.fromtimestamp(latest, tz=UTC)
    detail = f"{folder}: {count} export files matching {shown}, newest {_when(newest, now)}"
    if newest > now + CLOCK_SLACK:
        return [
            Finding(
                "warn",
                subject,
                detail,
                "the clock of the machine writing exports is ahead of this one: set both by NTP",
            )
        ]
    return [Finding("ok", subject, detail)]


# --- clock ------------------------------------------------------------------------------


def _clock(now: datetime, db: _DatabaseReport) -> list[Finding]:
    """The system clock against the newest snapshot the database holds."""
    local = now.astimezone()
    offset = local.strftime("%z")
    zone = f"local zone {local.tzname()}, UTC{offset[:3]}:{offset[3:]}"
    shown = f"now {_utc(now)} ({zone})"
    set_it = "set the system clock right and keep it synchronised (timedatectl set-ntp true)"
    if now < EARLIEST_PLAUSIBLE:
        return [Finding("FAIL", "clock", f"{shown}: earlier than this linkwatch release", set_it)]
    if not db.readable:
        return [Finding("warn", "clock", f"{shown}; not compared: the database cannot be read")]
    latest = db.newest
    if latest is None:
        return [Finding("ok", "clock", f"{shown}; no snapshot stored yet to compare with")]
    if latest > now + CLOCK_SLACK:
        ahead = Finding(
            "FAIL",
            "clock",
            f"the clock went back or was ahead: the newest snapshot was stored at "
            f"{_utc(latest)}, {_span(latest - now)} after {shown}",
            set_it + "; windows measured from those snapshots are off until real time passes them",
        )
        return [ahead]
    return [Finding("ok", "clock", f"{shown}; newest snapshot stored {_when(latest, now)}")]


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _when(at: datetime, now: datetime) -> str:
    """`2026-01-09T22:10:00Z (3h ago)`, or `(in 5m)` for a time ahead of now."""
    delta = now - at
    if delta >= timedelta(0):
        return f"{_utc(at)} ({_span(delta)} ago)"
    return f"{_utc(at)} (in {_span(-delta)})"


def _span(delta: timedelta) -> str:
    """A rough length for people: `3d`, `5h`, `12m`, `40s` (whole units, rounded down)."""
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


__all__ = [
    "Finding",
    "ca_file_problems",
    "diagnose",
    "folder_problems",
    "missing_secrets",
    "secret_sources",
]
