"""Ingest: a snapshot is staged, judged, then applied to the link ledger by the rules of
docs/evidence.md, one named step per rule, in one transaction."""

from __future__ import annotations

import gc
import json
import logging
import sqlite3
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from daemon.store import dialect
from daemon.store.dialect import JSON_EACH, ROWID, epoch_to_iso, greatest, indexed_by, temp
from daemon.store.schema import OF_LINK_SERIES
from daemon.timefmt import from_db, to_db
from sources.fingerprint import note_code
from sources.model import KNOWN_ROW, SnapshotResult, SourceError, pack_known, unpack_known
from sources.urls import (
    host_name,
    join_normalized,
    link_key,
    normalize_target,
    normalize_url,
    registrable_domain,
    split_url,
)

_BATCH = 10_000
ACCEPTED = ("baseline", "complete")
COMPLETE, SAMPLE, DOMAINS = "complete", "sample", "domains"

log = logging.getLogger(__name__)


class OutOfOrderError(ValueError):
    """A snapshot older than the latest accepted one of its series."""

    def __init__(self, message: str, latest: Previous | None = None) -> None:
        super().__init__(message)
        # The snapshot it came too late for (when known): a poll tells from its id whether
        # a newer poll stored it while this one was fetching.
        self.latest = latest


class FutureSnapshotError(OutOfOrderError):
    """A snapshot taken after now: it would date every later event of its site after it."""


class OtherSiteError(SourceError):
    """A link export none of whose targets is on the site: another site's profile."""


class ChangedMeanwhileError(SourceError):
    """The series changed between reading a file and storing it, so that rows recognised
    as seen before cannot be told: nothing is stored, and the file is read again."""


class CoverageMismatchError(ValueError):
    """A snapshot whose kind (links, sample, referring domains) is not its series' kind."""


# Clocks and export tools disagree a little; a day ahead is a typo or a wrong clock.
FUTURE_SKEW = timedelta(days=1)


