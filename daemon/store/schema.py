"""The SQLite schema, as sqlite-utils migrations applied in order at open."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from daemon.store.migrate import LazyMigrations
from daemon.timefmt import from_db, to_db

if TYPE_CHECKING:
    from sqlite_utils import Database

# sqlite-utils is loaded only when a migration must run (daemon.store.migrate).
MIGRATIONS = LazyMigrations("linkwatch")
# SQL: the snapshot row is of a series that tracks links (not a domain-level one).
OF_LINK_SERIES = (
    "NOT EXISTS (SELECT 1 FROM series se WHERE se.id = snapshots.series_id"
    " AND se.coverage = 'domains')"
)


@MIGRATIONS()
def m001_ledger(db: Database) -> None:
    """Sites, snapshots, the link ledger and its events."""
    db.executescript(
        """
        CREATE TABLE sites (
            id INTEGER PRIMARY KEY,
            domain TEXT NOT NULL UNIQUE,
            role TEXT NOT NULL
        );
        -- Each (site, source) owns one bit of links.seen_by: a link is live while any
        -- source of its site sees it.
        CREATE TABLE site_sources (
            site_id INTEGER NOT NULL REFERENCES sites(id),
            source TEXT NOT NULL,
            bit INTEGER NOT NULL,
            PRIMARY KEY (site_id, source)
        );
        CREATE TABLE snapshots (
            id INTEGER PRIMARY KEY,
            site_id INTEGER NOT NULL REFERENCES sites(id),
            source TEXT NOT NULL,
            taken_at TEXT NOT NULL,
            status TEXT NOT NULL,
            origin TEXT NOT NULL DEFAULT '',
            format TEXT NOT NULL DEFAULT '',
            seen INTEGER NOT NULL DEFAULT 0,
            new INTEGER NOT NULL DEFAULT 0,
            missing INTEGER NOT NULL DEFAULT 0,
            restored INTEGER NOT NULL DEFAULT 0,
            lost INTEGER NOT NULL DEFAULT 0,
            changed INTEGER NOT NULL DEFAULT 0,
            malformed INTEGER NOT NULL DEFAULT 0,
            note TEXT,
            -- Content digest of the export, to recognise the same file ingested twice.
            digest TEXT,
            duration_s REAL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX snapshots_site_source ON snapshots(site_id, source, taken_at);
        CREATE TABLE links (
            id INTEGER PRIMARY KEY,
            site_id INTEGER NOT NULL,
            link_key INTEGER NOT NULL,
            url_from TEXT NOT NULL,
            url_to TEXT NOT NULL,
            anchor TEXT,
            nofollow INTEGER,
            ugc INTEGER,
            sponsored INTEGER,
            -- crc32 of anchor and rel flags as last reported: unchanged links are told
            -- apart from changed ones without reading the row.
            attrs INTEGER,
            refdomain TEXT NOT NULL,
            domain_rating REAL,
            first_seen_at TEXT,
            added_at TEXT,
            last_seen_at TEXT,
            state TEXT NOT NULL,
            seen_by INTEGER NOT NULL,
            -- Sources that saw the link and then did not: only their snapshots count
            -- towards confirming a missing link lost.
            dropped_by INTEGER NOT NULL DEFAULT 0,
            missing_count INTEGER NOT NULL DEFAULT 0,
            lost_at TEXT,
            lost_reason TEXT
        );
        CREATE UNIQUE INDEX links_key ON links(site_id, link_key);
        -- Covers the diff: each staged link is probed here, and the links a source no
        -- longer lists are found by scanning it.
        CREATE INDEX links_presence ON links(site_id, link_key, state, seen_by, attrs);
        CREATE INDEX links_state ON links(site_id, state);
        CREATE INDEX links_refdomain ON links(site_id, refdomain, state);
        CREATE TABLE link_events (
            id INTEGER PRIMARY KEY,
            snapshot_id INTEGER NOT NULL,
            site_id INTEGER NOT NULL,
            link_id INTEGER NOT NULL,
            kind TEXT NOT NULL,
            reason TEXT,
            at TEXT NOT NULL
        );
        CREATE INDEX link_events_site_at ON link_events(site_id, at);
        CREATE INDEX link_events_link ON link_events(link_id, at);
        """
    )


@MIGRATIONS()
def m002_alerts(db: Database) -> None:
    """Alert state and the notification outbox."""
    db.executescript(
        """
        CREATE TABLE alerts (
            fingerprint TEXT PRIMARY KEY,
            rule TEXT NOT NULL,
            site TEXT NOT NULL,
            state TEXT NOT NULL,
            value REAL,
            since_at TEXT NOT NULL,
            fired_at TEXT,
            resolved_at TEXT,
            evaluated_at TEXT NOT NULL
        );
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            idempotency_key TEXT NOT NULL UNIQUE,
            fingerprint TEXT NOT NULL,
            notifier TEXT NOT NULL,
            transition TEXT NOT NULL,
            payload TEXT NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            created_at TEXT NOT NULL,
            sent_at TEXT,
            last_error TEXT
        );
        CREATE INDEX outbox_due ON outbox(status, next_attempt_at);
        """
    )


@MIGRATIONS()
def m003_series(db: Database) -> None:
    """Observation series (site, source, format) with a coverage kind; sample evidence."""
    from sources.urls import link_key, normalize_url

    db.executescript(
        """
        -- One per (site, source, provider format); each owns one bit of links.seen_by.
        CREATE TABLE series (
            id INTEGER PRIMARY KEY,
            site_id INTEGER NOT NULL REFERENCES sites(id),
            source TEXT NOT NULL,
            format TEXT NOT NULL,
            coverage TEXT NOT NULL,
            bit INTEGER NOT NULL,
            UNIQUE (site_id, source, format)
        );
        ALTER TABLE snapshots ADD COLUMN series_id INTEGER;
        -- Rows the export listed, live or marked lost: the size the suspect guard compares.
        ALTER TABLE snapshots ADD COLUMN listed INTEGER;
        ALTER TABLE snapshots ADD COLUMN origin_stamp TEXT;
        ALTER TABLE snapshots ADD COLUMN unconfirmed INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX snapshots_series ON snapshots(series_id, taken_at);
        -- Key of the normalised referring page: a target-less sample row finds its links.
        ALTER TABLE links ADD COLUMN from_key INTEGER;
        -- When a complete series last stopped seeing the link: older samples cannot vouch.
        ALTER TABLE links ADD COLUMN dropped_at TEXT;
        -- Until when the latest sample sighting vouches for the link.
        ALTER TABLE links ADD COLUMN sample_until TEXT;
        """
    )
    _series_from_source_bits(db)
    _rekey_links(db, link_key, normalize_url)
    db.execute("CREATE INDEX links_from ON links(site_id, from_key)")
    db.execute(
        "CREATE INDEX links_sampled ON links(site_id, sample_until) WHERE sample_until IS NOT NULL"
    )
    # Links absent before the upgrade: a sample older than their absence must not restore
    # them (docs/evidence.md); the time of their last missing or lost event stands in.
    db.execute(
        "UPDATE links SET dropped_at = (SELECT max(at) FROM link_events e"
        " WHERE e.link_id = links.id AND e.kind IN ('missing', 'lost'))"
        " WHERE state != 'live'"
    )


def _series_from_source_bits(db: Database) -> None:
    """Each old (site, source) bit becomes the series of the format its snapshots used
    (the latest accepted full-profile format, else the latest sample format); every other
    format of the source gets a series of its own, so each snapshot is in its own series."""
    from sources.formats import FORMATS

    def coverage(fmt: str) -> str:
        return "sample" if fmt in FORMATS and FORMATS[fmt].sample else "complete"

    for site_id, source, bit in db.execute(
        "SELECT site_id, source, bit FROM site_sources ORDER BY site_id, bit"
    ).fetchall():
        accepted = [
            str(r[0])
            for r in db.execute(
                "SELECT format FROM snapshots WHERE site_id = ? AND source = ? AND format != ''"
                " AND status IN ('baseline', 'complete') ORDER BY taken_at DESC, id DESC",
                (site_id, source),
            )
        ]
        accepted = list(dict.fromkeys(accepted))  # distinct, latest first
        full = [f for f in accepted if coverage(f) == "complete"]
        chosen = (full or accepted or [""])[0]
        _add_series(db, site_id, source, chosen, coverage(chosen), bit)
        others = db.execute(
            "SELECT DISTINCT format FROM snapshots WHERE site_id = ? AND source = ?"
            " AND status != 'error' AND format != ?",
            (site_id, source, chosen),
        ).fetchall()
        for (fmt,) in others:
            used = db.execute(
                "SELECT max(bit) FROM series WHERE site_id = ?", (site_id,)
            ).fetchone()[0]
            _add_series(db, site_id, source, str(fmt), coverage(str(fmt)), int(used) << 1)
        if coverage(chosen) == "sample":
            # A sample vouches for a while; it never holds a link as a full profile does.
            latest = db.execute(
                "SELECT max(taken_at) FROM snapshots WHERE site_id = ? AND source = ?"
                " AND status IN ('baseline', 'complete')",
                (site_id, source),
            ).fetchone()[0]
            until = to_db(from_db(latest) + timedelta(days=90)) if latest else None
            db.execute(
                "UPDATE links SET sample_until = ? WHERE site_id = ? AND (seen_by & ?) != 0",
                (until, site_id, bit),
            )
            db.execute("UPDATE links SET seen_by = seen_by & ~? WHERE site_id = ?", (bit, site_id))
    db.execute(
        "UPDATE snapshots SET series_id = (SELECT id FROM series s"
        " WHERE s.site_id = snapshots.site_id AND s.source = snapshots.source"
        " AND s.format = snapshots.format) WHERE status != 'error'"
    )
    db.execute("DROP TABLE site_sources")


def _add_series(db: Database, site_id: int, source: str, fmt: str, coverage: str, bit: int) -> None:
    db.execute(
        "INSERT INTO series (site_id, source, format, coverage, bit) VALUES (?,?,?,?,?)",
        (site_id, source, fmt, coverage, bit),
    )


_ALIVE_ORDER = {"live": 0, "missing": 1, "lost": 2}


def _rekey_links(db: Database, link_key: Any, normalize_url: Any) -> None:
    """Keys follow the canonical URL form. Where two old rows are one link now, the more
    alive one takes the key; the other keeps its history under a key no export can
    produce, and if it was still alive it turns unconfirmed (a duplicate, not a loss)."""
    rows = db.execute(
        "SELECT id, site_id, link_key, url_from, url_to FROM links ORDER BY id"
    ).fetchall()
    for link_id, site_id, old_key, url_from, url_to in rows:
        norm_from = normalize_url(url_from) or url_from
        norm_to = normalize_url(url_to) or url_to
        key = link_key(norm_from, norm_to)
        db.execute("UPDATE links SET from_key = ? WHERE id = ?", (link_key(norm_from, ""), link_id))
        if key == old_key:
            continue
        other = db.execute(
            "SELECT id, state FROM links WHERE site_id = ? AND link_key = ?", (site_id, key)
        ).fetchone()
        if other is not None:
            state = db.execute("SELECT state FROM links WHERE id = ?", (link_id,)).fetchone()[0]
            ours = (_ALIVE_ORDER.get(state, 3), link_id)
            theirs = (_ALIVE_ORDER.get(other[1], 3), other[0])
            retired = other[0] if ours < theirs else link_id
            _retire(db, retired, link_key(f"retired {retired} {norm_from}", norm_to))
            if retired == link_id:
                continue
        db.execute("UPDATE links SET link_key = ? WHERE id = ?", (key, link_id))


def _retire(db: Database, link_id: int, key: int) -> None:
    """Set a duplicate row aside: its past stays, it no longer counts as alive."""
    row = db.execute(
        "SELECT l.site_id, l.state, (SELECT max(taken_at) FROM snapshots s"
        " WHERE s.site_id = l.site_id AND s.status IN ('baseline', 'complete'))"
        " FROM links l WHERE l.id = ?",
        (link_id,),
    ).fetchone()
    site_id, state, latest = row
    db.execute("UPDATE links SET link_key = ? WHERE id = ?", (key, link_id))
    if state in ("live", "missing") and latest is not None:
        db.execute(
            "INSERT INTO link_events (snapshot_id, site_id, link_id, kind, reason, at)"
            " VALUES (0, ?, ?, 'unconfirmed', 'merged', ?)",
            (site_id, link_id, latest),
        )
        db.execute(
            "UPDATE links SET state = 'unconfirmed', seen_by = 0, dropped_by = 0,"
            " missing_count = 0 WHERE id = ?",
            (link_id,),
        )


@MIGRATIONS()
def m004_alert_lifecycle(db: Database) -> None:
    """Alert lifecycle (pending, keep-firing, reminders, resolve reasons), its history,
    silences, notifier threads, grouped outbox rows and the last committed evaluation."""
    db.executescript(
        """
        ALTER TABLE alerts ADD COLUMN kind TEXT NOT NULL DEFAULT 'threshold';
        ALTER TABLE alerts ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
        -- When the condition began to hold in this episode (pending since).
        ALTER TABLE alerts ADD COLUMN active_at TEXT;
        -- The last evaluation at which the condition held (keep_firing_for).
        ALTER TABLE alerts ADD COLUMN held_at TEXT;
        -- The last firing or reminder told, and the last state told at all: a silenced
        -- firing is told once the silence ends; a resolve nobody heard fire is not told.
        ALTER TABLE alerts ADD COLUMN notified_at TEXT;
        ALTER TABLE alerts ADD COLUMN told TEXT;
        ALTER TABLE alerts ADD COLUMN definition TEXT NOT NULL DEFAULT '';
        -- What the alert was about when it fired (lost domains, links), to say later
        -- which came back; and the items already told (link rules).
        ALTER TABLE alerts ADD COLUMN evidence TEXT NOT NULL DEFAULT '{}';
        ALTER TABLE alerts ADD COLUMN reason TEXT;
        UPDATE alerts SET active_at = since_at, held_at = evaluated_at,
            notified_at = fired_at, told = CASE state WHEN 'firing' THEN 'firing'
            WHEN 'resolved' THEN 'resolved' END;

        CREATE TABLE alert_history (
            id INTEGER PRIMARY KEY,
            fingerprint TEXT NOT NULL,
            rule TEXT NOT NULL,
            site TEXT NOT NULL,
            state TEXT NOT NULL,
            value REAL,
            reason TEXT,
            at TEXT NOT NULL
        );
        CREATE INDEX alert_history_alert ON alert_history(fingerprint, at);

        CREATE TABLE silences (
            id INTEGER PRIMARY KEY,
            rule TEXT,
            site TEXT,
            starts_at TEXT NOT NULL,
            ends_at TEXT NOT NULL,
            comment TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL
        );

        -- What a notifier answered when it told an alert fired (a Slack post's channel
        -- and ts, an e-mail's Message-ID): later messages of that firing thread under it.
        CREATE TABLE alert_threads (
            notifier TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            fired_at TEXT NOT NULL,
            ref TEXT NOT NULL,
            PRIMARY KEY (notifier, fingerprint, fired_at)
        );

        ALTER TABLE outbox ADD COLUMN site TEXT;
        CREATE INDEX outbox_group ON outbox(notifier, site, status);

        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """
    )
    _remember_who_was_told(db)


def _remember_who_was_told(db: Database) -> None:
    """Give each alert of the previous version what a resolution needs if its rule is
    removed: the notifiers its messages went to and how they read (from its latest row)."""
    import json

    for (fingerprint,) in db.execute("SELECT fingerprint FROM alerts").fetchall():
        rows = db.execute(
            "SELECT notifier, payload FROM outbox WHERE fingerprint = ? ORDER BY id",
            (fingerprint,),
        ).fetchall()
        if not rows:
            continue
        last = json.loads(rows[-1][1])
        evidence = {
            "notify": list(dict.fromkeys(str(r[0]) for r in rows)),
            "send_resolved": True,
            "shown": {
                key: last.get(key)
                for key in ("severity", "metric", "op", "threshold", "window", "summary")
            },
        }
        db.execute(
            "UPDATE alerts SET evidence = ? WHERE fingerprint = ?",
            (json.dumps(evidence, sort_keys=True), fingerprint),
        )


@MIGRATIONS()
def m005_provenance(db: Database) -> None:
    """Provider metrics on links; per-series sightings of links and referring domains, and
    the rows providers marked lost, kept as intervals; what each snapshot was judged with."""
    db.executescript(
        """
        -- Which provider metric domain_rating holds ("Ahrefs DR", "Moz DA", …), and the
        -- provider's toxicity or spam score (0-100).
        ALTER TABLE links ADD COLUMN rating_metric TEXT;
        ALTER TABLE links ADD COLUMN toxicity REAL;
        -- The guards a snapshot was judged and applied with (JSON): rebuilding the history
        -- after a deletion applies each snapshot as it was. NULL: stored before m005.
        ALTER TABLE snapshots ADD COLUMN guards TEXT;
        -- What the fetch itself told (an API's cost, pages read); `note` shows it too.
        ALTER TABLE snapshots ADD COLUMN fetch_note TEXT;

        -- An interval during which one series listed one link key with the same reported
        -- values. Written only when a series starts listing a key, stops listing it, or
        -- reports other values for it (which ends one interval and starts the next).
        -- While open (ended_snapshot_id NULL) the key was listed by every accepted
        -- snapshot of the series since first_snapshot_id; its last sighting is the
        -- series' latest accepted snapshot. For a complete series an open interval is
        -- exactly a set bit of links.seen_by.
        CREATE TABLE sightings (
            id INTEGER PRIMARY KEY,
            site_id INTEGER NOT NULL,
            series_id INTEGER NOT NULL,
            link_key INTEGER NOT NULL,
            -- NULL: listed before provenance was kept (a database upgraded to m005).
            first_snapshot_id INTEGER,
            first_at TEXT NOT NULL,
            -- The last snapshot that listed it (taken_at in last_at), once ended.
            last_snapshot_id INTEGER,
            last_at TEXT,
            -- The first accepted snapshot of the series that no longer listed it so.
            ended_snapshot_id INTEGER,
            -- The row as the series reported it, and a digest of those values.
            digest INTEGER,
            anchor TEXT,
            nofollow INTEGER,
            ugc INTEGER,
            sponsored INTEGER,
            domain_rating REAL,
            rating_metric TEXT,
            toxicity REAL,
            first_seen REAL
        );
        CREATE INDEX sightings_open ON sightings(series_id, link_key, digest)
            WHERE ended_snapshot_id IS NULL;
        CREATE INDEX sightings_key ON sightings(site_id, link_key);

        -- Rows a complete series listed as lost (with the provider's reason), for links
        -- the ledger knew, as intervals like sightings.
        CREATE TABLE lost_marks (
            id INTEGER PRIMARY KEY,
            site_id INTEGER NOT NULL,
            series_id INTEGER NOT NULL,
            link_key INTEGER NOT NULL,
            reason TEXT,
            first_snapshot_id INTEGER NOT NULL,
            ended_snapshot_id INTEGER
        );
        CREATE INDEX lost_marks_open ON lost_marks(series_id, link_key)
            WHERE ended_snapshot_id IS NULL;
        CREATE INDEX lost_marks_site ON lost_marks(site_id);

        -- Referring domains a domain-level series listed, as intervals like sightings.
        CREATE TABLE domain_sightings (
            id INTEGER PRIMARY KEY,
            site_id INTEGER NOT NULL,
            series_id INTEGER NOT NULL,
            domain TEXT NOT NULL,
            first_snapshot_id INTEGER NOT NULL,
            first_at TEXT NOT NULL,
            last_snapshot_id INTEGER,
            last_at TEXT,
            ended_snapshot_id INTEGER,
            digest INTEGER,
            links INTEGER,
            domain_rating REAL,
            rating_metric TEXT,
            first_seen REAL
        );
        CREATE INDEX domain_sightings_open ON domain_sightings(series_id, domain, digest)
            WHERE ended_snapshot_id IS NULL;
        CREATE INDEX domain_sightings_site ON domain_sightings(site_id, domain);

        -- Snapshots deleted with `linkwatch snapshots delete`: their files stay known, so
        -- a csv_dir source does not read a mistaken export again.
        CREATE TABLE deleted_snapshots (
            id INTEGER PRIMARY KEY,
            site_id INTEGER NOT NULL,
            source TEXT NOT NULL,
            origin TEXT NOT NULL,
            origin_stamp TEXT,
            taken_at TEXT NOT NULL,
            status TEXT NOT NULL,
            deleted_at TEXT NOT NULL
        );

        -- The diff now probes the series' open sightings, not this index.
        DROP INDEX links_presence;
        """
    )
    _sightings_from_seen_by(db)


def _sightings_from_seen_by(db: Database) -> None:
    """Each set seen_by bit becomes an open sighting. When the series first listed the link
    is unknown: the later of its first accepted snapshot and the link's arrival stands in."""
    db.execute(
        """INSERT INTO sightings (site_id, series_id, link_key, first_at, digest, anchor,
               nofollow, ugc, sponsored, domain_rating)
        SELECT l.site_id, se.id, l.link_key,
               max(coalesce(l.added_at, ''), coalesce((SELECT min(taken_at) FROM snapshots sn
                   WHERE sn.series_id = se.id AND sn.status IN ('baseline', 'complete')), '')),
               NULL, l.anchor, l.nofollow, l.ugc, l.sponsored, l.domain_rating
        FROM links l JOIN series se ON se.site_id = l.site_id AND (l.seen_by & se.bit) != 0
        ORDER BY l.id, se.id"""
    )


@MIGRATIONS()
def m006_filter_index(db: Database) -> None:
    """An evaluation pass reads each site's live and missing links once per evaluation, by
    referring domain, with the attributes link filters test (docs/evidence.md, "One
    evaluation pass"): this index holds them all, so that read never touches the table's
    rows (URLs, anchors). It starts as links_refdomain did, which it replaces."""
    db.executescript(
        """
        CREATE INDEX links_filter ON links(
            site_id, refdomain, state, domain_rating, nofollow, ugc, sponsored);
        DROP INDEX links_refdomain;
        """
    )


@MIGRATIONS()
def m007_pruned_digests(db: Database) -> None:
    """A snapshot pruned by retention keeps its content digest: an old export read again
    (its file touched, so its stamp changed) is still recognised as a duplicate, never
    taken for a new snapshot that would make every later link look lost."""
    db.executescript(
        """
        ALTER TABLE deleted_snapshots ADD COLUMN digest TEXT;
        CREATE INDEX deleted_snapshots_digest ON deleted_snapshots(site_id, digest)
            WHERE digest IS NOT NULL;
        """
    )


@MIGRATIONS()
def m008_forgotten_links(db: Database) -> None:
    """The lost links retention forgot, without their events or sightings: a link listed
    again comes back as it would have been restored, with the URLs and attributes it had
    (docs/storage.md, "What is pruned")."""
    db.executescript(
        """
        CREATE TABLE forgotten_links (
            site_id INTEGER NOT NULL REFERENCES sites(id),
            link_key INTEGER NOT NULL,
            url_from TEXT,
            url_to TEXT,
            anchor TEXT,
            nofollow INTEGER,
            ugc INTEGER,
            sponsored INTEGER,
            attrs INTEGER,
            domain_rating REAL,
            rating_metric TEXT,
            toxicity REAL,
            first_seen_at TEXT,
            dropped_at TEXT,
            sample_until TEXT
        );
        CREATE UNIQUE INDEX forgotten_links_key ON forgotten_links(site_id, link_key);
        """
    )


@MIGRATIONS()
def m009_forgotten_pages(db: Database) -> None:
    """A forgotten link keeps its page's key: a sample taken before a complete series
    stopped seeing it vouches for no placeholder of its page (docs/evidence.md, rule 6),
    whether or not retention has since forgotten the link."""
    from daemon.store.ledger import page_key

    db.execute("ALTER TABLE forgotten_links ADD COLUMN from_key INTEGER")
    rows = db.execute(
        "SELECT site_id, link_key, url_from FROM forgotten_links WHERE url_from IS NOT NULL"
    ).fetchall()
    db.conn.executemany(
        "UPDATE forgotten_links SET from_key = ? WHERE site_id = ? AND link_key = ?",
        [(page_key(url_from), site, key) for site, key, url_from in rows],
    )
    db.execute("CREATE INDEX forgotten_links_from ON forgotten_links(site_id, from_key)")


@MIGRATIONS()
def m010_row_fingerprints(db: Database) -> None:
    """A sighting keeps the fingerprint of the export row it came from: a row listed again
    with the same cells is recognised before it is parsed (docs/exports.md, "Rows seen
    before"). The open sightings' index covers it, so a series' fingerprints are read from
    the index alone. Fingerprints are keyed with a secret of the database's own: no one
    who writes a linking page can make two rows that collide."""
    import secrets

    db.execute(
        "INSERT INTO meta (key, value) VALUES ('row_fingerprint_secret', ?)",
        [secrets.token_hex(16)],
    )
    db.executescript(
        """
        ALTER TABLE sightings ADD COLUMN raw INTEGER;
        DROP INDEX sightings_open;
        CREATE INDEX sightings_open ON sightings(series_id, link_key, digest, raw)
            WHERE ended_snapshot_id IS NULL;
        """
    )


@MIGRATIONS()
def m011_lost_events(db: Database) -> None:
    """A lost-domain list reads a site's losses in a window (docs/evidence.md, "The
    lost-domain list"): an index of the lost events alone, by site and instant with their
    link, reads them without a table row per event, or the other events of the window.
    Only losses are in it, a small part of a snapshot's events."""
    db.execute(
        # `kind` too, though every entry's is the same: a query testing it reads it from here.
        """CREATE INDEX link_events_lost ON link_events(site_id, at, link_id, kind)
        WHERE kind = 'lost'"""
    )
