"""What an export format plugin is: a header matcher and a row parser built from column names."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sources.formats.values import map_lost_reason, parse_bool, parse_datetime, parse_number
from sources.model import Backlink

RowParser = Callable[[list[str]], Backlink]


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
    # A cell whose non-empty value marks the link lost (Ahrefs `Lost` holds a date).
    lost_if_nonempty: tuple[str, ...] = ()
    # A boolean cell that marks the link lost (Semrush `Lost link`).
    lost_if_true: tuple[str, ...] = ()
    # Cells whose text says why the link was lost.
    lost_reason: tuple[str, ...] = ()
    # Flags written as "non-empty = set" (Majestic).
    flags_nonempty_true: bool = False


@dataclass(frozen=True)
class ExportFormat:
    """A backlink export format: how to recognise its header and read its rows."""

    kind: str
    description: str
    columns: ColumnMap
    # Each group must have one of its (normalised) header names present to recognise the
    # format; alternatives cover localised headers.
    required: tuple[tuple[str, ...], ...]
    # The export lists a sample of the profile: absence from it proves nothing.
    sample: bool = False

    def matches(self, header: Mapping[str, int]) -> bool:
        """True when the header holds every column this format requires."""
        return all(any(name in header for name in group) for group in self.required)

    def row_parser(self, header: Mapping[str, int], width: int, site: str) -> RowParser:
        """A function turning one row of `width` cells into a Backlink (ValueError if bad)."""
        return build_row_parser(self, header, width, site)


def _find(header: Mapping[str, int], names: tuple[str, ...]) -> int | None:
    for name in names:
        if name in header:
            return header[name]
    return None


def build_row_parser(
    fmt: ExportFormat, header: Mapping[str, int], width: int, site: str
) -> RowParser:
    """Resolve column names to indexes once, then parse rows by index."""
    cols = fmt.columns
    i_from = _find(header, cols.url_from)
    if i_from is None:
        raise ValueError(f"{fmt.kind}: no referring page column ({', '.join(cols.url_from)})")
    i_to = _find(header, cols.url_to)
    i_anchor = _find(header, cols.anchor)
    i_nofollow = _find(header, cols.nofollow)
    i_ugc = _find(header, cols.ugc)
    i_sponsored = _find(header, cols.sponsored)
    i_dr = _find(header, cols.domain_rating)
    i_first = _find(header, cols.first_seen)
    i_lost_date = _find(header, cols.lost_if_nonempty)
    i_lost_bool = _find(header, cols.lost_if_true)
    reason_cols = [header[n] for n in cols.lost_reason if n in header]
    nonempty = cols.flags_nonempty_true

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
        lost = (i_lost_date is not None and bool(row[i_lost_date].strip())) or (
            i_lost_bool is not None and parse_bool(row[i_lost_bool])
        )
        # Positional arguments: this runs once per exported row.
        return Backlink(
            url_from,
            url_to,
            row[i_anchor] if i_anchor is not None else None,
            parse_bool(row[i_nofollow], nonempty_is_true=nonempty)
            if i_nofollow is not None
            else None,
            parse_bool(row[i_ugc], nonempty_is_true=nonempty) if i_ugc is not None else None,
            parse_bool(row[i_sponsored], nonempty_is_true=nonempty)
            if i_sponsored is not None
            else None,
            parse_number(row[i_dr]) if i_dr is not None else None,
            parse_datetime(row[i_first]) if i_first is not None else None,
            lost,
            map_lost_reason(*(row[i] for i in reason_cols)) if lost else None,
        )

    return parse