@dataclass(frozen=True)
class GuardSettings:
    """The false-alarm guards of one source."""

    confirm_after: int = 2
    suspect_below: float = 0.5
    # A small snapshot is believed once this many in a row (itself included) agree on
    # the size within `agree_within`: a real collapse is not suspect forever, while two
    # truncated exports in a row still change nothing.
    suspect_accept_after: int = 3
    agree_within: float = 0.1
    # How long a sample sighting vouches for a link no complete series sees.
    sample_ttl: timedelta = timedelta(days=90)

    def to_json(self) -> str:
        """The guards as stored with each snapshot, so a rebuild applies it the same way."""
        values: dict[str, Any] = asdict(self)
        values["sample_ttl"] = self.sample_ttl.total_seconds()
        return json.dumps(values, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> GuardSettings:
        """The guards a snapshot was stored with."""
        values = json.loads(text)
        values["sample_ttl"] = timedelta(seconds=values["sample_ttl"])
        return cls(**values)


@dataclass(frozen=True)
class Series:
    """One observation series: a (site, source, provider format) and its coverage kind."""

    id: int
    site_id: int
    source: str
    coverage: str
    bit: int


@dataclass(frozen=True)
class IngestOutcome:
    """What one ingest did: the snapshot's status and its counts."""

    snapshot_id: int
    site: str
    source: str
    origin: str
    taken_at: datetime
    status: str
    seen: int = 0
    new: int = 0
    missing: int = 0
    restored: int = 0
    lost: int = 0
    changed: int = 0
    malformed: int = 0
    note: str | None = None
    examples: tuple[str, ...] = ()
    series: str = ""
    listed: int = 0
    unconfirmed: int = 0
    # Rows parsed (live and marked lost), before a key listed twice was folded into one:
    # `listed` counts links (or referring domains) after folding.
    read: int = 0
    # Seconds the write transaction took: what other writers may have waited for.
    locked_s: float = 0.0
    coverage: str = COMPLETE


# Rows an export lists as live go to `staging`, rows it marks lost to `staging_lost`; a
# domain-level export's rows go to `staging_domains` and `staging_domains_lost`.
STAGING = (
    """CREATE TEMP TABLE staging (
        link_key INTEGER NOT NULL, from_key INTEGER,
        url_from TEXT, url_to TEXT, anchor TEXT,
        nofollow INTEGER, ugc INTEGER, sponsored INTEGER,
        refdomain TEXT, domain_rating REAL, first_seen REAL, digest INTEGER,
        rating_metric TEXT, toxicity REAL, raw INTEGER
    )""",
    "CREATE TEMP TABLE staging_lost (link_key INTEGER NOT NULL, reason TEXT)",
    # The rows read in full that have a fingerprint: it goes to their open sighting if that
    # has the same values under another fingerprint, or none (docs/exports.md).
    "CREATE TEMP TABLE staging_read (link_key INTEGER NOT NULL, digest INTEGER, raw INTEGER)",
)
_STAGE_ROW = "INSERT INTO staging VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
# A row recognised by its fingerprint (sources/fingerprint.py) is staged with its link key
# and digest only: no other row has no target (a page-only sample row's is '').
_KNOWN = "{}.url_to IS NULL"
# Binding the other columns' NULLs would cost four times the insert (measured at 1M rows).
_STAGE_KNOWN = "INSERT INTO staging (link_key, digest) VALUES (?, ?)"
_STAGE_LOST = "INSERT INTO staging_lost VALUES (?,?)"
_STAGE_READ = "INSERT INTO staging_read VALUES (?,?,?)"
# Appending and indexing afterwards is several times faster than inserting into a keyed
# table at random positions. Duplicate keys are rare; a key listed twice keeps its first row.
INDEX_AND_DEDUPE = (
    f"CREATE INDEX {temp('staging_key')} ON staging(link_key, digest)",
    f"""DELETE FROM staging WHERE {ROWID} IN (
        SELECT s.{ROWID} FROM staging s
        JOIN (SELECT link_key FROM staging GROUP BY link_key HAVING count(*) > 1) d
          ON d.link_key = s.link_key
        WHERE s.{ROWID} != (SELECT min(s2.{ROWID}) FROM staging s2 WHERE s2.link_key = s.link_key))""",  # noqa: E501 (the SQL's text as before)
    f"CREATE INDEX {temp('staging_lost_key')} ON staging_lost(link_key)",
)
# A baseline's rows are nearly all new links (staged with page keys, as a sample's few
# rows are), copied into `links` and `sightings` in key order (the order their indexes
# grow in): read from the staging table in file order, each is a random read of a table
# far larger than the cache. Sorted once, before the write lock, they are read in
# sequence (measured at 1M rows: the write 21.4 s -> 14.5 s, the whole ingest 43.5 s ->
# 38.8 s). Duplicate keys stay in file order.
IN_KEY_ORDER = (
    f"CREATE TEMP TABLE staging_sorted AS SELECT * FROM staging ORDER BY link_key, {ROWID}",
    f"DROP TABLE {temp('staging')}",
    "ALTER TABLE staging_sorted RENAME TO staging",
)
DOMAIN_STAGING = (
    """CREATE TEMP TABLE staging_domains (
        domain TEXT NOT NULL, links INTEGER, domain_rating REAL, rating_metric TEXT,
        first_seen REAL, digest INTEGER
    )""",
    "CREATE TEMP TABLE staging_domains_lost (domain TEXT NOT NULL)",
)
DOMAIN_INDEX_AND_DEDUPE = (
    f"CREATE INDEX {temp('staging_domains_key')} ON staging_domains(domain, digest)",
    f"""DELETE FROM staging_domains WHERE {ROWID} NOT IN (
        SELECT min({ROWID}) FROM staging_domains GROUP BY domain)""",
    f"CREATE INDEX {temp('staging_domains_lost_key')} ON staging_domains_lost(domain)",
)
DROP_STAGING = tuple(
    f"DROP TABLE IF EXISTS {temp(name)}"
    for name in (
        "staging",
        "staging_sorted",
        "staging_lost",
        "staging_read",
        "staging_domains",
        "staging_domains_lost",
    )
)


def _changes(row: str, known: str) -> tuple[str, str]:
    """(what changed, as a `changed` event's reason; whether anything did) when `row`
    reports a link whose known values are in `known`. Exact comparison; a source that does
    not give a field (NULL) changes nothing."""
    r, k = row, known
    anchor = f"({r}.anchor IS NOT NULL AND {r}.anchor IS NOT {k}.anchor)"
    rel = " OR ".join(
        f"({r}.{c} IS NOT NULL AND {r}.{c} IS NOT {k}.{c})"
        for c in ("nofollow", "ugc", "sponsored")
    )
    what = (
        f"trim(CASE WHEN {anchor} THEN 'anchor ' ELSE '' END"
        f" || CASE WHEN {rel} THEN 'rel' ELSE '' END)"
    )
    return what, f"({anchor} OR {rel})"


# Setting a link live again forgets what its absence had counted.
_BACK_TO_LIVE = (
    "state = 'live', missing_count = 0, dropped_by = 0, lost_at = NULL, lost_reason = NULL,"
    " last_seen_at = NULL"
)


def report_digest(
    anchor: str | None,
    nofollow: bool | None,
    ugc: bool | None,
    sponsored: bool | None,
    rating: float | None,
    metric: str | None,
    toxicity: float | None,
    first_seen: float | None,
) -> int:
    """A cheap fingerprint of a row's reported values: a series that reports the same
    values for a link again needs no closer look (and no write)."""
    # The anchor (the one long text) is fed to crc32 on its own; %-formatting the rest is
    # the cheapest way to spell them (this runs once per exported row).
    head = zlib.crc32(anchor.encode()) if anchor is not None else 1
    return zlib.crc32(
        (
            "%r\x1f%r\x1f%r\x1f%r\x1f%s\x1f%r\x1f%r"  # noqa: UP031 - faster than f"" here
            % (nofollow, ugc, sponsored, rating, metric, toxicity, first_seen)
        ).encode(),
        head,
    )


def page_key(url_from: str) -> int:
    """The key of a referring page alone: what a target-less sample row is matched by."""
    return link_key(normalize_url(url_from) or url_from, "")


def normalize_domain(text: str) -> str | None:
    """A referring domain in canonical form (lower case, IDNA, no `www.`, no port); None
    when the text is not a bare host name."""
    parts = split_url(text.strip())
    if parts is None or parts[1] != "/":
        return None
    host = host_name(parts[0])
    return host[4:] if host.startswith("www.") else host


# --- staging ---------------------------------------------------------------------------


def _stage(
    conn: sqlite3.Connection, result: SnapshotResult, *, page_keys: bool, site: str
) -> tuple[int, int, int]:
    """Stream the snapshot's records into the staging tables; (live rows, rows listed,
    rows parsed before duplicate keys were folded).

    `page_keys`: key every row by its page too — for samples, and for a baseline, whose
    rows are nearly all new links (later snapshots key their few new links afterwards).
    """
    for statement in (*DROP_STAGING, *STAGING):
        conn.execute(statement)
    # Reading a snapshot allocates millions of small objects (rows, tuples, decoded JSON)
    # and frees nearly all of them at once: none forms a reference cycle, yet each
    # allocation burst sets off a full collection scanning everything alive. Collection
    # waits until the snapshot is staged (measured: a fifth of an API poll's time).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _stage_rows(conn, result, page_keys=page_keys, site=site)
    finally:
        # The rows seen before are recognised: the mapping's memory is free for the diff.
        result.known_rows = None
        if collecting:
            gc.enable()


def _on_site(host: str, home: str) -> bool:
    """Whether a normalised host (no port, no `www.`) is the site's domain or under it."""
    return host == home or host.endswith(f".{home}")


def _stage_rows(
    conn: sqlite3.Connection, result: SnapshotResult, *, page_keys: bool, site: str
) -> tuple[int, int, int]:
    report = result.report
    batch: list[tuple[object, ...]] = []
    # Rows recognised as seen before: their key and digest only. Either batch is written
    # before the other grows, so rows are staged in file order (a key listed twice keeps
    # its first row).
    known_batch: list[tuple[int, int]] = []
    lost_batch: list[tuple[int, str | None]] = []
    read_batch: list[tuple[int, int, int]] = []
    # Whether any target is on the site (or a subdomain); until one is, the registrable
    # domains the targets are on (OtherSiteError). Rows without a target say nothing.
    home = normalize_domain(site) or site
    on_site = False
    elsewhere: dict[str, int] = {}
    # Per target host, the registrable domain it is on when not on the site ("" when on
    # it): a row pointing elsewhere is no backlink of the site, and one stored would go
    # missing, then lost, at the next export that rightly leaves it out. Such rows, and
    # the site's links to itself, are set aside: only those of links already stored
    # (before such rows were set aside) are staged, so those are followed as before.
    away: dict[str, str] = {}
    aside: list[tuple[str, int, tuple[object, ...] | None, str | None]] = []
    # The tests' fast paths, for nearly every row: a target on the site's own host, a
    # referring page on another registrable domain than the site's.
    home_path, home_domain = f"{home}/", registrable_domain(home)
    read = 0
    for rec in result.records:
        if rec is KNOWN_ROW:
            # A link the series lists now, with these values: it is on the site, or
            # followed as a link already stored.
            key, digest = unpack_known(result.known)
            on_site = True
            read += 1
            result.recognised += 1
            if batch:
                conn.executemany(_STAGE_ROW, batch)
                batch.clear()
            known_batch.append((key, digest))
            if len(known_batch) >= _BATCH:
                conn.executemany(_STAGE_KNOWN, known_batch)
                known_batch.clear()
            continue
        (
            url_from, url_to, anchor, nofollow, ugc, sponsored, rating, first, lost, reason,
            metric, toxicity,
        ) = rec  # fmt: skip
        parts_from = split_url(url_from)
        if parts_from is None:
            report.add(result.line, f"referring page is not a URL: {url_from[:200]!r}")
            continue
        norm_from = join_normalized(*parts_from)
        # Sample rows are few; a page-only one (Search Console names only the linking
        # page) is keyed by the page alone, and every sample row can be found by its page.
        from_key = link_key(norm_from, "") if page_keys else None
        off = ""  # where the row leads off the site's backlinks: another site, or itself
        if from_key is not None and result.sample and not url_to:
            key = from_key
        elif (norm_to := normalize_target(url_to)) is not None:
            if norm_to.startswith(home_path):
                on_site = True
            else:
                # A normalised URL is its host (no `www.`), then its path.
                to_host = norm_to.split("/", 1)[0]
                other = away.get(to_host)
                if other is None:
                    host = host_name(to_host)
                    other = away[to_host] = "" if _on_site(host, home) else registrable_domain(host)
                if other:
                    elsewhere[other] = elsewhere.get(other, 0) + 1
                    off = other
                else:
                    on_site = True
            key = link_key(norm_from, norm_to)
        else:
            report.add(result.line, f"target is not a URL: {url_to[:200]!r}")
            continue
        refdomain = registrable_domain(host_name(parts_from[0]))
        if (
            refdomain == home_domain
            and not off
            and _on_site(host_name(norm_from.split("/", 1)[0]), home)
        ):
            # The site linking to itself: an internal link, no backlink.
            off = ITSELF
        if lost:
            if off:
                aside.append((off, key, None, reason))
                continue
            read += 1
            lost_batch.append((key, reason))
            continue
        # Epoch seconds: converting only the few new links' dates in SQL is far cheaper
        # than formatting a million of them here.
        first_ts = first.timestamp() if first is not None else None
        row = (
            key,
            from_key,
            url_from,
            url_to,
            anchor,
            nofollow,
            ugc,
            sponsored,
            refdomain,
            rating,
            first_ts,
            report_digest(anchor, nofollow, ugc, sponsored, rating, metric, toxicity, first_ts),
            metric,
            toxicity,
            result.fingerprint,
        )
        if off:
            # Never fingerprinted: whether it is staged depends on the links stored.
            aside.append((off, key, (*row[:-1], None), None))
            continue
        read += 1
        if known_batch:
            conn.executemany(_STAGE_KNOWN, known_batch)
            known_batch.clear()
        batch.append(row)
        if len(batch) >= _BATCH:
            conn.executemany(_STAGE_ROW, batch)
            batch.clear()
        if result.fingerprint is not None:
            read_batch.append((key, row[11], result.fingerprint))
            if len(read_batch) >= _BATCH:
                conn.executemany(_STAGE_READ, read_batch)
                read_batch.clear()
    if not on_site and elsewhere:
        about = max(elsewhere, key=lambda d: elsewhere[d])
        raise OtherSiteError(
            f"{result.origin or 'the export'}: none of its {sum(elsewhere.values())}"
            f" targets is on {site}: it is an export of {about}, not of {site} (nothing"
            " was stored)"
        )
    if known_batch:
        conn.executemany(_STAGE_KNOWN, known_batch)
    if aside:
        read += _stage_aside(conn, result, site, aside, batch, lost_batch)
    if batch:
        conn.executemany(_STAGE_ROW, batch)
    if lost_batch:
        conn.executemany(_STAGE_LOST, lost_batch)
    if read_batch:
        conn.executemany(_STAGE_READ, read_batch)
    if page_keys:
        dialect.sort_large(conn, IN_KEY_ORDER[0])
        for statement in IN_KEY_ORDER[1:]:
            conn.execute(statement)
    for statement in INDEX_AND_DEDUPE:
        conn.execute(statement)
    return (*staged_counts(conn), read)


# What `off` says of a row of the site's link to itself.
ITSELF = "\0itself"


def _stage_aside(
    conn: sqlite3.Connection,
    result: SnapshotResult,
    site: str,
    aside: list[tuple[str, int, tuple[object, ...] | None, str | None]],
    batch: list[tuple[object, ...]],
    lost_batch: list[tuple[int, str | None]],
) -> int:
    """Of the rows set aside (another site's target, or the site's own page), add those of
    links the ledger already holds to the batches; note how many of the rest were skipped.
    The number added."""
    known = _stored_keys(conn, site, [key for _, key, _, _ in aside])
    elsewhere: dict[str, int] = {}
    itself = added = 0
    for off, key, row, reason in aside:
        if key in known:
            added += 1
            if row is None:
                lost_batch.append((key, reason))
            else:
                batch.append(row)
        elif off == ITSELF:
            itself += 1
        else:
            elsewhere[off] = elsewhere.get(off, 0) + 1
    if elsewhere:
        about = max(elsewhere, key=lambda d: elsewhere[d])
        result.notes.append(
            f"{_rows_skipped(sum(elsewhere.values()))}: their targets are on other sites"
            f" ({about} the most), not on {site}"
        )
    if itself:
        result.notes.append(f"{_rows_skipped(itself)}: links of {site} to itself")
    return added


def _stored_keys(conn: sqlite3.Connection, site: str, keys: list[int]) -> set[int]:
    """Which of `keys` name links the ledger holds for `site`."""
    return {
        int(r[0])
        for r in conn.execute(
            f"""SELECT l.link_key FROM links l
            WHERE l.site_id = (SELECT id FROM sites WHERE domain = :site)
              AND l.link_key IN (SELECT value FROM {JSON_EACH}(:keys))""",
            {"site": site, "keys": json.dumps(keys)},
        )
    }


def _rows_skipped(n: int) -> str:
    return f"{n:,} row{'' if n == 1 else 's'} skipped"


def staged_counts(conn: sqlite3.Connection) -> tuple[int, int]:
    """(live rows, rows listed) of the staged link snapshot."""
    seen = int(conn.execute("SELECT count(*) FROM staging").fetchone()[0])
    marked_lost = int(
        conn.execute(
            "SELECT count(DISTINCT link_key) FROM staging_lost"
            " WHERE link_key NOT IN (SELECT link_key FROM staging)"
        ).fetchone()[0]
    )
    return seen, seen + marked_lost


def _stage_domains(conn: sqlite3.Connection, result: SnapshotResult) -> tuple[int, int, int]:
    """Stream a domain-level snapshot into its staging tables; (live domains, listed,
    rows parsed before a domain listed twice was folded)."""
    for statement in (*DROP_STAGING, *DOMAIN_STAGING):
        conn.execute(statement)
    report = result.report
    batch: list[tuple[object, ...]] = []
    lost_batch: list[tuple[str]] = []
    read = 0
    for domain, links, rating, metric, first, lost in result.domain_records or ():
        norm = normalize_domain(domain)
        if norm is None:
            report.add(result.line, f"referring domain is not a host name: {domain[:200]!r}")
            continue
        read += 1
        if lost:
            lost_batch.append((norm,))
            continue
        first_ts = first.timestamp() if first is not None else None
        digest = zlib.crc32(f"{links}\x1f{rating}\x1f{metric}\x1f{first_ts}".encode())
        batch.append((norm, links, rating, metric, first_ts, digest))
        if len(batch) >= _BATCH:
            conn.executemany("INSERT INTO staging_domains VALUES (?,?,?,?,?,?)", batch)
            batch.clear()
    if batch:
        conn.executemany("INSERT INTO staging_domains VALUES (?,?,?,?,?,?)", batch)
    if lost_batch:
        conn.executemany("INSERT INTO staging_domains_lost VALUES (?)", lost_batch)
    for statement in DOMAIN_INDEX_AND_DEDUPE:
        conn.execute(statement)
    return (*staged_domain_counts(conn), read)


def staged_domain_counts(conn: sqlite3.Connection) -> tuple[int, int]:
    """(live domains, domains listed) of the staged domain-level snapshot."""
    seen = int(conn.execute("SELECT count(*) FROM staging_domains").fetchone()[0])
    marked_lost = int(
        conn.execute(
            "SELECT count(DISTINCT domain) FROM staging_domains_lost"
            " WHERE domain NOT IN (SELECT domain FROM staging_domains)"
        ).fetchone()[0]
    )
    return seen, seen + marked_lost


# --- series and their history ----------------------------------------------------------


def coverage_of(result: SnapshotResult) -> str:
    """The coverage kind of the series a snapshot belongs to."""
    if result.domain_records is not None:
        return DOMAINS
    return SAMPLE if result.sample else COMPLETE


def series_for(
    conn: sqlite3.Connection, site_id: int, source: str, fmt: str, coverage: str
) -> Series:
    """The series of a (site, source, format), created with a free seen_by bit on first use."""
    row = conn.execute(
        "SELECT id, coverage, bit FROM series WHERE site_id = ? AND source = ? AND format = ?",
        (site_id, source, fmt),
    ).fetchone()
    if row is not None:
        if str(row[1]) != coverage:
            raise CoverageMismatchError(
                f"{source}/{fmt} is a {row[1]} series; this snapshot is {coverage}: a format "
                "delivers one kind of snapshot"
            )
        return Series(int(row[0]), site_id, source, str(row[1]), int(row[2]))
    used = int(
        conn.execute(
            "SELECT coalesce(max(bit), 0) FROM series WHERE site_id = ?", (site_id,)
        ).fetchone()[0]
    )
    bit = 1 if used == 0 else used << 1
    if bit >= 1 << 62:
        raise ValueError(f"site {site_id} has more than 62 observation series")
    cur = conn.execute(
        "INSERT INTO series (site_id, source, format, coverage, bit) VALUES (?, ?, ?, ?, ?)",
        (site_id, source, fmt, coverage, bit),
    )
    return Series(int(cur.lastrowid or 0), site_id, source, coverage, bit)


def load_series(conn: sqlite3.Connection, series_id: int) -> Series:
    """A stored series by id."""
    row = conn.execute(
        "SELECT id, site_id, source, coverage, bit FROM series WHERE id = ?", (series_id,)
    ).fetchone()
    return Series(int(row[0]), int(row[1]), str(row[2]), str(row[3]), int(row[4]))


@dataclass(frozen=True)
class Previous:
    """The latest accepted snapshot of a series before another one."""

    id: int
    listed: int
    taken_at: str


# Snapshot ids only grow: "before snapshot N" is "id < N", whatever was deleted since.
_NO_LIMIT = 1 << 62


def latest_accepted(
    conn: sqlite3.Connection, series_id: int, before_id: int = _NO_LIMIT
) -> Previous | None:
    """The latest baseline or complete snapshot of a series (stored before `before_id`)."""
    row = conn.execute(
        "SELECT id, coalesce(listed, seen), taken_at FROM snapshots WHERE series_id = ?"
        " AND status IN ('baseline', 'complete') AND id < ?"
        " ORDER BY taken_at DESC, id DESC LIMIT 1",
        (series_id, before_id),
    ).fetchone()
    return None if row is None else Previous(int(row[0]), int(row[1]), str(row[2]))


def is_duplicate(
    conn: sqlite3.Connection,
    series_id: int,
    digest: str | None,
    taken: str,
    origin: str | None,
    before_id: int = _NO_LIMIT,
) -> bool:
    """Same content as an earlier snapshot of the series taken at the same time or later,
    or as an earlier read of the same file (only its time stamp changed) — also when
    retention has pruned that snapshot since (its digest is kept)."""
    if digest is None:
        return False
    row = conn.execute(
        "SELECT 1 FROM snapshots WHERE series_id = :series AND digest = :digest"
        " AND id < :before AND (taken_at >= :taken OR origin = :origin) AND status != 'error'"
        " UNION ALL SELECT 1 FROM deleted_snapshots d, series s"
        " WHERE s.id = :series AND d.site_id = s.site_id AND d.digest = :digest"
        " AND d.source = s.source AND d.status = 'pruned'"
        " AND (d.taken_at >= :taken OR d.origin = :origin) LIMIT 1",
        {
            "series": series_id,
            "digest": digest,
            "before": before_id,
            "taken": taken,
            "origin": origin or None,
        },
    ).fetchone()
    return row is not None


def _agreeing_suspects(
    conn: sqlite3.Connection,
    series_id: int,
    listed: int,
    digest: str | None,
    guards: GuardSettings,
    before_id: int,
) -> bool:
    """True when the snapshots just before this one were suspect, of about its size, and
    each a different file: one file read again agrees only with itself."""
    wanted = guards.suspect_accept_after - 1
    rows = conn.execute(
        "SELECT status, coalesce(listed, seen), digest FROM snapshots WHERE series_id = ?"
        " AND status NOT IN ('error', 'duplicate') AND id < ?"
        " ORDER BY taken_at DESC, id DESC LIMIT ?",
        (series_id, before_id, wanted),
    ).fetchall()
    digests = [d for d in (*(r[2] for r in rows), digest) if d is not None]
    return (
        len(rows) == wanted
        and len(set(digests)) == len(digests)
        and all(
            status == "suspect" and abs(n - listed) <= guards.agree_within * listed
            for status, n, _ in rows
        )
    )


@dataclass(frozen=True)
class Judged:
    """What a snapshot is judged on: its own content and the series' history before it."""

    error: str | None
    malformed: int
    seen: int
    listed: int
    digest: str | None


def judge(
    conn: sqlite3.Connection,
    series: Series,
    snap: Judged,
    prev: Previous | None,
    guards: GuardSettings,
    before_id: int = _NO_LIMIT,
) -> tuple[str, str | None]:
    """The snapshot's status: is it whole, and is it plausible? (docs/evidence.md)"""
    listed, seen = snap.listed, snap.seen
    if snap.error is not None:
        return "partial", snap.error
    if snap.malformed:
        return "partial", f"{snap.malformed} malformed rows; no link state changed"
    if listed == 0:
        return "suspect", "no rows: an empty export never confirms a loss; no link state changed"
    if seen == 0:
        return "suspect", (
            "no live rows, only rows marked lost: not a whole profile; no link state changed"
        )
    if prev is None:
        return "baseline", None
    if series.coverage == SAMPLE:
        return "complete", "a sample export: it adds and restores links, absences count for nothing"
    if listed >= guards.suspect_below * prev.listed:
        return "complete", None
    if _agreeing_suspects(conn, series.id, listed, snap.digest, guards, before_id):
        return "complete", (
            f"{listed} rows, under {guards.suspect_below:.0%} of {prev.listed}, believed:"
            f" {guards.suspect_accept_after} snapshots in a row agree"
        )
    return "suspect", (
        f"{listed} rows, under {guards.suspect_below:.0%} of the previous snapshot's "
        f"{prev.listed}; no link state changed"
    )


def effective_time(
    conn: sqlite3.Connection, site_id: int, taken: str, before_id: int
) -> tuple[str, bool]:
    """(when this snapshot's events are dated, whether the site had accepted snapshots).

    Never earlier than the site's latest accepted snapshot: an old export of a second
    series cannot reorder history. Domain-level snapshots are no link history.
    """
    latest = conn.execute(
        "SELECT max(taken_at) FROM snapshots WHERE site_id = ? AND id < ?"
        f" AND status IN ('baseline', 'complete') AND {OF_LINK_SERIES}",
        (site_id, before_id),
    ).fetchone()[0]
    return (max(taken, latest) if latest else taken), latest is not None


# --- the ingest ------------------------------------------------------------------------


@dataclass
class Step:
    """What the rules of one snapshot work with."""

    conn: sqlite3.Connection
    site_id: int
    series: Series
    snapshot_id: int
    at: str
    # When the snapshot itself was taken: a sample's evidence is as old as that.
    taken: str
    prev: Previous | None
    baseline: bool
    dated: bool
    guards: GuardSettings
    # Rows staged as seen before (KNOWN_ROW): with none, none needs reading back.
    recognised: int
    # Whether every row was staged with its page key (`_stage`'s page_keys): the rows of a
    # snapshot staged as a later one have none, though another process may have deleted
    # the series' earlier snapshots meanwhile and made this one its baseline.
    keyed: bool
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def params(self) -> dict[str, object]:
        return {
            "site": self.site_id,
            "series": self.series.id,
            "bit": self.series.bit,
            "snap": self.snapshot_id,
            "at": self.at,
            "prev": self.prev.taken_at if self.prev else None,
            "prev_id": self.prev.id if self.prev else None,
            "confirm": self.guards.confirm_after,
            "taken": self.taken,
            "until": to_db(from_db(self.taken) + self.guards.sample_ttl)
            if self.series.coverage == SAMPLE
            else None,
        }

    def add(self, kind: str, n: int) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n


def _order_problem(
    conn: sqlite3.Connection, series_id: int, taken: str, origin: str, where: str
) -> tuple[Previous | None, str | None]:
    """(the series' latest accepted snapshot, why this one comes too late or None)."""
    prev = latest_accepted(conn, series_id)
    if prev is not None and taken < prev.taken_at:
        return prev, (
            f"{origin}: taken at {taken}, before the latest snapshot of {where} taken at "
            f"{prev.taken_at}; snapshots of one series must be ingested in time order"
        )
    return prev, None


def find_series(conn: sqlite3.Connection, site_id: int, source: str, fmt: str) -> int | None:
    """The id of a (site, source, format) series, None if it has no snapshot yet."""
    row = conn.execute(
        "SELECT id FROM series WHERE site_id = ? AND source = ? AND format = ?",
        (site_id, source, fmt),
    ).fetchone()
    return None if row is None else int(row[0])


def ingest_problems(
    conn: sqlite3.Connection,
    *,
    site_id: int,
    site: str,
    source: str,
    results: Sequence[SnapshotResult],
    now: datetime,
) -> list[ValueError]:
    """Why each of a batch of snapshots, ingested in the order given, would be refused
    (from the future, out of order in its series, a format's other coverage), judged
    before any is stored: a multi-file import stores all of them or none."""
    problems: list[ValueError] = []
    latest: dict[str, str] = {}  # format -> taken_at of the batch's last one of it
    kinds: dict[str, str] = {}  # format -> coverage, as stored or as the batch has it
    for result in results:
        taken = to_db(result.taken_at)
        origin = result.origin or source
        where = f"{site}/{source} ({result.format})"
        coverage = coverage_of(result)
        if result.taken_at > now + FUTURE_SKEW:
            problems.append(
                FutureSnapshotError(
                    f"{origin}: taken at {taken}, after now ({to_db(now)}); a snapshot from "
                    "the future would date every later event of the site after it"
                )
            )
            continue
        fmt = result.format
        if fmt not in kinds:
            row = conn.execute(
                "SELECT id, coverage FROM series WHERE site_id = ? AND source = ? AND format = ?",
                (site_id, source, fmt),
            ).fetchone()
            if row is not None:
                kinds[fmt] = str(row[1])
                prev = latest_accepted(conn, int(row[0]))
                if prev is not None:
                    latest[fmt] = prev.taken_at
        if kinds.setdefault(fmt, coverage) != coverage:
            problems.append(
                CoverageMismatchError(
                    f"{origin}: {source}/{fmt} is a {kinds[fmt]} series; this snapshot is"
                    f" {coverage}: a format delivers one kind of snapshot"
                )
            )
            continue
        if fmt in latest and taken < latest[fmt]:
            problems.append(
                OutOfOrderError(
                    f"{origin}: taken at {taken}, before the latest snapshot of {where} taken"
                    f" at {latest[fmt]}; snapshots of one series must be ingested in time order"
                )
            )
            continue
        latest[fmt] = max(taken, latest.get(fmt, taken))
    return problems


def _drop_staging(conn: sqlite3.Connection) -> None:
    for statement in DROP_STAGING:
        conn.execute(statement)


def ingest(
    conn: sqlite3.Connection,
    *,
    site_id: int,
    site: str,
    source: str,
    result: SnapshotResult,
    guards: GuardSettings,
    now: datetime,
) -> IngestOutcome:
    """Store one snapshot and apply it to the ledger.

    The export is read and staged first, without the write lock (the staging tables are
    this connection's own temp tables); the diff is then applied in one short write
    transaction, so other writers wait for the diff only, never for the reading.
    """
    started = time.monotonic()
    taken = to_db(result.taken_at)
    origin = result.origin or source
    where = f"{site}/{source} ({result.format})"
    coverage = coverage_of(result)
    if result.taken_at > now + FUTURE_SKEW:
        raise FutureSnapshotError(
            f"{origin}: taken at {taken}, after now ({to_db(now)}); "
            "a snapshot from the future would date every later event of the site after it"
        )
    # A read transaction: it writes only temp tables, so it takes no lock writers wait on.
    conn.execute(dialect.BEGIN_READ)
    staged = keyed = False
    seen = listed = read = 0
    try:
        series_id = find_series(conn, site_id, source, result.format)
        prev = None
        if series_id is not None:
            prev, problem = _order_problem(conn, series_id, taken, origin, where)
            if problem is not None:
                raise OutOfOrderError(problem, prev)
        if series_id is None or not is_duplicate(
            conn, series_id, result.digest, taken, result.origin
        ):
            _ask_known_rows(conn, result, series_id)
            seen, listed, read = _stage_any(conn, result, coverage, prev is None, site)
            staged, keyed = True, _page_keys(result, prev is None)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    locked = time.monotonic()
    counts: dict[str, int] = {}
    try:
        conn.execute(dialect.BEGIN_WRITE)
    except BaseException:
        _drop_staging(conn)
        raise
    try:
        # Another process may have ingested in between: every check is made again here.
        series = series_for(conn, site_id, source, result.format, coverage)
        prev, problem = _order_problem(conn, series.id, taken, origin, where)
        if problem is not None:
            raise OutOfOrderError(problem, prev)
        # A duplicate stays one (snapshots never change); one may have appeared meanwhile.
        if is_duplicate(conn, series.id, result.digest, taken, result.origin):
            result.close()  # never read (or read for nothing): release the file now
            seen = listed = read = 0
            status = "duplicate"
            note: str | None = "same content as an earlier snapshot; nothing changed"
        else:
            if not staged:
                # The snapshot it duplicated was deleted meanwhile: read it after all.
                _ask_known_rows(conn, result, series.id)
                seen, listed, read = _stage_any(conn, result, coverage, prev is None, site)
                keyed = _page_keys(result, prev is None)
            judged = Judged(result.error, result.report.malformed, seen, listed, result.digest)
            status, note = judge(conn, series, judged, prev, guards)
        fetch_note = "; ".join(result.notes) or None
        snapshot_id = _record_snapshot(
            conn, series, result, taken, status, seen, listed, note, fetch_note, guards, now
        )
        if status in ACCEPTED:
            counts = apply_snapshot(
                conn, series, snapshot_id, taken, prev, status, guards, result.recognised, keyed
            )
        record_counts(conn, snapshot_id, counts, time.monotonic() - started)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        _drop_staging(conn)
        raise
    locked_s = time.monotonic() - locked
    # Temp tables are this connection's own: dropped after the commit, other writers do
    # not wait for it (dropping 1M staged rows took 1.1 s). The snapshot is stored: a drop
    # that fails is only logged (the next staging drops them first).
    try:
        _drop_staging(conn)
    except sqlite3.Error as exc:
        log.warning("%s: staged rows not dropped after the snapshot was stored: %s", where, exc)
    return IngestOutcome(
        snapshot_id=snapshot_id,
        site=site,
        source=source,
        origin=result.origin,
        taken_at=from_db(taken),
        status=status,
        seen=seen,
        malformed=result.report.malformed,
        note=join_notes(note, fetch_note),
        examples=tuple(result.report.examples),
        series=f"{source}/{result.format}",
        listed=listed,
        read=read,
        locked_s=locked_s,
        coverage=coverage,
        **counts,
    )


def _ask_known_rows(
    conn: sqlite3.Connection, result: SnapshotResult, series_id: int | None
) -> None:
    """Have a complete series' rows fingerprinted, and those it lists now recognised."""
    # A sample's rows (and a domain-level export's) are never fingerprinted.
    if result.sample or not result.fingerprints:
        return
    (secret,) = conn.execute(
        "SELECT value FROM meta WHERE key = 'row_fingerprint_secret'"
    ).fetchone()  # written by migration m010
    result.fingerprint_secret = bytes.fromhex(secret)
    known: dict[int, int] = {}
    if series_id is not None:
        rows = conn.execute(
            f"""SELECT raw, link_key, digest FROM sightings {indexed_by("sightings_open")}
            WHERE series_id = ? AND ended_snapshot_id IS NULL AND raw IS NOT NULL
              AND digest BETWEEN 0 AND 4294967295""",
            (series_id,),
        )
        known = {raw: pack_known(key, digest) for raw, key, digest in rows}
        # Reading them filled the page cache with index pages staging never reads again:
        # held with the mapping, they would double the memory the mapping takes.
        dialect.release_cache(conn)
    result.known_rows = known


def _stage_any(
    conn: sqlite3.Connection, result: SnapshotResult, coverage: str, first: bool, site: str
) -> tuple[int, int, int]:
    """Stage a snapshot of any kind; (live rows, rows listed, rows parsed). A link snapshot none of
    whose targets is on `site` is refused (OtherSiteError)."""
    if coverage == DOMAINS:
        return _stage_domains(conn, result)
    return _stage(conn, result, page_keys=_page_keys(result, first), site=site)


def _page_keys(result: SnapshotResult, first: bool) -> bool:
    """Whether a snapshot's rows are staged with their page keys: a sample's, and those of
    a series' first snapshot."""
    return result.sample or first


def join_notes(note: str | None, fetch_note: str | None) -> str | None:
    """The stored note: the verdict's, then what the fetch told."""
    return "; ".join(n for n in (note, fetch_note) if n) or None


def apply_snapshot(
    conn: sqlite3.Connection,
    series: Series,
    snapshot_id: int,
    taken: str,
    prev: Previous | None,
    status: str,
    guards: GuardSettings,
    recognised: int,
    keyed: bool,
) -> dict[str, int]:
    """Apply an accepted, staged snapshot to the ledger (`recognised` of its rows staged as
    seen before; `keyed`: every row staged with its page key); its counts by event kind."""
    at, had_history = effective_time(conn, series.site_id, taken, snapshot_id)
    step = Step(
        conn,
        series.site_id,
        series,
        snapshot_id,
        at,
        taken,
        prev,
        baseline=status == "baseline",
        dated=had_history,
        guards=guards,
        recognised=recognised,
        keyed=keyed,
    )
    return _apply(step)


def _record_snapshot(
    conn: sqlite3.Connection,
    series: Series,
    result: SnapshotResult,
    taken: str,
    status: str,
    seen: int,
    listed: int,
    note: str | None,
    fetch_note: str | None,
    guards: GuardSettings,
    now: datetime,
) -> int:
    cur = conn.execute(
        "INSERT INTO snapshots (site_id, source, series_id, taken_at, status, origin, format,"
        " seen, listed, malformed, note, digest, origin_stamp, created_at, guards, fetch_note)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            series.site_id,
            series.source,
            series.id,
            taken,
            status,
            result.origin,
            result.format,
            seen,
            listed,
            result.report.malformed,
            join_notes(note, fetch_note),
            result.digest,
            result.origin_stamp,
            to_db(now),
            guards.to_json(),
            fetch_note,
        ),
    )
    return int(cur.lastrowid or 0)


