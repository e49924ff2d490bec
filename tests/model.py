"""The evidence model of docs/evidence.md, restated as plainly as possible.

Plain dicts and lists, no SQL, no speed tricks: every metric is a replay of the whole
event history. The property test in test_evidence_model.py compares the real ledger
with this after every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

STATE_AFTER = {
    "new": "live",
    "appeared": "live",
    "restored": "live",
    "missing": "missing",
    "lost": "lost",
    "unconfirmed": "unconfirmed",
}
ALIVE = ("live", "missing")


class ModelOutOfOrder(Exception):
    """The model refuses a snapshot older than its series' latest accepted one."""


@dataclass(frozen=True)
class Row:
    """One export row: a link (target None = Search Console's page-only row), with the
    anchor and provider rating the export gives (None: not given)."""

    url_from: str
    url_to: str | None
    domain: str
    lost: bool = False
    reason: str = "removed"
    anchor: str | None = None
    rating: float | None = None


@dataclass(frozen=True)
class DomainRow:
    """One row of a referring-domain export."""

    domain: str
    links: int | None = None
    rating: float | None = None
    lost: bool = False


@dataclass
class Sighting:
    """An interval during which a series listed a key (a link's, a page's or a domain)
    with the same values: first and last listing (taken times), and the snapshot that no
    longer listed it so (None while open)."""

    series: str
    key: object
    values: tuple[object, ...]
    first_at: datetime
    last_at: datetime | None = None
    ended_at: datetime | None = None


@dataclass
class Link:
    url_from: str
    url_to: str
    domain: str
    state: str = "live"
    seen_by: set[str] = field(default_factory=set)
    dropped_by: set[str] = field(default_factory=set)
    missing_count: int = 0
    dropped_at: datetime | None = None
    sample_until: datetime | None = None
    added_at: datetime | None = None  # None: there before history began
    lost_reason: str | None = None
    anchor: str | None = None
    rating: float | None = None


@dataclass
class Snap:
    taken: datetime
    status: str
    listed: int
    digest: str | None


@dataclass
class Series:
    name: str
    coverage: str
    snaps: list[Snap] = field(default_factory=list)

    def latest_accepted(self) -> Snap | None:
        accepted = [s for s in self.snaps if s.status in ("baseline", "complete")]
        # The latest by time; of several at one time, the one ingested last.
        return max(reversed(accepted), key=lambda s: s.taken) if accepted else None


@dataclass
class Guards:
    confirm_after: int = 2
    suspect_below: float = 0.5
    suspect_accept_after: int = 3
    agree_within: float = 0.1
    sample_ttl: timedelta = timedelta(days=90)


@dataclass
class Event:
    key: tuple[str, str]
    kind: str
    reason: str | None
    at: datetime


