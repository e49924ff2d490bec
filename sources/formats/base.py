"""What an export format plugin is: header variants to recognise it and row parsers built from
column names, for link-level exports (Backlink rows) and domain-level ones (RefDomain rows)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from sources.formats.values import (
    NonFiniteError,
    domain_name,
    map_lost_reason,
    parse_bool,
    parse_datetime,
    parse_number,
)
from sources.model import Backlink, RefDomain

RowParser = Callable[[list[str]], Backlink]
DomainRowParser = Callable[[list[str]], RefDomain]
# What a snapshot of a format can prove (docs/evidence.md): `complete` profiles can make a
# link missing, `sample`s only add or restore, `domains` name referring domains and never
# change a link; `none`: the file holds neither links nor domains and is refused.
Coverage = Literal["complete", "sample", "domains", "none"]
# How a file's format was recognised, as `linkwatch import` reports it.
Recognised = Literal["header", "translated header", "shape"]


@dataclass
class RowIssues:
    """What reading rows noticed without refusing them: provider ratings outside their 0-100
    scale, ignored (the link is kept: a bad metric never makes a snapshot partial)."""

    bad_ratings: int = 0

    def rating(self, value: str, metric: str | None) -> float | None:
        """A provider rating on its 0-100 scale; None (and counted) outside it (`inf` and
        `nan` too). Without a metric name (generic CSV) the number is kept as written, and a
        non-finite one makes the row malformed (ValueError)."""
        try:
            number = parse_number(value)
        except NonFiniteError:
            if metric is None:
                raise
            self.bad_ratings += 1
            return None
        if number is None or metric is None or 0 <= number <= 100:
            return number
        self.bad_ratings += 1
        return None

    def notes(self, metric: str) -> list[str]:
        """What to tell with the snapshot."""
        if not self.bad_ratings:
            return []
        return [f"{self.bad_ratings} rows: {metric} outside 0-100, ignored"]


def normalize_header(name: str) -> str:
    """Header names compare trimmed, case-folded, with inner white space collapsed."""
    return " ".join(name.replace("\ufeff", "").strip().strip('"').split()).casefold()


@dataclass(frozen=True)
class ColumnMap:
    """Which header names hold which Backlink field; the first name present wins."""

    url_from: tuple[str, ...]
    url_to: tuple[str, ...] = ()
    anchor: tuple[str, ...] = ()
    nofollow: tuple[str, ...] = ()
    ugc: tuple[str, ...] = ()
    sponsored: tuple[str, ...] = ()
    domain_rating: tuple[str, ...] = ()
    first_seen: tuple[str, ...] = ()
    # A cell that marks the link lost when it holds a readable date (Ahrefs `Lost`); any other
    # value (empty, `-`, `0`, `n/a`) leaves it live.
    lost_if_nonempty: tuple[str, ...] = ()
    # A boolean cell that marks the link lost (Semrush `Lost link`).
    lost_if_true: tuple[str, ...] = ()
    # A status cell that marks the link lost only when it says exactly `lost` (Ahrefs
    # `Backlink Status` before 2021): any other value, known or not, leaves the link live.
    lost_if_status: tuple[str, ...] = ()
    # Cells whose text says why the link was lost.
    lost_reason: tuple[str, ...] = ()
    # Flags written as "non-empty = set" (Majestic).
    flags_nonempty_true: bool = False
    # A cell naming the link kind, `Dofollow` or `Nofollow` (Ahrefs before 2021); another
    # kind (a redirect, …) says nothing about rel and leaves nofollow unknown.
    follow_kind: tuple[str, ...] = ()
    # A boolean cell saying the link is followed (Moz `Followable`): nofollow is its negation.
    followed: tuple[str, ...] = ()
    # The provider metric `domain_rating` holds ("Ahrefs DR", "Moz DA", …); with a name the
    # value is checked to lie within 0-100. Without one (generic CSV) it is kept as it is.
    rating_metric: str | None = None
    # A cell with the provider's toxicity or spam score, and how it becomes 0-100.
    toxicity: tuple[str, ...] = ()
    toxicity_scale: Callable[[str], float | None] | None = None
    # URLs written without a scheme (Moz: `blog.example.org/page`) get `https://`, so the
    # ledger stores a URL a browser opens.
    add_scheme: bool = False


@dataclass(frozen=True)
class DomainMap:
    """Which header names hold which RefDomain field, for a domain-level export."""

    domain: tuple[str, ...]
    links: tuple[str, ...] = ()
    domain_rating: tuple[str, ...] = ()
    rating_metric: str | None = None
    first_seen: tuple[str, ...] = ()
    # A cell that marks the domain lost when it holds a readable date (Ahrefs `Lost`).
    lost_if_nonempty: tuple[str, ...] = ()


@dataclass(frozen=True)
class Variant:
    """One header a format is exported with: its required columns and how to read it."""

    name: str
    # Each group must have one of its (normalised) header names present.
    required: tuple[tuple[str, ...], ...]
    # None for a format that holds no links (refused).
    columns: ColumnMap | DomainMap | None
    # The UI language of a translated header; None for the English one.
    language: str | None = None
    # The header may follow a few preamble lines (Moz); it is looked for in the first lines.
    after_preamble: bool = False

    def matches(self, header: Mapping[str, int]) -> bool:
        """True when the header holds every column this variant requires."""
        return all(any(name in header for name in group) for group in self.required)


@dataclass(frozen=True)
class ExportFormat:
    """A backlink export format: how to recognise its header and read its rows."""

    kind: str
    description: str
    variants: tuple[Variant, ...]
    coverage: Coverage = "complete"
    # Why a file of this format is refused (coverage `none`): what it holds instead of links.
    refusal: str = ""

    @property
    def sample(self) -> bool:
        """The export lists a sample of the profile: absence from it proves nothing."""
        return self.coverage == "sample"

    @property
    def domains(self) -> bool:
        """The export lists referring domains, not links."""
        return self.coverage == "domains"

    def variant_for(self, header: Mapping[str, int]) -> Variant | None:
        """The first variant whose required columns the header has."""
        return next((v for v in self.variants if v.matches(header)), None)

    def matches(self, header: Mapping[str, int]) -> bool:
        """True when the header fits one of this format's variants."""
        return self.variant_for(header) is not None


