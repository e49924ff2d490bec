"""Records every source yields, whatever it reads from."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

# One taxonomy of lost reasons for every source (DESIGN.md, "Lost reasons").
LOST_REASONS = (
    "removed",
    "not_found",
    "page_error",
    "redirected",
    "noindex",
    "not_canonical",
    "nofollowed",
    "robots_blocked",
    "unreachable",
    "target_changed",
    "dropped",
    "unknown",
)


class Backlink(NamedTuple):
    """One link from a referring page to the watched site, as a source reports it.

    A NamedTuple rather than a frozen dataclass: a million are built per import and
    tuple construction is several times cheaper.
    """

    url_from: str
    url_to: str
    anchor: str | None = None
    nofollow: bool | None = None
    ugc: bool | None = None
    sponsored: bool | None = None
    domain_rating: float | None = None
    first_seen_at: datetime | None = None
    lost: bool = False
    lost_reason: str | None = None
    # Which provider metric `domain_rating` holds, named with its provider ("Ahrefs DR",
    # "Moz DA", "Majestic TF", …); the value is always normalised to 0 to 100.
    rating_metric: str | None = None
    # The provider's toxicity or spam score of the link or its domain, normalised to 0 to 100.
    toxicity: float | None = None


# Yielded by an export's records in place of a row recognised by its fingerprint as one the
# series listed last time with the same values (`SnapshotResult.known_rows`): the row's
# link key and digest are in `SnapshotResult.known`, and the row was not parsed.
KNOWN_ROW = Backlink("", "")


class RefDomain(NamedTuple):
    """One referring domain, as a domain-level export (Ahrefs "Referring domains", Search
    Console "Top linking sites", …) reports it: it never says which links exist."""

    domain: str
    links: int | None = None
    domain_rating: float | None = None
    rating_metric: str | None = None
    first_seen_at: datetime | None = None
    lost: bool = False


class SourceError(Exception):
    """A source could not produce a snapshot (unreadable file, failed request, unknown format)."""


class FormatError(SourceError):
    """An export file is in no format linkwatch knows; nothing is stored."""


@dataclass
class ParseReport:
    """What reading one export found besides links: malformed rows, with line numbers."""

    malformed: int = 0
    examples: list[str] = field(default_factory=list)
    max_examples: int = 20

    def add(self, line: int, message: str) -> None:
        """Count one malformed row, keeping the first few messages for the report."""
        self.malformed += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(f"line {line}: {message}")


@dataclass
class SnapshotResult:
    """One poll of one source: a stream of backlinks plus the verdict on completeness.

    `complete` may only be read after `records` is exhausted: a malformed row or a
    failure midway makes the snapshot partial, and a partial snapshot changes no link.
    """

    taken_at: datetime
    records: Iterator[Backlink]
    origin: str = ""
    format: str = ""
    report: ParseReport = field(default_factory=ParseReport)
    error: str | None = None
    # The file line of the record last yielded, so later checks can name it.
    line: int = 0
    # A digest of the raw content: the same export ingested twice is recognised.
    digest: str | None = None
    # A sample of the profile (GSC's link lists): it can add links, never miss them.
    sample: bool = False
    # Size and modification time of the file read (`size:mtime_ns`): a file that changes
    # after it was read is read again.
    origin_stamp: str | None = None
    # Releases what `records` holds open (a file) when the records are not read.
    closer: Callable[[], None] | None = None
    # A domain-level snapshot streams referring domains here instead of links in
    # `records`: its series has the `domains` coverage and never changes a link.
    domain_records: Iterator[RefDomain] | None = None
    # What the fetch wants told with the snapshot (an API's cost, pages read); stored in
    # the snapshot's note.
    notes: list[str] = field(default_factory=list)
    # Whether the records can be fingerprinted (an export's link rows). If so, the ledger
    # sets `known_rows` before reading a complete series' records: the row fingerprints
    # of the links it lists now, each with `pack_known(link_key, digest)`; the source then
    # sets `fingerprint` with each record (None for a row it could not fingerprint), and
    # yields KNOWN_ROW, with its value in `known`, for a row found there.
    fingerprints: bool = False
    known_rows: Mapping[int, int] | None = None
    # The database's own secret the fingerprints are keyed with.
    fingerprint_secret: bytes = b""
    fingerprint: int | None = None
    known: int = 0
    # How many KNOWN_ROWs the ledger staged (set by the ledger): with none, nothing
    # recognised can have been changed meanwhile.
    recognised: int = 0

    def close(self) -> None:
        """Release the source of the records without reading them."""
        if self.closer is not None:
            self.closer()

    @property
    def complete(self) -> bool:
        """True when every row was read and understood."""
        return self.error is None and self.report.malformed == 0


_DIGEST_BITS = 32


def pack_known(link_key: int, digest: int) -> int:
    """One int for a known row's 64-bit link key and 32-bit digest (half the memory of a
    pair, for a million rows)."""
    return (link_key << _DIGEST_BITS) | digest


def unpack_known(packed: int) -> tuple[int, int]:
    """The link key and digest `pack_known` packed."""
    return packed >> _DIGEST_BITS, packed & 0xFFFF_FFFF