COUNTED = ("new", "missing", "restored", "lost", "changed", "unconfirmed")


def record_counts(
    conn: sqlite3.Connection, snapshot_id: int, counts: dict[str, int], seconds: float | None
) -> None:
    """Store what applying a snapshot did (and how long its ingest took, when known)."""
    conn.execute(
        f"UPDATE snapshots SET {', '.join(f'{k} = ?' for k in COUNTED)},"
        " duration_s = coalesce(?, duration_s) WHERE id = ?",
        (*(counts.get(k, 0) for k in COUNTED), seconds, snapshot_id),
    )


def record_failure(
    conn: sqlite3.Connection,
    *,
    site_id: int,
    source: str,
    taken_at: datetime,
    origin: str,
    error: str,
    now: datetime,
    origin_stamp: str | None = None,
) -> int:
    """Record a poll that produced no snapshot; it feeds source health and changes no link."""
    cur = conn.execute(
        "INSERT INTO snapshots (site_id, source, taken_at, status, origin, note, origin_stamp,"
        " created_at) VALUES (?, ?, ?, 'error', ?, ?, ?, ?)",
        (site_id, source, to_db(taken_at), origin, error, origin_stamp, to_db(now)),
    )
    return int(cur.lastrowid or 0)


def _apply(step: Step) -> dict[str, int]:
    """An accepted snapshot's rules, by the coverage of its series (docs/evidence.md)."""
    if step.series.coverage == DOMAINS:
        # Referring domains only: the series' own sightings, never a link.
        _domain_sightings(step)
        return step.counts
    if step.series.coverage == SAMPLE:
        _sample_sightings(step)
    else:
        _complete_sightings(step)
        if not step.baseline:
            _provider_lost(step)
            _absent(step)
    _expire_samples(step)
    return step.counts