@dataclass(frozen=True)
class Detection:
    """A file's format, which of its variants, and how it was recognised."""

    format: ExportFormat
    variant: Variant
    recognised: Recognised

    def describe(self) -> str:
        """What the file is and how that was told, for a person: `format gsc (Google Search
        Console …): Latest links, recognised by translated header (Hebrew)`."""
        how = f"by {self.recognised}"
        if self.variant.language is not None:
            how += f" ({self.variant.language})"
        return (
            f"format {self.format.kind} ({self.format.description}): {self.variant.name},"
            f" recognised {how}"
        )


def is_lost_date(value: str) -> bool:
    """A lost-date cell (Ahrefs `Lost`, `Day Lost`, Majestic `DateLost`) marks its row lost only
    when it holds a readable date: empty, `-`, `0`, `n/a`, `false`, … leave it live (never cry
    wolf)."""
    if not value or not value.strip():
        return False
    try:
        return parse_datetime(value) is not None
    except ValueError:
        # `01/20/2026`: a date in the US order, which the day-first reading refuses.
        m = _MDY.fullmatch(value.strip())
        return m is not None and 1 <= int(m[1]) <= 12 and 1 <= int(m[2]) <= 31


_MDY = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")


def _find(header: Mapping[str, int], names: tuple[str, ...]) -> int | None:
    for name in names:
        if name in header:
            return header[name]
    return None


def _with_scheme(url: str) -> str:
    return url if not url or "://" in url else "https://" + url


def build_row_parser(
    fmt: ExportFormat,
    cols: ColumnMap,
    header: Mapping[str, int],
    width: int,
    issues: RowIssues | None = None,
) -> tuple[RowParser, tuple[int, ...]]:
    """Resolve column names to indexes once, then parse rows by index into Backlinks; the
    parser, and the indexes of every cell it reads (what a row fingerprint covers)."""
    i_from = _find(header, cols.url_from)
    if i_from is None:
        raise ValueError(f"{fmt.kind}: no referring page column ({', '.join(cols.url_from)})")
    i_to = _find(header, cols.url_to)
    i_anchor = _find(header, cols.anchor)
    i_ugc = _find(header, cols.ugc)
    i_sponsored = _find(header, cols.sponsored)
    i_dr = _find(header, cols.domain_rating)
    i_first = _find(header, cols.first_seen)
    i_lost_date = _find(header, cols.lost_if_nonempty)
    i_lost_bool = _find(header, cols.lost_if_true)
    i_status = _find(header, cols.lost_if_status)
    i_toxic = _find(header, cols.toxicity)
    reason_cols = [header[n] for n in cols.lost_reason if n in header]
    nonempty = cols.flags_nonempty_true
    metric = cols.rating_metric
    # Only a rating the file actually holds is named.
    rating_metric = metric if i_dr is not None else None
    toxicity_scale = cols.toxicity_scale or parse_number
    add_scheme = cols.add_scheme
    nofollow, i_nofollow = _nofollow_reader(header, cols)
    rated = (issues or RowIssues()).rating
    read = (
        i_from, i_to, i_anchor, i_nofollow, i_ugc, i_sponsored, i_dr, i_first, i_lost_date,
        i_lost_bool, i_status, i_toxic, *reason_cols,
    )  # fmt: skip

    def parse(row: list[str]) -> Backlink:
        if len(row) != width:
            raise ValueError(f"expected {width} fields, got {len(row)}")
        url_from = row[i_from].strip()
        if not url_from:
            raise ValueError("empty referring page URL")
        # A format without a target column (GSC) names only the linking page: the target
        # stays unknown (empty) rather than invented.
        url_to = row[i_to].strip() if i_to is not None else ""
        if not url_to and i_to is not None:
            raise ValueError("empty target URL")
        if add_scheme:
            url_from, url_to = _with_scheme(url_from), _with_scheme(url_to)
        lost = (
            (i_lost_date is not None and is_lost_date(row[i_lost_date]))
            or (i_lost_bool is not None and parse_bool(row[i_lost_bool]))
            or (i_status is not None and row[i_status].strip().casefold() == "lost")
        )
        rating = row[i_dr] if i_dr is not None else ""
        # Positional arguments: this runs once per exported row.
        return Backlink(
            url_from,
            url_to,
            row[i_anchor] if i_anchor is not None else None,
            nofollow(row) if nofollow is not None else None,
            parse_bool(row[i_ugc], nonempty_is_true=nonempty) if i_ugc is not None else None,
            parse_bool(row[i_sponsored], nonempty_is_true=nonempty)
            if i_sponsored is not None
            else None,
            rated(rating, rating_metric) if rating else None,
            parse_datetime(row[i_first]) if i_first is not None else None,
            lost,
            map_lost_reason(*(row[i] for i in reason_cols)) if lost else None,
            rating_metric,
            toxicity_scale(row[i_toxic]) if i_toxic is not None else None,
        )

    return parse, tuple(sorted({i for i in read if i is not None}))


