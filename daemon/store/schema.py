"""The SQLite schema, as sqlite-utils migrations applied in order at open."""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

MIGRATIONS = Migrations("linkwatch")


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