# --- sightings: which series listed which key, as intervals ------------------------------


def _listing_delta(step: Step) -> None:
    """`temp.delta`: staged rows this series did not list last time with the same values
    (unknown links, links it did not see, links whose reported values changed), with the
    sighting they end and the link they name. Only the series' open sightings are probed,
    from their own index: an unchanged row costs one index probe and no write."""
    x = step.conn.execute
    x(f"DROP TABLE IF EXISTS {temp('delta')}")
    # Probes, never a join: joined, the planner may build a Bloom filter over the stored
    # table, and building one reads every row of it, every site's (EXPLAIN shows it as
    # "BLOOM FILTER ON", tests/test_query_plans.py).
    x(
        f"""CREATE TEMP TABLE delta AS
        SELECT s.{ROWID} AS srow,
               (SELECT o.id FROM sightings o {indexed_by("sightings_open")}
                WHERE o.series_id = :series AND o.link_key = s.link_key
                  AND o.ended_snapshot_id IS NULL) AS open_id,
               (SELECT l.id FROM links l WHERE l.site_id = :site AND l.link_key = s.link_key)
                   AS link_id,
               (SELECT l.state FROM links l WHERE l.site_id = :site AND l.link_key = s.link_key)
                   AS prev_state
        FROM staging s
        WHERE NOT EXISTS (
            SELECT 1 FROM sightings o {indexed_by("sightings_open")}
            WHERE o.series_id = :series AND o.link_key = s.link_key
              AND o.ended_snapshot_id IS NULL AND o.digest IS s.digest)
        -- In key order (the staging index's): every later step that probes or extends an
        -- index by key then walks it in order, instead of at random pages of a file far
        -- larger than the cache.
        ORDER BY s.link_key""",
        step.params,
    )


