"""Recognising a Search Console Links export in a UI language whose headers linkwatch does not
know, by what its first rows hold: URLs and dates, URLs alone, host names and counts.

Only a file whose header fits no known format is looked at, so a known format is never taken
for another; every sampled row must fit the same shape, and the header row must not (a file
without a header is no export)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from sources.formats.base import Detection, ExportFormat
from sources.formats.gsc import GSC_LATEST_LINKS, GSC_TOP_PAGES, GSC_TOP_SITES
from sources.formats.values import domain_name, parse_datetime
from sources.urls import ascii_host, host_name, registrable_domain, split_url

# Data rows looked at; a few are enough to tell the shapes apart and cheap to read twice.
SHAPE_ROWS = 5
# `1240`, `1,240`, `1.240`, `1 240` (thousands separators of the UI language).
_COUNT = re.compile(r"\d+|\d{1,3}(?:[,.\u00a0\u202f ]\d{3})+")
_MDY = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})$")


@dataclass(frozen=True)
class ShapeMatch:
    """A format recognised by shape, the header its rows are read with, and why it is
    refused if it is (a list of the site's own pages, a table without links)."""

    detection: Detection
    header: dict[str, int]
    problem: str | None = None


def _is_url(cell: str) -> bool:
    c = cell.strip()
    return c[:8].lower().startswith(("http://", "https://")) and split_url(c) is not None


def _is_host(cell: str) -> bool:
    c = cell.strip()
    if not c or any(ch in c for ch in "/:@ \t"):
        return False
    try:
        domain_name(c)
    except ValueError:
        return False
    return True


def _is_count(cell: str) -> bool:
    return _COUNT.fullmatch(cell.strip()) is not None


def _is_date(cell: str) -> bool:
    try:
        return parse_datetime(cell) is not None
    except ValueError:
        # `09/28/2026`: the US order, which the day-first reading refuses.
        m = _MDY.match(cell.strip())
        return m is not None and 1 <= int(m[1]) <= 12 and 1 <= int(m[2]) <= 31


def _fits(rows: list[list[str]], tests: tuple[Callable[[str], bool], ...]) -> bool:
    return all(
        len(row) == len(tests) and all(t(cell) for t, cell in zip(tests, row, strict=True))
        for row in rows
    )


def _detection(fmt: ExportFormat, name: str) -> Detection:
    variant = next(v for v in fmt.variants if v.name == name and v.language is None)
    return Detection(fmt, variant, "shape")


def _own_pages(rows: list[list[str]], site: str) -> str | None:
    """Why URL rows are no links to `site`: every one of them is on the site itself."""
    own = registrable_domain(ascii_host(host_name(site.strip().lower())))
    hosts = {split_url(row[0].strip()) for row in rows}
    domains = {registrable_domain(host_name(h[0])) for h in hosts if h is not None}
    if domains == {own}:
        return (
            f"every page it lists is on {site} itself: it looks like a Search Console Pages "
            "or Performance export, not a list of pages linking to the site"
        )
    return None


def detect_by_shape(header: list[str], rows: list[list[str]], site: str) -> ShapeMatch | None:
    """The Search Console table a headed file of unknown columns holds, judged by its first
    data rows (`rows`, at most SHAPE_ROWS of them); None if no shape fits them all."""
    rows = [r for r in rows if any(c.strip() for c in r)][:SHAPE_ROWS]
    if not rows:
        return None
    shapes: tuple[tuple[tuple[Callable[[str], bool], ...], ExportFormat, str, list[str]], ...] = (
        ((_is_url,), GSC_LATEST_LINKS, "More sample links", ["linking page"]),
        ((_is_url, _is_date), GSC_LATEST_LINKS, "Latest links", ["linking page", "last crawled"]),
        (
            (_is_host, _is_count, _is_count),
            GSC_TOP_SITES,
            "Top linking sites",
            ["site", "linking pages", "target pages"],
        ),
        (
            (_is_url, _is_count, _is_count),
            GSC_TOP_PAGES,
            "Top linked pages",
            ["target page", "incoming links", "linking sites"],
        ),
    )
    for tests, fmt, name, names in shapes:
        # The header row must not fit too: then the file has no header, or is no such table.
        if len(header) != len(tests) or _fits([header], tests) or not _fits(rows, tests):
            continue
        problem = fmt.refusal or None
        if fmt is GSC_LATEST_LINKS:
            problem = _own_pages(rows, site)
        return ShapeMatch(_detection(fmt, name), {n: i for i, n in enumerate(names)}, problem)
    return None