def _nofollow_reader(
    header: Mapping[str, int], cols: ColumnMap
) -> tuple[Callable[[list[str]], bool | None] | None, int | None]:
    """How a row says whether the link is nofollow (a flag, a link kind, or a followed
    flag), and the index of the cell it reads."""
    if (i := _find(header, cols.nofollow)) is not None:
        return _flag_at(i, cols.flags_nonempty_true), i
    if (i := _find(header, cols.follow_kind)) is not None:
        return _kind_at(i), i
    if (i := _find(header, cols.followed)) is not None:
        return _followed_at(i), i
    return None, None


def _flag_at(i: int, nonempty: bool) -> Callable[[list[str]], bool | None]:
    return lambda row: parse_bool(row[i], nonempty_is_true=nonempty)


def _kind_at(i: int) -> Callable[[list[str]], bool | None]:
    return lambda row: _FOLLOW_KINDS.get(row[i].strip().casefold())


def _followed_at(i: int) -> Callable[[list[str]], bool | None]:
    return lambda row: not parse_bool(row[i])


_FOLLOW_KINDS = {"dofollow": False, "nofollow": True}


def build_domain_parser(
    fmt: ExportFormat,
    cols: DomainMap,
    header: Mapping[str, int],
    width: int,
    issues: RowIssues | None = None,
) -> DomainRowParser:
    """Resolve column names to indexes once, then parse rows by index into RefDomains."""
    i_domain = _find(header, cols.domain)
    if i_domain is None:
        raise ValueError(f"{fmt.kind}: no domain column ({', '.join(cols.domain)})")
    i_links = _find(header, cols.links)
    i_dr = _find(header, cols.domain_rating)
    i_first = _find(header, cols.first_seen)
    i_lost = _find(header, cols.lost_if_nonempty)
    metric = cols.rating_metric
    rating_metric = metric if i_dr is not None else None
    rated = (issues or RowIssues()).rating

    def parse(row: list[str]) -> RefDomain:
        if len(row) != width:
            raise ValueError(f"expected {width} fields, got {len(row)}")
        links = _count(row[i_links]) if i_links is not None else None
        return RefDomain(
            domain_name(row[i_domain]),
            links,
            rated(row[i_dr], metric) if i_dr is not None else None,
            rating_metric,
            parse_datetime(row[i_first]) if i_first is not None else None,
            i_lost is not None and is_lost_date(row[i_lost]),
        )

    return parse


def _count(value: str) -> int | None:
    """A count of links (`3`; `1,240`, `1.240`, `1 240` with a thousands separator, as the
    UI language writes it); None when the cell is empty."""
    v = value.strip()
    if not v:
        return None
    if _COUNT.fullmatch(v) is None:
        raise ValueError(f"expected a count of links, got {value!r}")
    digits = _SEPARATORS.sub("", v)
    if len(digits) > MAX_COUNT_DIGITS:
        raise ValueError(
            f"expected a count of links, got {value!r} (more than {MAX_COUNT_DIGITS} digits)"
        )
    return int(digits)


# A count of links beyond this many digits is no count (and overflows SQLite's INTEGER).
MAX_COUNT_DIGITS = 15


_COUNT = re.compile(r"\d+|\d{1,3}(?:([,.\u00a0\u202f ])\d{3})(?:\1\d{3})*")
_SEPARATORS = re.compile(r"[,.\u00a0\u202f ]")