def _record_sightings(step: Step, rows: str | None = None) -> None:
    """The rows in `temp.delta` start a sighting (ending the one with other values); or
    the staged rows `rows` selects (`FROM …`), when the series has no open sighting."""
    x = step.conn.execute
    p = step.params
    if rows is None:
        x(
            """UPDATE sightings SET ended_snapshot_id = :snap, last_snapshot_id = :prev_id,
                   last_at = :prev
            WHERE id IN (SELECT open_id FROM delta WHERE open_id IS NOT NULL)""",
            p,
        )
    x(
        f"""INSERT INTO sightings (site_id, series_id, link_key, first_snapshot_id, first_at,
               digest, anchor, nofollow, ugc, sponsored, domain_rating, rating_metric,
               toxicity, first_seen, raw)
        SELECT :site, :series, s.link_key, :snap, :taken, s.digest, s.anchor, s.nofollow,
               s.ugc, s.sponsored, s.domain_rating, s.rating_metric, s.toxicity, s.first_seen,
               s.raw
        {rows or f"FROM delta d JOIN staging s ON s.{ROWID} = d.srow"}""",
        p,
    )


# Indexes of `links` in an order no import follows (pages, referring domains): each new
# link's entry goes in at a random place.
_UNORDERED_INDEXES = ("links_from", "links_filter")


def _set_aside_unordered_indexes(step: Step) -> list[tuple[str, str, bool]]:
    """When the links about to be added outnumber those stored (of every site), drop the
    indexes they would enter at random and return them (name, definition, whether it had
    planner statistics), to build them again afterwards in one sorted pass; else nothing.
    Measured at 1M links into an empty database: the insert 13.8 s -> 3.5-4.8 s, both
    indexes built in 4.1-4.2 s."""
    x = step.conn.execute
    staged = int(x("SELECT count(*) FROM staging").fetchone()[0])
    stored = int(x("SELECT coalesce(max(id), 0) FROM links").fetchone()[0])
    if staged <= stored:
        return []
    dropped = []
    for name in _UNORDERED_INDEXES:
        definition = dialect.index_definition(step.conn, name)
        if definition is not None:
            analysed = dialect.has_statistics(step.conn, name)
            x(f"DROP INDEX {name}")
            dropped.append((name, definition, analysed))
    return dropped


def _nothing_stored(step: Step) -> bool:
    """True when the site has no link and the series no open sighting: every staged row
    is a new link."""
    x = step.conn.execute
    return (
        x("SELECT 1 FROM links WHERE site_id = :site LIMIT 1", step.params).fetchone() is None
        and x(
            f"""SELECT 1 FROM sightings {indexed_by("sightings_open")}
            WHERE series_id = :series AND ended_snapshot_id IS NULL LIMIT 1""",
            step.params,
        ).fetchone()
        is None
    )