@dataclass
class SiteModel:
    """One site's links, series and events."""

    links: dict[tuple[str, str], Link] = field(default_factory=dict)
    series: dict[str, Series] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    accepted_times: list[datetime] = field(default_factory=list)
    # Which series listed which key when (links and pages), and which domains.
    sightings: list[Sighting] = field(default_factory=list)
    domain_sightings: list[Sighting] = field(default_factory=list)

    # --- ingest ---------------------------------------------------------------------

    def ingest(
        self,
        name: str,
        coverage: str,
        taken: datetime,
        rows: list[Row],
        *,
        malformed: bool,
        digest: str | None,
        guards: Guards,
    ) -> str:
        """Apply one snapshot; return its status."""
        s = self.series.setdefault(name, Series(name, coverage))
        prev = s.latest_accepted()
        if prev is not None and taken < prev.taken:
            raise ModelOutOfOrder(name)
        if digest is not None and any(
            x.digest == digest and x.taken >= taken and x.status != "error" for x in s.snaps
        ):
            s.snaps.append(Snap(taken, "duplicate", 0, digest))
            return "duplicate"
        live_keys: dict[tuple[str, str | None], Row] = {}
        for r in rows:
            if not r.lost:
                live_keys.setdefault((r.url_from, r.url_to), r)
        lost_rows: dict[tuple[str, str | None], Row] = {}
        for r in rows:
            if r.lost and (r.url_from, r.url_to) not in live_keys:
                lost_rows.setdefault((r.url_from, r.url_to), r)
        listed = len(live_keys) + len(lost_rows)
        status = self._judge(s, prev, len(live_keys), listed, malformed, digest, guards)
        s.snaps.append(Snap(taken, status, listed, digest))
        if status in ("baseline", "complete"):
            at = max([taken, *self.accepted_times])
            dated = bool(self.accepted_times)
            self.accepted_times.append(taken)
            baseline = status == "baseline"
            last = prev.taken if prev is not None else None
            listed_keys = {(f, t or ""): (r.anchor, r.rating) for (f, t), r in live_keys.items()}
            if coverage == "sample":
                self._list(self.sightings, name, listed_keys, taken, last)
                self._sample(live_keys, taken, at, dated, guards)
            else:
                self._complete(name, live_keys, at, dated, baseline)
                self._list(self.sightings, name, listed_keys, taken, last)
                if not baseline:
                    self._provider_lost(name, lost_rows, at)
                    self._absent(name, live_keys, at, guards)
            self._expire(at)
        return status

    def ingest_domains(
        self,
        name: str,
        taken: datetime,
        rows: list[DomainRow],
        *,
        malformed: bool,
        digest: str | None,
        guards: Guards,
    ) -> str:
        """Apply one referring-domain snapshot; return its status. It never touches a link."""
        s = self.series.setdefault(name, Series(name, "domains"))
        prev = s.latest_accepted()
        if prev is not None and taken < prev.taken:
            raise ModelOutOfOrder(name)
        if digest is not None and any(
            x.digest == digest and x.taken >= taken and x.status != "error" for x in s.snaps
        ):
            s.snaps.append(Snap(taken, "duplicate", 0, digest))
            return "duplicate"
        live: dict[str, tuple[object, ...]] = {}
        for r in rows:
            if not r.lost:
                live.setdefault(r.domain, (r.links, r.rating))
        lost = {r.domain for r in rows if r.lost and r.domain not in live}
        listed = len(live) + len(lost)
        status = self._judge(s, prev, len(live), listed, malformed, digest, guards)
        s.snaps.append(Snap(taken, status, listed, digest))
        if status in ("baseline", "complete"):
            self._list(self.domain_sightings, name, dict(live), taken, prev.taken if prev else None)
        return status

    def _list(
        self,
        sightings: list[Sighting],
        name: str,
        listed: dict[object, tuple[object, ...]],
        taken: datetime,
        last: datetime | None,
    ) -> None:
        """An accepted snapshot of series `name` listed these keys with these values."""
        open_ = {x.key: x for x in sightings if x.series == name and x.ended_at is None}
        for key, sighting in open_.items():
            if listed.get(key, sighting.values) != sighting.values or key not in listed:
                sighting.last_at, sighting.ended_at = last, taken
        for key, values in listed.items():
            if key not in open_ or open_[key].ended_at is not None:
                sightings.append(Sighting(name, key, values, taken))

    def open_values(self, name: str, key: tuple[str, str]) -> tuple[object, ...] | None:
        """The values of the series' open sighting of a key, if it lists it."""
        for x in self.sightings:
            if x.series == name and x.key == key and x.ended_at is None:
                return x.values
        return None

    def _judge(
        self,
        s: Series,
        prev: Snap | None,
        seen: int,
        listed: int,
        malformed: bool,
        digest: str | None,
        guards: Guards,
    ) -> str:
        if malformed:
            return "partial"
        if listed == 0 or seen == 0:
            return "suspect"
        if prev is None:
            return "baseline"
        if s.coverage == "sample" or listed >= guards.suspect_below * prev.listed:
            return "complete"
        recent = [x for x in s.snaps if x.status not in ("error", "duplicate")]
        recent.sort(key=lambda x: x.taken)
        before = recent[-(guards.suspect_accept_after - 1) :]
        digests = [x.digest for x in before if x.digest] + ([digest] if digest else [])
        if (
            len(before) == guards.suspect_accept_after - 1
            and len(set(digests)) == len(digests)
            and all(
                x.status == "suspect" and abs(x.listed - listed) <= guards.agree_within * listed
                for x in before
            )
        ):
            return "complete"
        return "suspect"

    def _event(self, link: Link, kind: str, at: datetime, reason: str | None = None) -> None:
        self.events.append(Event((link.url_from, link.url_to), kind, reason, at))
        link.state = STATE_AFTER[kind]

    def _back_to_live(self, link: Link, at: datetime, was: str | None = None) -> None:
        self._event(link, "restored", at, was or link.state)
        link.missing_count = 0
        link.dropped_by = set()
        link.lost_reason = None

    def _add(self, key: tuple[str, str], row: Row, at: datetime, dated: bool, kind: str) -> Link:
        link = Link(key[0], key[1], row.domain, added_at=at if dated else None)
        link.anchor, link.rating = row.anchor, row.rating
        self.links[key] = link
        if dated:
            self._event(link, kind, at)
        return link

    def _complete(
        self,
        name: str,
        rows: dict[tuple[str, str | None], Row],
        at: datetime,
        dated: bool,
        baseline: bool,
    ) -> None:
        for (url_from, url_to), row in rows.items():
            key = (url_from, url_to or "")
            if self.open_values(name, key) == (row.anchor, row.rating):
                continue  # listed again as it was: nothing to look at
            link = self.links.get(key)
            if link is None:
                link = self._add(key, row, at, dated, "appeared" if baseline else "new")
            else:
                if link.state != "live":
                    self._back_to_live(link, at)
                if not baseline and row.anchor is not None and row.anchor != link.anchor:
                    self.events.append(Event(key, "changed", "anchor", at))
                    link.anchor = row.anchor
                if row.rating is not None:
                    link.rating = row.rating
            link.seen_by.add(name)

    def _sample(
        self,
        rows: dict[tuple[str, str | None], Row],
        taken: datetime,
        at: datetime,
        dated: bool,
        guards: Guards,
    ) -> None:
        before = {key: link.state for key, link in self.links.items()}
        sighted: list[Link] = []
        added: list[Link] = []
        named_pages = {f for f, t in rows if t is not None}
        for (url_from, url_to), row in rows.items():
            if url_to is not None:
                link = self.links.get((url_from, url_to))
                if link is not None and (url_from, url_to) in before:
                    sighted.append(link)
                elif link is None:
                    added.append(self._add((url_from, url_to), row, at, dated, "appeared"))
        for (url_from, url_to), row in rows.items():
            if url_to is not None:
                continue
            # A page-only row vouches for the page's live links; with none live, for its
            # placeholder of unknown target, added unless the sample names the page's links.
            live = [
                lk
                for key, lk in self.links.items()
                if lk.url_from == url_from and before.get(key) == "live"
            ]
            placeholder = self.links.get((url_from, ""))
            # A complete series stopped seeing a link of the page since the sample was
            # taken: the sample vouches for no placeholder of it.
            outdated = any(
                lk.url_from == url_from and lk.dropped_at is not None and lk.dropped_at >= taken
                for lk in self.links.values()
            )
            if live:
                sighted.extend(live)
            elif outdated:
                continue
            elif placeholder is not None and (url_from, "") in before:
                sighted.append(placeholder)
            elif placeholder is None and url_from not in named_pages:
                added.append(self._add((url_from, ""), row, at, dated, "appeared"))
        unique: list[Link] = []
        for link in sighted:
            if link not in unique:
                unique.append(link)
        until = taken + guards.sample_ttl
        for link in unique:
            was = before[(link.url_from, link.url_to)]
            vouching = until > at
            if was != "live" and (link.dropped_at is None or link.dropped_at < taken) and vouching:
                self._back_to_live(link, at, was)
            if link.sample_until is None or link.sample_until < until:
                link.sample_until = until
        for link in added:
            link.sample_until = until

    def _drop(self, name: str, link: Link, at: datetime) -> None:
        link.seen_by.discard(name)
        link.dropped_by.add(name)
        link.dropped_at = at
        # The samples read so far (none taken after `at`) no longer vouch for the page's
        # placeholder: it fades to unconfirmed now.
        placeholder = self.links.get((link.url_from, ""))
        if (
            placeholder is not None
            and placeholder is not link
            and placeholder.state == "live"
            and not placeholder.seen_by
            and placeholder.sample_until is not None
            and placeholder.sample_until > at
        ):
            placeholder.sample_until = at

    def _provider_lost(
        self, name: str, rows: dict[tuple[str, str | None], Row], at: datetime
    ) -> None:
        for (url_from, url_to), row in rows.items():
            link = self.links.get((url_from, url_to or ""))
            if link is None or link.state not in ALIVE:
                continue
            self._drop(name, link, at)
            if not link.seen_by:
                link.lost_reason = row.reason
                self._event(link, "lost", at, row.reason)

    def _absent(
        self, name: str, rows: dict[tuple[str, str | None], Row], at: datetime, guards: Guards
    ) -> None:
        present = {(f, t or "") for f, t in rows}
        for key, link in self.links.items():
            if name in link.seen_by and key not in present:
                self._drop(name, link, at)
                if not link.seen_by and link.state == "live":
                    self._event(link, "missing", at)
                    link.missing_count = 0
        for link in self.links.values():
            if link.state == "missing" and name in link.dropped_by:
                link.missing_count += 1
                if link.missing_count >= guards.confirm_after:
                    link.lost_reason = "dropped"
                    self._event(link, "lost", at, "dropped")

    def _expire(self, at: datetime) -> None:
        for link in self.links.values():
            if (
                link.state == "live"
                and not link.seen_by
                and link.sample_until is not None
                and link.sample_until <= at
            ):
                self._event(link, "unconfirmed", at)

    # --- reading --------------------------------------------------------------------

    def has_data(self, at: datetime) -> bool:
        return any(
            s.taken <= at
            for series in self.series.values()
            if series.coverage != "domains"  # referring domains are no link data
            for s in series.snaps
            if s.status in ("baseline", "complete")
        )

    def state_at(self, link: Link, t: datetime) -> str | None:
        if link.added_at is not None and link.added_at > t:
            return None
        state = "live"
        for e in self.events:
            if e.key == (link.url_from, link.url_to) and e.at <= t and e.kind in STATE_AFTER:
                state = STATE_AFTER[e.kind]
        return state

    def window(self, start: datetime, end: datetime) -> dict[str, object]:
        """Every metric over (start, end], by the definitions in docs/evidence.md."""
        inside = [e for e in self.events if start < e.at <= end]
        gains = [
            e for e in inside if e.kind == "new" or (e.kind == "restored" and e.reason == "lost")
        ]
        losses = [e for e in inside if e.kind == "lost"]
        domain_of = {k: lk.domain for k, lk in self.links.items()}
        at0 = {k: self.state_at(lk, start) for k, lk in self.links.items()}
        at1 = {k: self.state_at(lk, end) for k, lk in self.links.items()}
        domains = set(domain_of.values())
        alive0 = {d for k, d in domain_of.items() if at0[k] in ALIVE}
        alive1 = {d for k, d in domain_of.items() if at1[k] in ALIVE}
        live1 = {d for k, d in domain_of.items() if at1[k] == "live"}
        gained = {domain_of[e.key] for e in gains}
        lost = {domain_of[e.key] for e in losses}
        new_rd = {d for d in domains if d not in alive0 and d in alive1 and d in gained}
        lost_rd = {d for d in domains if d in alive0 and d not in alive1 and d in lost}
        return {
            "new_links": len(gains),
            "lost_links": len(losses),
            "net_links": len(gains) - len(losses),
            "new_refdomains": len(new_rd),
            "lost_refdomains": len(lost_rd),
            "net_refdomains": len(new_rd) - len(lost_rd),
            "lost_refdomains_pct": round(100.0 * len(lost_rd) / len(alive0), 2) if alive0 else None,
            "live_links": sum(1 for s in at1.values() if s == "live"),
            "live_refdomains": len(live1),
            "domains_lost": lost_rd,
            "domains_with_losses": lost,
        }