def _end_absent_sightings(step: Step) -> None:
    """`temp.gone`: the keys the series listed last time and not now; their sightings end."""
    x = step.conn.execute
    p = step.params
    x(f"DROP TABLE IF EXISTS {temp('gone')}")
    x(
        f"""CREATE TEMP TABLE gone AS
        SELECT o.id AS sighting_id, o.link_key AS link_key,
               (SELECT l.id FROM links l WHERE l.site_id = :site AND l.link_key = o.link_key)
                   AS link_id
        FROM sightings o {indexed_by("sightings_open")}
        WHERE o.series_id = :series AND o.ended_snapshot_id IS NULL
          AND NOT EXISTS (SELECT 1 FROM staging s WHERE s.link_key = o.link_key)""",
        p,
    )
    x(
        """UPDATE sightings SET ended_snapshot_id = :snap, last_snapshot_id = :prev_id,
               last_at = :prev
        WHERE id IN (SELECT sighting_id FROM gone)""",
        p,
    )


def _insert_links(step: Step, sql_from: str, *, keyed: bool = False) -> None:
    """Add the staged links the ledger does not know, with the events their arrival means.

    In a later snapshot of a complete series they are *new*; in a baseline or a sample
    they *appeared* (silently), except in the site's very first baseline, which dates
    nothing: those links were there before history began. `keyed`: every row selected
    has its page key already.
    """
    x = step.conn.execute
    p = step.params
    # A complete series sees what it adds; a sample only vouches for it, for a while.
    sampled = step.series.coverage == SAMPLE
    max_before = int(x("SELECT coalesce(max(id), 0) FROM links").fetchone()[0])
    added = x(
        f"""INSERT INTO links (site_id, link_key, from_key, url_from, url_to, anchor, nofollow,
               ugc, sponsored, attrs, refdomain, domain_rating, rating_metric, toxicity,
               first_seen_at, added_at, state, seen_by, sample_until)
        SELECT :site, s.link_key, s.from_key, s.url_from, s.url_to, s.anchor, s.nofollow,
               s.ugc, s.sponsored, s.digest, s.refdomain, s.domain_rating,
               CASE WHEN s.domain_rating IS NOT NULL THEN s.rating_metric END, s.toxicity,
               CASE WHEN s.first_seen IS NULL THEN :at
                    ELSE {epoch_to_iso("s.first_seen")} || '.000000Z'
               END,
               :added, 'live', {"0" if sampled else ":bit"}, :until
        {sql_from}""",
        {**p, "added": step.at if step.dated else None},
    ).rowcount
    if not added:
        return
    if not keyed:
        unkeyed = x(
            "SELECT id, url_from FROM links WHERE id > ? AND from_key IS NULL", (max_before,)
        ).fetchall()
        step.conn.executemany(
            "UPDATE links SET from_key = ? WHERE id = ?", [(page_key(u), i) for i, u in unkeyed]
        )
    if step.dated:
        kind = "appeared" if step.baseline or sampled else "new"
        x(
            """INSERT INTO link_events (snapshot_id, site_id, link_id, kind, at)
            SELECT :snap, :site, id, :kind, :at FROM links WHERE id > :max_before""",
            {**p, "kind": kind, "max_before": max_before},
        )
        if kind == "new":
            step.add("new", int(added))
    _remember_forgotten(step, max_before)


def _remember_forgotten(step: Step, max_before: int) -> None:
    """Links just added that retention had forgotten come back as a kept lost link would
    have: *restored* from *lost*, with the attributes it had where this listing does not
    replace them, and a *changed* event where it would have had one (docs/storage.md)."""
    x = step.conn.execute
    p = {**step.params, "max_before": max_before}
    if x("SELECT 1 FROM forgotten_links WHERE site_id = :site LIMIT 1", p).fetchone() is None:
        return
    x(f"DROP TABLE IF EXISTS {temp('returned')}")
    # Driven by the links just added (ids above max_before): the cost follows the
    # snapshot's change, never the number of links ever forgotten.
    x(
        f"""CREATE TEMP TABLE returned AS
        SELECT l.id AS link_id, f.* FROM links l
        JOIN forgotten_links f {indexed_by("forgotten_links_key")}
            ON f.site_id = :site AND f.link_key = l.link_key
        WHERE l.id > :max_before""",
        p,
    )
    if _empty(step, "returned"):
        x(f"DROP TABLE {temp('returned')}")
        return
    sampled = step.series.coverage == SAMPLE
    # A later snapshot of a complete series reports anchor and rel changes; a baseline and a
    # sample leave the kept values as they were.
    attributed = not sampled and not step.baseline
    if step.dated:
        back = x(
            """UPDATE link_events SET kind = 'restored', reason = 'lost'
            WHERE snapshot_id = :snap AND kind IN ('new', 'appeared')
              AND link_id IN (SELECT link_id FROM returned)""",
            p,
        ).rowcount
        step.add("restored", back)
        if attributed:
            # The listing against the values the link had, as for a kept one.
            what, changed = _changes("s", "r")
            step.add("new", -back)
            step.add(
                "changed",
                x(
                    f"""INSERT INTO link_events (snapshot_id, site_id, link_id, kind, reason, at)
                    SELECT :snap, :site, r.link_id, 'changed', {what}, :at
                    FROM returned r JOIN links s ON s.id = r.link_id
                    WHERE {changed}""",
                    p,
                ).rowcount,
            )

    # The values it had, unless this listing replaces them as it would a kept link's: a
    # complete series its rating (and a later snapshot its anchor and rel) where it gives
    # one; a sample nothing. Its URLs as first reported, as a kept link keeps them.
    def kept_unless(column: str, listing_replaces: bool) -> str:
        return f"coalesce(links.{column}, r.{column})" if listing_replaces else f"r.{column}"

    complete = not sampled
    metric = (
        "CASE WHEN links.domain_rating IS NOT NULL THEN links.rating_metric"
        " ELSE r.rating_metric END"
    )
    until = greatest("coalesce(r.sample_until, '')", "links.sample_until")
    x(
        f"""UPDATE links SET
               anchor = {kept_unless("anchor", attributed)},
               nofollow = {kept_unless("nofollow", attributed)},
               ugc = {kept_unless("ugc", attributed)},
               sponsored = {kept_unless("sponsored", attributed)},
               domain_rating = {kept_unless("domain_rating", complete)},
               rating_metric = {metric if complete else "r.rating_metric"},
               toxicity = {kept_unless("toxicity", complete)},
               attrs = {"links.attrs" if complete else "r.attrs"},
               sample_until = {until if sampled else "r.sample_until"},
               first_seen_at = coalesce(r.first_seen_at, links.first_seen_at),
               dropped_at = r.dropped_at,
               url_from = coalesce(r.url_from, links.url_from),
               url_to = coalesce(r.url_to, links.url_to)
        FROM returned r WHERE links.id = r.link_id"""
    )
    x(
        """DELETE FROM forgotten_links WHERE site_id = :site
        AND link_key IN (SELECT link_key FROM returned)""",
        p,
    )
    x(f"DROP TABLE {temp('returned')}")


def _complete_sightings(step: Step) -> None:
    """Links a complete series lists: add unknown ones, restore absent ones, note changes,
    keep the provider's metrics; the series now sees them all."""
    x = step.conn.execute
    p = step.params
    if step.baseline and step.keyed and not step.recognised and _nothing_stored(step):
        # The site's first links: every row is a new link, with nothing to probe for (at
        # 1M rows the probes and their table took 1.7 s of the write lock).
        rebuilt = _set_aside_unordered_indexes(step)
        _insert_links(step, "FROM staging s ORDER BY s.link_key", keyed=True)
        for name, definition, analysed in rebuilt:
            dialect.sort_large(step.conn, definition)
            if analysed:
                # Dropped, an index loses its planner statistics: measured again (sampled).
                dialect.analyze(step.conn, name)
        _record_sightings(step, "FROM staging s ORDER BY s.link_key")
        return
    _listing_delta(step)
    # Open sightings whose fingerprint is missing or stale (made before m010, or by other
    # code, columns or format) take the fingerprint of the row that lists them now.
    # Driven by the rows read in full, few but after an upgrade: the ones recognised have
    # their fingerprint already. In key order, the order a baseline stored the sightings
    # in (after an upgrade, all 1M of a site: 8.4 s -> 6.2 s of the write lock).
    x(
        f"""UPDATE sightings SET raw = r.raw
        FROM (SELECT link_key, digest, raw FROM staging_read ORDER BY link_key) r
        WHERE sightings.id = (
            SELECT o.id FROM sightings o {indexed_by("sightings_open")}
            WHERE o.series_id = :series AND o.link_key = r.link_key
              AND o.ended_snapshot_id IS NULL AND o.digest = r.digest)
          AND sightings.raw IS NOT r.raw""",
        p,
    )
    if _empty(step, "delta"):
        # The series lists every link as it did last time: nothing to add, restore or note.
        x(f"DROP TABLE {temp('delta')}")
        return
    _read_known_rows(step)
    _insert_links(
        step,
        f"FROM delta d JOIN staging s ON s.{ROWID} = d.srow WHERE d.link_id IS NULL",
    )
    step.add(
        "restored",
        x(
            """INSERT INTO link_events (snapshot_id, site_id, link_id, kind, reason, at)
            SELECT :snap, :site, link_id, 'restored', prev_state, :at FROM delta
            WHERE link_id IS NOT NULL AND prev_state != 'live'""",
            p,
        ).rowcount,
    )
    if not step.baseline:
        _attribute_changes(step)
    x(
        f"""UPDATE links SET {_BACK_TO_LIVE} WHERE id IN (
            SELECT link_id FROM delta WHERE link_id IS NOT NULL AND prev_state != 'live')"""
    )
    # A metric the row does not give (NULL) never erases the one known; a rating comes
    # with the name of its metric, or none when the source does not say which it is.
    x(
        f"""UPDATE links SET seen_by = links.seen_by | :bit, attrs = s.digest,
               domain_rating = coalesce(s.domain_rating, links.domain_rating),
               rating_metric = CASE WHEN s.domain_rating IS NOT NULL THEN s.rating_metric
                                    ELSE links.rating_metric END,
               toxicity = coalesce(s.toxicity, links.toxicity)
        FROM delta d JOIN staging s ON s.{ROWID} = d.srow
        WHERE links.id = d.link_id""",
        p,
    )
    _record_sightings(step)
    x(f"DROP TABLE {temp('delta')}")


def _read_known_rows(step: Step) -> None:
    """Rows recognised as seen before that are not (another process stored a snapshot of
    the series after they were recognised) take their values back from the sighting
    that had them and their URLs from their link; ChangedMeanwhileError when either is
    gone (docs/exports.md, "Rows seen before")."""
    if not step.recognised:
        # A first export, or one read in full: checking would scan every row it adds.
        return
    x = step.conn.execute
    known_in_delta = f"""SELECT 1 FROM delta d JOIN staging s ON s.{ROWID} = d.srow
        WHERE {_KNOWN.format("s")}"""
    if x(f"{known_in_delta} LIMIT 1").fetchone() is None:
        return
    x(
        f"""UPDATE staging SET url_from = l.url_from, url_to = l.url_to,
               refdomain = l.refdomain, anchor = o.anchor,
               nofollow = o.nofollow, ugc = o.ugc, sponsored = o.sponsored,
               domain_rating = o.domain_rating, first_seen = o.first_seen,
               rating_metric = o.rating_metric, toxicity = o.toxicity, raw = o.raw
        FROM links l, sightings o
        WHERE {_KNOWN.format("staging")} AND staging.{ROWID} IN (SELECT srow FROM delta)
          AND l.site_id = :site AND l.link_key = staging.link_key
          AND o.id = (SELECT max(g.id) FROM sightings g
                      WHERE g.site_id = :site AND g.link_key = staging.link_key
                        AND g.series_id = :series AND g.digest = staging.digest)""",
        step.params,
    )
    if x(f"{known_in_delta} LIMIT 1").fetchone() is not None:
        raise ChangedMeanwhileError(
            "the links this file lists were changed by another process while it was read"
            " (a snapshot deleted meanwhile); nothing was stored: import it again"
        )


def _attribute_changes(step: Step) -> None:
    """Anchor or rel changes of known links: a `changed` event and the new values."""
    x = step.conn.execute
    x(f"DROP TABLE IF EXISTS {temp('changes')}")
    what, changed = _changes("s", "l")
    x(
        f"""CREATE TEMP TABLE changes AS
        SELECT d.link_id AS link_id, d.srow AS srow, {what} AS what
        FROM delta d JOIN staging s ON s.{ROWID} = d.srow JOIN links l ON l.id = d.link_id
        WHERE {changed}"""
    )
    step.add(
        "changed",
        x(
            """INSERT INTO link_events (snapshot_id, site_id, link_id, kind, reason, at)
            SELECT :snap, :site, link_id, 'changed', what, :at FROM changes""",
            step.params,
        ).rowcount,
    )
    x(
        f"""UPDATE links SET anchor = coalesce(s.anchor, links.anchor),
               nofollow = coalesce(s.nofollow, links.nofollow),
               ugc = coalesce(s.ugc, links.ugc),
               sponsored = coalesce(s.sponsored, links.sponsored)
        FROM changes c JOIN staging s ON s.{ROWID} = c.srow
        WHERE links.id = c.link_id"""
    )
    x(f"DROP TABLE {temp('changes')}")


# Staged page-only rows `s` of a page a complete series stopped seeing a link of since the
# sample was taken (retention's forgotten links included): the sample is older than that
# evidence and vouches for no placeholder of the page (docs/evidence.md, rule 6).
_OUTDATED_PAGE = f"""(EXISTS (SELECT 1 FROM links d WHERE d.site_id = :site
                             AND d.from_key = s.from_key AND d.dropped_at >= :taken)
            OR EXISTS (SELECT 1 FROM forgotten_links g {indexed_by("forgotten_links_from")}
                       WHERE g.site_id = :site AND g.from_key = s.from_key
                         AND g.dropped_at >= :taken))"""


def _sample_sightings(step: Step) -> None:
    """Links a sample lists vouch for `sample_ttl` from when it was taken; absent ones are
    restored when it was taken after the last time a complete series lost sight of them."""
    x = step.conn.execute
    p = step.params
    # What the sample listed is kept as sightings too (a page-only row under its page's
    # key): which series saw what, and what a rebuild replays.
    _listing_delta(step)
    _record_sightings(step)
    x(f"DROP TABLE {temp('delta')}")
    _end_absent_sightings(step)
    x(f"DROP TABLE {temp('gone')}")
    x(f"CREATE INDEX {temp('staging_from')} ON staging(from_key, url_to)")
    x(f"DROP TABLE IF EXISTS {temp('sighted')}")
    # A row with a target names one link. A page-only row (no target) vouches for the
    # page's live links; with none live, for its placeholder link of unknown target.
    x(
        """CREATE TEMP TABLE sighted AS
        SELECT l.id AS link_id, l.state AS prev_state, l.dropped_at AS dropped_at
        FROM staging s JOIN links l ON l.site_id = :site AND l.link_key = s.link_key
        WHERE s.url_to != ''
        UNION
        SELECT l.id, l.state, l.dropped_at
        FROM staging s JOIN links l ON l.site_id = :site AND l.from_key = s.from_key
        WHERE s.url_to = '' AND l.state = 'live'""",
        p,
    )
    x(
        f"""INSERT INTO sighted
        SELECT l.id, l.state, l.dropped_at
        FROM staging s JOIN links l ON l.site_id = :site AND l.link_key = s.link_key
        WHERE s.url_to = '' AND NOT EXISTS (
            SELECT 1 FROM links o WHERE o.site_id = :site AND o.from_key = s.from_key
              AND o.state = 'live')
          AND NOT {_OUTDATED_PAGE}
          AND l.id NOT IN (SELECT link_id FROM sighted)""",
        p,
    )
    # A forgotten link the sample could not restore (taken before it was dropped, or no
    # longer vouching) stays forgotten, as a kept one would stay lost; it is vouched for.
    x(
        f"""UPDATE forgotten_links
        SET sample_until = {greatest("coalesce(sample_until, '')", ":until")}
        WHERE site_id = :site AND link_key IN (SELECT link_key FROM staging)""",
        p,
    )
    # A placeholder is added only when nothing else from the page is live or named.
    _insert_links(
        step,
        f"""FROM staging s
        WHERE NOT EXISTS (SELECT 1 FROM links l WHERE l.site_id = :site
                          AND l.link_key = s.link_key)
          AND NOT EXISTS (SELECT 1 FROM forgotten_links f WHERE f.site_id = :site
                          AND f.link_key = s.link_key AND NOT (
                              (f.dropped_at IS NULL OR f.dropped_at < :taken)
                              AND :until > :at))
          AND NOT (s.url_to = '' AND (
                EXISTS (SELECT 1 FROM links l WHERE l.site_id = :site
                        AND l.from_key = s.from_key AND l.state = 'live')
                OR EXISTS (SELECT 1 FROM staging t WHERE t.from_key = s.from_key
                           AND t.url_to != '')
                OR {_OUTDATED_PAGE}))""",
    )
    restorable = (
        "prev_state != 'live' AND (dropped_at IS NULL OR dropped_at < :taken) AND :until > :at"
    )
    step.add(
        "restored",
        x(
            f"""INSERT INTO link_events (snapshot_id, site_id, link_id, kind, reason, at)
            SELECT :snap, :site, link_id, 'restored', prev_state, :at FROM sighted
            WHERE {restorable}""",
            p,
        ).rowcount,
    )
    x(
        f"""UPDATE links SET {_BACK_TO_LIVE}
        WHERE id IN (SELECT link_id FROM sighted WHERE {restorable})""",
        p,
    )
    x(
        f"""UPDATE links SET sample_until = {greatest("coalesce(sample_until, '')", ":until")}
        WHERE id IN (SELECT link_id FROM sighted)""",
        p,
    )
    x(f"DROP TABLE {temp('sighted')}")


def _empty(step: Step, table: str) -> bool:
    """True when the temp table `table` has no row: its step has nothing to do."""
    return bool(step.conn.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {table})").fetchone()[0])


def _drop(step: Step, table: str) -> None:
    """The series stops seeing the links in `table`: older samples no longer vouch, for
    them nor for their pages' placeholders."""
    step.conn.execute(
        f"""UPDATE links SET seen_by = seen_by & ~:bit, dropped_by = dropped_by | :bit,
               dropped_at = :at
        WHERE id IN (SELECT link_id FROM {table})""",
        step.params,
    )
    # A placeholder of the page of a link dropped here fades to unconfirmed now
    # (docs/evidence.md, rule 6): every sample that vouched for it was read before, so
    # taken no later than this drop's effective time, and is older than its evidence.
    step.conn.execute(
        f"""UPDATE links SET sample_until = :at WHERE id IN (
            SELECT p.id FROM links d JOIN links p ON p.site_id = :site AND p.from_key = d.from_key
            WHERE d.id IN (SELECT link_id FROM {table}) AND p.url_to = '' AND p.state = 'live'
              AND p.seen_by = 0 AND p.sample_until > :at)""",
        step.params,
    )


def _record_lost_marks(step: Step) -> None:
    """Keep which known links the series lists as lost, and why, as intervals."""
    x = step.conn.execute
    p = step.params
    if (
        _empty(step, "staging_lost")
        and not x(
            "SELECT EXISTS (SELECT 1 FROM lost_marks WHERE series_id = :series"
            " AND ended_snapshot_id IS NULL)",
            p,
        ).fetchone()[0]
    ):
        return  # no row marked lost, now or in the series' last snapshot
    x(f"DROP TABLE IF EXISTS {temp('marks')}")
    x(
        """CREATE TEMP TABLE marks AS
        SELECT sl.link_key AS link_key, min(sl.reason) AS reason FROM staging_lost sl
        WHERE NOT EXISTS (SELECT 1 FROM staging s WHERE s.link_key = sl.link_key)
          AND EXISTS (SELECT 1 FROM links l WHERE l.site_id = :site
                      AND l.link_key = sl.link_key)
        GROUP BY sl.link_key""",
        p,
    )
    x(
        """UPDATE lost_marks SET ended_snapshot_id = :snap
        WHERE series_id = :series AND ended_snapshot_id IS NULL AND NOT EXISTS (
            SELECT 1 FROM marks m WHERE m.link_key = lost_marks.link_key
              AND m.reason IS lost_marks.reason)""",
        p,
    )
    x(
        """INSERT INTO lost_marks (site_id, series_id, link_key, reason, first_snapshot_id)
        SELECT :site, :series, m.link_key, m.reason, :snap FROM marks m
        WHERE NOT EXISTS (SELECT 1 FROM lost_marks o WHERE o.series_id = :series
                          AND o.link_key = m.link_key AND o.ended_snapshot_id IS NULL)""",
        p,
    )
    x(f"DROP TABLE {temp('marks')}")


def _provider_lost(step: Step) -> None:
    """Rows the export marks lost: lost at once with the provider's reason, unless
    another complete series still sees the link."""
    x = step.conn.execute
    p = step.params
    _record_lost_marks(step)
    if _empty(step, "staging_lost"):
        return
    x(f"DROP TABLE IF EXISTS {temp('plost')}")
    x(
        """CREATE TEMP TABLE plost AS
        SELECT link_id, coalesce(min(reason), 'unknown') AS reason FROM (
            -- Each marked row probes the site's links by key (a join would let the planner
            -- walk every link of the database instead, once it has statistics).
            SELECT (SELECT l.id FROM links l WHERE l.site_id = :site
                      AND l.link_key = sl.link_key AND l.state IN ('live', 'missing'))
                       AS link_id, sl.reason AS reason
            FROM staging_lost sl
            WHERE NOT EXISTS (SELECT 1 FROM staging s WHERE s.link_key = sl.link_key))
        WHERE link_id IS NOT NULL
        GROUP BY link_id""",
        p,
    )
    x(f"CREATE INDEX {temp('plost_link')} ON plost(link_id)")
    _drop(step, "plost")
    step.add(
        "lost",
        x(
            """INSERT INTO link_events (snapshot_id, site_id, link_id, kind, reason, at)
            SELECT :snap, :site, pl.link_id, 'lost', pl.reason, :at FROM plost pl
            WHERE (SELECT l.seen_by FROM links l WHERE l.id = pl.link_id) = 0""",
            p,
        ).rowcount,
    )
    x(
        """UPDATE links SET state = 'lost', lost_at = :at,
               lost_reason = (SELECT pl.reason FROM plost pl WHERE pl.link_id = links.id),
               last_seen_at = coalesce(last_seen_at, :prev)
        WHERE id IN (SELECT link_id FROM plost) AND seen_by = 0""",
        p,
    )
    x(f"DROP TABLE {temp('plost')}")


def _absent(step: Step) -> None:
    """Links this series saw and no longer lists: missing once nobody sees them, then
    lost after `confirm_after` complete snapshots of a series that saw them."""
    x = step.conn.execute
    p = step.params
    _end_absent_sightings(step)
    if not _empty(step, "gone"):
        _went_missing(step)
    x(f"DROP TABLE {temp('gone')}")
    # Links missing since an earlier snapshot count this one too, whatever it dropped.
    x(
        """UPDATE links SET missing_count = missing_count + 1
        WHERE site_id = :site AND state = 'missing' AND (dropped_by & :bit) != 0""",
        p,
    )
    step.add(
        "lost",
        x(
            """INSERT INTO link_events (snapshot_id, site_id, link_id, kind, reason, at)
            SELECT :snap, :site, id, 'lost', 'dropped', :at FROM links
            WHERE site_id = :site AND state = 'missing' AND missing_count >= :confirm""",
            p,
        ).rowcount,
    )
    x(
        """UPDATE links SET state = 'lost', lost_at = :at, lost_reason = 'dropped'
        WHERE site_id = :site AND state = 'missing' AND missing_count >= :confirm""",
        p,
    )


def _went_missing(step: Step) -> None:
    """The links in `temp.gone` leave the series; those nobody else sees are missing."""
    x = step.conn.execute
    p = step.params
    _drop(step, "gone")
    step.add(
        "missing",
        x(
            """INSERT INTO link_events (snapshot_id, site_id, link_id, kind, at)
            SELECT :snap, :site, l.id, 'missing', :at FROM links l
            WHERE l.id IN (SELECT link_id FROM gone) AND l.seen_by = 0 AND l.state = 'live'""",
            p,
        ).rowcount,
    )
    x(
        """UPDATE links SET state = 'missing', missing_count = 0, last_seen_at = :prev
        WHERE id IN (SELECT link_id FROM gone) AND seen_by = 0 AND state = 'live'""",
        p,
    )


def _expire_samples(step: Step) -> None:
    """Live links only a sample vouched for, whose vouching ran out: unconfirmed."""
    x = step.conn.execute
    p = step.params
    where = (
        "site_id = :site AND sample_until IS NOT NULL AND sample_until <= :at"
        " AND state = 'live' AND seen_by = 0"
    )
    step.add(
        "unconfirmed",
        x(
            f"""INSERT INTO link_events (snapshot_id, site_id, link_id, kind, at)
            SELECT :snap, :site, id, 'unconfirmed', :at FROM links
            WHERE {where}""",
            p,
        ).rowcount,
    )
    x(f"UPDATE links SET state = 'unconfirmed' WHERE {where}", p)


# --- domain-level series ---------------------------------------------------------------


def _domain_sightings(step: Step) -> None:
    """A domain-level snapshot: which referring domains the series lists, with the links
    count and rating it gives, as intervals. A domain it lists for the first time is
    *new* (not in its baseline), one it lists again after a gap *restored*, one it no
    longer lists *missing*; these count referring domains, never links."""
    x = step.conn.execute
    p = step.params
    x(f"DROP TABLE IF EXISTS {temp('ddelta')}")
    x(
        f"""CREATE TEMP TABLE ddelta AS
        SELECT s.{ROWID} AS srow, s.domain AS domain,
               (SELECT o.id FROM domain_sightings o {indexed_by("domain_sightings_open")}
                WHERE o.series_id = :series AND o.domain = s.domain
                  AND o.ended_snapshot_id IS NULL) AS open_id
        FROM staging_domains s
        WHERE NOT EXISTS (
            SELECT 1 FROM domain_sightings o {indexed_by("domain_sightings_open")}
            WHERE o.series_id = :series AND o.domain = s.domain
              AND o.ended_snapshot_id IS NULL AND o.digest IS s.digest)""",
        p,
    )
    if not step.baseline:
        fresh = """FROM ddelta d WHERE d.open_id IS NULL AND {} EXISTS (
            SELECT 1 FROM domain_sightings o WHERE o.site_id = :site AND o.domain = d.domain
              AND o.series_id = :series)"""
        step.add("new", x(f"SELECT count(*) {fresh.format('NOT')}", p).fetchone()[0])
        step.add("restored", x(f"SELECT count(*) {fresh.format('')}", p).fetchone()[0])
    x(
        """UPDATE domain_sightings SET ended_snapshot_id = :snap, last_snapshot_id = :prev_id,
               last_at = :prev
        WHERE id IN (SELECT open_id FROM ddelta WHERE open_id IS NOT NULL)""",
        p,
    )
    x(
        f"""INSERT INTO domain_sightings (site_id, series_id, domain, first_snapshot_id,
               first_at, digest, links, domain_rating, rating_metric, first_seen)
        SELECT :site, :series, s.domain, :snap, :taken, s.digest, s.links, s.domain_rating,
               s.rating_metric, s.first_seen
        FROM ddelta d JOIN staging_domains s ON s.{ROWID} = d.srow""",
        p,
    )
    x(f"DROP TABLE {temp('ddelta')}")
    step.add(
        "missing",
        x(
            """UPDATE domain_sightings SET ended_snapshot_id = :snap,
                   last_snapshot_id = :prev_id, last_at = :prev
            WHERE series_id = :series AND ended_snapshot_id IS NULL
              AND NOT EXISTS (SELECT 1 FROM staging_domains s
                              WHERE s.domain = domain_sightings.domain)""",
            p,
        ).rowcount,
    )


# Fingerprints are salted with this code as it runs (sources/fingerprint.py).
note_code(__file__)
